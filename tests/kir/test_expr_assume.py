"""kir.expr.assume and variables: resolving the selects on a known condition (what a row loop unswitched on
a Concat's choice of source reads inside each branch) and the loop variables an expression reads."""

from dnnfusion.kir.expr import Lit, Load, Var, assume, binary, select, variables


def test_assume_takes_the_branch_of_every_select_on_the_condition_only():
    row, lane = Var("o"), Var("r")
    first = binary("<", row, Lit(10))
    second = binary("<", row, Lit(20))
    a, b, c = (Load(name, row * 4 + lane, "float") for name in ("a", "b", "c"))
    chain = select(first, a, select(second, b, c)) + select(first, Lit(1.0, "float"), Lit(2.0, "float"))
    assert assume(chain, first, True) == a + Lit(1.0, "float")
    inner = assume(chain, first, False)
    assert inner == select(second, b, c) + Lit(2.0, "float")
    assert assume(inner, second, False) == c + Lit(2.0, "float")
    untouched = a * b
    assert assume(untouched, first, True) is untouched          # nothing to resolve: the same tree


def test_variables_are_the_loop_variables_read():
    row, lane = Var("o"), Var("r")
    e = select(binary("<", row, Lit(3)), Load("a", row + lane, "float"), Lit(0.0, "float"))
    assert variables(e) == {"o", "r"}
    assert variables(Lit(1)) == set()
