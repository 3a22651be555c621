"""3 x 3 stride-1 convolutions by Winograd's minimal filtering F(m x m, 3 x 3) (winograd_math.py): the input's
overlapping (m + 2)^2 tiles are transformed (BT d B) into alpha^2 matrices of channels x tiles, one batch of
alpha^2 products with the filters transformed at compile time (G g GT, packed for the microkernels) gives
the transform domain's outputs, and the output transform (AT M A) hands each output row to the fused
epilogue. The input transform reads the block's producers through the prologue (padding is never
materialised beyond a stack row block per tile row), so everything that fuses into a direct convolution
fuses here too. A multiply count m^2 * 9 / alpha^2 below the direct one (4x at m = 4) buys extra memory
passes over the transformed tiles and float32 rounding that grows with m (docs/WINOGRAD.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..ir.graph import Node
from ..kir.expr import Expr, Index, Lit, Load, Var, broadcast_index, cast, ctype, floordiv, linear, mod, numel
from ..kir.kernel import KernelContext, fits_stack, indent, local_array, overlapped_for, parallel_for, serial_for
from . import microkernel
from ..machine import l2_bytes, l3_bytes
from .conv import implicit_tile_costs
from .gemm import Operand, Tiling, direct_buffer, microkernel_tasks, packed_a
from .planes import vector_lanes
from .window import Window
from .winograd_math import matrices, transform_filters

TILE_SIZES = (4, 2)          # output tile sizes m tried: F(6x6, 3x3) rounds off more than float32's 1e-4 of the
                             # output range from a few hundred channels and ran slower here (docs/WINOGRAD.md)
MIN_CHANNELS = 16            # input and output channels (per group) from which the transforms pay for themselves
MAX_GROUPS = 8               # groups a 2-D convolution may have (one product per group per xi)
# The estimate that picks a method, in the cycles of the microkernels' tile costs (Isa.tile_shape), fitted to
# single convolutions at 1 thread on AVX-512 (VGG, U-Net, YOLO, SSD, ResNet shapes; 7 x 7 to 256 x 256):
CACHED_CYCLES = 2.5          # per transformed element (input and output side) of three loops over the image
                             # whose transformed tiles stay within STREAMED_BYTES...
STREAMED_CYCLES = 6.0        # ...and beyond it, where they stream through memory
STREAMED_BYTES = 16 << 20
FUSED_CYCLES = 4.0           # per transformed element when the steps run fused per chunk of tile rows
BYTES_PER_CYCLE = 4.0        # filters (direct or transformed) streamed from memory per cycle, once per run
L3_BYTES_PER_CYCLE = 16.0    # filters read again from L3 per chunk of the fused form
NOTE = "/* Winograd F({m}x{m}, 3x3){how}: input tiles transformed, {a} products in the transform domain, " \
       "output transform and epilogue */"


@dataclass(frozen=True)
class Geometry:
    """Where a Winograd convolution's tiles lie: output tiles of m x m over the output (ty x tx of them), the
    input rows and columns each tile row reads (alpha = m + 2 rows, `width` columns from -pad), and the tile
    rows grouped into chunks of `chunk_rows`, each chunk's tiles the columns of its own products (padded to
    whole column tiles: `columns`). The transformed tiles lie [image][chunk][xi][channel][column]."""

    m: int
    out: tuple[int, int]
    spatial: tuple[int, int]
    pads: tuple[int, int]
    columns_multiple: int
    chunk_rows: int
    frames: tuple[int, int] = (1, 1)     # a 3 x 3 x 3 convolution's input and output frames (1, 1: 2-D)
    frame_pad: int = 0                   # ...and the padding before its first frame
    folded: int = 0                      # a 1 x 3 x 3 convolution's frames, each an image of a 2-D one

    @property
    def alpha(self) -> int:
        return self.m + 2

    @property
    def tiles(self) -> tuple[int, int]:
        return -(-self.out[0] // self.m), -(-self.out[1] // self.m)

    @property
    def count(self) -> int:
        return numel(self.tiles)

    @property
    def chunks(self) -> int:
        return -(-self.tiles[0] // self.chunk_rows)

    @property
    def columns(self) -> int:
        """A chunk's tiles padded to whole column tiles, and off a multiple of 1 KiB so that B's rows spread
        over cache sets."""
        w = self.columns_multiple
        padded = -(-self.chunk_rows * self.tiles[1] // w) * w
        return padded + w if padded * 4 % 1024 == 0 else padded

    @property
    def width(self) -> int:
        """Input columns a tile row reads, from column -pad."""
        return self.tiles[1] * self.m + 2

    @property
    def span(self) -> int:
        """A stack row block's length: `width` padded to whole tiles plus one, so that every phase of the
        columns (column mod m) has tiles + 1 entries."""
        return (self.tiles[1] + 1) * self.m

    @property
    def temporal(self) -> bool:
        """Whether this is a 3 x 3 x 3 convolution: 2-D Winograd over each frame, its 3 temporal taps summed in
        the products (their depth runs over (tap, channel))."""
        return self.frames != (1, 1) or self.frame_pad > 0

    def at(self, n: Expr, c: Expr, t: Expr | None, row: Expr, col: Expr) -> Index:
        """The full index of image n's channel c at (row, col): in frame t of a 3 x 3 x 3 convolution, in
        frame n % folded of image n / folded where a 1 x 3 x 3 one's frames are folded into the images."""
        if t is not None:
            return (n, c, t, row, col)
        if self.folded:
            return (floordiv(n, self.folded), c, mod(n, self.folded), row, col)
        return (n, c, row, col)

    def slot(self, n: str, ty: str, planes: int, frames: int = 1) -> str:
        """C offset of tile row `ty`'s first tile in channel 0 of frame 0 of xi 0 of image n, for `planes`
        channels and `frames` frames per xi."""
        return f"(({n} * {self.chunks} + {ty} / {self.chunk_rows}) * " \
               f"{self.alpha ** 2 * frames * planes * self.columns} + {ty} % {self.chunk_rows} * {self.tiles[1]})"


