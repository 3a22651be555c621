"""Pooling templates: a max or Lp pool folds each channel's padded plane with its taps unrolled (planes.py); other
window pools fold each output's taps through bound tables known at compile time (no bounds checks; SIMD over
a row when no window is clipped); a global pool folds each (image, channel) plane.
What a pool folds (max, sum, p-norm) is the operator's `Fold`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..ir.graph import Node
from ..kir.expr import Expr, Index, Lit, Load, Var, cast, ctype, floordiv, mod, numel, unravel
from ..kir.kernel import KernelContext, fits_stack, indent, local_array, parallel_for, serial_for
from .blocked import block_size, blocked_buffer
from .gemm import direct_buffer
from .planes import PlaneFold, plane_window, producer_plane, source_reader, vector_lanes
from .window import Window, covered, table


FIRST_AXIS_NOTE = "/* separable pool: its window along the first axis folded into the plane, then the rest */"


@dataclass(frozen=True)
class Fold:
    """How a pool accumulates its taps in generated code: the start value, one step with a tap, and the
    result from the accumulator and the number of taps counted (inside the input, or with the pads too)."""

    init: Expr
    step: Callable[[Expr, Expr], Expr]
    finish: Callable[[Expr, Expr], Expr] = lambda acc, count: acc
    count_pads: bool = False
    sums: bool = False          # a plain sum, vectorised as an OpenMP reduction
    neutral: bool = False       # `init` leaves the fold unchanged and `finish` ignores the count: out-of-input
                                # taps may read `init` (a max's lowest value, an Lp norm's 0)
    separable: bool = False     # a window's fold is the fold of its folds along one axis (a max): a window
                                # may fold along its first axis first


def window_pool(ctx: KernelContext, node: Node, window: Window, spec: Fold, ct: str) -> list[str] | None:
    """Per output element, fold the taps that land on the input (their ranges per axis and output position
    are tables known at compile time, so the loops need no bounds checks; an axis where no window is clipped
    gets constant bounds, and with constant bounds on every axis a row of outputs is folded in SIMD lanes);
    the row of results is then stored in one vectorisable loop. A channel-blocked input folds a vector of
    channels at a time instead (`blocked_window_pool`)."""
    x, y = node.inputs[0], node.outputs[0]
    block = block_size()
    blocked = blocked_buffer(ctx, 0, x.shape, ctype(x.dtype), block) if block else None
    if blocked is not None and all(fits_stack(o) for o in window.out):
        return blocked_window_pool(ctx, node, window, spec, ct, block, blocked)
    if spec.neutral:
        planes = plane_pool(ctx, node, window, spec, ct)
        if planes is not None:
            return planes
    if not all(fits_stack(o) for o in window.out):     # the row buffer, and the per-axis tables built here
        return None
    spatial, last = x.shape[2:], len(x.shape) - 3
    t, ow = ctx.var("t"), ctx.var("o")
    n, c, *at = (*unravel(t, y.shape[:-1]), ow)
    taps = [ctx.var("kt") for _ in spatial]
    tables, bounds, count = tap_bounds(ctx, window, spatial, at, spec)
    pos = [o * s - p + k * dl for o, s, p, k, dl in zip(at, window.strides, window.pads_begin, taps,
                                                         window.dilations)]
    acc, out_ct = Var("acc", ct), ctype(y.dtype)
    body = loops(taps, bounds, ctx.value("xv", cast(ctx.read(0, (n, c, *pos)), ct)) +
                 [f"acc = {ctx.c(spec.step(acc, Var('xv', ct)))};"])
    fold = [f"{ct} acc = {ctx.c(spec.init)};"] + body + \
        [f"row[{ow.name}] = {ctx.c(cast(spec.finish(acc, count), out_ct))};"]
    constant_taps = not tables or spec.count_pads and len(tables) == len(spatial)
    task = [local_array(out_ct, "row", window.out[last])]
    task += serial_for(ow, window.out[last], fold, simd=constant_taps)
    task += serial_for(ow, window.out[last], ctx.store(0, (n, c, *at), Load("row", ow, out_ct)))
    return tables + parallel_for(t, y.numel // window.out[last], task, y.numel * numel(window.kernel))


def tap_bounds(ctx: KernelContext, window: Window, spatial: Sequence[int], at: Sequence[Expr], spec: Fold
               ) -> tuple[list[str], list[tuple[str, str]], Expr]:
    """For output position `at`: the C tables of tap ranges per axis (only for axes where some window is
    clipped by the input's edges), each axis's [lo, hi) bounds as C, and the count of taps `spec.finish`
    divides by (those on the input, or on the input and its pads)."""
    tables, count, bounds = [], Lit(1), []
    for d, size in enumerate(spatial):
        start = [o * window.strides[d] - window.pads_begin[d] for o in range(window.out[d])]
        spans = [covered(window.kernel[d], s, window.dilations[d], 0, size) for s in start]
        full = all(span == (0, window.kernel[d]) for span in spans)     # no window clipped along this axis
        if full:
            bounds.append(("0", str(window.kernel[d])))
        else:
            tables += [table(f"klo{d}", [a for a, _ in spans]), table(f"khi{d}", [b for _, b in spans])]
            bounds.append((f"klo{d}[{ctx.c(at[d])}]", f"khi{d}[{ctx.c(at[d])}]"))
        if spec.count_pads:
            padded = [covered(window.kernel[d], s, window.dilations[d], -window.pads_begin[d],
                              size + window.pads_end[d]) for s in start]
            tables.append(table(f"kcnt{d}", [b - a for a, b in padded]))
            count = count * Load(f"kcnt{d}", at[d], "int64_t")
        elif full:
            count = count * window.kernel[d]
        else:
            count = count * (Load(f"khi{d}", at[d], "int64_t") - Load(f"klo{d}", at[d], "int64_t"))
    return tables, bounds, count


def blocked_window_pool(ctx: KernelContext, node: Node, window: Window, spec: Fold, ct: str, block: int,
                        buffer: str) -> list[str]:
    """`window_pool` over input 0 held channel-blocked in `buffer` ([N][C / block][*spatial][block]): per
    (image, block of channels, output row), each output pixel folds its taps (ranges from `tap_bounds`, so no
    checks) as whole vectors of `block` channels, one contiguous load each, and stores the vector of results
    through the epilogue (a blocked output takes it as one vector). A separable fold (a max) whose window is
    large folds each output row's window along the first axis into a stack row first (`separable_pays`)."""
    x, y = node.inputs[0], node.outputs[0]
    spatial, blocks = tuple(x.shape[2:]), x.shape[1] // block
    t, ow, lane = ctx.var("t"), ctx.var("o"), Var("pl", below=block)
    n, cb, *rows = unravel(t, (x.shape[0], blocks, *window.out[:-1]))
    at = (*rows, ow)
    taps = [ctx.var("kt") for _ in spatial]
    tables, bounds, count = tap_bounds(ctx, window, spatial, at, spec)
    pos = [o * s - p + k * dl for o, s, p, k, dl in zip(at, window.strides, window.pads_begin, taps,
                                                         window.dilations)]
    plane = (n * blocks + cb) * numel(spatial)
    acc, out_ct, staged = Load("acc", lane, ct), ctype(y.dtype), separable_pays(window, spatial, spec, block)
    if staged:
        rest = numel(spatial[1:])
        e = ctx.var("e")
        value = cast(Load(buffer, ((plane + pos[0] * rest + e) * block) + lane, ctype(x.dtype)), ct)
        row = Load("srow", e * block + lane, ct)
        fold_row = serial_for(e, rest, serial_for(lane, block, [f"srow[{ctx.c(e * block + lane)}] = "
                                                                f"{ctx.c(spec.step(row, value))};"], simd=True))
        prelude = [local_array(ct, "srow", rest * block)]
        prelude += serial_for(e, rest * block, [f"srow[{e.name}] = {ctx.c(spec.init)};"], simd=True)
        prelude += loops(taps[:1], bounds[:1], fold_row)
        pixel = sum((p * numel(spatial[d + 2:]) for d, p in enumerate(pos[1:])), Lit(0))
        value = cast(Load("srow", pixel * block + lane, ct), ct)
        taps, bounds = taps[1:], bounds[1:]
    else:
        prelude = []
        pixel = sum((p * numel(spatial[d + 1:]) for d, p in enumerate(pos)), Lit(0))
        value = cast(Load(buffer, ((plane + pixel) * block) + lane, ctype(x.dtype)), ct)
    body = loops(taps, bounds, serial_for(lane, block, [f"acc[{lane.name}] = {ctx.c(spec.step(acc, value))};"],
                                          simd=True))
    store = ctx.store(0, (n, cb * block + lane, *at), cast(spec.finish(acc, count), out_ct))
    fold = [local_array(ct, "acc", block), *serial_for(lane, block, [f"acc[{lane.name}] = {ctx.c(spec.init)};"],
                                                         simd=True)]
    fold += body + serial_for(lane, block, store, simd=True)
    task = prelude + serial_for(ow, window.out[-1], fold)
    note = [f"/* channel-blocked ({block}c): a vector of channels per tap{', first axis first' if staged else ''} */"]
    return note + tables + parallel_for(t, y.numel // (window.out[-1] * block), task, y.numel * numel(window.kernel))


def separable_pays(window: Window, spatial: Sequence[int], spec: Fold, block: int) -> bool:
    """Whether a separable fold of a 2-D window loads fewer vectors per output row folding its window along
    the first axis into a stack row first (the first axis's taps times the input row, then the second axis's
    taps per output) than every tap per output (YOLOv4's 13 x 13 and 9 x 9 pools; not 2 x 2 or 3 x 3 stride
    2). A 3-D window's stack row would be a whole plane per output row: not staged."""
    if not spec.separable or len(spatial) != 2 or window.kernel[0] < 2 or not fits_stack(spatial[1] * block):
        return False
    k0, k1, width, out = window.kernel[0], window.kernel[1], spatial[1], window.out[1]
    return k0 * width + k1 * out < k0 * k1 * out


def loops(taps: Sequence[Var], bounds: Sequence[tuple[str, str]], body: list[str]) -> list[str]:
    """`body` inside one loop per tap variable, the first outermost, each over its [lo, hi) bounds."""
    for k, (lo, hi) in zip(reversed(taps), reversed(bounds)):
        body = [f"for (int64_t {k.name} = {lo}; {k.name} < {hi}; ++{k.name}) {{", *indent(body), "}"]
    return body


def plane_pool(ctx: KernelContext, node: Node, window: Window, spec: Fold, ct: str) -> list[str] | None:
    """A pool whose padding may read as the fold's start value, on `plane_window`: per channel a padded,
    phased plane, every output folding its unrolled taps as contiguous runs (None where that does not fit)."""
    def combine(values: list[Expr], name: str) -> list[str]:
        """One statement per tap (a step's expression may use the running value more than once)."""
        acc = Var(name, ct)
        return [f"{ct} {name} = {ctx.c(spec.init)};"] + [f"{name} = {ctx.c(spec.step(acc, v))};" for v in values]

    fold = PlaneFold(combine, ctx.c(spec.init), finish=lambda m, value: spec.finish(value, Lit(1)))
    rank = len(window.kernel)
    if rank == 3 and window.kernel[0] == 1 and window.pads_begin[0] == window.pads_end[0] == 0:
        per_frame = frame_by_frame(ctx, node, window, ct, fold)
        if per_frame is not None:
            return per_frame
    if spec.separable and rank > 1 and window.kernel[0] > 1 and \
            direct_buffer(ctx, 0, node.inputs[0].shape, ct) is not None:
        staged = first_axis_first(ctx, node, window, spec, ct, fold)
        if staged is not None:
            return staged
    return plane_window(ctx, node, window, node.inputs[0].shape[1], 1, ct, fold)


def frame_by_frame(ctx: KernelContext, node: Node, window: Window, ct: str, fold: PlaneFold) -> list[str] | None:
    """A 3-D pool whose window stays within a frame (1 x k x k, no padding between frames) as a 2-D one over
    each output frame's input frame: one plane per (channel, frame), also where a plane of the whole volume
    would not fit the stack (a 1 x 2 x 2 pool over 64 channels of 16 x 112 x 112, 1 thread: 47.9 -> 6.3 ms, C3D's
    first pool: the generic kernel before)."""
    x = node.inputs[0]
    frames, stride, spatial = window.out[0], window.strides[0], tuple(x.shape[3:])
    if not fits_stack(numel(spatial)):
        return None
    planar = Window(window.kernel[1:], window.strides[1:], window.dilations[1:], window.pads_begin[1:],
                    window.pads_end[1:], window.out[1:])

    direct = direct_buffer(ctx, 0, x.shape, ct) is not None

    def source(n: Expr, g: Expr) -> tuple[list[str], Callable[[Index], Expr]]:
        """Plane g is input frame (g % frames) * stride of channel g / frames: read in place, or through the
        fused producers once into stack array `src`."""
        def frame(index: Index) -> Expr:
            return ctx.read(0, (n, floordiv(g, frames), mod(g, frames) * stride, *index[2:]))
        if direct:
            return [], frame
        return producer_plane(ctx, n, g, spatial, ct, vector_lanes(), frame), source_reader(spatial, ct)

    def place(index: Index) -> Index:
        n, g, *positions = index
        return (n, floordiv(g, frames), mod(g, frames), *positions)
    return plane_window(ctx, node, planar, x.shape[1] * frames, 1, ct, fold, spatial, source, place)


def first_axis_first(ctx: KernelContext, node: Node, window: Window, spec: Fold, ct: str, fold: PlaneFold
                     ) -> list[str] | None:
    """A separable pool (a max) in two stages: per channel, a stack array holds the fold of each output
    position's window along the first spatial axis (one vectorised pass over the input rows per tap on the
    input), and the window over the other axes then folds that array on `plane_window`. 1 thread, against
    the one-stage plane kernel: S3D's 3 x 3 x 3 pools (256 channels at 8 x 28 x 28) 5.7 -> 2.0 ms; YOLOv4's
    13 x 13 and 9 x 9 (512 at 13 x 13; too many taps to unroll, so the generic kernel before) 9.2 -> 0.43 and
    6.9 -> 0.22, its 5 x 5 0.27 -> 0.14; a 3 x 3 stride 2 at 112 x 112 0.25 -> 0.19. Only where the input is
    read as it is: through fused producers (a Concat) the first stage would read them tap by tap, where the
    one-stage kernel copies them once (2.0 -> 4.9 ms). None where the first stage's array would not fit."""
    x = node.inputs[0]
    extent, (k0, s0, d0, p0) = x.shape[2], (window.kernel[0], window.strides[0], window.dilations[0],
                                            window.pads_begin[0])
    rest, row = tuple(x.shape[3:]), numel(x.shape[3:])
    staged = (window.out[0], *rest)
    if not fits_stack(numel(staged)):
        return None
    planar = Window((1, *window.kernel[1:]), (1, *window.strides[1:]), (1, *window.dilations[1:]),
                    (0, *window.pads_begin[1:]), (0, *window.pads_end[1:]), window.out)

    def source(n: Expr, c: Expr) -> tuple[list[str], Callable[[Index], Expr]]:
        """`src[q][...]`: the fold of output position q's taps along the first axis that land on the input."""
        q, k, e = ctx.var("q"), ctx.var("k"), ctx.var("e")
        at = Var(f"{q.name}_at")
        acc = Load("src", q * row + e, ct)
        step = ctx.value("fv", cast(ctx.read(0, (n, c, at, *unravel(e, rest))), ct)) + \
            [f"src[{ctx.c(q * row + e)}] = {ctx.c(spec.step(acc, Var('fv', ct)))};"]
        per_tap = [f"const int64_t {at.name} = {q.name} * {s0} + {k.name} * {d0} - {p0};",
                   f"if ({at.name} < 0 || {at.name} >= {extent}) continue;"] + serial_for(e, row, step, simd=True)
        init = serial_for(e, row, [f"src[{ctx.c(q * row + e)}] = {ctx.c(spec.init)};"], simd=True)
        stage = serial_for(q, window.out[0], init + serial_for(k, k0, per_tap))
        stage = [local_array(ct, "src", numel(staged))] + stage
        return stage, source_reader(staged, ct)
    lines = plane_window(ctx, node, planar, x.shape[1], 1, ct, fold, staged, source)
    return None if lines is None else [FIRST_AXIS_NOTE] + lines


def global_pool(ctx: KernelContext, node: Node, spec: Fold, ct: str) -> list[str]:
    """Per (image, channel), fold its spatial plane (a vectorised sum for the average)."""
    x = node.inputs[0]
    shape = x.shape
    size, channels = numel(shape[2:]), shape[1]
    block = block_size()
    blocked = blocked_buffer(ctx, 0, shape, ctype(x.dtype), block) if block else None
    if blocked is not None:
        return blocked_global_pool(ctx, node, spec, ct, block, blocked)
    t, s = ctx.var("t"), ctx.var("s")
    buffer = direct_buffer(ctx, 0, shape, ctype(x.dtype))
    value = Load(buffer, t * size + s, ctype(x.dtype)) if buffer is not None else \
        ctx.read(0, (floordiv(t, channels), mod(t, channels), *unravel(s, shape[2:])))
    acc = Var("acc", ct)
    loop = serial_for(s, size, ctx.value("xv", cast(value, ct)) +
                      [f"acc = {ctx.c(spec.step(acc, Var('xv', ct)))};"])
    if spec.sums:
        loop = ["#pragma omp simd reduction(+:acc)"] + loop
    out = (floordiv(t, channels), mod(t, channels), *(Lit(0),) * (len(shape) - 2))
    task = [f"{ct} acc = {ctx.c(spec.init)};"] + loop + \
        ctx.store(0, out, cast(spec.finish(acc, Lit(size)), ctype(node.outputs[0].dtype)))
    return parallel_for(t, shape[0] * channels, task, x.numel)


def blocked_global_pool(ctx: KernelContext, node: Node, spec: Fold, ct: str, block: int, buffer: str) -> list[str]:
    """`global_pool` over input 0 held channel-blocked in `buffer`: per (image, block of channels), a vector of
    `block` accumulators folds the plane's pixels, each one contiguous vector of the input."""
    x = node.inputs[0]
    shape = x.shape
    size, blocks = numel(shape[2:]), shape[1] // block
    t, s, lane = ctx.var("t"), ctx.var("s"), Var("gl", below=block)
    acc = Load("acc", lane, ct)
    value = cast(Load(buffer, t * (size * block) + s * block + lane, ctype(x.dtype)), ct)
    step = serial_for(s, size, serial_for(lane, block, [f"acc[{lane.name}] = {ctx.c(spec.step(acc, value))};"],
                                          simd=True))
    out = (floordiv(t, blocks), mod(t, blocks) * block + lane, *(Lit(0),) * (len(shape) - 2))
    store = ctx.store(0, out, cast(spec.finish(acc, Lit(size)), ctype(node.outputs[0].dtype)))
    task = [local_array(ct, "acc", block), *serial_for(lane, block, [f"acc[{lane.name}] = {ctx.c(spec.init)};"])]
    task += step + serial_for(lane, block, store, simd=True)
    return parallel_for(t, shape[0] * blocks, task, x.numel)
