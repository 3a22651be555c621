"""Elementwise unary math: Abs, Neg, Reciprocal, Sqrt, Exp, Log, the trigonometric and hyperbolic functions,
Floor, Ceil, Round, Sign, Erf, IsNaN, IsInf, Not, Identity, BitwiseNot (all One-to-One).

`FloatUnary` is the shared base: it evaluates floats narrower than 32 bits (float16, bfloat16, float8) in
float32 and rounds once at the end, and it lets IEEE special values (log(0) = -inf, sqrt(-1) = nan) through
without numpy warnings. The activation functions in activations.py build on it too.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, ClassVar, Sequence

import numpy as np

from ..kir.expr import Cast, Expr, Index, binary, call, cast, ctype, lit, select
from ..kir.expr import Unary as UnaryExpr
from ..kir.kernel import Reader
from ..ir import dtypes
from ..ir.graph import Node
from .arithmetic import FLOATS, wrapping
from .base import Unary
from .registry import register

_ERF = np.frompyfunc(math.erf, 1, 1)


def widened(x: np.ndarray) -> np.ndarray:
    """x, or x as float32 when it is a float narrower than 32 bits (so formulas round once, at the end)."""
    return x.astype(np.float32) if dtypes.is_float(x.dtype) and x.dtype.itemsize < 4 else x


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, exact to double precision (numpy has no erf ufunc)."""
    return np.asarray(_ERF(x.astype(np.float64)), np.float64).astype(x.dtype, copy=False)   # 0-d: a float


def real(x: Expr) -> Expr:
    """x itself when floating-point, else x as double (how numpy's float loops take integers)."""
    return x if x.ctype in FLOATS else cast(x, "double")


def math_call(fn: str, x: Expr) -> Expr:
    """The C math function `fn` (a name of FLOAT_FUNCTIONS) of x, in x's type; integers through double."""
    return cast(call(fn, real(x)), x.ctype)


def signum(x: Expr) -> Expr:
    """numpy's sign: 1, -1, 0 for zeros of either sign, nan for nan."""
    zero = lit(0, x.ctype)
    if x.ctype.startswith("uint"):
        return cast(binary(">", x, zero), x.ctype)
    inner = select(binary("==", x, zero), zero, x) if x.ctype in FLOATS else zero
    return select(binary(">", x, zero), lit(1, x.ctype), select(binary("<", x, zero), lit(-1, x.ctype), inner))


def magnitude(x: Expr) -> Expr:
    """numpy's abs: fabs for floats, the wrapping negation of negative signed integers (abs(-128) is -128)."""
    if x.ctype in FLOATS:
        return call("abs", x)
    if x.ctype.startswith("int"):
        return select(binary("<", x, lit(0, x.ctype)), negate(x), x)
    return x


def negate(x: Expr) -> Expr:
    """-x; integers wrap around as in numpy."""
    return -x if x.ctype in FLOATS else wrapping("-", lit(0, x.ctype), x)


def complement(x: Expr) -> Expr:
    """~x in x's integer type (C promotes uint8/uint16 to int, whose complement must be narrowed back)."""
    inverted = UnaryExpr("~", x, x.ctype)
    return Cast(inverted, x.ctype) if x.ctype in ("uint8_t", "uint16_t") else inverted


class FloatUnary(Unary):
    """A Unary op evaluated in at least float32 precision, with IEEE special values allowed."""

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr | None:
        """The formula, converted to the output's C type (float formulas of integer inputs run in double)."""
        y = self.expr(node, read(0, index))
        return None if y is None else cast(y, ctype(node.outputs[0].dtype))

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        with np.errstate(all="ignore"):
            y = np.asarray(self.fn(node, widened(x)))
        return [y.astype(self.out_dtype if self.out_dtype is not None else x.dtype, copy=False)]


class UnaryUfunc(FloatUnary):
    """A FloatUnary that is exactly one numpy ufunc, named by `ufunc`, with `formula` its scalar expression."""

    ufunc: ClassVar[Callable[[np.ndarray], np.ndarray]]
    formula: ClassVar[Callable[[Expr], Expr]]

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return self.ufunc(x)

    def expr(self, node: Node, x: Expr) -> Expr:
        return self.formula(x)