@dataclass(frozen=True)
class Method:
    """How a Winograd convolution runs: tile size m, and whether the three steps run fused per chunk of tile
    rows (one parallel loop; the chunk's transformed tiles stay in cache) or as three parallel loops over
    the whole image (large filters that would not stay in cache beside a chunk)."""

    m: int
    chunk_rows: int
    fused: bool

    temporal: bool = False     # 3 x 3 x 3: per frame, the temporal taps summed in the products
    per_frame: bool = False    # 1 x 3 x 3: each frame an image of a 2-D convolution

    def __str__(self) -> str:
        fused = f", fused per {self.chunk_rows} tile rows" if self.fused else ""
        kernel = "3x3x3 as 3 taps of 3x3" if self.temporal else "1x3x3 per frame" if self.per_frame else "3x3"
        return f"Winograd F({self.m}x{self.m}, {kernel}){fused}"


def per_frame(window: Window) -> bool:
    """Whether a 3-D convolution's window stays within a frame (1 x k x k, no padding between frames): each
    frame is then an image of a 2-D convolution (S3D's separable spatial convolutions)."""
    return len(window.kernel) == 3 and window.kernel[0] == 1 and window.pads_begin[0] == window.pads_end[0] == 0


def applies(node: Node, window: Window, group: int, ct: str) -> bool:
    """Whether Winograd can run this convolution here: 2-D 3 x 3, 3-D 1 x 3 x 3 (per frame, as 2-D) or 3-D
    3 x 3 x 3 (at most one frame of padding on each side), stride and dilation 1, at least MIN_CHANNELS input
    and output channels per group (2-D and per frame: up to MAX_GROUPS groups, 3 x 3 x 3: one), float32 with
    constant weights, on a CPU with microkernels."""
    x, w = node.inputs[0], node.inputs[1]
    rank = len(window.kernel)
    planar = rank == 2 or per_frame(window)
    temporal = rank == 3 and window.kernel[0] == 3 and max(window.pads_begin[0], window.pads_end[0]) <= 1
    return microkernel.target_isa() is not None and ct == "float" and (planar or temporal) and \
        window.kernel[-2:] == (3, 3) and window.strides == (1,) * rank and window.dilations == (1,) * rank and \
        (group == 1 or planar and group <= MAX_GROUPS) and w.const is not None and \
        x.shape[1] // group >= MIN_CHANNELS and w.shape[0] // group >= MIN_CHANNELS


