"""Reductions: the Reduce* family over a set of axes, and ArgMax/ArgMin along one axis (Many-to-Many).

The axes of Reduce* are an attribute in older opsets and an optional input since opset 13 (ReduceSum) or 18
(the rest). When that input is computed at run time, the output rank is still known from its length, but
which extents collapse to 1 is not, so those extents are left data-dependent (None).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, Var, call, ctype, lit
from ..kir.expr import Bin as ExprBin
from ..kir.kernel import KernelContext
from ..kernels.rows import FLOAT_C, SHIFT, Fold, arg_fold, keep_extreme, over_rows, reduce_rows
from ..ir import dtypes
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, const_input, normalize_axis, shape_of
from .registry import register


def reduced_shape(shape: tuple, axes: Sequence[int], keepdims: bool) -> tuple:
    """The shape left after reducing the (normalized) `axes` of `shape`."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def normalize_axes(node: Node, axes: Sequence[int], rank: int) -> tuple[int, ...]:
    """Axes mapped into [0, rank), rejecting out-of-range and repeated ones."""
    out = tuple(normalize_axis(node, int(a), rank) for a in axes)
    if len(set(out)) != len(out):
        raise Op.invalid(node, f"axes {list(axes)} name the same axis twice")
    return out


def float_work(x: np.ndarray) -> np.ndarray:
    """x itself when floating-point, else as float64 (for sqrt/log/mean of integers)."""
    return x if dtypes.is_float(x.dtype) else x.astype(np.float64)


def _extreme(dtype: np.dtype, lowest: bool) -> np.ndarray:
    """The identity of max (lowest=True) or min over `dtype`: -inf/+inf, the integer limits, False/True."""
    if dtype == np.bool_:
        return np.array(not lowest)
    if dtypes.is_float(dtype):
        return np.array(-np.inf if lowest else np.inf, dtype)
    info = np.iinfo(dtype)
    return np.array(info.min if lowest else info.max, dtype)


def extreme_lit(dtype: np.dtype, lowest: bool) -> Expr:
    """`_extreme` as a C expression (the 64-bit limits spelled so no literal overflows)."""
    ct = ctype(dtype)
    value = _extreme(np.dtype(dtype), lowest).item()
    if ct == "int64_t" and lowest:
        return ExprBin("-", lit(value + 1, ct), lit(1, ct), ct)
    if ct == "uint64_t" and not lowest:
        return ExprBin("-", lit(0, ct), lit(1, ct), ct)
    return lit(value, ct)


def work_c(dtype: np.dtype) -> str:
    """The C type float_work computes in: the input's own for floats, double otherwise."""
    ct = ctype(dtype)
    return ct if ct in FLOAT_C else "double"

def _add(acc: Expr, x: Expr) -> Expr:
    return acc + x


def _add_square(acc: Expr, x: Expr) -> Expr:
    return acc + x * x