def _ufunc_op(op_type: str, ufunc: np.ufunc, formula: Callable[[Expr], Expr], doc: str,
              out_dtype: type | None = None) -> type[UnaryUfunc]:
    """Define and register the operator `op_type` as the ufunc applied elementwise (`formula` in generated code)."""
    cls = type(op_type, (UnaryUfunc,), {"op_type": op_type, "ufunc": staticmethod(ufunc),
                                        "formula": staticmethod(formula), "out_dtype": out_dtype,
                                        "__doc__": doc, "__module__": __name__})
    return register(cls)


def _math(fn: str) -> Callable[[Expr], Expr]:
    """The formula applying the C math function `fn`."""
    return partial(math_call, fn)


Abs = _ufunc_op("Abs", np.abs, magnitude, "y = |x|.")
Neg = _ufunc_op("Neg", np.negative, negate, "y = -x.")
Sqrt = _ufunc_op("Sqrt", np.sqrt, _math("sqrt"), "y = sqrt(x) (nan for negative x).")
Exp = _ufunc_op("Exp", np.exp, _math("exp"), "y = e^x.")
Log = _ufunc_op("Log", np.log, _math("log"), "y = ln(x) (-inf at 0, nan for negative x).")
Sin = _ufunc_op("Sin", np.sin, _math("sin"), "y = sin(x).")
Cos = _ufunc_op("Cos", np.cos, _math("cos"), "y = cos(x).")
Tan = _ufunc_op("Tan", np.tan, _math("tan"), "y = tan(x).")
Asin = _ufunc_op("Asin", np.arcsin, _math("asin"), "y = arcsin(x).")
Acos = _ufunc_op("Acos", np.arccos, _math("acos"), "y = arccos(x).")
Atan = _ufunc_op("Atan", np.arctan, _math("atan"), "y = arctan(x).")
Sinh = _ufunc_op("Sinh", np.sinh, _math("sinh"), "y = sinh(x).")
Cosh = _ufunc_op("Cosh", np.cosh, _math("cosh"), "y = cosh(x).")
Asinh = _ufunc_op("Asinh", np.arcsinh, _math("asinh"), "y = arcsinh(x).")
Acosh = _ufunc_op("Acosh", np.arccosh, _math("acosh"), "y = arccosh(x).")
Atanh = _ufunc_op("Atanh", np.arctanh, _math("atanh"), "y = arctanh(x).")
Floor = _ufunc_op("Floor", np.floor, _math("floor"), "y = floor(x).")
Ceil = _ufunc_op("Ceil", np.ceil, _math("ceil"), "y = ceil(x).")
Round = _ufunc_op("Round", np.round, _math("round"), "y = x rounded to the nearest integer, halves to even.")
Sign = _ufunc_op("Sign", np.sign, signum, "y = -1, 0 or 1 by the sign of x.")
IsNaN = _ufunc_op("IsNaN", np.isnan, lambda x: call("isnan", real(x), ctype_="bool"),
                  "y = whether x is NaN (bool).", np.bool_)
Not = _ufunc_op("Not", np.logical_not, lambda x: binary("==", x, lit(0, x.ctype)), "y = logical not x (bool).")
BitwiseNot = _ufunc_op("BitwiseNot", np.invert, complement, "y = ~x, the bitwise complement of an integer.")


@register
class Reciprocal(FloatUnary):
    """y = 1 / x."""

    op_type = "Reciprocal"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.divide(1, x, dtype=x.dtype)

    def expr(self, node: Node, x: Expr) -> Expr:
        return lit(1, real(x).ctype) / real(x)


@register
class Erf(FloatUnary):
    """y = erf(x), the Gauss error function."""

    op_type = "Erf"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return erf(x)

    def expr(self, node: Node, x: Expr) -> Expr:
        return math_call("erf", x)


@register
class IsInf(FloatUnary):
    """y = whether x is +inf (detect_positive) or -inf (detect_negative) (bool)."""

    op_type = "IsInf"
    out_dtype = np.bool_

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        positive = np.isposinf(x) & bool(node.attr("detect_positive", 1))
        return positive | (np.isneginf(x) & bool(node.attr("detect_negative", 1)))

    def expr(self, node: Node, x: Expr) -> Expr:
        x = real(x)
        positive, negative = bool(node.attr("detect_positive", 1)), bool(node.attr("detect_negative", 1))
        if positive and negative:
            return call("isinf", x, ctype_="bool")
        if positive or negative:
            return binary("==", x, lit(math.inf if positive else -math.inf, x.ctype))
        return lit(False, "bool")


@register
class Identity(Unary):
    """y = x."""

    op_type = "Identity"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x

    def expr(self, node: Node, x: Expr) -> Expr:
        return x

    def flops(self, node: Node) -> int:
        return 0
