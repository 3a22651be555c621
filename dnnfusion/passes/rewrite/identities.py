"""Algebraic identities: neutral elements (x+0, x*1, ...), small powers spelled as cheaper operators, negations
and reciprocals that cancel, idempotent activations, casts that change nothing, and a Where whose choice is
known at compile time. Each removes operators or replaces one with a cheaper one (see engine.py for what a
rule promises). `same_type` is shared with layout.py."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...ir.graph import Value
from ...ops.cast import is_ml_dtype
from .engine import Builder, Rule
from .pattern import Const, Match, P, Var, equals, is_float

NONNEGATIVE = ("Relu", "Abs", "Exp", "Sigmoid", "Softplus")   # never below zero, whatever their input


# --- conditions -------------------------------------------------------------------------------------------
def out(m: Match) -> Value:
    """The value the root computes (the one a rule replaces)."""
    return m.root.outputs[0]


def same_shape(a: Value, b: Value) -> bool:
    """The same static shape."""
    return a.shape is not None and b.shape is not None and tuple(a.shape) == tuple(b.shape) and \
        all(isinstance(d, int) for d in a.shape)


def same_type(a: Value, b: Value) -> bool:
    """Same dtype and the same static shape (so one can stand in for the other)."""
    return a.dtype is not None and a.dtype == b.dtype and same_shape(a, b)


def keeps(name: str) -> Callable[[Match], bool]:
    """The root's result has the type of the value bound to `name`: no broadcasting operand enlarged it."""
    return lambda m: same_type(m[name], out(m))


def float_keeps(name: str) -> Callable[[Match], bool]:
    """`keeps(name)` for a float value (a rule whose reasoning is about floating point)."""
    return lambda m: is_float(m[name]) and same_type(m[name], out(m))


def static(m: Match) -> bool:
    """The root's result has a static shape."""
    shape = out(m).shape
    return shape is not None and all(isinstance(d, int) for d in shape)


def plain(dtype: np.dtype) -> bool:
    """bool, a numpy integer or a numpy float (not a string, complex or ml_dtypes type)."""
    return dtype.kind in "biuf" and not is_ml_dtype(dtype)


def holds(wide: np.dtype, narrow: np.dtype) -> bool:
    """Every value of the plain type `narrow` is exactly a value of the plain type `wide`."""
    wide, narrow = np.dtype(wide), np.dtype(narrow)
    if not (plain(wide) and plain(narrow)):
        return False
    if wide == narrow or narrow.kind == "b":
        return True                                            # 0 and 1 are exact everywhere
    if narrow.kind == "f":
        if wide.kind != "f":
            return False
        w, n = np.finfo(wide), np.finfo(narrow)
        return w.nmant >= n.nmant and w.maxexp >= n.maxexp and w.minexp <= n.minexp
    lo, hi = int(np.iinfo(narrow).min), int(np.iinfo(narrow).max)
    if wide.kind in "iu":
        return np.iinfo(wide).min <= lo and hi <= np.iinfo(wide).max
    return wide.kind == "f" and max(-lo, hi) <= 2 ** (np.finfo(wide).nmant + 1)


def _names_no_graph_output(m: Match) -> bool:
    """An Identity that does not give a graph output its name (the engine would put one back) and changes no
    type."""
    return keeps("x")(m) and not m.is_graph_output(out(m))


def widened_cast(m: Match) -> bool:
    """Cast(Cast(x, T1), T2) with T1 holding every value of x exactly and T2 a plain numeric type: the inner
    cast changes no value, so the outer one sees what it would see reading x."""
    x, middle, result = m["x"], m.node("inner").outputs[0], out(m)
    return holds(middle.dtype, x.dtype) and plain(np.dtype(result.dtype)) and same_shape(x, result)


def where_known(m: Match) -> bool:
    """A constant condition that is everywhere true or everywhere false, and the operand it picks has the
    result's type (a smaller operand would have been broadcast)."""
    c = m.array("c")
    return (bool(c.all()) or not c.any()) and same_type(m["a" if c.all() else "b"], out(m))


