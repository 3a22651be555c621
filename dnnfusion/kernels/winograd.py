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
from typing import Sequence

import numpy as np

from ..ir.graph import Node
from ..kir.expr import Index, Lit, Load, Var, broadcast_index, cast, ctype, numel
from ..kir.kernel import KernelContext, fits_stack, indent, local_array, overlapped_for, parallel_for, serial_for
from . import microkernel
from .gemm import Operand, Product, Tiling, direct_buffer, microkernel_tasks, packed_a, tile_finish
from .planes import vector_lanes
from .window import Window
from .winograd_math import matrices, transform_filters

TILE_SIZES = (4, 2)          # output tile sizes m tried, largest first: F(6x6, 3x3) rounds off more than
                             # float32's 1e-4 of the output range from a few hundred channels (docs/WINOGRAD.md)
MIN_CHANNELS = 16            # input and output channels from which the transforms pay for themselves
TRANSFORM_CYCLES = 1.5       # cycles per transformed element (input tiles and output tiles, per channel)
NOTE = "/* Winograd F({m}x{m}, 3x3): input tiles transformed, {a} products in the transform domain, " \
       "output transform and epilogue */"


@dataclass(frozen=True)
class Geometry:
    """Where a Winograd convolution's tiles lie: output tiles of m x m over the output (ty x tx of them), the
    input rows and columns each tile row reads (alpha = m + 2 rows, `width` columns from -pad), and the
    tiles' count padded to whole column tiles of the products (`columns`)."""

    m: int
    out: tuple[int, int]
    spatial: tuple[int, int]
    pads: tuple[int, int]
    columns_multiple: int

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
    def columns(self) -> int:
        """Tiles padded to whole column tiles, and off a multiple of 1 KiB so that B's rows spread over cache sets."""
        w = self.columns_multiple
        padded = -(-self.count // w) * w
        return padded + w if padded * 4 % 1024 == 0 else padded

    @property
    def width(self) -> int:
        """Input columns a tile row reads, from column -pad."""
        return self.tiles[1] * self.m + 2


def applies(node: Node, window: Window, group: int, ct: str) -> bool:
    """Whether Winograd can run this convolution here: 2-D 3 x 3, stride and dilation 1, one group, float32
    with constant weights read as they are, on a CPU with microkernels."""
    x, w = node.inputs[0], node.inputs[1]
    return microkernel.target_isa() is not None and ct == "float" and len(window.kernel) == 2 and \
        window.kernel == (3, 3) and window.strides == (1, 1) and window.dilations == (1, 1) and group == 1 and \
        w.const is not None and x.shape[1] >= MIN_CHANNELS and w.shape[0] >= MIN_CHANNELS


def tile_size(node: Node, window: Window) -> int | None:
    """The output tile size m whose estimated cycles beat the direct implicit GEMM's by most, or None where
    none does: products at the microkernels' rate over alpha^2 / m^2 of the direct count of multiplies per
    output, plus TRANSFORM_CYCLES per transformed element on each side."""
    isa = microkernel.target_isa()
    assert isa is not None
    channels, filters = node.inputs[0].shape[1], node.inputs[1].shape[0]
    rate = 2 * isa.lanes          # multiply-adds per cycle: two FMA pipes
    direct = numel(window.out) * 9 * channels * filters / rate
    best, chosen = direct, None
    for m in TILE_SIZES:
        geometry = Geometry(m, tuple(window.out), (0, 0), (0, 0), isa.lanes)
        alpha2 = geometry.alpha ** 2
        products = alpha2 * geometry.count * channels * filters / rate
        transforms = TRANSFORM_CYCLES * alpha2 * geometry.count * (channels + filters)
        if products + transforms < best:
            best, chosen = products + transforms, m
    return chosen


def coefficient_sum(coefficients: Sequence[float], terms: Sequence[str]) -> str:
    """C text of sum over k of coefficients[k] * terms[k], skipping zeros; every coefficient of the transforms
    used is exact in float32 (dyadic rationals)."""
    parts = []
    for c, t in zip(coefficients, terms):
        if c == 0:
            continue
        assert float(np.float32(c)) == c, f"coefficient {c} is not exact in float32"
        sign = "-" if c < 0 else "+"
        size = abs(float(c))
        parts.append(f"{sign} {t}" if size == 1 else f"{sign} {size!r}f * {t}")
    if not parts:
        return "0.0f"
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def conv_winograd(ctx: KernelContext, node: Node, window: Window, group: int, ct: str, m: int) -> list[str] | None:
    """The convolution as Winograd F(m x m, 3 x 3) in three parallel loops: input transform, the alpha^2
    products on the microkernels, output transform with the epilogue. None where a stack row block would not
    fit or `applies` says no."""
    isa = microkernel.target_isa()
    if isa is None or not applies(node, window, group, ct) or direct_buffer(ctx, 1, node.inputs[1].shape, ct) is None:
        return None
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    images, channels, filters = x.shape[0], x.shape[1], w.shape[0]
    _, vectors, _ = isa.tile_shape(filters, 16 * isa.lanes)
    geometry = Geometry(m, tuple(window.out), tuple(x.shape[2:]), tuple(window.pads_begin), vectors * isa.lanes)
    alpha = geometry.alpha
    if not fits_stack(2 * alpha * geometry.width) or not fits_stack(m * geometry.width):
        return None
    columns = geometry.columns
    tiles_in = ctx.scratch(ct, images * alpha * alpha * channels * columns)
    tiles_out = ctx.scratch(ct, images * alpha * alpha * filters * columns)
    lines = [NOTE.format(m=m, a=alpha * alpha)]
    lines += input_transform(ctx, node, geometry, tiles_in)
    lines += products(ctx, node, geometry, rows_vectors=isa.tile_shape(filters, columns)[:2],
                      tiles_in=tiles_in, tiles_out=tiles_out)
    lines += output_transform(ctx, node, geometry, tiles_out)
    return lines


def input_transform(ctx: KernelContext, node: Node, g: Geometry, tiles_in: str) -> list[str]:
    """Per image, channel and tile row: the alpha input rows it reads (fused producers applied, zero in the
    padding) into a stack block, BT applied down the columns (vectorised along the row), then BT along each
    tile's row into tiles_in[image][xi][channel][tile]; the padding columns of the last tile row are zeroed."""
    x = node.inputs[0]
    images, channels = x.shape[0], x.shape[1]
    _, _, bt = matrices(g.m)
    alpha, width, (ty_count, tx_count) = g.alpha, g.width, g.tiles
    (height, row_width), (pad_top, pad_left) = g.spatial, g.pads
    task, yy, q, tx, z, xi = (ctx.var(h) for h in ("t", "yy", "q", "tx", "z", "xi"))
    n, c, ty = Var(f"{task.name}_n"), Var(f"{task.name}_c"), Var(f"{task.name}_ty")
    head = [f"const int64_t {ty.name} = {task.name} % {ty_count}, {c.name} = {task.name} / {ty_count} % "
            f"{channels}, {n.name} = {task.name} / {ty_count * channels};",
            local_array("float", "wd", alpha * width), local_array("float", "wt", alpha * width)]
    row = Var(f"{task.name}_y")
    lo, hi = pad_left, min(width, pad_left + row_width)
    value = cast(ctx.read(0, (n, c, row, q - pad_left)), "float")
    fill = [f"const int64_t {row.name} = {ty.name} * {g.m} + {yy.name} - {pad_top};",
            f"float* const wrow = wd + {yy.name} * {width};",
            f"if ({row.name} < 0 || {row.name} >= {height}) {{",
            f"  for (int64_t {q.name} = 0; {q.name} < {width}; ++{q.name}) wrow[{q.name}] = 0.0f;",
            "} else {",
            f"  for (int64_t {q.name} = 0; {q.name} < {lo}; ++{q.name}) wrow[{q.name}] = 0.0f;",
            *indent(overlapped_for(q, lo, hi, vector_lanes(), ctx.value("iv", value) + [f"wrow[{q.name}] = iv;"])
                    if hi > lo else []),
            f"  for (int64_t {q.name} = {hi}; {q.name} < {width}; ++{q.name}) wrow[{q.name}] = 0.0f;",
            "}"]
    body = head + serial_for(yy, alpha, fill)
    down = [f"wt[{i} * {width} + {q.name}] = "
            f"{coefficient_sum(bt[i], [f'wd[{k} * {width} + {q.name}]' for k in range(alpha)])};"
            for i in range(alpha)]
    body += serial_for(q, width, down, simd=True)
    plane = channels * g.columns
    base = f"{tiles_in} + {n.name} * {alpha * alpha * plane} + {c.name} * {g.columns} + {ty.name} * {tx_count}"
    across = []
    for i in range(alpha):
        terms = [f"wt[{i} * {width} + {tx.name} * {g.m} + {k}]" for k in range(alpha)]
        across += [f"dst[{(i * alpha + j) * plane} + {tx.name}] = {coefficient_sum(bt[j], terms)};"
                   for j in range(alpha)]
    body += [f"float* const dst = {base};"] + serial_for(tx, tx_count, across, simd=True)
    if g.columns > g.count:
        clear = serial_for(xi, alpha * alpha, [
            f"for (int64_t {z.name} = {g.count}; {z.name} < {g.columns}; ++{z.name}) "
            f"{tiles_in}[{n.name} * {alpha * alpha * plane} + {xi.name} * {plane} + {c.name} * {g.columns} + "
            f"{z.name}] = 0.0f;"])
        body += [f"if ({ty.name} == {ty_count - 1}) {{", *indent(clear), "}"]
    count = images * channels * ty_count
    return parallel_for(task, count, body, count * alpha * width * 4)


def products(ctx: KernelContext, node: Node, g: Geometry, rows_vectors: tuple[int, int], tiles_in: str,
             tiles_out: str) -> list[str]:
    """tiles_out[image][xi] = U[xi] (filters x channels, transformed and packed at compile time) times
    tiles_in[image][xi] (channels x tiles), on the microkernels; B is read in place."""
    isa = microkernel.target_isa()
    assert isa is not None
    x, w = node.inputs[0], node.inputs[1]
    images, channels, filters = x.shape[0], x.shape[1], w.shape[0]
    alpha2, columns = g.alpha ** 2, g.columns
    rows, vectors = rows_vectors
    width = vectors * isa.lanes
    batch, a_batch = (images, alpha2), (1, alpha2)
    transformed = transform_filters(w.const, g.m).astype(np.float32).reshape(1, alpha2, filters, channels)
    a = Operand(a_batch, filters, channels, lambda bidx, r, c: Lit(0), constant=transformed)
    a_lines, a_at, a_steps = packed_a(ctx, a, rows)

    def keep(bidx: Index, i: Var, j: Index, value) -> list[str]:
        at = (bidx[0] * alpha2 + bidx[1]) * (filters * columns) + i * columns + j[0]
        return [f"{tiles_out}[{ctx.c(at)}] = {ctx.c(value)};"]

    unused = Operand(batch, channels, columns, lambda bidx, r, c: Lit(0))
    finish = tile_finish(ctx, Product(batch, a, unused, "float", keep), width)

    def b_at(bidx: Index, jt: Var) -> str:
        return f"({tiles_in} + {ctx.c((bidx[0] * alpha2 + bidx[1]) * (channels * columns) + jt * width)})"

    tiling = Tiling(isa, batch, filters, columns, channels, (0,), rows, vectors, a_steps, columns,
                    lambda bidx, it: a_at(broadcast_index(bidx, batch, a_batch), it), b_at, finish)
    return a_lines + microkernel_tasks(ctx, tiling)


def output_transform(ctx: KernelContext, node: Node, g: Geometry, tiles_out: str) -> list[str]:
    """Per image, filter and tile row: AT M A of each tile into a stack block of m output rows, then each row
    that lies inside the output to the fused epilogue (bias added), one vectorised loop along the row."""
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    images, filters = x.shape[0], w.shape[0]
    at, _, _ = matrices(g.m)
    alpha, m, (ty_count, tx_count), (height, row_width) = g.alpha, g.m, g.tiles, g.out
    alpha2, columns = alpha * alpha, g.columns
    task, tx, r, o = (ctx.var(h) for h in ("t", "tx", "r", "o"))
    n, f, ty = Var(f"{task.name}_n"), Var(f"{task.name}_f"), Var(f"{task.name}_ty")
    block = tx_count * m
    head = [f"const int64_t {ty.name} = {task.name} % {ty_count}, {f.name} = {task.name} / {ty_count} % "
            f"{filters}, {n.name} = {task.name} / {ty_count * filters};",
            local_array("float", "wo", m * block),
            f"const float* const src = {tiles_out} + {n.name} * {alpha2 * filters * columns} + {f.name} * {columns} "
            f"+ {ty.name} * {tx_count};"]
    loads = [f"const float mv{i}_{j} = src[{(i * alpha + j) * filters * columns} + {tx.name}];"
             for i in range(alpha) for j in range(alpha)]
    down = [f"const float sv{a}_{j} = {coefficient_sum(at[a], [f'mv{i}_{j}' for i in range(alpha)])};"
            for a in range(m) for j in range(alpha)]
    across = [f"wo[{a} * {block} + {tx.name} * {m} + {b}] = "
              f"{coefficient_sum(at[b], [f'sv{a}_{j}' for j in range(alpha)])};" for a in range(m) for b in range(m)]
    body = head + serial_for(tx, tx_count, loads + down + across, simd=True)
    row = ty * m + r
    value = Load("wo", r * block + o, "float")
    if node.input(2) is not None:
        value = value + cast(ctx.read(2, (f,)), "float")
    store = ctx.store(0, (n, f, row, o), cast(value, ctype(y.dtype)))
    emit = overlapped_for(o, 0, row_width, vector_lanes(), store)
    if height % m:
        emit = [f"if ({ctx.c(row)} < {height}) {{", *indent(emit), "}"]
    body += serial_for(r, m, emit)
    count = images * filters * ty_count
    return parallel_for(task, count, body, count * alpha2 * tx_count * 4)
