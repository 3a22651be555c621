"""Cases for passes/rewrite/identities.py."""

from tests.passes.rewrite.harness import Case

CASES: list[Case] = []