# --- replacements -----------------------------------------------------------------------------------------
def _x(b: Builder, m: Match) -> Value:
    return m["x"]


def _inner(b: Builder, m: Match) -> Value:
    """The inner node's result (kept: the root applied to it changes nothing)."""
    return m.node("inner").outputs[0]


def _op(op_type: str, *names: str) -> Callable[[Builder, Match], Value]:
    """A builder of `op_type` reading the values bound to `names`, in that order."""
    return lambda b, m: b.op(op_type, *(m[n] for n in names))


def _cube(b: Builder, m: Match) -> Value:
    return b.op("Mul", b.op("Mul", m["x"], m["x"]), m["x"])


def _recast(b: Builder, m: Match) -> Value:
    return m["x"] if m["x"].dtype == out(m).dtype else b.op("Cast", m["x"], **m.root.attrs)


def _zeros(b: Builder, m: Match) -> Value:
    return b.const(np.zeros(out(m).shape, out(m).dtype))


def _where_pick(b: Builder, m: Match) -> Value:
    return m["a" if m.array("c").all() else "b"]


# --- rules ------------------------------------------------------------------------------------------------
def _neutral(name: str, op_type: str, unit: float, summary: str) -> Rule:
    """`op_type`(x, unit) -> x, for a constant that is `unit` everywhere and does not enlarge x."""
    return Rule(name, "identity", P(op_type, Var("x"), Const("c", equals(unit))), _x, keeps("x"), summary=summary)


def _power(name: str, exponent: float, build: Callable[[Builder, Match], Value], summary: str,
           **promise: object) -> Rule:
    """Pow(x, exponent) -> `build` for float x. The registry counts Pow as one FLOP like Mul, Sqrt and
    Reciprocal, so these are `always` (a strength reduction the FLOP count cannot see)."""
    return Rule(name, "identity", P("Pow", Var("x"), Const("c", equals(exponent))), build, float_keeps("x"),
                always=True, summary=summary, **promise)


