"""Elementwise unary math: Abs, Neg, Reciprocal, Sqrt, Exp, Log, the trigonometric and hyperbolic functions,
Floor, Ceil, Round, Sign, Erf, IsNaN, IsInf, Not, Identity, BitwiseNot (all One-to-One).

`FloatUnary` is the shared base: it evaluates floats narrower than 32 bits (float16, bfloat16, float8) in
float32 and rounds once at the end, and it lets IEEE special values (log(0) = -inf, sqrt(-1) = nan) through
without numpy warnings. The activation functions in activations.py build on it too.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Sequence

import numpy as np

from ..ir import dtypes
from ..ir.graph import Node
from .base import Unary
from .registry import register

_ERF = np.frompyfunc(math.erf, 1, 1)


def widened(x: np.ndarray) -> np.ndarray:
    """x, or x as float32 when it is a float narrower than 32 bits (so formulas round once, at the end)."""
    return x.astype(np.float32) if dtypes.is_float(x.dtype) and x.dtype.itemsize < 4 else x


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, exact to double precision (numpy has no erf ufunc)."""
    return _ERF(x.astype(np.float64)).astype(np.float64).astype(x.dtype, copy=False)


class FloatUnary(Unary):
    """A Unary op evaluated in at least float32 precision, with IEEE special values allowed."""

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        with np.errstate(all="ignore"):
            y = np.asarray(self.fn(node, widened(x)))
        return [y.astype(self.out_dtype if self.out_dtype is not None else x.dtype, copy=False)]


class UnaryUfunc(FloatUnary):
    """A FloatUnary that is exactly one numpy ufunc, named by `ufunc`."""

    ufunc: ClassVar[Callable[[np.ndarray], np.ndarray]]

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return self.ufunc(x)


def _ufunc_op(op_type: str, ufunc: np.ufunc, doc: str, out_dtype: type | None = None) -> type[UnaryUfunc]:
    """Define and register the operator `op_type` as the ufunc applied elementwise."""
    cls = type(op_type, (UnaryUfunc,), {"op_type": op_type, "ufunc": staticmethod(ufunc), "out_dtype": out_dtype,
                                        "__doc__": doc, "__module__": __name__})
    return register(cls)


Abs = _ufunc_op("Abs", np.abs, "y = |x|.")
Neg = _ufunc_op("Neg", np.negative, "y = -x.")
Sqrt = _ufunc_op("Sqrt", np.sqrt, "y = sqrt(x) (nan for negative x).")
Exp = _ufunc_op("Exp", np.exp, "y = e^x.")
Log = _ufunc_op("Log", np.log, "y = ln(x) (-inf at 0, nan for negative x).")
Sin = _ufunc_op("Sin", np.sin, "y = sin(x).")
Cos = _ufunc_op("Cos", np.cos, "y = cos(x).")
Tan = _ufunc_op("Tan", np.tan, "y = tan(x).")
Asin = _ufunc_op("Asin", np.arcsin, "y = arcsin(x).")
Acos = _ufunc_op("Acos", np.arccos, "y = arccos(x).")
Atan = _ufunc_op("Atan", np.arctan, "y = arctan(x).")
Sinh = _ufunc_op("Sinh", np.sinh, "y = sinh(x).")
Cosh = _ufunc_op("Cosh", np.cosh, "y = cosh(x).")
Asinh = _ufunc_op("Asinh", np.arcsinh, "y = arcsinh(x).")
Acosh = _ufunc_op("Acosh", np.arccosh, "y = arccosh(x).")
Atanh = _ufunc_op("Atanh", np.arctanh, "y = arctanh(x).")
Floor = _ufunc_op("Floor", np.floor, "y = floor(x).")
Ceil = _ufunc_op("Ceil", np.ceil, "y = ceil(x).")
Round = _ufunc_op("Round", np.round, "y = x rounded to the nearest integer, halves to even.")
Sign = _ufunc_op("Sign", np.sign, "y = -1, 0 or 1 by the sign of x.")
IsNaN = _ufunc_op("IsNaN", np.isnan, "y = whether x is NaN (bool).", np.bool_)
Not = _ufunc_op("Not", np.logical_not, "y = logical not x (bool).")
BitwiseNot = _ufunc_op("BitwiseNot", np.invert, "y = ~x, the bitwise complement of an integer.")


@register
class Reciprocal(FloatUnary):
    """y = 1 / x."""

    op_type = "Reciprocal"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return np.divide(1, x, dtype=x.dtype)


@register
class Erf(FloatUnary):
    """y = erf(x), the Gauss error function."""

    op_type = "Erf"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return erf(x)


@register
class IsInf(FloatUnary):
    """y = whether x is +inf (detect_positive) or -inf (detect_negative) (bool)."""

    op_type = "IsInf"
    out_dtype = np.bool_

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        positive = np.isposinf(x) & bool(node.attr("detect_positive", 1))
        return positive | (np.isneginf(x) & bool(node.attr("detect_negative", 1)))


@register
class Identity(Unary):
    """y = x."""

    op_type = "Identity"

    def fn(self, node: Node, x: np.ndarray) -> np.ndarray:
        return x

    def flops(self, node: Node) -> int:
        return 0
