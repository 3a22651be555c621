"""Pooling: AveragePool, MaxPool, LpPool, GlobalAveragePool, GlobalMaxPool and MaxUnpool (Many-to-Many).

The window geometry (kernel, strides, dilations, pads, auto_pad, ceil_mode) is conv.py's `window_of`, the Window
itself kernels/window.py; each pool says what it folds (`Fold`) and kernels/pool.py generates the loops."""

from __future__ import annotations

import functools
import math

import numpy as np

from ..ir.dtypes import is_float
from ..ir.graph import Node
from ..kernels.pool import Fold, global_pool, window_pool
from ..kernels.window import Window, window_reuse
from ..kir.expr import Expr, Lit, binary, call, cast, ctype, lit, select
from ..kir.kernel import KernelContext
from .arithmetic import SUM_OPS
from .base import Algebra, Inferred, MappingType, Op, TensorType, const_input, shape_of
from .conv import int_attrs, window_of
from .matmul import widened
from .registry import register


def larger(v: Expr, acc: Expr) -> Expr:
    """max(acc, v) as numpy's max: a NaN tap wins and stays (a non-short-circuit `|`, so no branch)."""
    wins = binary(">", v, acc)
    if v.ctype in ("float", "double"):
        wins = binary("|", wins, binary("!=", v, v))
    return select(wins, v, acc)


def max_fold(node: Node, ct: str) -> Fold:
    """A maximum's fold (MaxPool, GlobalMaxPool): from the type's lowest value, NaN-propagating, separable."""
    return Fold(lit(lowest(node.inputs[0].dtype), ct), lambda acc, v: larger(v, acc), neutral=True, separable=True)