def geometry(isa: microkernel.Isa, filters: int, m: int, out: tuple[int, int], chunk_rows: int,
             spatial: tuple[int, int] = (0, 0), pads: tuple[int, int] = (0, 0), frames: tuple[int, int] = (1, 1),
             frame_pad: int = 0, folded: int = 0) -> Geometry:
    """The Geometry whose chunks' columns are padded to the column tiles the products over them use."""
    tiles_across = -(-out[1] // m)
    vectors = isa.tile_shape(filters, chunk_rows * tiles_across)[1]
    return Geometry(m, out, spatial, pads, vectors * isa.lanes, chunk_rows, frames, frame_pad, folded)


def frame_taps(frames: int, frame_pad: int, t: int) -> tuple[int, int]:
    """(first, count) of the temporal taps of output frame t that land on input frames (not in the padding)."""
    first = max(0, frame_pad - t)
    return first, min(3, frames + frame_pad - t) - first


def costs(node: Node, window: Window) -> dict[Method | None, float]:
    """Estimated cycles of the direct implicit GEMM (key None) and of each Winograd method tried: the products'
    tile costs (padding tiles and columns included) plus the filters streamed once, and for Winograd a cost
    per transformed element (CACHED_CYCLES, STREAMED_CYCLES or FUSED_CYCLES). The fused form (2-D only: a
    3-D convolution's chunk holds every frame) takes chunks of tile rows that fit in L2 beside the filters
    (or in half of it, where the filters take the other half or more), and then pays for reading the filters
    again per chunk, from L3 (L3_BYTES_PER_CYCLE) where they fit in half of it, else from memory. Per image:
    every form scales alike with the batch (and a 1 x 3 x 3 convolution's cost with its frames: per frame)."""
    isa = microkernel.target_isa()
    assert isa is not None
    x = node.inputs[0]
    channels, filters = x.shape[1], node.inputs[1].shape[0]
    groups = int(node.attr("group", 1))
    cg, fg = channels // groups, filters // groups
    folded = per_frame(window)
    temporal = len(window.kernel) == 3 and not folded
    frames = (x.shape[2], window.out[0]) if temporal else (1, 1)
    taps = 3 if temporal else 1
    summed = sum(frame_taps(frames[0], window.pads_begin[0], t)[1] for t in range(frames[1])) if temporal else 1
    height, width = window.out[-2:]
    direct = min(implicit_tile_costs(isa, window.out[-2:] if folded else window.out, height * (width + 2), fg,
                                     9 * taps * cg))
    estimates: dict[Method | None, float] = {
        None: groups * direct * 9 * taps * cg + 9 * taps * cg * filters * 4 / BYTES_PER_CYCLE}
    for m in TILE_SIZES:
        alpha2 = (m + 2) ** 2
        tiles = -(-height // m), -(-width // m)
        elements = alpha2 * numel(tiles) * (channels * frames[0] + filters * frames[1])
        filter_bytes = alpha2 * taps * cg * filters * 4
        forms = [(tiles[0], CACHED_CYCLES if elements * 4 <= STREAMED_BYTES else STREAMED_CYCLES, 0.0)]
        if tiles[0] > 1 and not temporal:
            budget = l2_bytes() - filter_bytes if filter_bytes <= l2_bytes() / 2 else l2_bytes() / 2
            rows = int(min(tiles[0], max(1, budget // (alpha2 * 4 * (channels + filters) * tiles[1]))))
            chunks = -(-tiles[0] // rows)
            rereads = 0.0 if filter_bytes <= l2_bytes() / 2 else chunks * filter_bytes / \
                (L3_BYTES_PER_CYCLE if filter_bytes <= l3_bytes() / 2 else BYTES_PER_CYCLE)
            forms += [(rows, FUSED_CYCLES, rereads)] if rows < tiles[0] else []
        for rows, per_element, rereads in forms:
            g = geometry(isa, fg, m, (height, width), rows)
            estimates[Method(m, rows, rows < tiles[0], temporal, folded)] = \
                groups * alpha2 * g.chunks * isa.tile_shape(fg, g.columns)[2] * cg * summed + \
                per_element * elements + filter_bytes / BYTES_PER_CYCLE + rereads
    return estimates


def method(node: Node, window: Window) -> Method | None:
    """The Winograd method whose estimated cycles (`costs`) beat the direct implicit GEMM's by most, or None
    where none does."""
    estimates = costs(node, window)
    return min(estimates, key=lambda how: (estimates[how], how is not None))


def coefficient_sum(coefficients: Sequence[float], terms: Sequence[str]) -> str:
    """C text of sum over k of coefficients[k] * terms[k], skipping zeros, a term of coefficient 1 first where
    there is one, so that each scaled term after it is one fused multiply-add; every coefficient of the
    transforms used is exact in float32 (dyadic rationals)."""
    pairs = [(float(c), t) for c, t in zip(coefficients, terms) if c != 0]
    pairs.sort(key=lambda pair: pair[0] != 1)
    parts = []
    for c, t in pairs:
        assert float(np.float32(c)) == c, f"coefficient {c} is not exact in float32"
        sign = "-" if c < 0 else "+"
        size = abs(c)
        parts.append(f"{sign} {t}" if size == 1 else f"{sign} {size!r}f * {t}")
    if not parts:
        return "0.0f"
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def _signed_pair(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether vectors a and b agree up to sign entry by entry, in both ways (a + b and a - b both nonzero)."""
    return bool(np.all((a == b) | (a == -b))) and bool(np.any(a + b)) and bool(np.any(a - b))


def transform_statements(matrix: np.ndarray, inputs: Sequence[str], assign: Callable[[int, str], str],
                         prefix: str) -> list[str]:
    """C statements computing out[r] = sum over k of matrix[r, k] * inputs[k] (assign(r, value) gives the
    statement storing row r), with fewer operations than one sum per row: inputs whose columns agree up to
    sign are first added and subtracted (AT's points +-p), and rows that agree up to sign share their even
    and odd halves, e + o and e - o (BT's). Temporaries are `const float` named from `prefix`."""
    matrix = np.array(matrix, np.float64)
    terms, lines = list(inputs), []
    for j in range(matrix.shape[1]):
        for k in range(j + 1, matrix.shape[1]):
            if not (terms[j] and terms[k] and _signed_pair(matrix[:, j], matrix[:, k])):
                continue
            same = matrix[:, j] == matrix[:, k]
            lines += [f"const float {prefix}s{j} = {terms[j]} + {terms[k]};",
                      f"const float {prefix}d{j} = {terms[j]} - {terms[k]};"]
            column = matrix[:, j].copy()
            matrix[:, j], matrix[:, k] = np.where(same, column, 0), np.where(same, 0, column)
            terms[j], terms[k] = f"{prefix}s{j}", f"{prefix}d{j}"
    done: set[int] = set()
    for r in range(matrix.shape[0]):
        if r in done:
            continue
        partner = next((q for q in range(r + 1, matrix.shape[0]) if q not in done and
                        _signed_pair(matrix[r], matrix[q])), None)
        if partner is None:
            lines.append(assign(r, coefficient_sum(matrix[r], terms)))
            continue
        same = matrix[r] == matrix[partner]
        even, odd = np.where(same, matrix[r], 0), np.where(same, 0, matrix[r])
        lines += [f"const float {prefix}e{r} = {coefficient_sum(even, terms)};",
                  f"const float {prefix}o{r} = {coefficient_sum(odd, terms)};",
                  assign(r, f"{prefix}e{r} + {prefix}o{r}"), assign(partner, f"{prefix}e{r} - {prefix}o{r}")]
        done |= {r, partner}
    return lines


def conv_winograd(ctx: KernelContext, node: Node, window: Window, group: int, ct: str,
                  how: Method) -> list[str] | None:
    """The convolution as Winograd F(m x m, 3 x 3): input transform, the alpha^2 products on the microkernels,
    output transform with the epilogue; as three parallel loops, or fused per chunk of tile rows in one. For a
    convolution that `applies`; None where its weights are not read as they are or a stack row block would not
    fit."""
    isa = microkernel.target_isa()
    assert isa is not None
    if direct_buffer(ctx, 1, node.inputs[1].shape, ct) is None:
        return None
    x, w = node.inputs[0], node.inputs[1]
    folded = x.shape[2] if per_frame(window) else 0
    images, channels, filters = x.shape[0] * max(folded, 1), x.shape[1], w.shape[0]
    out, temporal = tuple(window.out[-2:]), len(window.kernel) == 3 and not folded
    assert not (how.fused and temporal), "a 3-D convolution's chunk holds every frame: three loops only"
    frames = (x.shape[2], window.out[0]) if temporal else (1, 1)
    chunk_rows = how.chunk_rows if how.fused else -(-out[0] // how.m)
    g = geometry(isa, filters // group, how.m, out, chunk_rows, tuple(x.shape[-2:]), tuple(window.pads_begin[-2:]),
                 frames, window.pads_begin[0] if temporal else 0, folded)
    alpha2 = g.alpha ** 2
    if not fits_stack(2 * g.alpha * g.span) or not fits_stack(g.m * g.width):
        return None
    rows, vectors, _ = isa.tile_shape(filters // group, g.columns)
    tiles_in = ctx.scratch(ct, images * g.chunks * alpha2 * frames[0] * channels * g.columns)
    tiles_out = ctx.scratch(ct, images * g.chunks * alpha2 * frames[1] * filters * g.columns)
    task = ctx.var("t")
    a_lines, tiling = products(ctx, node, g, (rows, vectors), tiles_in, tiles_out, task if how.fused else None,
                               group)
    if (how.fused or temporal) and tiling.splits_depth():
        return None
    lines = [NOTE.format(m=g.m, a=alpha2, how=", fused per chunk of tile rows" if how.fused else "")] + a_lines
    if not how.fused:
        n, c, t, ty = (Var(f"{task.name}_{h}") for h in ("n", "c", "f", "ty"))
        count = images * channels * frames[0] * g.tiles[0]
        body = decode(task, [(ty, g.tiles[0]), (t, frames[0]), (c, channels), (n, images)], temporal)
        body += input_rows(ctx, node, g, tiles_in, n, c, ty, t if temporal else None)
        lines += parallel_for(task, count, body, count * alpha2 * g.width)
        lines += microkernel_tasks(ctx, tiling)
        task = ctx.var("t")
        n, f, t, ty = (Var(f"{task.name}_{h}") for h in ("n", "f", "o", "ty"))
        count = images * filters * frames[1] * g.tiles[0]
        body = decode(task, [(ty, g.tiles[0]), (t, frames[1]), (f, filters), (n, images)], temporal)
        body += output_rows(ctx, node, g, tiles_out, n, f, ty, t if temporal else None)
        return lines + parallel_for(task, count, body, count * alpha2 * g.width)
    r, c, f = ctx.var("r"), ctx.var("c"), ctx.var("f")
    n, k, ty = Var(f"{task.name}_n"), Var(f"{task.name}_k"), Var(f"{task.name}_ty")
    head = [f"const int64_t {n.name} = {task.name} / {g.chunks}, {k.name} = {task.name} % {g.chunks};"]

    def over_rows(body: list[str]) -> list[str]:
        return [f"for (int64_t {r.name} = 0; {r.name} < {g.chunk_rows}; ++{r.name}) {{",
                f"  const int64_t {ty.name} = {k.name} * {g.chunk_rows} + {r.name};",
                f"  if ({ty.name} >= {g.tiles[0]}) break;", *indent(body), "}"]
    body = head + serial_for(c, channels, over_rows(input_rows(ctx, node, g, tiles_in, n, c, ty)))
    body += microkernel_tasks(ctx, tiling, parallel=False)
    body += serial_for(f, filters, over_rows(output_rows(ctx, node, g, tiles_out, n, f, ty)))
    work = images * g.count * alpha2 * channels * filters
    return lines + parallel_for(task, images * g.chunks, body, work)


def decode(task: Var, axes: Sequence[tuple[Var, int]], temporal: bool) -> list[str]:
    """The C line splitting a task number into its indices, innermost axis first (a 2-D convolution's frame
    axis, the second, left out)."""
    kept = [axis for i, axis in enumerate(axes) if temporal or i != 1]
    parts, inner = [], 1
    for i, (var, extent) in enumerate(kept):
        quotient = task.name if inner == 1 else f"{task.name} / {inner}"
        parts.append(f"{var.name} = {quotient}" + (f" % {extent}" if i < len(kept) - 1 else ""))
        inner *= extent
    return [f"const int64_t {', '.join(parts)};"]


def tile_loop(tx: Var, count: int, body: list[str]) -> list[str]:
    """A vectorised loop over `count` tiles of a row, the last vector overlapping the one before instead of a
    scalar remainder (8 lanes where fewer than a full vector's tiles): for bodies that store values computed
    from arrays they do not write."""
    lanes = vector_lanes() if count >= vector_lanes() else 8
    return overlapped_for(tx, 0, count, lanes, body) if count > lanes else serial_for(tx, count, body, simd=True)


def input_rows(ctx: KernelContext, node: Node, g: Geometry, tiles_in: str, n: Var, c: Var, ty: Var,
               t: Var | None = None) -> list[str]:
    """Tile row ty of channel c of image n (of frame t, 3-D): the alpha input rows it reads (fused producers
    applied, zero in the padding) into a stack block, BT applied down the columns (vectorised along the row),
    then BT along each tile's row into the transformed tiles; after a chunk's last tile row, its padding
    columns are zeroed."""
    channels = node.inputs[0].shape[1]
    _, _, bt = matrices(g.m)
    alpha, width, (ty_count, tx_count) = g.alpha, g.width, g.tiles
    (height, row_width), (pad_top, pad_left) = g.spatial, g.pads
    yy, q, tx, z, xi = (ctx.var(h) for h in ("yy", "q", "tx", "z", "xi"))
    row = Var(f"{ty.name}_y")
    lo, hi = pad_left, min(width, pad_left + row_width)
    value = cast(ctx.read(0, g.at(n, c, t, row, q - pad_left)), "float")
    # Where a row's tiles are not whole vectors, each row block is split by phase (column tx * m + r to wt's
    # row (i, r), entry tx) as BT goes down its columns: a group of m columns loads as one interleaved group,
    # and the step along the tiles then reads contiguous phases instead of every m-th column (measured faster
    # for 13, 14 and 28 tiles, slower for 32 and 64, where the strided reads leave no remainder).
    split = tx_count % vector_lanes() != 0
    span, phases = (g.span, tx_count + 1) if split else (width, 0)
    fill = [f"const int64_t {row.name} = {ty.name} * {g.m} + {yy.name} - {pad_top};",
            f"float* const wrow = wd + {yy.name} * {span};",
            f"if ({row.name} < 0 || {row.name} >= {height}) {{",
            f"  for (int64_t {q.name} = 0; {q.name} < {span}; ++{q.name}) wrow[{q.name}] = 0.0f;",
            "} else {",
            f"  for (int64_t {q.name} = 0; {q.name} < {lo}; ++{q.name}) wrow[{q.name}] = 0.0f;",
            *indent(overlapped_for(q, lo, hi, vector_lanes(), ctx.value("iv", value) + [f"wrow[{q.name}] = iv;"])
                    if hi > lo else []),
            f"  for (int64_t {q.name} = {hi}; {q.name} < {span}; ++{q.name}) wrow[{q.name}] = 0.0f;",
            "}"]
    body = [local_array("float", "wd", alpha * span), local_array("float", "wt", alpha * span)]
    body += serial_for(yy, alpha, fill)

    def down(r: int, at: str) -> list[str]:
        """BT down the columns, into phase r's entry `at` (split) or column `at`."""
        if not split:
            return transform_statements(bt, [f"wd[{k * span} + {at}]" for k in range(alpha)],
                                        lambda i, value: f"wt[{i * span} + {at}] = {value};", "tb")
        return transform_statements(bt, [f"wd[{k * span} + {at} * {g.m} + {r}]" for k in range(alpha)],
                                    lambda i, value: f"wt[{(i * g.m + r) * phases} + {at}] = {value};", f"tb{r}_")

    if split:
        body += tile_loop(tx, tx_count, [line for r in range(g.m) for line in down(r, tx.name)])
        # the last tile's reach: entry tx_count of the phases below alpha - m
        body += [line for r in range(alpha - g.m) for line in down(r, str(tx_count))]
    else:
        body += serial_for(q, width, down(0, q.name), simd=True)

    def at(i: int, k: int) -> str:
        """Column tx * m + k of row i of wt."""
        return f"wt[{(i * g.m + k % g.m) * phases + k // g.m} + {tx.name}]" if split else \
            f"wt[{i * span} + {tx.name} * {g.m} + {k}]"
    plane = g.frames[0] * channels * g.columns
    frame = "" if t is None else f" + {t.name} * {channels * g.columns}"
    across = [line for i in range(alpha) for line in transform_statements(
        bt, [at(i, k) for k in range(alpha)],
        lambda j, value, i=i: f"dst[{(i * alpha + j) * plane} + {tx.name}] = {value};", f"ta{i}_")]
    body += [f"float* const dst = {tiles_in} + {g.slot(n.name, ty.name, channels, g.frames[0])}{frame} + "
             f"{c.name} * {g.columns};"]
    body += tile_loop(tx, tx_count, across) if split else serial_for(tx, tx_count, across, simd=True)
    used = f"({ty.name} % {g.chunk_rows} + 1) * {tx_count}"
    clear = serial_for(xi, alpha * alpha, [f"for (int64_t {z.name} = {used}; {z.name} < {g.columns}; ++{z.name}) "
                                           f"dst[{xi.name} * {plane} + {z.name} - {ty.name} % {g.chunk_rows} * "
                                           f"{tx_count}] = 0.0f;"])
    last = f"{ty.name} % {g.chunk_rows} == {g.chunk_rows - 1} || {ty.name} == {ty_count - 1}"
    return body + [f"if ({last}) {{", *indent(clear), "}"]


def products(ctx: KernelContext, node: Node, g: Geometry, rows_vectors: tuple[int, int], tiles_in: str,
             tiles_out: str, chunk: Var | None, groups: int = 1) -> tuple[list[str], Tiling]:
    """The packing of U (filters x channels per xi: the filters transformed at compile time) and the Tiling of
    tiles_out[image][chunk][xi] = U[xi] times tiles_in[image][chunk][xi] (channels x columns, read in place):
    over every image, chunk and xi, or over the xi of one chunk, `chunk` (image * chunks + chunk, a variable
    of the enclosing loop). A 3-D convolution adds the output frame to the batch, and its depth runs over
    (temporal tap, channel): the taps' input frames lie one after another, so the taps of an output frame
    that land on input frames are one contiguous run of B (a span of segments) and those in the padding
    are left out. A grouped convolution adds the group to the batch instead: its channels and filters are
    a contiguous share of the tiles' rows."""
    isa = microkernel.target_isa()
    assert isa is not None
    x, w = node.inputs[0], node.inputs[1]
    images, channels, filters = x.shape[0] * max(g.folded, 1), x.shape[1], w.shape[0]
    alpha2, columns = g.alpha ** 2, g.columns
    rows, vectors = rows_vectors
    width = vectors * isa.lanes
    taps = 3 if g.temporal else 1
    cg, fg = channels // groups, filters // groups
    xi_axis = 0 if chunk is not None else 2
    extra = (g.frames[1],) if g.temporal else (groups,) if groups > 1 else ()
    batch = ((alpha2,) if chunk is not None else (images, g.chunks, alpha2)) + extra
    a_batch = tuple(alpha2 if i == xi_axis else groups if groups > 1 and i == len(batch) - 1 else 1
                    for i in range(len(batch)))
    weights = w.const.reshape(*w.shape[:2], 3, 3) if not g.temporal else \
        np.ascontiguousarray(w.const.transpose(0, 2, 1, 3, 4)).reshape(filters, taps * channels, 3, 3)
    transformed = transform_filters(weights, g.m).astype(np.float32).reshape(*a_batch, fg, taps * cg)
    a = Operand(a_batch, fg, taps * cg, lambda bidx, r, c: Lit(0), constant=transformed)
    a_lines, a_at, a_steps = packed_a(ctx, a, rows)
    frame_size = channels * columns

    def entry(bidx: Index) -> Expr:
        """The (image, chunk, xi) entry's position among all of them."""
        return linear(bidx[:3], batch[:3]) if chunk is None else chunk * alpha2 + bidx[0]

    def share(bidx: Index, per_group: int) -> Expr:
        """Where the entry's group starts among the tiles' rows of `per_group` rows a group."""
        return bidx[-1] * (per_group * columns) if groups > 1 else Lit(0)

    def first_tap(bidx: Index) -> str:
        """C: output frame bidx[3]'s first temporal tap on an input frame."""
        out_frame = ctx.c(bidx[3])
        return f"({out_frame} < {g.frame_pad} ? {g.frame_pad} - {out_frame} : 0)" if g.frame_pad else "0"

    def spans(bidx: Index) -> tuple[str, str]:
        out_frame, first = ctx.c(bidx[3]), first_tap(bidx)
        last = f"({g.frames[0] + g.frame_pad} - {out_frame} < 3 ? {g.frames[0] + g.frame_pad} - {out_frame} : 3)"
        return first, f"({last} - {first})"

    def c_at(bidx: Index, i0: Var, j0: Var) -> str:
        whole = linear(bidx, batch) if g.temporal else entry(bidx)
        return f"({tiles_out} + {ctx.c(whole * (filters * columns) + share(bidx, fg) + i0 * columns + j0)})"

    def b_at(bidx: Index, jt: Var) -> str:
        if not g.temporal:
            return f"({tiles_in} + {ctx.c(entry(bidx) * frame_size + share(bidx, cg) + jt * width)})"
        start = ctx.c(entry(bidx) * (g.frames[0] * frame_size) + (bidx[3] - g.frame_pad) * frame_size + jt * width)
        return f"({tiles_in} + {start} + {first_tap(bidx)} * {frame_size})"

    segments = tuple(k * frame_size for k in range(taps))
    tiling = Tiling(isa, batch, fg, columns, cg, segments, rows, vectors, a_steps, columns,
                    lambda bidx, it: a_at(broadcast_index(bidx, batch, a_batch), it), b_at, lambda *_: [],
                    spans=spans if g.temporal else None, store_at=c_at, ldc=columns)
    return a_lines, tiling


def output_rows(ctx: KernelContext, node: Node, g: Geometry, tiles_out: str, n: Var, f: Var, ty: Var,
                t: Var | None = None) -> list[str]:
    """Tile row ty of filter f of image n (of output frame t, 3-D): AT M A of each tile into a stack block of m
    output rows, then each row that lies inside the output to the fused epilogue (bias added), one vectorised
    loop along the row."""
    y = node.outputs[0]
    filters = node.inputs[1].shape[0]
    at, _, _ = matrices(g.m)
    alpha, m, (_, tx_count), (height, row_width) = g.alpha, g.m, g.tiles, g.out
    plane = g.frames[1] * filters * g.columns
    frame = "" if t is None else f" + {t.name} * {filters * g.columns}"
    tx, r, o = ctx.var("tx"), ctx.var("r"), ctx.var("o")
    block = tx_count * m
    body = [local_array("float", "wo", m * block),
            f"const float* const src = {tiles_out} + {g.slot(n.name, ty.name, filters, g.frames[1])}{frame} + "
            f"{f.name} * {g.columns};"]
    loads = [f"const float mv{i}_{j} = src[{(i * alpha + j) * plane} + {tx.name}];"
             for i in range(alpha) for j in range(alpha)]
    down = [line for j in range(alpha) for line in transform_statements(
        at, [f"mv{i}_{j}" for i in range(alpha)], lambda a, value, j=j: f"const float sv{a}_{j} = {value};",
        f"td{j}_")]
    across = [line for a in range(m) for line in transform_statements(
        at, [f"sv{a}_{j}" for j in range(alpha)],
        lambda b, value, a=a: f"wo[{a} * {block} + {tx.name} * {m} + {b}] = {value};", f"tc{a}_")]
    body += tile_loop(tx, tx_count, loads + down + across)
    row = ty * m + r
    value = Load("wo", r * block + o, "float")
    if node.input(2) is not None:
        value = value + cast(ctx.read(2, (f,)), "float")
    emit = overlapped_for(o, 0, row_width, vector_lanes(), ctx.store(0, g.at(n, f, t, row, o),
                                                                     cast(value, ctype(y.dtype))))
    if height % m:
        emit = [f"if ({ctx.c(row)} < {height}) {{", *indent(emit), "}"]
    return body + serial_for(r, m, emit)