class Reduce(Op):
    """Reduce the input over `axes` (all when empty, none with noop_with_empty_axes), keeping dims on request.

    With no axis to reduce, the elementwise part still applies (ReduceSumSquare squares, ReduceL1 takes the
    absolute value), as the operator's definition, onnx's reference and onnxruntime have it."""

    mapping = MappingType.MANY_TO_MANY
    reduction = True
    axes_input_since: ClassVar[int] = 18

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        """The reduction itself over the normalized `axes` (() applies only the elementwise part)."""
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        x = node.inputs[0]
        keepdims = bool(node.attr("keepdims", 1))
        axes = self._static_axes(node, len(shape_of(node, 0)))
        if axes is None:
            return [TensorType(x.dtype, self._shape_for_runtime_axes(node, x.shape, keepdims))]
        return [TensorType(x.dtype, x.shape if not axes else reduced_shape(x.shape, axes, keepdims))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        given = inputs[1] if self._axes_are_input(node) and len(inputs) > 1 else None
        axes = self._resolve(node, self._written_axes(node, given), x.ndim)
        y = self.reduce(x, axes, bool(node.attr("keepdims", 1)))   # axes=(): only the elementwise part
        return [np.asarray(y).astype(x.dtype, copy=False)]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel

    # --- codegen ------------------------------------------------------------------------------------
    def fold(self, dtype: np.dtype) -> Fold | None:
        """The C accumulation over elements of `dtype`; None: no generated code."""
        return None

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per output element, fold the reduced axes (maybe none) into a local, then store the result; where
        kept axes follow the last reduced one, per block of output elements along them (kernels.rows)."""
        x = node.inputs[0]
        spec, axes = self.fold(x.dtype), self._static_axes(node, len(x.shape))
        if axes is None or spec is None:
            return None
        return reduce_rows(ctx, spec, axes, bool(node.attr("keepdims", 1)))

    # --- axes ---------------------------------------------------------------------------------------
    def _axes_are_input(self, node: Node) -> bool:
        return node.opset >= self.axes_input_since

    def _written_axes(self, node: Node, given: np.ndarray | None) -> list[int]:
        """The axes as the model writes them: the input (in newer opsets) or the attribute; [] if absent."""
        if not self._axes_are_input(node):
            return list(node.attr("axes", []))
        if given is None:
            return []
        if given.ndim > 1 or given.dtype.kind not in "iu":
            raise self.invalid(node, f"axes must be a 1-D integer tensor, not {given.dtype} of shape {given.shape}")
        return given.reshape(-1).tolist()

    def _resolve(self, node: Node, axes: list[int], rank: int) -> tuple[int, ...]:
        """The normalized axes to reduce; () means the input passes through unchanged."""
        if axes:
            return normalize_axes(node, axes, rank)
        if self._axes_are_input(node) and node.attr("noop_with_empty_axes", 0):
            return ()
        return tuple(range(rank))

    def _static_axes(self, node: Node, rank: int) -> tuple[int, ...] | None:
        """The axes to reduce at compile time, or None when a run-time input decides them."""
        v = node.input(1) if self._axes_are_input(node) else None
        if v is None or v.const is not None:
            return self._resolve(node, self._written_axes(node, None if v is None else v.const), rank)
        if v.shape == (0,):
            return self._resolve(node, [], rank)
        return None

    def _shape_for_runtime_axes(self, node: Node, shape: tuple, keepdims: bool) -> tuple:
        """Output shape when only the number of axes is known: the reduced extents become None."""
        axes_shape = node.inputs[1].shape
        if keepdims:
            return tuple(1 if d == 1 else None for d in shape)
        if axes_shape is None or len(axes_shape) != 1 or axes_shape[0] is None:
            const_input(node, 1, "axes")  # raises the standard data-dependent error
        return (None,) * (len(shape) - axes_shape[0])


@register
class ReduceSum(Reduce):
    """Sum over the axes."""

    op_type = "ReduceSum"
    axes_input_since = 13

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)

    def fold(self, dtype: np.dtype) -> Fold | None:
        ct = ctype(dtype)
        return Fold(ct, lit(0, ct), _add)


@register
class ReduceMean(Reduce):
    """Arithmetic mean over the axes (truncated for integers)."""

    op_type = "ReduceMean"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.mean(float_work(x), axis=axes, keepdims=keepdims)

    def fold(self, dtype: np.dtype) -> Fold | None:
        w = work_c(dtype)
        return Fold(w, lit(0, w), _add, lambda acc, count: acc / lit(count, w))


@register
class ReduceMax(Reduce):
    """Maximum over the axes; -inf (or the type's lowest value) over an empty set."""

    op_type = "ReduceMax"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.max(x, axis=axes, keepdims=keepdims, initial=_extreme(x.dtype, lowest=True))

    def fold(self, dtype: np.dtype) -> Fold | None:
        return Fold(ctype(dtype), extreme_lit(dtype, lowest=True), keep_extreme(largest=True), combine=None)


@register
class ReduceMin(Reduce):
    """Minimum over the axes; +inf (or the type's highest value) over an empty set."""

    op_type = "ReduceMin"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.min(x, axis=axes, keepdims=keepdims, initial=_extreme(x.dtype, lowest=False))

    def fold(self, dtype: np.dtype) -> Fold | None:
        return Fold(ctype(dtype), extreme_lit(dtype, lowest=False), keep_extreme(largest=False), combine=None)


@register
class ReduceProd(Reduce):
    """Product over the axes."""

    op_type = "ReduceProd"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype)

    def fold(self, dtype: np.dtype) -> Fold | None:
        ct = ctype(dtype)
        return Fold(ct, lit(1, ct), lambda acc, x: acc * x, combine="*")


@register
class ReduceL1(Reduce):
    """Sum of absolute values over the axes."""

    op_type = "ReduceL1"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(np.abs(x), axis=axes, keepdims=keepdims, dtype=x.dtype)

    def fold(self, dtype: np.dtype) -> Fold | None:
        ct = ctype(dtype)
        signed = ct in FLOAT_C or ct.startswith("int")
        return Fold(ct, lit(0, ct), lambda acc, x: acc + (call("abs", x) if signed else x))


@register
class ReduceL2(Reduce):
    """Euclidean norm over the axes."""

    op_type = "ReduceL2"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        w = float_work(x)
        return np.sqrt(np.sum(w * w, axis=axes, keepdims=keepdims))

    def fold(self, dtype: np.dtype) -> Fold | None:
        w = work_c(dtype)
        return Fold(w, lit(0, w), _add_square, lambda acc, count: call("sqrt", acc))


@register
class ReduceLogSum(Reduce):
    """Natural log of the sum over the axes (-inf over an empty set)."""

    op_type = "ReduceLogSum"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.sum(float_work(x), axis=axes, keepdims=keepdims))

    def fold(self, dtype: np.dtype) -> Fold | None:
        w = work_c(dtype)
        return Fold(w, lit(0, w), _add, lambda acc, count: call("log", acc))


