"""Spatial sampling: GridSample (interpolate X at normalized grid positions) and AffineGrid (Many-to-Many).

Grid coordinates are normalized to [-1, 1] and ordered innermost axis first (x indexes width). GridSample
works on any number of spatial axes: per axis it finds the taps around each position and their weights,
then sums the weighted gathers over every combination of taps.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import numpy as np

from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, shape_of
from .registry import register
from .resize import cubic_kernel, linear_kernel

# mode names per opset: GridSample-16 says bilinear/bicubic, GridSample-20 says linear/cubic
MODE_NAMES = {16: {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"},
              20: {"nearest": "nearest", "linear": "linear", "cubic": "cubic"}}
TAP_OFFSETS = {"nearest": np.array([0]), "linear": np.array([0, 1]), "cubic": np.array([-1, 0, 1, 2])}
PADDING_MODES = ("zeros", "border", "reflection")
CUBIC_A = -0.75


class AxisTaps(NamedTuple):
    """For one spatial axis: per output position, the source indices and their weights."""

    index: np.ndarray    # (..., taps) int, clamped into the axis
    weight: np.ndarray   # (..., taps) float, zero for taps that fall outside under zeros padding


@register
class GridSample(Op):
    """Samples X at the normalized positions of a grid (nearest, N-linear or N-cubic; zeros/border/reflection)."""

    op_type = "GridSample"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        x, grid = shape_of(node, 0), shape_of(node, 1)
        if len(x) < 3 or len(grid) != len(x) or grid[-1] != len(x) - 2 or grid[0] != x[0]:
            raise self.invalid(node, f"X {x} and grid {grid} must be (N, C, d1..dr) and (N, D1..Dr, r)")
        self._mode(node)
        self._padding(node)
        return [TensorType(node.inputs[0].dtype, (x[0], x[1], *grid[1:-1]))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, grid = inputs[0], inputs[1].astype(np.float64)
        mode, padding = self._mode(node), self._padding(node)
        align = bool(node.attr("align_corners", 0))
        spatial = x.shape[2:]
        axes = [axis_taps(grid[..., len(spatial) - 1 - k], size, mode, padding, align)   # grid is (x, y, ...)
                for k, size in enumerate(spatial)]
        batch = np.arange(x.shape[0]).reshape((-1,) + (1,) * (grid.ndim - 2))
        data = x.astype(np.float64)
        out = np.zeros(grid.shape[:-1] + (x.shape[1],))
        for combo in itertools.product(*(range(a.index.shape[-1]) for a in axes)):
            weight = np.prod([a.weight[..., j] for a, j in zip(axes, combo)], axis=0)
            gathered = data[(batch, slice(None), *(a.index[..., j] for a, j in zip(axes, combo)))]
            out += gathered * weight[..., None]
        return [np.moveaxis(out, -1, 1).astype(x.dtype)]

    def flops(self, node: Node) -> int:
        """Two per tap per output element (taps: 1, 2 or 4 per spatial axis)."""
        rank = len(shape_of(node, 0)) - 2
        return 2 * len(TAP_OFFSETS[self._mode(node)]) ** rank * node.outputs[0].numel

    def _mode(self, node: Node) -> str:
        names = MODE_NAMES[20 if node.opset >= 20 else 16]
        mode = node.attr("mode", "linear" if node.opset >= 20 else "bilinear")
        if mode not in names:
            raise self.fail(node, f"with mode='{mode}' is not supported (this opset knows {', '.join(names)})")
        return names[mode]

    def _padding(self, node: Node) -> str:
        padding = node.attr("padding_mode", "zeros")
        if padding not in PADDING_MODES:
            raise self.fail(node, f"with padding_mode='{padding}' is not supported")
        return padding


def axis_taps(normalized: np.ndarray, size: int, mode: str, padding: str, align: bool) -> AxisTaps:
    """Taps along one axis for normalized grid coordinates; padding applies to each tap (as in PyTorch)."""
    coord = (normalized + 1) / 2 * (size - 1) if align else ((normalized + 1) * size - 1) / 2
    base = np.rint(coord) if mode == "nearest" else np.floor(coord)    # nearest: round half to even
    index = base[..., None] + TAP_OFFSETS[mode]
    distance = np.abs(index - coord[..., None])
    weight = {"nearest": np.ones_like, "linear": linear_kernel,
              "cubic": lambda d: cubic_kernel(d, CUBIC_A)}[mode](distance)
    if padding == "zeros":
        weight = np.where((index >= 0) & (index < size), weight, 0.0)
    elif padding == "reflection":
        low, high = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        index = np.trunc(reflect(index, low, high))
    return AxisTaps(np.clip(index, 0, size - 1).astype(np.intp), weight)


def reflect(coord: np.ndarray, low: float, high: float) -> np.ndarray:
    """Reflect coordinates off the borders [low, high] until they fall inside."""
    span = high - low
    if span <= 0:
        return np.full_like(coord, low)
    beyond = np.where(coord < low, low - coord, coord - high)
    flips = np.floor(beyond / span)
    rest = beyond - flips * span
    even = flips % 2 == 0
    reflected = np.where(coord < low, np.where(even, low + rest, high - rest), np.where(even, high - rest, low + rest))
    return np.where((coord < low) | (coord > high), reflected, coord)


@register
class AffineGrid(Op):
    """The sampling grid of a batch of 2-D or 3-D affine transforms over an output of the given size."""

    op_type = "AffineGrid"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        theta, size_shape = shape_of(node, 0), shape_of(node, 1)
        if len(size_shape) != 1 or size_shape[0] not in (4, 5):
            raise self.invalid(node, f"size must hold 4 or 5 values (N, C, [D,] H, W), not shape {size_shape}")
        rank = size_shape[0] - 2
        if tuple(theta[1:]) != (rank, rank + 1):
            raise self.invalid(node, f"theta must be (N, {rank}, {rank + 1}) for a {rank}-D grid, not {theta}")
        size = node.inputs[1].const
        spatial = tuple(int(d) for d in size[2:]) if size is not None else (None,) * rank
        return [TensorType(node.inputs[0].dtype, (theta[0], *spatial, rank))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        theta, size = inputs[0], [int(d) for d in inputs[1]]
        if size[0] != theta.shape[0]:
            raise self.invalid(node, f"size gives batch {size[0]} but theta has {theta.shape[0]} matrices")
        align = bool(node.attr("align_corners", 0))
        mesh = np.meshgrid(*(_base_coords(n, align) for n in size[2:]), indexing="ij")   # z, y, x order
        points = np.stack([*reversed(mesh), np.ones_like(mesh[0])], axis=-1)            # (x, y[, z], 1)
        grid = np.einsum("...k,njk->n...j", points, theta.astype(np.float64))
        return [grid.astype(theta.dtype)]

    def flops(self, node: Node) -> int:
        """A (rank x rank+1) matrix-vector product per grid point."""
        rank = node.outputs[0].shape[-1]
        return 2 * (rank + 1) * node.outputs[0].numel


def _base_coords(size: int, align: bool) -> np.ndarray:
    """Normalized positions of `size` pixels: centers of the corner pixels at ±1 (a single pixel sits at 0,
    as in PyTorch's affine_grid), or the corner pixels' outer edges at ±1."""
    if align:
        return np.linspace(-1.0, 1.0, size) if size > 1 else np.zeros(size)
    return (2 * np.arange(size) + 1) / size - 1
