"""Comparisons, logical and bitwise operators, and Where (all One-to-One with numpy broadcasting)."""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import numpy as np

from ..kir.expr import Expr, Index, binary, broadcast_index, lit, select
from ..kir.kernel import Reader
from ..ir.graph import Node
from .arithmetic import is_signed, wrapping
from .base import Algebra, Binary, Inferred, MappingType, Op, TensorType, broadcast
from .registry import register


class BinaryUfunc(Binary):
    """A Binary op that is exactly one numpy ufunc, named by `ufunc`, and one C operator, `infix`."""

    ufunc: ClassVar[Callable[[np.ndarray, np.ndarray], np.ndarray]]
    infix: ClassVar[str]

    def fn(self, node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.ufunc(a, b)

    def expr(self, node: Node, a: Expr, b: Expr) -> Expr:
        return binary(self.infix, a, b)


class Predicate(BinaryUfunc):
    """A BinaryUfunc with a bool result (comparisons and logic)."""

    out_dtype = np.bool_


def _binary_op(op_type: str, base: type[BinaryUfunc], ufunc: np.ufunc, infix: str, doc: str,
               algebra: Algebra = Algebra()) -> type[BinaryUfunc]:
    """Define and register the operator `op_type` as the ufunc applied with broadcasting (the C operator
    `infix` on bool or integer operands in generated code)."""
    cls = type(op_type, (base,), {"op_type": op_type, "ufunc": staticmethod(ufunc), "infix": infix,
                                  "algebra": algebra, "__doc__": doc, "__module__": __name__})
    return register(cls)


SYMMETRIC = Algebra(associative=True, commutative=True)

Equal = _binary_op("Equal", Predicate, np.equal, "==", "y = (a == b), numbers or strings.",
                   Algebra(commutative=True))
Less = _binary_op("Less", Predicate, np.less, "<", "y = (a < b).")
LessOrEqual = _binary_op("LessOrEqual", Predicate, np.less_equal, "<=", "y = (a <= b).")
Greater = _binary_op("Greater", Predicate, np.greater, ">", "y = (a > b).")
GreaterOrEqual = _binary_op("GreaterOrEqual", Predicate, np.greater_equal, ">=", "y = (a >= b).")
And = _binary_op("And", Predicate, np.logical_and, "&&", "y = a and b.",
                 Algebra(associative=True, commutative=True, distributes_over=frozenset({"Or", "Xor"})))
Or = _binary_op("Or", Predicate, np.logical_or, "||", "y = a or b.",
                Algebra(associative=True, commutative=True, distributes_over=frozenset({"And"})))
Xor = _binary_op("Xor", Predicate, np.logical_xor, "!=", "y = a xor b.", SYMMETRIC)
BitwiseAnd = _binary_op("BitwiseAnd", BinaryUfunc, np.bitwise_and, "&", "y = a & b on integers.",
                        Algebra(associative=True, commutative=True,
                                distributes_over=frozenset({"BitwiseOr", "BitwiseXor"})))
BitwiseOr = _binary_op("BitwiseOr", BinaryUfunc, np.bitwise_or, "|", "y = a | b on integers.",
                       Algebra(associative=True, commutative=True, distributes_over=frozenset({"BitwiseAnd"})))
BitwiseXor = _binary_op("BitwiseXor", BinaryUfunc, np.bitwise_xor, "^", "y = a ^ b on integers.", SYMMETRIC)


def x_bits(x: Expr) -> int:
    """The width in bits of an integer expression's C type."""
    return int("".join(filter(str.isdigit, x.ctype)))


@register
class BitShift(Binary):
    """y = x << s or x >> s (direction LEFT/RIGHT); shifts outside [0, bits) give the sign fill (0 or -1)."""

    op_type = "BitShift"

    def infer(self, node: Node) -> list[Inferred]:
        if node.attr("direction") not in ("LEFT", "RIGHT"):
            raise self.invalid(node, f"direction must be 'LEFT' or 'RIGHT', not {node.attr('direction')!r}")
        return super().infer(node)

    def fn(self, node: Node, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        bits = x.dtype.itemsize * 8
        in_range = (s >= 0) & (s < bits)
        shift = np.where(in_range, s, 0).astype(x.dtype)
        if node.attr("direction") == "LEFT":
            shifted, fill = np.left_shift(x, shift), np.zeros((), x.dtype)
        else:
            shifted, fill = np.right_shift(x, shift), np.where(x < 0, -1, 0).astype(x.dtype)
        return np.where(in_range, shifted, fill)

    def expr(self, node: Node, x: Expr, s: Expr) -> Expr:
        zero = lit(0, x.ctype)
        in_range = binary("<", s, lit(x_bits(x), s.ctype))
        if is_signed(s.ctype):
            in_range = binary("&&", binary(">=", s, lit(0, s.ctype)), in_range)
        if node.attr("direction") == "LEFT":
            return select(in_range, wrapping("<<", x, s), zero)
        fill = select(binary("<", x, zero), lit(-1, x.ctype), zero) if is_signed(x.ctype) else zero
        return select(in_range, binary(">>", x, s), fill)


@register
class Where(Op):
    """y = x where condition else y, all three broadcast together."""

    op_type = "Where"
    mapping = MappingType.ONE_TO_ONE
    elementwise = True

    def infer(self, node: Node) -> list[Inferred]:
        condition, x, y = node.inputs[:3]
        if x.dtype != y.dtype:
            raise self.invalid(node, f"X is {x.dtype} but Y is {y.dtype}; they must have the same type")
        return [TensorType(x.dtype, broadcast(node, condition.shape, x.shape, y.shape))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        condition, x, y = inputs[:3]
        return [np.where(condition, x, y).astype(x.dtype, copy=False)]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        shape = node.outputs[0].shape
        condition, x, y = (read(i, broadcast_index(index, shape, node.inputs[i].shape)) for i in range(3))
        return select(condition, x, y)