@register
class ReduceLogSumExp(Reduce):
    """log(sum(exp(x))) over the axes, shifted by the maximum for stability (-inf over an empty set)."""

    op_type = "ReduceLogSumExp"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        w = float_work(x)
        peak = np.max(w, axis=axes, keepdims=True, initial=-np.inf)
        shift = np.where(np.isfinite(peak), peak, 0).astype(w.dtype)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            total = np.log(np.sum(np.exp(w - shift), axis=axes, keepdims=True)) + shift
        return total if keepdims else np.squeeze(total, axis=axes)

    def fold(self, dtype: np.dtype) -> Fold | None:
        w = work_c(dtype)
        shift = Var(SHIFT, w)
        return Fold(w, lit(0, w), lambda acc, x: acc + call("exp", x - shift),
                    lambda acc, count: call("log", acc) + shift, shifted=True)


@register
class ReduceSumSquare(Reduce):
    """Sum of squares over the axes."""

    op_type = "ReduceSumSquare"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(x * x, axis=axes, keepdims=keepdims, dtype=x.dtype)

    def fold(self, dtype: np.dtype) -> Fold | None:
        ct = ctype(dtype)
        return Fold(ct, lit(0, ct), _add_square)


class ArgReduce(Op):
    """Index (int64) of the extreme value along `axis`: the first one, or the last with select_last_index."""

    mapping = MappingType.MANY_TO_MANY
    reduction = True
    largest: ClassVar[bool] = True   # ArgMax; ArgMin looks for the smallest

    def pick(self, x: np.ndarray, axis: int) -> np.ndarray:
        """Index of the first extreme element along `axis`."""
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        axis = self._axis(node, len(shape))
        if shape and shape[axis] == 0:
            raise self.invalid(node, f"axis {axis} of the input {shape} is empty, so it has no {self.op_type}")
        return [TensorType(np.dtype(np.int64), reduced_shape(shape, (axis,), bool(node.attr("keepdims", 1))))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        axis = self._axis(node, x.ndim)
        if node.attr("select_last_index", 0):
            index = x.shape[axis] - 1 - self.pick(np.flip(x, axis), axis)
        else:
            index = self.pick(x, axis)
        if node.attr("keepdims", 1):
            index = np.expand_dims(index, axis)
        return [np.asarray(index, dtype=np.int64)]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per output element, scan the axis (backwards with select_last_index) keeping the first extreme."""
        shape = node.inputs[0].shape
        if not shape:
            return None
        axis = self._axis(node, len(shape))
        keepdims, last = bool(node.attr("keepdims", 1)), bool(node.attr("select_last_index", 0))

        def place(index: Index) -> tuple[Index, Expr]:
            at = lit(shape[axis] - 1, "int64_t") - index[axis] if last else index[axis]
            return index[:axis] + (at,) + index[axis + 1:], at

        def body(row: dict[int, Expr]) -> list[str]:
            out = tuple(row.get(a, Lit(0)) for a in range(len(shape))) if keepdims else tuple(row.values())
            lines, pos = arg_fold(ctx, shape, (axis,), row, self.largest, place)
            return lines + ctx.store(0, out, pos)
        return over_rows(ctx, shape, (axis,), body, node.inputs[0].numel)

    @staticmethod
    def _axis(node: Node, rank: int) -> int:
        return normalize_axis(node, node.attr("axis", 0), rank)


@register
class ArgMax(ArgReduce):
    """Index of the maximum along an axis."""

    op_type = "ArgMax"

    def pick(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.argmax(x, axis=axis)


@register
class ArgMin(ArgReduce):
    """Index of the minimum along an axis."""

    op_type = "ArgMin"
    largest = False

    def pick(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.argmin(x, axis=axis)
