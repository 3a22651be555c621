"""Rewrite rules of the distributive family: a common factor or divisor taken out of a sum, Exp/Log/Sqrt of two
operands merged into one (a homomorphism: exp(a)·exp(b) = exp(a + b)), and a scale or a negation moved past a
reduction onto its smaller result (see engine.py for what a rule promises; the conditions on constants and
scales are associative.py's)."""

from __future__ import annotations

import numpy as np

from ...ir.graph import Value
from .associative import as_scalar, finite_nonzero, float_result, grows, same_sign, scalar_for, signed
from .engine import Builder, Rule
from .pattern import Const, Match, Op, P, Var

SUMS = ("Add", "Sub")
REDUCTIONS = ("ReduceSum", "ReduceMean")


# --- a common factor or divisor taken out of a sum ------------------------------------------------------------
def _factor_out(b: Builder, m: Match) -> Value:
    """a·x ± b·x -> (a ± b)·x."""
    return b.op("Mul", b.op(m.root.op_type, m["a"], m["b"]), m["x"])


def _folded_factor(m: Match) -> np.ndarray:
    with np.errstate(all="ignore"):
        return m.array("c1") + signed(m.root, m.array("c2"))


def _constant_factors_fold(m: Match) -> bool:
    c1, c2 = m.array("c1"), m.array("c2")
    return float_result(m) and finite_nonzero(c1) and finite_nonzero(c2) and same_sign(c1, signed(m.root, c2)) and \
        bool(np.all(np.isfinite(_folded_factor(m))))


def _fold_factors(b: Builder, m: Match) -> Value:
    """x·c1 ± x·c2 -> x·(c1 ± c2)."""
    return b.op("Mul", m["x"], b.const(_folded_factor(m)))


def _divide_once(b: Builder, m: Match) -> Value:
    """x/a ± y/a -> (x ± y)/a."""
    return b.op("Div", b.op(m.root.op_type, m["x"], m["y"]), m["a"])


# --- f(a) ⊕ f(b) -> f(a ⊗ b) ------------------------------------------------------------------------------------
def _merge(outer: str, unary: str, inner: str, name: str, exact: bool, default: bool, rtol: float,
           note: str) -> Rule:
    """outer(unary(a), unary(b)) -> unary(inner(a, b))."""

    def build(b: Builder, m: Match) -> Value:
        return b.op(unary, b.op(inner, m["a"], m["b"]))

    return Rule(name, "distributive", P(outer, P(unary, Var("a")), P(unary, Var("b"))), build, float_result,
                exact=exact, default=default, rtol=rtol, atol=1e-6,
                summary=f"{outer}({unary}(a), {unary}(b)) -> {unary}({inner}(a, b)): {note}")


# --- a scale or a negation moved past a reduction ---------------------------------------------------------------
def _scale_after_reduction(m: Match) -> bool:
    c, x = m.array("c"), m["x"]
    return float_result(m) and finite_nonzero(c) and scalar_for(c, x) and grows(m.node("scale"), c)


def _reduce_then_scale(b: Builder, m: Match) -> Value:
    scale = m.node("scale")
    return b.op(scale.op_type, _reduce(b, m), as_scalar(b, m.array("c")))


def _reduce_then_negate(b: Builder, m: Match) -> Value:
    return b.op("Neg", _reduce(b, m))


def _reduce(b: Builder, m: Match) -> Value:
    """The root's reduction (its axes attribute or input, keepdims, ...) applied to x."""
    return b.op(m.root.op_type, m["x"], *m.root.inputs[1:], **m.root.attrs)


def _reduction_rules(name: str, inner: Op, build, where, exact: bool, summary: str) -> list[Rule]:
    """Two rules, one per way a reduction names its axes: an attribute (or none: every axis) and, for ReduceSum
    from opset 13 and ReduceMean from 18, an input (`name`_axes_input)."""
    tolerance = {"rtol": 1e-6, "atol": 1e-6} if exact else {"rtol": 1e-5, "atol": 1e-5}
    return [Rule(name, "distributive", P(REDUCTIONS, inner), build, where, exact=exact, summary=summary, **tolerance),
            Rule(f"{name}_axes_input", "distributive", P(REDUCTIONS, inner, Var("axes")), build, where, exact=exact,
                 summary=summary + " (axes given as an input)", **tolerance)]


