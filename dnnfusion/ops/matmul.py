"""Matrix products: MatMul, Gemm and MatMulInteger (Many-to-Many), and the helpers that convolutions and the
quantized operators share with them (the accumulation dtype, zero-point centering, the MatMul shape rule)."""

from __future__ import annotations

import numpy as np

from ..ir.dtypes import is_float
from ..ir.graph import Node
from .arithmetic import SUM_OPS
from .base import Algebra, Inferred, MappingType, Op, TensorType, broadcast, shape_of
from .registry import register


def widened(dtype: np.dtype) -> np.dtype:
    """The dtype to accumulate products in: float32 for 16-bit floats (summing in half loses too much), else dtype."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if is_float(dtype) and dtype.itemsize < 4 else dtype


def centered(q: np.ndarray, zero: np.ndarray | None, axis: int | None = None) -> np.ndarray:
    """q - zero_point in float64: exact for 8/16-bit integers, so float matmuls then give exact integer sums.

    A 1-D zero point with several entries runs along `axis` (rows of A, columns of B, output channels of W)."""
    q = q.astype(np.float64)
    if zero is None:
        return q
    zero = np.asarray(zero).astype(np.float64)
    if axis is not None and zero.ndim == 1 and zero.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        zero = zero.reshape(shape)
    return q - zero


def matmul_shape(node: Node, a: tuple, b: tuple) -> tuple:
    """numpy matmul's result shape: 1-D operands are promoted then dropped, batch axes broadcast."""
    if not a or not b:
        raise Op.invalid(node, f"operands must have rank >= 1, got shapes {a} and {b}")
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    if None not in (a2[-1], b2[-2]) and a2[-1] != b2[-2]:
        raise Op.invalid(node, f"inner dimensions differ: {a2[-1]} in {tuple(a)} and {b2[-2]} in {tuple(b)}")
    rows = (a2[-2],) if len(a) > 1 else ()
    cols = (b2[-1],) if len(b) > 1 else ()
    return (*broadcast(node, a2[:-2], b2[:-2]), *rows, *cols)


def broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether `shape` broadcasts unidirectionally to `target` (each trailing extent 1 or equal)."""
    return len(shape) <= len(target) and all(d in (1, t) for d, t in zip(reversed(shape), reversed(target)))


def matmul_flops(node: Node, a_index: int = 0) -> int:
    """2 * output elements * inner dimension."""
    return 2 * node.outputs[0].numel * (shape_of(node, a_index)[-1] or 0)


@register
class MatMul(Op):
    """Y = A @ B with numpy semantics (1-D operands, broadcast batch axes)."""

    op_type = "MatMul"
    mapping = MappingType.MANY_TO_MANY
    algebra = Algebra(associative=True, distributes_over=SUM_OPS)

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(node.inputs[0].dtype, matmul_shape(node, shape_of(node, 0), shape_of(node, 1)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        dtype = widened(a.dtype)
        return [np.asarray(np.matmul(a.astype(dtype), b.astype(dtype))).astype(a.dtype, copy=False)]

    def flops(self, node: Node) -> int:
        return matmul_flops(node)


@register
class Gemm(Op):
    """Y = alpha * A' @ B' + beta * C, where A' and B' are optionally transposed and C broadcasts to Y."""

    op_type = "Gemm"
    mapping = MappingType.MANY_TO_MANY

    def out_shape(self, node: Node) -> tuple[int, int, int]:
        """(M, K, N) after checking the operands' shapes."""
        a, b = shape_of(node, 0), shape_of(node, 1)
        if len(a) != 2 or len(b) != 2:
            raise self.invalid(node, f"A and B must be matrices, got shapes {a} and {b}")
        m, k = a[::-1] if node.attr("transA", 0) else a
        k2, n = b[::-1] if node.attr("transB", 0) else b
        if k != k2:
            raise self.invalid(node, f"inner dimensions differ: {k} (A {a}) and {k2} (B {b}) after transA/transB")
        c = node.input(2)
        if c is not None and c.shape is not None and not broadcasts_to(c.shape, (m, n)):
            raise self.invalid(node, f"C of shape {c.shape} does not broadcast to the result ({m}, {n})")
        return m, k, n

    def infer(self, node: Node) -> list[Inferred]:
        m, _, n = self.out_shape(node)
        return [TensorType(node.inputs[0].dtype, (m, n))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        a, b, c = (inputs + (None,))[:3]
        dtype = widened(a.dtype)
        a = a.astype(dtype).T if node.attr("transA", 0) else a.astype(dtype)
        b = b.astype(dtype).T if node.attr("transB", 0) else b.astype(dtype)
        y = a @ b
        alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
        if alpha != 1.0:
            y = y * alpha
        if c is not None:
            y = y + (c.astype(dtype) * beta if beta != 1.0 else c.astype(dtype))
        return [np.asarray(y).astype(inputs[0].dtype, copy=False)]

    def flops(self, node: Node) -> int:
        m, k, n = self.out_shape(node)
        return 2 * m * k * n + (m * n if node.input(2) is not None else 0)


@register
class MatMulInteger(Op):
    """Y = (A - a_zero_point) @ (B - b_zero_point) in int32, zero points per tensor, A row or B column."""

    op_type = "MatMulInteger"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(np.dtype(np.int32), matmul_shape(node, shape_of(node, 0), shape_of(node, 1)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        a, b, a_zero, b_zero = (inputs + (None,) * 4)[:4]
        y = np.matmul(centered(a, a_zero, axis=-2), centered(b, b_zero, axis=-1))
        return [np.asarray(y).astype(np.int32)]

    def flops(self, node: Node) -> int:
        return matmul_flops(node)
