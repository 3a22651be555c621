"""Matrix products: MatMul, Gemm and MatMulInteger (Many-to-Many), and the helpers that convolutions and the
quantized operators share with them (the accumulation dtype, zero-point centering, the MatMul shape rule). The
product itself is the template in kernels/gemm.py."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..kernels.gemm import Operand, Product, direct_buffer, product_kernel, strided
from ..kir.expr import Expr, Index, Lit, broadcast_index, cast, ctype, lit, strides
from ..kir.kernel import KernelContext
from ..ir.dtypes import is_float
from ..ir.graph import Node
from .arithmetic import SUM_OPS
from .base import Algebra, Inferred, MappingType, Op, TensorType, broadcast, channel_vector, shape_of
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


# --- codegen: a batched matrix product as register-tiled loops (the convolutions use it too) -------------

def matrix_operand(ctx: KernelContext, i: int, node: Node, batch_rank: int, transpose: bool, acc: str,
                   center: Callable[[Expr, Expr, Expr], Expr] | None = None) -> Operand:
    """Input `i` of a MatMul/Gemm as a product operand: a 1-D input is a row (input 0) or a column
    (input 1), batch axes align right, `transpose` swaps the matrix axes, and `center(value, row, col)`
    (MatMulInteger's zero points) adjusts each element after its conversion to `acc`."""
    shape = tuple(node.inputs[i].shape)
    full = shape if len(shape) > 1 else ((1, *shape) if i == 0 else (*shape, 1))
    batch = (1,) * (batch_rank - len(full) + 2) + full[:-2]
    rows, cols = full[-2:][::-1] if transpose else full[-2:]

    def element(bidx: Index, r: Expr, c: Expr) -> Expr:
        mat = (c, r) if transpose else (r, c)
        index = (*bidx[len(bidx) - len(full) + 2:], *mat) if len(shape) > 1 else (mat[1] if i == 0 else mat[0],)
        value = cast(ctx.read(i, index), acc)
        return center(value, r, c) if center is not None else value

    buffer = direct_buffer(ctx, i, shape, acc) if center is None else None
    if buffer is None:
        return Operand(batch, rows, cols, element)
    steps = strides(full)
    row_stride, col_stride = (steps[-1], steps[-2]) if transpose else (steps[-2], steps[-1])
    batch_strides = [0] * (len(batch) - len(full) + 2) + steps[:-2]
    const = node.inputs[i].const
    if const is not None:
        const = const.reshape(*batch, *full[-2:])
        const = const.swapaxes(-2, -1) if transpose else const
    return strided(buffer, acc, batch, batch_strides, rows, cols, row_stride, col_stride, const)


def matmul_kernel(ctx: KernelContext, node: Node, acc: str,
                  center: tuple[Callable | None, Callable | None] = (None, None)) -> list[str]:
    """MatMul-shaped products (MatMul, MatMulInteger): numpy's 1-D promotion and batch broadcasting."""
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    keep_rows, keep_cols = len(a.shape) > 1, len(b.shape) > 1
    batch = tuple(y.shape[:len(y.shape) - keep_rows - keep_cols])
    out_ct = ctype(y.dtype)

    def store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
        return ctx.store(0, (*bidx, *([i] if keep_rows else []), *(j if keep_cols else ())), cast(value, out_ct))

    return product_kernel(ctx, Product(batch, matrix_operand(ctx, 0, node, len(batch), False, acc, center[0]),
                                       matrix_operand(ctx, 1, node, len(batch), False, acc, center[1]), acc, store))


@register
class MatMul(Op):
    """Y = A @ B with numpy semantics (1-D operands, broadcast batch axes)."""

    op_type = "MatMul"
    dense = True
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

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        return matmul_kernel(ctx, node, ctype(widened(node.inputs[0].dtype)))


@register
class Gemm(Op):
    """Y = alpha * A' @ B' + beta * C, where A' and B' are optionally transposed and C broadcasts to Y."""

    op_type = "Gemm"
    dense = True
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

    def lowering(self, node: Node) -> str | None:
        scaled = node.attr("alpha", 1.0) != 1.0 or node.input(2) is not None and node.attr("beta", 1.0) != 1.0
        return None if scaled and not is_float(node.inputs[0].dtype) else super().lowering(node)

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """The product's epilogue scales by alpha and adds beta * C broadcast to (M, N)."""
        m, _, n = self.out_shape(node)
        acc, out_ct = ctype(widened(node.inputs[0].dtype)), ctype(node.outputs[0].dtype)
        alpha, beta, c = node.attr("alpha", 1.0), node.attr("beta", 1.0), node.input(2)

        def store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
            if alpha != 1.0:
                value = value * lit(alpha, acc)
            if c is not None:
                term = cast(ctx.read(2, broadcast_index((i, *j), (m, n), c.shape)), acc)
                value = value + (term * lit(beta, acc) if beta != 1.0 else term)
            return ctx.store(0, (i, *j), cast(value, out_ct))

        a = matrix_operand(ctx, 0, node, 0, bool(node.attr("transA", 0)), acc)
        b = matrix_operand(ctx, 1, node, 0, bool(node.attr("transB", 0)), acc)
        return product_kernel(ctx, Product((), a, b, acc, store))

    def absorb_channel_affine(self, node: Node, scale: np.ndarray, shift: np.ndarray) -> dict[int, np.ndarray] | None:
        """Columns of B' times scale; C' = C * scale + shift / beta (so that beta * C' is right)."""
        _, _, n = self.out_shape(node)
        b, c, beta = node.inputs[1], node.input(2), float(node.attr("beta", 1.0))
        s, t = channel_vector(scale, 1, n), channel_vector(shift, 1, n)
        if s is None or t is None or b.const is None or b.dtype not in (np.float32, np.float64) or \
                beta == 0.0 or c is not None and c.const is None:
            return None
        weights = b.const.astype(np.float64) * (s[:, None] if node.attr("transB", 0) else s[None, :])
        bias = (c.const.astype(np.float64) if c is not None else np.zeros(n)) * s + t / beta
        return {1: weights.astype(b.dtype), 2: bias.astype(b.dtype)}


@register
class MatMulInteger(Op):
    """Y = (A - a_zero_point) @ (B - b_zero_point) in int32, zero points per tensor, A row or B column."""

    op_type = "MatMulInteger"
    dense = True
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(np.dtype(np.int32), matmul_shape(node, shape_of(node, 0), shape_of(node, 1)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        a, b, a_zero, b_zero = (inputs + (None,) * 4)[:4]
        y = np.matmul(centered(a, a_zero, axis=-2), centered(b, b_zero, axis=-1))
        return [np.asarray(y).astype(np.int32)]

    def flops(self, node: Node) -> int:
        return matmul_flops(node)

    def lowering(self, node: Node) -> str | None:
        shapes_ok = all(node.input(i) is None or node.inputs[i].numel == 1 or
                        len(node.inputs[i].shape) == 1 and len(node.inputs[i - 2].shape) > 1 for i in (2, 3))
        return super().lowering(node) if shapes_ok else None

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Products in int32 of the inputs less their zero points (per tensor, A row or B column)."""
        def zero_point(i: int, along_rows: bool) -> Callable[[Expr, Expr, Expr], Expr] | None:
            zero = node.input(i)
            if zero is None:
                return None

            def center(value: Expr, r: Expr, c: Expr) -> Expr:
                at = (Lit(0),) * len(zero.shape) if zero.numel == 1 else ((r if along_rows else c),)
                return value - cast(ctx.read(i, at), "int32_t")
            return center

        return matmul_kernel(ctx, node, "int32_t", (zero_point(2, True), zero_point(3, False)))