class WindowPool(Op):
    """A pool over kernel_shape windows: Y has shape (N, C, *window.out)."""

    mapping = MappingType.MANY_TO_MANY

    def window(self, node: Node, x_shape: tuple) -> Window:
        kernel = node.attr("kernel_shape")
        if not kernel:
            raise self.invalid(node, "needs the kernel_shape attribute")
        if len(x_shape) != len(kernel) + 2:
            raise self.invalid(node, f"kernel_shape {list(kernel)} does not match input shape {tuple(x_shape)}; "
                                     "the input must be (N, C, *spatial) with one kernel entry per spatial axis")
        return window_of(node, x_shape[2:], tuple(int(k) for k in kernel), bool(node.attr("ceil_mode", 0)))

    def infer(self, node: Node) -> list[Inferred]:
        x = node.inputs[0]
        window = self.window(node, shape_of(node, 0))
        return [TensorType(x.dtype, (*x.shape[:2], *window.out))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x = inputs[0]
        window = self.window(node, x.shape)
        return [self.pool(node, x, window)]

    def pool(self, node: Node, x: np.ndarray, window: Window) -> np.ndarray:
        raise NotImplementedError

    def flops(self, node: Node) -> int:
        return node.outputs[0].numel * math.prod(node.attr("kernel_shape", ()))

    def input_reuse(self, node: Node, i: int) -> float:
        x = shape_of(node, 0)
        return window_reuse(self.window(node, x), x[2:]) if i == 0 else 1.0

    def fold(self, node: Node, ct: str) -> Fold:
        raise NotImplementedError

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        x = node.inputs[0]
        ct = ctype(widened(x.dtype))
        return window_pool(ctx, node, self.window(node, x.shape), self.fold(node, ct), ct)

    def blocked_channels(self, node: Node, block: int) -> str:
        """kernels/pool.py folds a float32 blocked input a vector of channels per tap (`blocked_window_pool`),
        whose stores into a blocked output are whole vectors; a plain input keeps the plane kernels."""
        x = node.inputs[0]
        indices = len(node.outputs) > 1 and node.outputs[1] is not None
        return "input" if x.dtype is not None and x.dtype.name == "float32" and not indices else ""


def kernel_axes(window: Window) -> tuple[int, ...]:
    """The trailing kernel axes of a window view."""
    return tuple(range(-len(window.kernel), 0))


def tap_counts(window: Window, spatial: tuple, include_pad: bool) -> np.ndarray:
    """Per output position, how many window taps land on the input (or on the input and its declared pads)."""
    per_axis = []
    for out, k, s, d, begin, end, size in zip(window.out, window.kernel, window.strides, window.dilations,
                                             window.pads_begin, window.pads_end, spatial):
        lo, hi = (-begin, size + end) if include_pad else (0, size)
        taps = np.arange(out)[:, None] * s - begin + np.arange(k)[None, :] * d
        per_axis.append(((taps >= lo) & (taps < hi)).sum(axis=1))
    return functools.reduce(np.multiply.outer, per_axis)


@register
class AveragePool(WindowPool):
    """Y = the mean of each window (padding counted only with count_include_pad)."""

    op_type = "AveragePool"
    algebra = Algebra(distributes_over=SUM_OPS)   # linear: pool(a + b) = pool(a) + pool(b)

    def pool(self, node: Node, x: np.ndarray, window: Window) -> np.ndarray:
        dtype = widened(x.dtype)
        sums = window.windows(x.astype(dtype)).sum(axis=kernel_axes(window))
        counts = tap_counts(window, x.shape[2:], bool(node.attr("count_include_pad", 0)))
        return (sums / np.maximum(counts, 1)).astype(x.dtype)

    def fold(self, node: Node, ct: str) -> Fold:
        return Fold(lit(0, ct), lambda acc, v: acc + v, lambda acc, count: acc / cast(binary("max", count, Lit(1)), ct),
                    bool(node.attr("count_include_pad", 0)))


@register
class LpPool(WindowPool):
    """Y = the p-norm of each window (padding contributes zeros)."""

    op_type = "LpPool"

    def pool(self, node: Node, x: np.ndarray, window: Window) -> np.ndarray:
        p = node.attr("p", 2)
        taps = np.abs(window.windows(x.astype(widened(x.dtype))))
        return (np.sum(taps ** p, axis=kernel_axes(window)) ** (1.0 / p)).astype(x.dtype)

    def lowering(self, node: Node) -> str | None:
        return super().lowering(node) if is_float(node.inputs[0].dtype) else None

    def fold(self, node: Node, ct: str) -> Fold:
        p = node.attr("p", 2)
        if p == 1:
            return Fold(lit(0, ct), lambda acc, v: acc + call("abs", v), neutral=True)
        if p == 2:
            return Fold(lit(0, ct), lambda acc, v: acc + v * v, lambda acc, count: call("sqrt", acc), neutral=True)
        return Fold(lit(0, ct), lambda acc, v: acc + call("pow", call("abs", v), lit(p, ct)),
                    lambda acc, count: call("pow", acc, lit(1.0 / p, ct)), neutral=True)


def lowest(dtype: np.dtype) -> float | int:
    """The padding value that never wins a max: -inf for floats, the minimum for integers."""
    return -np.inf if is_float(dtype) else np.iinfo(dtype).min


@register
class MaxPool(WindowPool):
    """Y = the maximum of each window; optional Indices = each maximum's flat position in X."""

    op_type = "MaxPool"

    def infer(self, node: Node) -> list[Inferred]:
        if node.attr("storage_order", 0) not in (0, 1):
            raise self.invalid(node, f"storage_order must be 0 (row major) or 1 (column major), "
                                     f"not {node.attr('storage_order')}")
        y = super().infer(node)[0]
        return [y, TensorType(np.dtype(np.int64), y.shape)]

    def pool(self, node: Node, x: np.ndarray, window: Window) -> np.ndarray:
        return window.windows(x, lowest(x.dtype)).max(axis=kernel_axes(window))

    def lowering(self, node: Node) -> str | None:
        """The Indices output runs as a fallback."""
        return super().lowering(node) if len(node.outputs) < 2 or node.outputs[1] is None else None

    def fold(self, node: Node, ct: str) -> Fold:
        return max_fold(node, ct)

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        if len(node.outputs) < 2 or node.outputs[1] is None:
            return super().compute(node, *inputs)
        x = inputs[0]
        window = self.window(node, x.shape)
        taps = window.windows(x, lowest(x.dtype))
        flat = taps.reshape(*taps.shape[:-len(window.kernel)], -1)
        best = flat.argmax(axis=-1)[..., None]
        positions = window.windows(flat_positions(x.shape, node.attr("storage_order", 0)), -1)
        positions = positions.reshape(flat.shape)
        return [np.take_along_axis(flat, best, -1)[..., 0], np.take_along_axis(positions, best, -1)[..., 0]]


def flat_positions(shape: tuple, storage_order: int) -> np.ndarray:
    """Each element's flat index in a tensor of `shape`, with the spatial axes column major when storage_order=1."""
    spatial = shape[2:]
    size = math.prod(spatial)
    within = np.arange(size).reshape(spatial[::-1]).transpose() if storage_order else np.arange(size).reshape(spatial)
    planes = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape[0], shape[1], *(1,) * len(spatial))
    return planes * size + within


