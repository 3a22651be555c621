"""Cases for passes/rewrite/layout.py."""

from tests.passes.rewrite.harness import Case

CASES: list[Case] = []
