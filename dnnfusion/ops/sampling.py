"""Spatial sampling: GridSample (interpolate X at normalized grid positions) and AffineGrid (Many-to-Many).

Grid coordinates are normalized to [-1, 1] and ordered innermost axis first (x indexes width). GridSample
works on any number of spatial axes: per axis it finds the taps around each position and their weights,
then sums the weighted gathers over every combination of taps.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import numpy as np

from ..kir.emit import literal
from ..kir.expr import INDEX, Cast, Expr, Var, ctype, lit, numel, unravel
from ..kir.kernel import KernelContext, parallel_for, serial_for
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

    def kernel(self, node: Node, ctx: KernelContext) -> list[str]:
        """Per output position: each axis's taps (indices and weights, as `axis_taps`) into small arrays, then
        per channel the weighted sum over every combination of taps, in double."""
        x_shape, grid_shape = shape_of(node, 0), shape_of(node, 1)
        spatial, rank = x_shape[2:], len(x_shape) - 2
        mode, padding = self._mode(node), self._padding(node)
        align = bool(node.attr("align_corners", 0))
        taps = len(TAP_OFFSETS[mode])
        p, c = ctx.var("p"), ctx.var("c")
        at, lines = _locals(ctx, "gs_o", unravel(p, grid_shape[:-1]))          # n, then the output position
        for k, size in enumerate(spatial):
            lines += ctx.value(f"gs_g{k}", Cast(ctx.read(1, (*at, lit(rank - 1 - k, INDEX))), "double"))
            lines += [f"int64_t gs_i{k}[{taps}];", f"double gs_w{k}[{taps}];"]
            lines += _taps_code(k, size, mode, padding, align)
        combos = [ctx.var("a") for _ in range(rank)]
        gather = Cast(ctx.read(0, (at[0], c, *(Var(f"gs_j{k}") for k in range(rank)))), "double")
        weight = " * ".join(f"gs_w{k}[{a.name}]" for k, a in enumerate(combos))
        inner = [f"const int64_t gs_j{k} = gs_i{k}[{a.name}];" for k, a in enumerate(combos)]
        inner += ctx.value("gs_v", gather) + [f"gs_acc += gs_v * ({weight});"]
        for a in reversed(combos):
            inner = serial_for(a, taps, inner)
        channel = ["double gs_acc = 0.0;"] + inner
        channel += ctx.store(0, (at[0], c, *at[1:]), Cast(Var("gs_acc", "double"), ctype(node.outputs[0].dtype)))
        lines += serial_for(c, x_shape[1], channel)
        return parallel_for(p, numel(grid_shape[:-1]), lines, self.flops(node))

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


def _taps_code(k: int, size: int, mode: str, padding: str, align: bool) -> list[str]:
    """C filling gs_i{k}/gs_w{k} with the taps of grid coordinate gs_g{k} along an axis of `size` (as
    `axis_taps`)."""
    g = f"gs_g{k}"
    coord = f"({g} + 1.0) / 2.0 * {size - 1}.0" if align else f"(({g} + 1.0) * {size}.0 - 1.0) / 2.0"
    base = "nearbyint(gs_coord)" if mode == "nearest" else "floor(gs_coord)"
    weight = {"nearest": "1.0",
              "linear": "1.0 - gs_d < 0.0 ? 0.0 : (1.0 - gs_d > 1.0 ? 1.0 : 1.0 - gs_d)",
              "cubic": f"gs_d <= 1.0 ? ({_num(CUBIC_A + 2)} * gs_d - {_num(CUBIC_A + 3)}) * gs_d * gs_d + 1.0 : "
                       f"(gs_d < 2.0 ? (({_num(CUBIC_A)} * gs_d - {_num(5 * CUBIC_A)}) * gs_d + {_num(8 * CUBIC_A)})"
                       f" * gs_d - {_num(4 * CUBIC_A)} : 0.0)"}[mode]
    tap = [f"const double gs_at = gs_base + ({_num(TAP_OFFSETS[mode][0])} + (double)gs_t);",
           "const double gs_d = fabs(gs_at - gs_coord);", f"double gs_wt = {weight};", "double gs_ix = gs_at;"]
    if padding == "zeros":
        tap.append(f"if (!(gs_at >= 0.0 && gs_at < {size}.0)) gs_wt = 0.0;")
    elif padding == "reflection":
        tap += _reflect_code("gs_ix", *((0.0, size - 1.0) if align else (-0.5, size - 0.5)))
    tap += [f"gs_i{k}[gs_t] = !(gs_ix >= 0.0) ? 0 : (gs_ix > {size - 1}.0 ? {size - 1} : (int64_t)gs_ix);",
            f"gs_w{k}[gs_t] = gs_wt;"]
    return ["{", f"  const double gs_coord = {coord};", f"  const double gs_base = {base};"] + \
        ["  " + line for line in serial_for(Var("gs_t"), len(TAP_OFFSETS[mode]), tap)] + ["}"]


def _reflect_code(v: str, low: float, high: float) -> list[str]:
    """C reflecting `v` off [low, high] and truncating it (as `reflect` then np.trunc)."""
    span = high - low
    if span <= 0:
        return [f"{v} = {_num(low)};"]
    lo, hi, sp = _num(low), _num(high), _num(span)
    return ["{",
            f"  const double gs_beyond = {v} < {lo} ? {lo} - {v} : {v} - {hi};",
            f"  const double gs_flips = floor(gs_beyond / {sp});",
            f"  const double gs_rest = gs_beyond - gs_flips * {sp};",
            "  const int gs_even = fmod(gs_flips, 2.0) == 0.0;",
            f"  const double gs_turned = {v} < {lo} ? (gs_even ? {lo} + gs_rest : {hi} - gs_rest) : "
            f"(gs_even ? {hi} - gs_rest : {lo} + gs_rest);",
            f"  {v} = trunc(({v} < {lo} || {v} > {hi}) ? gs_turned : {v});",
            "}"]


def _num(value: float) -> str:
    """A double literal."""
    return literal(lit(float(value), "double"))


def _locals(ctx: KernelContext, name: str, exprs: Sequence[Expr]) -> tuple[list[Var], list[str]]:
    """Each index expression as a named local: their variables, and the declarations."""
    names = [f"{name}{k}" for k in range(len(exprs))]
    return [Var(n) for n in names], [line for n, e in zip(names, exprs) for line in ctx.value(n, e)]


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

    def kernel(self, node: Node, ctx: KernelContext) -> list[str]:
        """Per grid point: its base coordinates (x first, then 1) and each component as their dot product with
        theta's row, in double."""
        out_shape = node.outputs[0].shape
        spatial, rank = out_shape[1:-1], out_shape[-1]
        align = bool(node.attr("align_corners", 0))
        p = ctx.var("p")
        (n, *at), lines = _locals(ctx, "ag_o", unravel(p, out_shape[:-1]))
        points: list[Expr] = []
        for k, (size, v) in enumerate(zip(spatial, at)):
            lines.append(f"const double ag_c{k} = {_base_coord_code(v.name, size, align)};")
            points.insert(0, Var(f"ag_c{k}", "double"))
        points.append(lit(1.0, "double"))
        ct = ctype(node.outputs[0].dtype)
        for j in range(rank):
            terms = [pt * Cast(ctx.read(0, (n, lit(j, INDEX), lit(k, INDEX))), "double") for k, pt in enumerate(points)]
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            lines += ctx.store(0, (n, *at, lit(j, INDEX)), Cast(total, ct))
        return parallel_for(p, numel(out_shape[:-1]), lines, self.flops(node))

    def flops(self, node: Node) -> int:
        """A (rank x rank+1) matrix-vector product per grid point."""
        rank = node.outputs[0].shape[-1]
        return 2 * (rank + 1) * node.outputs[0].numel


def _base_coord_code(i: str, size: int, align: bool) -> str:
    """C for the normalized position of pixel i (as `_base_coords`, np.linspace included)."""
    if align:
        return f"{i} == {size - 1} ? 1.0 : (double){i} * {_num(2.0 / (size - 1))} + -1.0" if size > 1 else "0.0"
    return f"(double)(2 * {i} + 1) / {size}.0 - 1.0"


def _base_coords(size: int, align: bool) -> np.ndarray:
    """Normalized positions of `size` pixels: centers of the corner pixels at ±1 (a single pixel sits at 0,
    as in PyTorch's affine_grid), or the corner pixels' outer edges at ±1."""
    if align:
        return np.linspace(-1.0, 1.0, size) if size > 1 else np.zeros(size)
    return (2 * np.arange(size) + 1) / size - 1