class GlobalPool(Op):
    """A reduction over all spatial axes (2 and up), which stay as extents of 1."""

    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        x = shape_of(node, 0)
        if len(x) < 2:
            raise self.invalid(node, f"needs an input of shape (N, C, ...), got {x}")
        return [TensorType(node.inputs[0].dtype, (*x[:2], *(1,) * (len(x) - 2)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x = inputs[0]
        return [self.reduce(x, tuple(range(2, x.ndim))).astype(x.dtype)]

    def reduce(self, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel

    def fold(self, node: Node, ct: str) -> Fold:
        raise NotImplementedError

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        ct = ctype(widened(node.inputs[0].dtype))
        return global_pool(ctx, node, self.fold(node, ct), ct)


@register
class GlobalAveragePool(GlobalPool):
    """Y = the mean over all spatial positions of each channel."""

    op_type = "GlobalAveragePool"
    algebra = Algebra(distributes_over=SUM_OPS)   # linear, like AveragePool

    def blocked_channels(self, node: Node, block: int) -> str:
        """Its sums read a blocked input a vector of channels at a time (a squeeze-excitation's pooling of a
        blocked depthwise output), and its (N, C, 1, ...) result is the same array in either layout."""
        return "any"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return x.mean(axis=axes, keepdims=True, dtype=widened(x.dtype))

    def fold(self, node: Node, ct: str) -> Fold:
        return Fold(lit(0, ct), lambda acc, v: acc + v, lambda acc, count: acc / cast(count, ct), sums=True)


@register
class GlobalMaxPool(GlobalPool):
    """Y = the maximum over all spatial positions of each channel."""

    op_type = "GlobalMaxPool"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return x.max(axis=axes, keepdims=True)

    def fold(self, node: Node, ct: str) -> Fold:
        return max_fold(node, ct)


@register
class MaxUnpool(Op):
    """Y = zeros with X scattered to the flat positions in I (a MaxPool's Indices): MaxPool's partial inverse."""

    op_type = "MaxUnpool"
    mapping = MappingType.MANY_TO_MANY

    def unpooled_shape(self, node: Node, x_shape: tuple) -> tuple:
        """The shape that the pooling window implies: (in - 1) * stride + kernel - pads on each spatial axis."""
        kernel = node.attr("kernel_shape")
        if not kernel or len(x_shape) != len(kernel) + 2:
            raise self.invalid(node, f"needs a kernel_shape attribute with one entry per spatial axis of X {x_shape}")
        n = len(kernel)
        strides = int_attrs(node, "strides", n, 1, 1)
        pads = int_attrs(node, "pads", 2 * n, 0, 0)
        spatial = [(i - 1) * s + k - b - e for i, s, k, b, e in zip(x_shape[2:], strides, kernel, pads[:n], pads[n:])]
        return (*x_shape[:2], *spatial)

    def infer(self, node: Node) -> list[Inferred]:
        x = shape_of(node, 0)
        natural = self.unpooled_shape(node, x)
        target = node.input(2)
        if target is None:
            return [TensorType(node.inputs[0].dtype, natural)]
        if target.const is None:     # the output shape is fed at run time
            return [TensorType(node.inputs[0].dtype, (None,) * len(x))]
        return [TensorType(node.inputs[0].dtype, self.target_shape(node, const_input(node, 2, "output_shape"), x))]

    def target_shape(self, node: Node, output_shape: np.ndarray, x_shape: tuple) -> tuple:
        shape = tuple(int(d) for d in np.asarray(output_shape).reshape(-1))
        if len(shape) != len(x_shape) or shape[:2] != tuple(x_shape[:2]):
            raise self.invalid(node, f"output_shape {list(shape)} must be (N, C, *spatial) with N, C of X {x_shape}")
        return shape

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x, indices, output_shape = (inputs + (None,))[:3]
        natural = self.unpooled_shape(node, x.shape)
        flat = np.zeros(math.prod(natural), x.dtype)
        positions = indices.reshape(-1)
        if positions.size and (positions.min() < 0 or positions.max() >= flat.size):
            raise self.invalid(node, f"indices must lie in [0, {flat.size}) for the unpooled shape {natural}")
        flat[positions] = x.reshape(-1)
        unpooled = flat.reshape(natural)
        if output_shape is None:
            return [unpooled]
        y = np.zeros(self.target_shape(node, output_shape, x.shape), x.dtype)
        overlap = tuple(slice(0, min(a, b)) for a, b in zip(natural, y.shape))
        y[overlap] = unpooled[overlap]
        return [y]

    def flops(self, node: Node) -> int:
        return 0
