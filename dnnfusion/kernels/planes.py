"""Per-channel window templates on padded, stride-phased planes: `Phases` copies an input (fused producers
applied once, padding filled) so that every tap of a strided, dilated window reads a contiguous shifted run;
implicit-GEMM convolutions read such copies through the microkernels (conv.py), and `plane_window` computes
any window that treats each channel on its own (depthwise convolutions, max and Lp pools) from a stack plane
per channel, taps unrolled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..ir.graph import Node
from ..kir.expr import Expr, Index, Lit, Load, Var, cast, ctype, floordiv, linear, mod, numel, strides, unravel
from ..kir.kernel import KernelContext, fits_stack, indent, local_array, overlapped_for, parallel_for, serial_for
from . import microkernel
from .gemm import direct_buffer
from .window import Window, covered

PRODUCER_PLANE_MAX = 16384  # elements of a channel plane up to which fused producers run over it in one flat pass
UNROLLED_TAPS = 49         # taps of a window from which a plane kernel no longer unrolls them
GRID_RUN = 1024            # outputs a plane kernel keeps in its grid between the taps and the epilogue
PLANE_ROWS = (4, 2)        # output rows a plane kernel computes together, sharing the plane rows they read: the
                           # most whose distinct loads and weights fit the vector registers (else one)
ALIAS_FLOATS = 1024        # 4 KiB: loads from an address that many bytes from a pending store wait for it


class Phases:
    """The zero-padded input split into stride phases: per image and channel a block of prod(strides) phases,
    each the padded positions p with p % stride == phase along every axis, at p // stride. Output position o
    then reads tap k at phase (k * dilation) % stride, index o + (k * dilation) // stride: a shift that is the
    same for every output, so that a tap's inputs for a run of outputs are contiguous. With `channels` given,
    the channels are interleaved by rows instead ([phases of the outer axes][their positions][channel][phase
    of the last axis][position along it]): a channel's row then lies next to the other channels' same row, so
    that a run of outputs' taps across all channels spans a few pages rather than one page per channel."""

    def __init__(self, window: Window, spatial: tuple[int, ...], align: int = 1, channels: int = 0) -> None:
        self.window, self.spatial = window, spatial
        padded = [(o - 1) * s + e for o, s, e in zip(window.out, window.strides, window.extent)]
        extent = [-(-p // s) for p, s in zip(padded, window.strides)]
        extent[-1] = -(-extent[-1] // align) * align        # rows of whole vectors where asked (zeros beyond)
        self.extent = tuple(extent)
        self.phase_size = numel(self.extent)
        self.block = numel(window.strides) * self.phase_size
        if channels:
            row = window.strides[-1] * self.extent[-1]        # one channel's row: its last-axis phases
            outer = [st * channels * row for st in strides(self.extent[:-1])]
            self.steps = (*outer, 1)
            self.phase_steps = (*(st * numel(self.extent[:-1]) * channels * row
                                  for st in strides(window.strides[:-1])), self.extent[-1])
            self.channel_step = row
        else:
            self.steps = tuple(strides(self.extent))
            self.phase_steps = tuple(st * self.phase_size for st in strides(window.strides))
            self.channel_step = self.block
        self.offsets = []
        for tap in np.ndindex(*window.kernel):
            shift = [k * d for k, d in zip(tap, window.dilations)]
            self.offsets.append(sum(h % s * st for h, s, st in zip(shift, window.strides, self.phase_steps)) +
                                sum(h // s * st for h, s, st in zip(shift, window.strides, self.steps)))

    def channel_start(self, n: Expr, c: Expr, channels: int) -> Expr:
        """The offset of image n, channel c's first element (of `channels` per image)."""
        return n * (channels * self.block) + c * self.channel_step

    def copy(self, ctx: KernelContext, shape: Sequence[int], ct: str, base: str) -> list[str]:
        """Statements that fill `base` with the phased copy of input 0 (through its fused producers), every
        image and channel, one parallel loop over the padded rows of the last axis."""
        images, channels = shape[0], shape[1]
        row = ctx.var("row")
        n, c, padded_row = unravel(row, (images, channels, self.rows))
        fill = self.fill_rows(ctx, n, c, padded_row, ct, base, self.channel_start(n, c, channels))
        count = images * channels * self.rows
        return parallel_for(row, count, fill, count * self.extent[-1] * self.window.strides[-1])

    @property
    def rows(self) -> int:
        """Padded rows of the last axis in one image and channel's block: the phases of the other axes times
        their extents (each padded row fills one row of every phase of the last axis)."""
        return numel(self.window.strides[:-1]) * numel(self.extent[:-1])

    def fill_rows(self, ctx: KernelContext, n: Expr, c: Expr, padded_row: Expr, ct: str, base: str,
                  start: Expr, fill_value: str = "0", read: Callable[[Index], Expr] | None = None,
                  origin: Sequence[Expr] = ()) -> list[str]:
        """Statements that write padded row `padded_row` of image n, channel c into `base` (its block at
        element `start`): one row in each phase of the last axis, from one pass along the input row (the
        phases' elements of a position are neighbours there), `fill_value` (C) where the padding is. The
        input's element at a full index comes from `read` (default: input 0 through its fused producers).
        With `origin`, the window's outputs along the outer axes start there (a band of output rows)."""
        window, spatial, extent = self.window, self.spatial, self.extent
        last, stride, pad = len(spatial) - 1, window.strides[-1], window.pads_begin[-1]
        rest = unravel(padded_row, (*window.strides[:-1], *extent[:-1]))
        phase, outer = rest[:last], rest[last:]
        starts = tuple(origin) or (Lit(0),) * last
        pos = [(q + o) * s + h - b for q, o, s, h, b in zip(outer, starts, window.strides, phase, window.pads_begin)]
        row_start = start + sum((h * st for h, st in zip(phase, self.phase_steps[:-1])), Lit(0)) + \
            sum((q * st for q, st in zip(outer, self.steps[:-1])), Lit(0))
        q = ctx.var("q")
        inside = [covered(extent[-1], h - pad, stride, 0, spatial[-1]) for h in range(stride)]
        lo, hi = max(a for a, _ in inside), min(b for _, b in inside)

        def put(h: int) -> str:
            return f"{base}[{ctx.c(row_start + h * self.phase_steps[-1] + q)}]"

        def element(h: int) -> Expr:
            index = (n, c, *pos, q * stride + h - pad)
            return read(index) if read is not None else cast(ctx.read(0, index), ct)

        def edge(first: str, stop: str) -> list[str]:
            body = []
            for h in range(stride):
                at = ctx.c(q * stride + h - pad)
                value = ctx.value(f"pe{h}", element(h))
                body += [f"if ({at} >= 0 && {at} < {spatial[-1]}) {{", *indent(value + [f"{put(h)} = pe{h};"]),
                         f"}} else {put(h)} = {fill_value};"]
            return [f"for (int64_t {q.name} = {first}; {q.name} < {stop}; ++{q.name}) {{", *indent(body), "}"]

        middle = []
        for h in range(stride):
            middle += ctx.value(f"pv{h}", element(h)) + [f"{put(h)} = pv{h};"]
        fill = edge("0", str(lo)) if lo < hi else edge("0", str(extent[-1]))
        if lo < hi:
            fill += overlapped_for(q, lo, hi, vector_lanes(), middle) + edge(str(hi), str(extent[-1]))
        checks = [f"{ctx.c(p)} < 0 || {ctx.c(p)} >= {size}" for p, size in zip(pos, spatial)]
        if checks:
            clear = [f"for (int64_t {q.name} = 0; {q.name} < {extent[-1]}; ++{q.name}) {{",
                     *(f"  {put(h)} = {fill_value};" for h in range(stride)), "}"]
            fill = [f"if ({' || '.join(checks)}) {{", *indent(clear), "} else {", *indent(fill), "}"]
        return fill


@dataclass(frozen=True)
class PlaneFold:
    """What `plane_window` computes per output from its window's taps: `prelude(m)` the statements run once
    per output channel m (weights into registers), `combine(values, name)` the statements that declare C
    variable `name` as the output from its taps' values (in np.ndindex(kernel) order), `finish(m, value)` what is stored, and `pad`, the value (C) the taps that fall
    outside the input read: one that leaves the result unchanged (0 for weighted sums, the lowest value for
    a max)."""

    combine: Callable[[list[Expr], str], list[str]]
    pad: str = "0"
    prelude: Callable[[Expr], list[str]] = lambda m: []
    finish: Callable[[Expr, Expr], Expr] = lambda m, value: value


def plane_window(ctx: KernelContext, node: Node, window: Window, planes: int, per_plane: int, ct: str,
                 fold: PlaneFold, spatial: tuple[int, ...] | None = None,
                 source: Callable[[Expr, Expr], tuple[list[str], Callable[[Index], Expr]]] | None = None,
                 place: Callable[[Index], Index] | None = None) -> list[str] | None:
    """A window over each input channel on its own (depthwise convolutions, pools): per image and channel, the
    channel's padded stride phases are copied into a stack plane (fused producers applied, `fold.pad` in the
    padding). Output rows are then computed `plane_rows` at a time along the plane's padded width (rounded
    up to whole vectors), taps unrolled: each tap is a contiguous shifted run of the plane, and a plane row
    loaded once serves every output row of the block that needs it. The fused epilogue stores the valid
    columns. `per_plane` output channels come from each input channel. With `spatial` and `source`, the planes
    are those of another array of that extent: `source(n, c)` gives the statements that prepare its channel c
    of image n (a first stage of the window into a stack array) and the reader of its element at a full
    index (there, or one frame of a volume in place), and `place` maps the index of an
    output in plane terms (image, plane, *positions) to the output's own. None where the plane would not fit
    the stack or the taps are too many to unroll."""
    x, y = node.inputs[0], node.outputs[0]
    if numel(window.kernel) > UNROLLED_TAPS:
        return None
    images, out, kernel, rank = x.shape[0], window.out, window.kernel, len(window.kernel)
    spatial = tuple(x.shape[2:]) if spatial is None else spatial
    phases = Phases(window, spatial)
    wq, lines = phases.extent[-1], out[-2] if rank > 1 else 1
    lanes = vector_lanes()
    wv = -(-out[-1] // lanes) * lanes
    farthest = sum((o - 1) * st for o, st in zip(out[:-2], phases.steps)) + (lines - 1) * wq + wv + max(phases.offsets)
    size = max(phases.block, farthest)
    chunk = max(1, min(lines, GRID_RUN // wv))
    grid_at = -(-size // ALIAS_FLOATS) * ALIAS_FLOATS + ALIAS_FLOATS // 2   # half a page from the plane's start
    if not fits_stack(grid_at + chunk * wv):
        return None
    task, j, ro, hc, rb, c, ow, rr, z = (ctx.var(h) for h in ("t", "j", "ro", "hc", "rb", "c", "o", "rr", "z"))
    n, g = floordiv(task, planes), mod(task, planes)
    padded_row = ctx.var("pr")
    body = [local_array(ct, "plane", grid_at + chunk * wv), f"{ct}* const grid = plane + {grid_at};"]
    read = None
    if source is not None:
        prepared, read = source(n, g)
        body += prepared
    elif direct_buffer(ctx, 0, x.shape, ct) is None and numel(spatial) <= PRODUCER_PLANE_MAX:
        body += producer_plane(ctx, n, g, spatial, ct, lanes)
        read = source_reader(spatial, ct)
    fill = phases.fill_rows(ctx, n, g, padded_row, ct, "plane", Lit(0), fold.pad, read)
    body += serial_for(padded_row, phases.rows, fill)
    body += [f"for (int64_t {z.name} = {phases.block}; {z.name} < {size}; ++{z.name}) plane[{z.name}] = {fold.pad};"]
    m = g * per_plane + j
    outer = unravel(ro, out[:-2])
    start = ctx.var("at")
    first = sum((o * st for o, st in zip(outer, phases.steps)), Lit(0)) + hc * (chunk * wq)

    def rows_of(count: int) -> list[str]:
        """A vectorised loop over the padded width computing `count` output rows from shared plane loads."""
        shifts = sorted({k * wq + offset for k in range(count) for offset in phases.offsets})
        loads = [f"const {ct} px{d} = plane[{start.name} + {rb.name} * {wq} + {c.name} + {d}];" for d in shifts]
        results = []
        for k in range(count):
            results += fold.combine([Var(f"px{k * wq + offset}", ct) for offset in phases.offsets], f"out{k}")
            results.append(f"grid[({rb.name} + {k}) * {wv} + {c.name}] = out{k};")
        return ["#pragma omp simd", f"for (int64_t {c.name} = 0; {c.name} < {wv}; ++{c.name}) {{",
                *indent(loads + results), "}"]

    step = plane_rows(phases.offsets, wq, vector_registers())
    here = ctx.var("rows")
    run = [f"const int64_t {here.name} = {hc.name} * {chunk} + {chunk} <= {lines} ? {chunk} : "
           f"{lines} - {hc.name} * {chunk};", f"const int64_t {start.name} = {ctx.c(first)};",
           f"int64_t {rb.name} = 0;",
           f"for (; {rb.name} + {step} <= {here.name}; {rb.name} += {step}) {{",
           *indent(rows_of(step)), "}",
           f"for (; {rb.name} < {here.name}; ++{rb.name}) {{", *indent(rows_of(1)), "}"]
    place = place or (lambda index: index)
    if rank > 1 and lines % chunk == 0 and out[-1] % lanes:
        run += flat_epilogue(ctx, node, fold, m, n, outer, hc * chunk, chunk, wv, out[-1], ct, lanes, place)
    else:
        row = [hc * chunk + rr] if rank > 1 else []
        value = fold.finish(m, Load("grid", rr * wv + ow, ct))
        store = ctx.store(0, place((n, m, *outer, *row, ow)), cast(value, ctype(y.dtype)))
        run += [f"for (int64_t {rr.name} = 0; {rr.name} < {here.name}; ++{rr.name}) {{",
                *indent(overlapped_for(ow, 0, out[-1], lanes, store)), "}"]
    chunks = serial_for(ro, numel(out[:-2]), serial_for(hc, -(-lines // chunk), run))
    body += serial_for(j, per_plane, fold.prelude(m) + chunks)
    return parallel_for(task, images * planes, body, y.numel * numel(kernel))


def plane_rows(offsets: Sequence[int], wq: int, registers: int) -> int:
    """Output rows a plane kernel computes together: the most of PLANE_ROWS whose distinct plane loads (taps
    shifted by whole rows of width `wq`) plus the taps' weights fit `registers` vector registers, else one.
    Measured on AVX-512 (32 registers), 1 thread: a 3x3 runs best 4 rows at a time (18 loads + 9 weights), a
    5x5 one at a time (4 rows spill: 0.222 -> 0.188 ms on 240 channels of 28 x 28), a 3x3 of stride 2 two at a
    time (0.31 -> 0.24 ms, 96 channels of 112 x 112). On AVX2 (16 registers, AMD EPYC) every window takes one
    row, which the rule gives: against 4 rows, 96 channels 3x3 stride 2 at 112 x 112 0.534 -> 0.480 ms, 144
    channels 5x5 stride 2 at 56 x 56 0.371 -> 0.351, 672 channels 5x5 at 14 x 14 0.329 -> 0.293."""
    for count in PLANE_ROWS:
        if len({k * wq + o for k in range(count) for o in offsets}) + len(offsets) <= registers:
            return count
    return 1


def producer_plane(ctx: KernelContext, n: Expr, c: Expr, spatial: tuple[int, ...], ct: str, lanes: int,
                   read: Callable[[Index], Expr] | None = None) -> list[str]:
    """Statements that declare stack array `src` holding channel c of image n of input 0 through its fused
    producers, in one flat vector loop: applied while copying short rows into phases, a producer (a SiLU)
    would run mostly in scalar remainders. `read` gives the element at a full index (n, c, *position)
    instead, where the plane is not a channel of the input as it is (a frame of a volume)."""
    e = ctx.var("e")
    index = (n, c, *unravel(e, spatial))
    value = cast(ctx.read(0, index) if read is None else read(index), ct)
    return [local_array(ct, "src", numel(spatial))] + \
        overlapped_for(e, 0, numel(spatial), lanes, ctx.value("sv", value) + [f"src[{e.name}] = sv;"])


def source_reader(spatial: tuple[int, ...], ct: str) -> Callable[[Index], Expr]:
    """The element of stack array `src` (a plane of extent `spatial`, as `producer_plane` fills it) at a
    full index (image, channel, *position)."""
    return lambda index: Load("src", linear(index[2:], spatial), ct)


def flat_epilogue(ctx: KernelContext, node: Node, fold: PlaneFold, m: Expr, n: Expr, outer: tuple[Expr, ...],
                  first_row: Expr, rows: int, wv: int, width: int, ct: str, lanes: int,
                  place: Callable[[Index], Index]) -> list[str]:
    """The fused epilogue over `rows` whole output rows from `first_row` as one flat vector loop (their
    outputs are contiguous): the grid's rows (`wv` apart) are first packed `width` apart, so that rows
    narrower than a vector (7 x 7 planes) do not run the epilogue in scalar remainders. `place` maps an
    output's index in plane terms to its own."""
    y = node.outputs[0]
    r, o, f = ctx.var("rr"), ctx.var("o"), ctx.var("f")
    pack = serial_for(r, rows, [f"for (int64_t {o.name} = 0; {o.name} < {width}; ++{o.name}) "
                                f"flat[{r.name} * {width} + {o.name}] = grid[{r.name} * {wv} + {o.name}];"])
    row, col = unravel(first_row * width + f, (y.shape[-2], width))   # folds back into a flat offset
    value = fold.finish(m, Load("flat", f, ct))
    store = ctx.store(0, place((n, m, *outer, row, col)), cast(value, ctype(y.dtype)))
    return [local_array(ct, "flat", rows * width)] + pack + overlapped_for(f, 0, rows * width, lanes, store)


def vector_lanes() -> int:
    """float32 lanes of this CPU's vectors (8 where it has no microkernel ISA)."""
    isa = microkernel.target_isa()
    return isa.lanes if isa is not None else 8


def vector_registers() -> int:
    """Vector registers of this CPU's microkernel ISA (16, as AVX2 and SSE have, where it has none)."""
    isa = microkernel.target_isa()
    return isa.registers if isa is not None else 16


def balanced_sum(terms: list[Expr]) -> Expr:
    """The sum of `terms` as a balanced tree: independent additions the CPU overlaps, where a left-to-right
    chain would wait out every multiply-add's latency in turn."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def linear_offset(index: Sequence[int], shape: Sequence[int]) -> int:
    """The row-major offset of a constant multi-index."""
    return int(sum(i * s for i, s in zip(index, strides(shape))))
