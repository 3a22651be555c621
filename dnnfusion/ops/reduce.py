"""Reductions: the Reduce* family over a set of axes, and ArgMax/ArgMin along one axis (Many-to-Many).

The axes of Reduce* are an attribute in older opsets and an optional input since opset 13 (ReduceSum) or 18
(the rest). When that input is computed at run time, the output rank is still known from its length, but
which extents collapse to 1 is not, so those extents are left data-dependent (None).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

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


class Reduce(Op):
    """Reduce the input over `axes` (all when empty, none with noop_with_empty_axes), keeping dims on request."""

    mapping = MappingType.MANY_TO_MANY
    reduction = True
    axes_input_since: ClassVar[int] = 18

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        """The reduction itself over non-empty normalized `axes`."""
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
        if not axes:
            return [x.copy()]
        y = self.reduce(x, axes, bool(node.attr("keepdims", 1)))
        return [np.asarray(y).astype(x.dtype, copy=False)]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel

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


@register
class ReduceMean(Reduce):
    """Arithmetic mean over the axes (truncated for integers)."""

    op_type = "ReduceMean"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.mean(float_work(x), axis=axes, keepdims=keepdims)


@register
class ReduceMax(Reduce):
    """Maximum over the axes; -inf (or the type's lowest value) over an empty set."""

    op_type = "ReduceMax"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.max(x, axis=axes, keepdims=keepdims, initial=_extreme(x.dtype, lowest=True))


@register
class ReduceMin(Reduce):
    """Minimum over the axes; +inf (or the type's highest value) over an empty set."""

    op_type = "ReduceMin"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.min(x, axis=axes, keepdims=keepdims, initial=_extreme(x.dtype, lowest=False))


@register
class ReduceProd(Reduce):
    """Product over the axes."""

    op_type = "ReduceProd"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype)


@register
class ReduceL1(Reduce):
    """Sum of absolute values over the axes."""

    op_type = "ReduceL1"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(np.abs(x), axis=axes, keepdims=keepdims, dtype=x.dtype)


@register
class ReduceL2(Reduce):
    """Euclidean norm over the axes."""

    op_type = "ReduceL2"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        w = float_work(x)
        return np.sqrt(np.sum(w * w, axis=axes, keepdims=keepdims))


@register
class ReduceLogSum(Reduce):
    """Natural log of the sum over the axes (-inf over an empty set)."""

    op_type = "ReduceLogSum"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.sum(float_work(x), axis=axes, keepdims=keepdims))


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


@register
class ReduceSumSquare(Reduce):
    """Sum of squares over the axes."""

    op_type = "ReduceSumSquare"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(x * x, axis=axes, keepdims=keepdims, dtype=x.dtype)


class ArgReduce(Op):
    """Index (int64) of the extreme value along `axis`: the first one, or the last with select_last_index."""

    mapping = MappingType.MANY_TO_MANY
    reduction = True

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

    def pick(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.argmin(x, axis=axis)
