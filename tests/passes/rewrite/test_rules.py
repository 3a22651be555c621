"""Every rewrite rule proven on its smallest graph (harness.prove), refused where its preconditions fail
(harness.refuse), and every rule has a case: the cases live beside the rule families, one module each."""

import pytest

from dnnfusion.passes.rewrite import FAMILIES, RULES
from tests.passes.rewrite import cases
from tests.passes.rewrite.harness import prove, refuse

CASES = cases.ALL


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.rule for c in CASES])
def test_rule_is_equivalent_on_its_graph(case):
    prove(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.negatives], ids=[c.id or c.rule for c in CASES if c.negatives])
def test_rule_does_not_fire_where_its_preconditions_fail(case):
    refuse(case)


def test_every_rule_has_a_case_and_a_known_family():
    assert {r.name for r in RULES} <= {c.rule for c in CASES}
    assert all(r.family in FAMILIES for r in RULES)
    assert len({r.name for r in RULES}) == len(RULES)
