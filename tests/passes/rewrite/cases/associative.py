"""Cases for passes/rewrite/associative.py."""

from tests.passes.rewrite.harness import Case

CASES: list[Case] = []
