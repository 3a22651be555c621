"""Cases for passes/rewrite/distributive.py."""

from tests.passes.rewrite.harness import Case

CASES: list[Case] = []
