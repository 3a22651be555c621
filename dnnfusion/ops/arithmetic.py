"""Elementwise arithmetic: Add, Sub, Mul, Div, Pow, Mod, Sum, Mean, Max, Min (One-to-One; broadcasting makes
the broadcast input One-to-Many, which the ECG accounts for)."""

from __future__ import annotations

import numpy as np

from ..codegen.expr import Expr

from ..ir.graph import Node
from .base import Algebra, Binary, Variadic
from .registry import register

SUM_OPS = frozenset({"Add", "Sub", "Sum"})


@register
class Add(Binary):
    op_type = "Add"
    algebra = Algebra(associative=True, commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return a + b


@register
class Sub(Binary):
    op_type = "Sub"

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b


@register
class Mul(Binary):
    op_type = "Mul"
    algebra = Algebra(associative=True, commutative=True, distributes_over=SUM_OPS)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return a * b


@register
class Div(Binary):
    op_type = "Div"
    algebra = Algebra(distributes_over=SUM_OPS)  # right-distributive: (a + b) / c = a / c + b / c

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if np.issubdtype(a.dtype, np.integer):
            return np.trunc(np.true_divide(a, b)).astype(a.dtype) if a.size else a.copy()
        return a / b


@register
class Pow(Binary):
    op_type = "Pow"

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if np.issubdtype(a.dtype, np.integer):
            return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
        return np.power(a, b.astype(a.dtype))


@register
class Mod(Binary):
    """fmod=0: a - floor(a / b) * b (sign of b); fmod=1: a - trunc(a / b) * b (sign of a, C fmod)."""

    op_type = "Mod"

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):   # x mod 0 is nan for floats and 0 for integers, as numpy gives
            return np.fmod(a, b) if node.attr("fmod", 0) else np.mod(a, b)


@register
class Sum(Variadic):
    op_type = "Sum"
    algebra = Algebra(associative=True, commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b


@register
class Mean(Variadic):
    op_type = "Mean"
    algebra = Algebra(commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def finish(self, node: Node, acc: np.ndarray, count: int) -> np.ndarray:
        return acc / count


@register
class Max(Variadic):
    op_type = "Max"
    algebra = Algebra(associative=True, commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a, b)


@register
class Min(Variadic):
    op_type = "Min"
    algebra = Algebra(associative=True, commutative=True)

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.minimum(a, b)