RULES: list[Rule] = [
    _neutral("add_zero", "Add", 0.0, "x + 0 and 0 + x -> x (a zero constant that does not enlarge x; -0 + 0 is +0, "
                                     "so only the sign of a zero result can differ)"),
    _neutral("sub_zero", "Sub", 0.0, "x - 0 -> x (a zero constant that does not enlarge x; -0 - -0 is +0, so only "
                                     "the sign of a zero result can differ)"),
    _neutral("mul_one", "Mul", 1.0, "x * 1 and 1 * x -> x (a constant of ones that does not enlarge x)"),
    _neutral("div_one", "Div", 1.0, "x / 1 -> x (a constant of ones that does not enlarge x)"),
    _neutral("pow_one", "Pow", 1.0, "Pow(x, 1) -> x (an exponent of ones that does not enlarge x)"),
    _power("pow_two", 2.0, lambda b, m: b.op("Mul", m["x"], m["x"]),
           "Pow(x, 2) -> x * x for float x: bit for bit the same, and open to the Mul rules"),
    _power("pow_three", 3.0, _cube, "Pow(x, 3) -> x * x * x for float x (GELU-tanh exports), within 2 ulp; off by "
           "default: two operators for one, and the generated code already cubes a literal-3 Pow", default=False),
    _power("pow_half", 0.5, _op("Sqrt", "x"), "Pow(x, 0.5) -> Sqrt(x) for float x; inexact: at -inf Pow gives +inf "
           "and Sqrt NaN, and at -0 Pow gives +0 and Sqrt -0 (proven without NaN/inf inputs), so off by default",
           exact=False, default=False),
    _power("pow_minus_one", -1.0, _op("Reciprocal", "x"),
           "Pow(x, -1) -> Reciprocal(x) for float x: both are the correctly rounded 1/x"),
    Rule("mul_reciprocal", "identity", P("Mul", Var("x"), P("Reciprocal", Var("y"))), _op("Div", "x", "y"),
         lambda m: is_float(m["x"]), exact=False, rtol=1e-6, atol=1e-6,
         summary="x * Reciprocal(y) -> x / y for floats: one rounding instead of two (within 2 ulp) and no overflow "
                 "of 1/y at subnormal y; default: the result is the more accurate one"),
    Rule("neg_neg", "identity", P("Neg", P("Neg", Var("x"))), _x, keeps("x"), summary="Neg(Neg(x)) -> x"),
    Rule("sub_neg", "identity", P("Sub", Var("x"), P("Neg", Var("y"))), _op("Add", "x", "y"),
         summary="x - Neg(y) -> x + y (the same rounding)"),
    Rule("add_neg", "identity", P("Add", Var("x"), P("Neg", Var("y"))), _op("Sub", "x", "y"),
         summary="x + Neg(y) and Neg(y) + x -> x - y (the same rounding)"),
    Rule("neg_sub", "identity", P("Neg", P("Sub", Var("a"), Var("b"))), _op("Sub", "b", "a"),
         summary="Neg(a - b) -> b - a (rounding is symmetric; a zero result is +0 where it was -0)"),
    Rule("neg_mul_neg", "identity", P("Mul", P("Neg", Var("a")), P("Neg", Var("b"))), _op("Mul", "a", "b"),
         summary="Neg(a) * Neg(b) -> a * b"),
    Rule("reciprocal_reciprocal", "identity", P("Reciprocal", P("Reciprocal", Var("x"))), _x, keeps("x"),
         exact=False, rtol=1e-6, atol=1e-6,
         summary="Reciprocal(Reciprocal(x)) -> x: drops two roundings (within 2 ulp) and the flush of subnormal x to "
                 "0 through 1/x = inf; default: the result is the exact one"),
    Rule("identity", "identity", P("Identity", Var("x")), _x, _names_no_graph_output,
         summary="Identity(x) -> x, except one that names a graph output"),
    Rule("nonnegative_idempotent", "identity",
         P(("Relu", "Abs"), P(NONNEGATIVE, Var("x"), name="inner", shared=True)), _inner,
         lambda m: is_float(out(m)) and same_type(m.node("inner").outputs[0], out(m)),
         summary="Relu or Abs of a non-negative float result (Relu, Abs, Exp, Sigmoid, Softplus) -> that result "
                 "(not integers: Abs of the most negative one is itself)"),
    Rule("abs_neg", "identity", P("Abs", P("Neg", Var("x"))), _op("Abs", "x"), summary="Abs(Neg(x)) -> Abs(x)"),
    Rule("cast_noop", "identity", P("Cast", Var("x")), _x, keeps("x"),
         summary="Cast(x) to x's own type -> x"),
    Rule("cast_cast", "identity", P("Cast", P("Cast", Var("x"), name="inner")), _recast, widened_cast,
         summary="Cast(Cast(x, T1), T2) -> Cast(x, T2), or x when T2 is x's type, where T1 holds every value of x "
                 "exactly (a widening) and T2 is bool, an integer or a float"),
    Rule("where_constant", "identity", P("Where", Const("c"), Var("a"), Var("b")), _where_pick, where_known,
         summary="Where(c, a, b) with a constant c all true -> a, all false -> b, where the picked operand has the "
                 "result's shape"),
    Rule("where_same", "identity", P("Where", Var("c"), Var("x"), Var("x")), _x, keeps("x"),
         summary="Where(c, x, x) -> x where the condition does not enlarge x"),
    Rule("mul_zero", "identity", P("Mul", Var("x"), Const("c", equals(0.0))), _zeros,
         lambda m: is_float(m["x"]) and static(m), exact=False, default=False,
         summary="x * 0 -> zeros for float x; inexact: NaN and inf times 0 are NaN, and a negative x gives -0 "
                 "(proven without NaN/inf inputs), so off by default"),
]