# --- the paper's table: A + A·B, Square(S) − S·C, ReduceSum of a left shift, ReduceProd of exponentials -------
def _factor_with_one(b: Builder, m: Match) -> Value:
    """A + A ⊙ B -> A ⊙ (B + 1) (the + 1 folds into B when B is a constant)."""
    one = b.const(np.ones((), m["b"].dtype))
    return b.op("Mul", m["a"], b.op("Add", m["b"], one))


def _finite_positive(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and bool(np.all(np.isfinite(a)) and np.all(a > 0))


def _is_sum(v: Value) -> bool:
    return v.producer is not None and v.producer.op_type in SUMS


def _square_minus_product(b: Builder, m: Match) -> Value:
    """Square(S) − S ⊙ C -> S ⊙ (S − C) (S = A + B in the table; any S here)."""
    return b.op("Mul", m["s"], b.op("Sub", m["s"], m["c"]))


def _left_shift(m: Match) -> bool:
    return m.node("shift").attrs.get("direction") == "LEFT" and m.array("k").size == 1


def _shift_after_sum(b: Builder, m: Match) -> Value:
    """ReduceSum(BitShift(A, k, LEFT)) -> BitShift(ReduceSum(A), k, LEFT): exact in wrapping unsigned
    arithmetic (a left shift is a multiplication by 2^k modulo 2^bits)."""
    summed = b.op("ReduceSum", m["x"], *m.root.inputs[1:], **m.root.attrs)
    return b.op("BitShift", summed, b.const(m.array("k").reshape(()), m.array("k").dtype), direction="LEFT")


def _exp_of_sum(b: Builder, m: Match) -> Value:
    """ReduceProd(Exp(A)) -> Exp(ReduceSum(A)) over the same axes (ReduceSum takes them as an input from
    opset 13, ReduceProd from 18)."""
    root, attrs = m.root, dict(m.root.attrs)
    axes = list(root.inputs[1:2]) if len(root.inputs) > 1 else []
    if "axes" in attrs and root.opset >= AXES_INPUT_SUM:
        axes = [b.const(np.array(attrs.pop("axes"), np.int64))]
    return b.op("Exp", b.op("ReduceSum", m["x"], *axes, **attrs))


def _exp_product_reduces(m: Match) -> bool:
    return float_result(m) and (m.root.opset >= AXES_INPUT_SUM or len(m.root.inputs) < 2)


AXES_INPUT_SUM = 13          # ReduceSum's axes an input from this opset (the other reductions' from 18)

_OVERFLOW_ONLY = "differs only where the original's factors over/underflow (the rewrite is then the accurate one)"
_SCALED = P(("Mul", "Div"), Var("x"), Const("c"), name="scale")

RULES: list[Rule] = [
    Rule("factor_common_term", "distributive",
         P(SUMS, P("Mul", Var("a"), Var("x")), P("Mul", Var("b"), Var("x"))), _factor_out, float_result,
         exact=False, default=False, rtol=1e-5, atol=1e-5,
         summary="a·x ± b·x -> (a ± b)·x for any a, b: off by default, as a ± b can overflow where a·x ± b·x "
                 "does not and at x = ±inf 0·x + b·x is NaN where (0 + b)·x is ±inf; rounding relative to "
                 "|a·x| + |b·x|"),
    Rule("fold_common_factor_constants", "distributive",
         P(SUMS, P("Mul", Var("x"), Const("c1")), P("Mul", Var("x"), Const("c2"))), _fold_factors,
         _constant_factors_fold, rtol=1e-6, atol=1e-6,
         summary="x·c1 ± x·c2 -> x·(c1 ± c2) for finite non-zero constants adding with one sign (no cancellation, "
                 "the same overflow and infinities) and a finite fold"),
    Rule("common_divisor", "distributive",
         P(SUMS, P("Div", Var("x"), Var("a")), P("Div", Var("y"), Var("a"))), _divide_once, float_result,
         exact=False, default=False, rtol=1e-5, atol=1e-6,
         summary="x/a ± y/a -> (x ± y)/a for any a: off by default, as x ± y can overflow where the quotients' "
                 "sum does not and at a = 0 inf − inf is NaN where (x ± y)/0 is ±inf; rounding relative to the "
                 "quotients"),
    _merge("Mul", "Exp", "Add", "exp_product", exact=False, default=True, rtol=1e-5,
           note="rounding of a + b is amplified by |a + b| (relative error up to ~5e-6 in float32 where the result "
                "is finite); " + _OVERFLOW_ONLY),
    _merge("Div", "Exp", "Sub", "exp_quotient", exact=False, default=True, rtol=1e-5,
           note="rounding of a − b is amplified by |a − b| (relative error up to ~5e-6 in float32 where the result "
                "is finite); " + _OVERFLOW_ONLY),
    _merge("Add", "Log", "Mul", "log_product", exact=False, default=False, rtol=1e-5,
           note="off by default: a·b can overflow or underflow where log a + log b is finite, and two negatives "
                "give a number where the original is NaN"),
    _merge("Sub", "Log", "Div", "log_quotient", exact=False, default=False, rtol=1e-5,
           note="off by default: a/b can overflow or underflow where log a − log b is finite, and two negatives "
                "(or a/−0) change NaN and ±inf"),
    _merge("Mul", "Sqrt", "Mul", "sqrt_product", exact=False, default=False, rtol=1e-6,
           note="off by default: a·b can overflow or underflow where √a·√b is finite, and two negatives give a "
                "number where the original is NaN"),
    *_reduction_rules("reduce_scaled", _SCALED, _reduce_then_scale, _scale_after_reduction, exact=False,
                      summary="ReduceSum/ReduceMean(Mul/Div(x, scalar c)) -> Mul/Div(Reduce(x), c) when the scale "
                              "grows magnitudes (so the unscaled sum cannot overflow where the scaled one does not); "
                              "differs only in rounding and where x·c overflows elementwise (original ±inf or NaN)"),
    *_reduction_rules("reduce_negated", P("Neg", Var("x")), _reduce_then_negate, float_result, exact=True,
                      summary="ReduceSum/ReduceMean(Neg(x)) -> Neg(Reduce(x)): exact (rounding is symmetric); pays "
                              "when the reduced result is smaller than x"),
    Rule("factor_with_one", "distributive", P("Add", Var("a"), P("Mul", Var("a"), Const("b", _finite_positive))),
         _factor_with_one, float_result, exact=False, rtol=1e-5, atol=1e-6,
         summary="A + A·B -> A·(B + 1) for a constant B > 0 (B + 1 folds: one full-size operation fewer); differs "
                 "by the rounding of B + 1 (at most 1 ulp); B ≤ 0 is left alone (A = ±inf would give "
                 "±inf where the original is NaN)"),
    Rule("square_minus_product", "distributive",
         P("Sub", P(("Mul",), Var("s", _is_sum), Var("s")), P("Mul", Var("s"), Var("c"))), _square_minus_product,
         float_result, exact=False, rtol=1e-5, atol=1e-5,
         summary="Square(A + B) − (A + B)·C -> (A + B)·(A + B − C): one product fewer; the rewrite has no "
                 "cancellation between two large products, so it differs only by their rounding (relative to "
                 "(A + B)²) and is the accurate one"),
    Rule("shift_after_sum", "distributive",
         P("ReduceSum", P("BitShift", Var("x"), Const("k"), name="shift"), Var("axes")), _shift_after_sum,
         _left_shift, summary="ReduceSum(BitShift(A, k, LEFT)) -> BitShift(ReduceSum(A), k, LEFT): exact in "
                              "unsigned wrapping arithmetic; one shift per sum instead of per element"),
    Rule("exp_of_sum", "distributive", P("ReduceProd", P("Exp", Var("x"))), _exp_of_sum, _exp_product_reduces,
         exact=False, rtol=1e-5, atol=1e-6,
         summary="ReduceProd(Exp(A)) -> Exp(ReduceSum(A)): one exponential per result instead of per element; "
                 "rounding of the sum amplified by its size, and it overflows only where the true product "
                 "does (the original's partial products may overflow or underflow first)"),
    Rule("exp_of_sum_axes_input", "distributive", P("ReduceProd", P("Exp", Var("x")), Var("axes")), _exp_of_sum,
         float_result, exact=False, rtol=1e-5, atol=1e-6,
         summary="ReduceProd(Exp(A), axes) -> Exp(ReduceSum(A, axes)) (axes given as an input, opset 18)"),
]
