"""Convolution templates: k x k convolutions as implicit GEMMs on the microkernels over a phased copy of the
input (planes.py), depthwise convolutions as plane windows, pointwise and im2col products on the gemm
template, direct loops that sweep a row of outputs per tap (few output channels, no microkernels), and
transposed convolution as a product into per-tap contributions that a row then gathers."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from ..ir.graph import Node
from ..kir.expr import Expr, Index, Lit, Load, Var, broadcast_index, cast, ctype, floordiv, linear, lit, mod
from ..kir.expr import numel, unravel
from ..kir.kernel import KernelContext, fits_stack, indent, local_array, parallel_for, serial_for
from . import gemm, microkernel
from .gemm import Operand, Product, Tiling, direct_buffer, layout, microkernel_tasks, packed_a, packed_b
from .gemm import product_kernel, reads_b_in_place, tile_width
from .gemm import column_finish, column_step, edges, strided, tile_finish
from .blocked import channel_scale
from .lanes import depthwise_lanes
from .planes import Phases, PlaneFold, balanced_sum, plane_window
from .window import Window, covered, range_tables, table


PRODUCT_MIN_CHANNELS = 8   # output channels per group from which a convolution runs as a matrix product
PIXEL_ROWS_NOTE = "/* implicit GEMM: each output row's pixels as rows, the output channels as columns */"
SCALED_WEIGHTS_NOTE = "/* pointwise convolution: its input's per-channel scale applied to the weights */"
SCALED_WEIGHTS_SHARE = 4   # input elements per weight from which scaling the weights per call (packed as A,
                           # rows interleaved) beats scaling the input as it is copied: EfficientNet-B0, 2 threads,
                           # 144->24 at 56 x 56 0.215 -> 0.165 ms, but 480->112 at 14 x 14 0.119 -> 0.168
DISJOINT_NOTE = "/* transposed convolution, taps disjoint: each product stored straight to its output */"
PANELS_NOTE = "/* implicit GEMM: each column tile's rows packed into a panel, then every row tile over it */"
PANEL_MIN_ROW_TILES = 2    # a column tile's B is packed into a panel (`panels_pay`) from this many row tiles,
PANEL_MIN_CHANNELS = 16    # input channels per group,
PANEL_MIN_TASKS = 8        # and tasks (column tiles x batch entries: SSD's 256 -> 512 stride 2 at 10 x 10 has
                           # one, which ran 2.3x slower on 2 threads)
BANDS_NOTE = "/* one band of output rows per task, its input rows copied into a stack array */"
BAND_CACHE_SHARE = 0.25    # of L2 that a band's copy of the input may take (the weights and tiles share the rest)
BAND_MIN_TASKS = 8         # bands (times images) from which a band is not made smaller
PANEL_PACK_ROWS = 16       # per step of depth, packing a column tile's panel costs as much as this many rows of
                           # its tiles: fitted on the AMD EPYC (Zen 4), 1 thread, where pixel rows ran 0.91-0.96x
                           # channel rows' time on strided 3 x 3 convolutions (32 -> 64 and 64 -> 128 at 208 x 208,
                           # tile costs 1.03-1.04x) and 1.05-1.17x on 1 x 1 stride 2 ones (256 -> 512 to
                           # 1024 -> 2048, tile costs 1.05-1.13x): between 6 and 65
PIXEL_ROWS_GAIN = 1.08     # tile cost, pixels as rows against channels as rows, below which that pays for its
                           # stores down the channel planes



def source(ctx: KernelContext, i: int, shape: Sequence[int], ct: str) -> tuple[list[str], str]:
    """The row-major array of C type `ct` that a kernel reading input `i` many times over loads from: the
    input's own, or (when producers are fused into it) a scratch copy written once with them applied; and
    the statements that write that copy."""
    buffer = direct_buffer(ctx, i, shape, ct)
    if buffer is not None:
        return [], buffer
    name = ctx.scratch(ct, numel(shape))
    row, col = ctx.var("p"), ctx.var("c")
    rows, cols = numel(shape[:-1]), shape[-1]
    value = cast(ctx.read(i, (*unravel(row, shape[:-1]), col)), ct)
    body = ctx.value("pv", value) + [f"{name}[{ctx.c(row * cols + col)}] = pv;"]
    return parallel_for(row, rows, serial_for(col, cols, body, simd=True), numel(shape)), name



def reader(buffer: str, shape: Sequence[int], ct: str) -> Callable[[Index], Expr]:
    """Loads from a row-major array of `shape`."""
    return lambda index: Load(buffer, linear(index, shape), ct)



def conv_product(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str]:
    """Per image and group, (M/G x C/G*k) weights times the (C/G*k x out) columns of the input's windows;
    a 1x1 unstrided, unpadded convolution reads its input as the columns directly."""
    x, w = node.inputs[0], node.inputs[1]
    images, channels, spatial, kernel = x.shape[0], x.shape[1], tuple(x.shape[2:]), window.kernel
    cg, mg = channels // group, w.shape[0] // group
    depth, out, count = cg * numel(kernel), window.out, numel(window.out)
    batch = (images, group)
    weights = direct_buffer(ctx, 1, w.shape, ct)
    if weights is not None:
        const = None if w.const is None else w.const.reshape(1, group, mg, depth)
        a = strided(weights, ct, (1, group), (0, mg * depth), mg, depth, depth, 1, const)
    else:
        a = Operand((1, group), mg, depth, lambda bidx, r, c: cast(
            ctx.read(1, (bidx[1] * mg + r, *unravel(c, (cg, *kernel)))), ct))
    if pointwise(window, spatial):
        if pixels_as_rows(count, mg, x.shape[1] // group) and w.const is not None:
            return pixel_rows_product(ctx, node, group, ct)
        lines, pixels = [], direct_buffer(ctx, 0, x.shape, ct)
        scaled = None if pixels is not None else channel_scale(ctx, x.shape, ct)
        if scaled is not None and scale_on_weights(scaled[0], ct, mg, depth, count):
            pixels, factor = scaled
            lines.append(SCALED_WEIGHTS_NOTE)
            a = scaled_columns(a, batch, lambda bidx, c: factor(bidx[0], bidx[1] * cg + c))
        if pixels is not None:
            b = strided(pixels, ct, batch, (channels * count, cg * count), depth, count, count, 1)
        else:       # fused producers: applied once, as the product packs B (a copy first would be a second pass)
            b = Operand(batch, depth, count, lambda bidx, r, c: cast(
                ctx.read(0, (bidx[0], bidx[1] * cg + r, *unravel(c, spatial))), ct))
    else:
        lines, b = im2col(ctx, x.shape, window, group, ct)

    # columns are the output pixels flattened (an output channel's plane is contiguous), so a tile's row is
    # stored in one vector loop; unravelled here, the index folds back into that flat offset
    store = biased_store(ctx, node, mg, ct, lambda bidx, j: unravel(j[0], out))
    return lines + product_kernel(ctx, Product(batch, a, b, ct, store))



def scale_on_weights(pixels: str, ct: str, mg: int, depth: int, count: int) -> bool:
    """Whether a pointwise convolution whose input comes scaled per channel (`channel_scale`) pays for scaling
    its weights per call instead: they are a small share of an image's input elements (SCALED_WEIGHTS_SHARE),
    and the microkernels then read the unscaled input where it lies rather than copying all of it into panels."""
    width = tile_width(mg, count)
    return width is not None and mg * SCALED_WEIGHTS_SHARE <= count and \
        reads_b_in_place(strided(pixels, ct, (1,), (0,), depth, count, count, 1), mg, width)


def scaled_columns(a: Operand, batch: tuple[int, ...], factor: Callable[[Index, Expr], Expr]) -> Operand:
    """Operand `a` with column c multiplied by `factor(batch index, c)`, over `batch` (packed per call)."""
    return Operand(batch, a.rows, a.cols,
                   lambda bidx, r, c: a.element(broadcast_index(bidx, batch, a.batch), r, c) * factor(bidx, c))


def pixels_as_rows(pixels: int, channels: int, depth: int) -> bool:
    """Whether a pointwise product's tiles cost clearly less (PIXEL_ROWS_GAIN) with the output pixels as rows
    and the output channels along the vectors (7 x 7 = 49 pixels fill 64 columns, 77%, but 5 tiles of 10
    rows), which pays for storing each tile down the channels' planes."""
    isa = microkernel.target_isa()
    if isa is None:
        return False
    by_pixels = isa.tile_shape(pixels, channels, column_step(isa, pixels, depth))[2]
    return by_pixels * PIXEL_ROWS_GAIN < isa.tile_shape(channels, pixels)[2]


def pixel_rows_product(ctx: KernelContext, node: Node, group: int, ct: str) -> list[str]:
    """A pointwise convolution as the product (pixels x C/G) times (C/G x M/G) per image and group: the
    input as a column-major A (its own array, or through its fused producers, applied as A is packed),
    the weights transposed into B at compile time, each tile's row a pixel across output channels, stored
    down the channels' planes."""
    x, w = node.inputs[0], node.inputs[1]
    images, channels, spatial = x.shape[0], x.shape[1], tuple(x.shape[2:])
    count = numel(spatial)
    cg, mg = channels // group, w.shape[0] // group
    batch = (images, group)
    pixels = direct_buffer(ctx, 0, x.shape, ct)
    if pixels is not None:
        a = strided(pixels, ct, batch, (channels * count, cg * count), count, cg, 1, count)
    else:
        a = Operand(batch, count, cg, lambda bidx, r, c: cast(
            ctx.read(0, (bidx[0], bidx[1] * cg + c, *unravel(r, spatial))), ct))
    weights = w.const.reshape(1, group, mg, cg).swapaxes(-2, -1)
    b = Operand((1, group), cg, mg, lambda bidx, r, c: Lit(0), constant=weights)
    store = pixel_rows_store(ctx, node, mg, ct, lambda bidx, i: unravel(i, spatial))
    return product_kernel(ctx, Product(batch, a, b, ct, store, by_columns=True))


def pointwise(window: Window, spatial: Sequence[int]) -> bool:
    """Whether a convolution's windows are its input pixels themselves (1 x 1, unstrided, unpadded)."""
    return numel(window.kernel) == 1 and tuple(window.out) == tuple(spatial) and set(window.strides) == {1} and \
        not any(window.pads_begin)


def biased_store(ctx: KernelContext, node: Node, mg: int, ct: str,
                 position: Callable[[Index, Index], Index]) -> Callable[[Index, Expr, Index, Expr], list[str]]:
    """A convolution product's store: output channel (group bidx[1], row i) of image bidx[0] at the spatial
    index `position(batch index, column index)`, plus the bias when the node has one."""
    at = biased_store_at(ctx, node, mg, ct)
    return lambda bidx, i, j, value: at(bidx, i, position(bidx, j), value)


def biased_store_at(ctx: KernelContext, node: Node, mg: int, ct: str) -> Callable[[Index, Expr, Index, Expr], list[str]]:
    """`store(batch index, channel in group, spatial index, value)`: output channel (group bidx[1], channel
    m) of image bidx[0] at that spatial index, plus the bias when the node has one."""
    bias, out_ct = node.input(2), ctype(node.outputs[0].dtype)

    def store(bidx: Index, m: Expr, where: Index, value: Expr) -> list[str]:
        channel = bidx[1] * mg + m
        if bias is not None:
            value = value + cast(ctx.read(2, (channel,)), ct)
        return ctx.store(0, (bidx[0], channel, *where), cast(value, out_ct))
    return store


def pixel_rows_store(ctx: KernelContext, node: Node, mg: int, ct: str,
                     position: Callable[[Index, Expr], Index]) -> Callable[[Index, Expr, Index, Expr], list[str]]:
    """`biased_store` for a product whose rows are output pixels and whose columns are output channels: row i
    lands at spatial index `position(batch index, i)` of channel column j."""
    channel_major = biased_store(ctx, node, mg, ct, lambda bidx, j: position(bidx, j[0]))

    def store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
        return channel_major(bidx, j[0], (i,), value)
    return store


def tap_major(weights: np.ndarray, group: int, taps: int, batch: tuple[int, ...]) -> np.ndarray:
    """Weights (M, C/G, *kernel) as A of an implicit-GEMM convolution, (*batch, M/G, taps x C/G) with the
    depth in (tap, channel) order."""
    mg, cg = weights.shape[0] // group, weights.shape[1]
    return weights.reshape(group, mg, cg, taps).transpose(0, 1, 3, 2).reshape(*batch, mg, taps * cg)


def im2col(ctx: KernelContext, shape: Sequence[int], window: Window, group: int, ct: str) -> tuple[list[str], Operand]:
    """C statements that write the window columns of each image and group, (C/G * k) x out and zero in the
    padding, to a row-major scratch array; and the operand they form. Along the last axis each tap is a
    contiguous (vectorisable) copy over the range of outputs where it lands inside the input."""
    images, channels, spatial, kernel, out = shape[0], shape[1], tuple(shape[2:]), window.kernel, window.out
    depth, last = channels // group * numel(kernel), len(out) - 1
    lines, pixels = source(ctx, 0, shape, ct)
    read = reader(pixels, shape, ct)
    target = layout(ctx, (images, group), depth, numel(out), ct)
    row, at = ctx.var("row"), [ctx.var("o") for _ in out]
    n, channel, *taps = unravel(row, (images, channels, *kernel))
    bidx, r = unravel(floordiv(row, depth), (images, group)), mod(row, depth)
    pos = [o * s - p + k * dl for o, s, p, k, dl in zip(at, window.strides, window.pads_begin, taps, window.dilations)]

    def slot(d: int, extra: Expr = Lit(0)) -> str:
        """The scratch element of column `extra` past the start of output positions at[:d + 1]."""
        column = sum((at[i] * numel(out[i + 1:]) for i in range(d + 1)), Lit(0)) + extra
        return ctx.c(target.element(bidx, r, column))

    def fill(start: str, stop: str, value: Expr) -> list[str]:
        o = at[last].name
        return [f"for (int64_t {o} = {start}; {o} < {stop}; ++{o}) {slot(last)} = {ctx.c(value)};"]

    lo, hi = f"lo_tab[{ctx.c(taps[last])}]", f"hi_tab[{ctx.c(taps[last])}]"
    body = fill("0", lo, lit(0, ct)) + fill(lo, hi, read((n, channel, *pos))) + fill(hi, str(out[last]), lit(0, ct))
    for d in range(last - 1, -1, -1):
        low, high = may_leave(window, d, spatial[d])
        checks = ([f"{ctx.c(pos[d])} < 0"] if low else []) + ([f"{ctx.c(pos[d])} >= {spatial[d]}"] if high else [])
        if checks:
            z = ctx.var("z")
            clear = serial_for(z, numel(out[d + 1:]), [f"{slot(d, z)} = 0;"])
            body = [f"if ({' || '.join(checks)}) {{", *indent(clear), "  continue;", "}"] + body
        body = serial_for(at[d], out[d], body)
    lines += sweep_tables(window, spatial)
    size = images * channels * numel(kernel)
    return lines + parallel_for(row, size, body, size * numel(out)), target



def sweep_tables(window: Window, spatial: Sequence[int]) -> list[str]:
    """The range of positions along the last output axis where each tap lands inside the input."""
    d = len(spatial) - 1
    return range_tables([covered(window.out[d], k * window.dilations[d] - window.pads_begin[d], window.strides[d],
                                 0, spatial[d]) for k in range(window.kernel[d])])



def may_leave(window: Window, d: int, size: int) -> tuple[bool, bool]:
    """Whether the window can reach below 0 and at or past `size` along spatial axis d."""
    return window.pads_begin[d] > 0, \
        (window.out[d] - 1) * window.strides[d] - window.pads_begin[d] + window.extent[d] > size



def conv_direct(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str]:
    """A row of outputs per (image, channel, outer position), accumulated over the group's input channels and
    the window's taps; along the last axis each tap covers a range of outputs known at compile time, which a
    vectorised loop sweeps without bounds checks."""
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    images, channels, spatial, kernel = x.shape[0], x.shape[1], tuple(x.shape[2:]), window.kernel
    cg, mg, out, last = channels // group, w.shape[0] // group, window.out, len(x.shape) - 3
    lines, pixels = source(ctx, 0, x.shape, ct)
    read = reader(pixels, x.shape, ct)
    t, ci, ow = ctx.var("t"), ctx.var("ci"), ctx.var("o")
    n, m, *outer = unravel(t, (images, w.shape[0], *out[:-1]))
    taps = [ctx.var("kt") for _ in kernel]
    pos = [o * s - p + k * dl for o, s, p, k, dl in zip((*outer, ow), window.strides, window.pads_begin, taps,
                                                        window.dilations)]
    pixel = read((n, floordiv(m, mg) * cg + ci, *pos))
    sweep = [f"const {ct} wv = {ctx.c(cast(ctx.read(1, (m, ci, *taps)), ct))};", "#pragma omp simd",
             f"for (int64_t {ow.name} = lo_tab[{taps[last].name}]; {ow.name} < hi_tab[{taps[last].name}]; "
             f"++{ow.name}) {{", f"  row[{ow.name}] += wv * {ctx.c(pixel)};", "}"]
    body = serial_for(taps[last], kernel[last], sweep)
    for d in range(last - 1, -1, -1):
        low, high = may_leave(window, d, spatial[d])
        checks = ([f"{ctx.c(pos[d])} < 0"] if low else []) + ([f"{ctx.c(pos[d])} >= {spatial[d]}"] if high else [])
        body = serial_for(taps[d], kernel[d], ([f"if ({' || '.join(checks)}) continue;"] if checks else []) + body)
    value = Load("row", ow, ct)
    if node.input(2) is not None:
        value = value + cast(ctx.read(2, (m,)), ct)
    task = [local_array(ct, "row", out[last])]
    task += serial_for(ow, out[last], [f"row[{ow.name}] = 0;"]) + serial_for(ci, cg, body)
    task += serial_for(ow, out[last], ctx.store(0, (n, m, *outer, ow), cast(value, ctype(y.dtype))))
    work = y.numel * cg * numel(kernel)
    return lines + sweep_tables(window, spatial) + parallel_for(t, images * w.shape[0] * numel(out[:-1]), task, work)



def transposed_weights(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> Operand:
    """A transposed convolution's weights as A: (M/G * taps x C/G) per group, row (output channel, tap)."""
    x, w = node.inputs[0], node.inputs[1]
    cg, mg, taps = x.shape[1] // group, w.shape[1], numel(window.kernel)
    weights = direct_buffer(ctx, 1, w.shape, ct)
    if weights is not None:
        const = None if w.const is None else w.const.reshape(1, group, cg, mg * taps).swapaxes(-2, -1)
        return strided(weights, ct, (1, group), (0, cg * mg * taps), mg * taps, cg, 1, mg * taps, const)
    return Operand((1, group), mg * taps, cg, lambda bidx, r, c: cast(
        ctx.read(1, (bidx[1] * cg + c, *unravel(r, (mg, *window.kernel)))), ct))


def conv_transpose_disjoint(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str] | None:
    """A transposed convolution whose taps never overlap (stride equal to the kernel, no dilation, pads or
    output padding: U-Net's 2 x 2 upsampling): each output is one tap of one input pixel, so the product of
    the transposed weights and the input stores every sum, bias and fused epilogue straight to its output
    (row (channel, tap), column (input pixel) at pixel x stride + tap), with no scratch array or gather.
    None where taps overlap."""
    x = node.inputs[0]
    spatial, kernel = tuple(x.shape[2:]), window.kernel
    if tuple(window.strides) != tuple(kernel) or set(window.dilations) != {1} or any(window.pads_begin) or \
            tuple(window.out) != tuple(i * k for i, k in zip(spatial, kernel)):
        return None
    cg, mg, pixels = x.shape[1] // group, node.inputs[1].shape[1], numel(spatial)
    lines, inputs = source(ctx, 0, x.shape, ct)
    b = strided(inputs, ct, (x.shape[0], group), (x.shape[1] * pixels, cg * pixels), cg, pixels, pixels, 1)

    def position(bidx: Index, i: Expr, j: Index) -> Index:
        tap = unravel(mod(i, numel(kernel)), kernel)
        return tuple(p * k + t for p, k, t in zip(j, kernel, tap))

    def store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
        return channel_store(bidx, floordiv(i, numel(kernel)), position(bidx, i, j), value)
    channel_store = biased_store_at(ctx, node, mg, ct)
    product = Product((x.shape[0], group), transposed_weights(ctx, node, window, group, ct), b, ct, store,
                      columns=spatial)
    return [DISJOINT_NOTE] + lines + product_kernel(ctx, product)


def conv_transpose(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str]:
    """Per image and group, the (M/G * k x C/G) transposed weights times the (C/G x in) input give every
    input pixel's contribution to each tap (a register-tiled product into a scratch array); a row of outputs
    then gathers them: output (in * stride - pad + tap * dilation) from input `in` for each tap, over the
    ranges of `in` that land inside the output (tables), before one vectorisable loop stores the row."""
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    images, spatial, kernel, out = x.shape[0], tuple(x.shape[2:]), window.kernel, window.out
    cg, mg, taps, pixels = x.shape[1] // group, w.shape[1], numel(window.kernel), numel(x.shape[2:])
    batch = (images, group)
    a = transposed_weights(ctx, node, window, group, ct)
    lines, inputs = source(ctx, 0, x.shape, ct)
    b = strided(inputs, ct, batch, (x.shape[1] * pixels, cg * pixels), cg, pixels, pixels, 1)
    parts = layout(ctx, batch, mg * taps, pixels, ct)

    def keep(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
        return [f"{ctx.c(parts.element(bidx, i, j[0]))} = {ctx.c(value)};"]

    lines += product_kernel(ctx, Product(batch, a, b, ct, keep))
    t, ow, q = ctx.var("t"), ctx.var("o"), ctx.var("q")
    n, m, *outer = unravel(t, (images, y.shape[1], *out[:-1]))
    tap, at = [ctx.var("kt") for _ in kernel], [ctx.var("q") for _ in kernel[:-1]] + [q]
    last = len(kernel) - 1
    part = parts.element((n, floordiv(m, mg)), mod(m, mg) * taps + linear(tap, kernel), linear(at, spatial))
    target = q * window.strides[last] - window.pads_begin[last] + tap[last] * window.dilations[last]
    tables = range_tables([covered(spatial[last], k * window.dilations[last] - window.pads_begin[last],
                                   window.strides[last], 0, out[last]) for k in range(kernel[last])])
    lo, hi = f"lo_tab[{tap[last].name}]", f"hi_tab[{tap[last].name}]"
    body = serial_for(tap[last], kernel[last], [
        f"for (int64_t {q.name} = {lo}; {q.name} < {hi}; ++{q.name}) row[{ctx.c(target)}] += {ctx.c(part)};"])
    for d in range(last - 1, -1, -1):
        num = ctx.var("num")
        offset = outer[d] + window.pads_begin[d] - tap[d] * window.dilations[d]
        skip = f"{num.name} < 0" + (f" || {num.name} % {window.strides[d]} != 0" if window.strides[d] > 1 else "")
        body = serial_for(tap[d], kernel[d], [
            f"const int64_t {num.name} = {ctx.c(offset)};", f"if ({skip}) continue;",
            f"const int64_t {at[d].name} = {ctx.c(floordiv(num, window.strides[d]))};",
            f"if ({at[d].name} >= {spatial[d]}) continue;"] + body)
    value = Load("row", ow, ct)
    if node.input(2) is not None:
        value = value + cast(ctx.read(2, (m,)), ct)
    task = [local_array(ct, "row", out[last])] + serial_for(ow, out[last], [f"row[{ow.name}] = 0;"]) + body
    task += serial_for(ow, out[last], ctx.store(0, (n, m, *outer, ow), cast(value, ctype(y.dtype))))
    return lines + tables + parallel_for(t, images * y.shape[1] * numel(out[:-1]), task, y.numel * taps)


def conv_outer_window(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str] | None:
    """A 3-D convolution whose window slides along depth only (k x 1 x 1 unstrided and unpadded across height
    and width, as S3D's temporal convolutions) as an implicit GEMM with no copy of the input: each output
    depth's taps are planes of the input at a fixed shift, so per output depth and column tile the taps that
    land inside the input (those in the depth padding are left out) are packed, fused producers applied, into
    one contiguous panel of (tap, channel) rows that every row tile of output channels then reads. Read in
    place instead, B's rows lie a whole depth of planes apart, which maps them to a few cache sets (S3D's
    64-channel 7 x 1 x 1 at 112 x 112: 50 KiB planes) and every load of a tile's B missed L1 and L2. None where
    this does not apply, or the panel would not fit a thread's stack."""
    isa = microkernel.target_isa()
    x, w = node.inputs[0], node.inputs[1]
    if isa is None or ct != "float" or len(window.kernel) != 3 or window.kernel[1:] != (1, 1) or \
            window.strides[1:] != (1, 1) or any(window.pads_begin[1:]) or any(window.pads_end[1:]):
        return None
    if w.const is None or direct_buffer(ctx, 1, w.shape, ct) is None:
        return None
    images, channels, (depth, height, width_) = x.shape[0], x.shape[1], x.shape[2:]
    plane = height * width_
    cg, mg, taps, od = channels // group, w.shape[0] // group, window.kernel[0], window.out[0]
    rows, vectors, _ = isa.tile_shape(mg, plane)
    width = vectors * isa.lanes
    if not fits_stack(taps * cg * width):
        return None
    stride, pad, dilation = window.strides[0], window.pads_begin[0], window.dilations[0]
    spans = [covered(taps, o * stride - pad, dilation, 0, depth) for o in range(od)]
    batch, a_batch = (images, group, od), (1, group, 1)
    a = Operand(a_batch, mg, taps * cg, lambda bidx, r, c: Lit(0),
                constant=tap_major(w.const, group, taps, a_batch))
    a_lines, a_at, a_steps = packed_a(ctx, a, rows)
    store = biased_store(ctx, node, mg, ct, lambda bidx, j: (bidx[2], *unravel(j[0], (height, width_))))
    unused = Operand(batch, taps * cg, plane, lambda bidx, r, c: Lit(0))
    finish = tile_finish(ctx, Product(batch, a, unused, ct, store), width)
    tables, span_at = span_tables(ctx, spans, 1)
    task, entry, jt, j0, it, i0 = (ctx.var(h) for h in ("t", "b", "jt", "j", "it", "i"))
    r, tap, ci, plane_in, j = (ctx.var(h) for h in ("r", "tap", "ci", "d", "jj"))
    col_tiles, row_tiles = -(-plane // width), -(-mg // rows)
    bidx = unravel(entry, batch)
    k_first, k_count = span_at(bidx)

    def pack(cols: int) -> list[str]:
        value = cast(ctx.read(0, (bidx[0], bidx[1] * cg + ci, plane_in, *unravel(j0 + j, (height, width_)))), ct)
        fill = serial_for(j, cols, ctx.value("pv", value) + [f"panel[{r.name} * {width} + {j.name}] = pv;"], simd=True)
        zero = [f"for (int64_t {j.name} = {cols}; {j.name} < {width}; ++{j.name}) panel[{r.name} * {width} + "
                f"{j.name}] = 0;"] if cols < width else []
        return [f"for (int64_t {r.name} = 0; {r.name} < {k_count} * {cg}; ++{r.name}) {{",
                f"  const int64_t {tap.name} = {k_first} + {r.name} / {cg}, {ci.name} = {r.name} % {cg};",
                f"  const int64_t {plane_in.name} = {ctx.c(bidx[2] * stride - pad)} + {tap.name} * {dilation};",
                *indent(fill + zero), "}"]

    def tile(got: int) -> list[str]:
        kernel = ctx.helper(microkernel.name(isa, got, vectors, a_steps), microkernel.code(isa, got, vectors, a_steps))
        a_ptr = a_at(broadcast_index(bidx, batch, a_batch), it)
        call = f"{kernel}({k_count} * {cg}, ({a_ptr} + {k_first} * {cg * a_steps[1]}), panel, {width}, tile);"
        return [call] + edges(j0, width, plane, lambda cols: finish(bidx, i0, j0, got, cols, "tile", width))

    body = [f"const int64_t {jt.name} = {task.name} / {od} % {col_tiles}, {j0.name} = {jt.name} * {width};",
            f"const int64_t {entry.name} = {task.name} / {od * col_tiles} * {od} + {task.name} % {od};",
            local_array("float", "panel", taps * cg * width), local_array("float", "tile", rows * width),
            *edges(j0, width, plane, pack),
            f"for (int64_t {it.name} = 0; {it.name} < {row_tiles}; ++{it.name}) {{",
            f"  const int64_t {i0.name} = {it.name} * {rows};",
            *indent(edges(i0, rows, mg, tile)), "}"]
    work = numel(batch) * mg * plane * taps * cg
    return tables + a_lines + parallel_for(task, numel(batch) * col_tiles, body, work)


def conv_implicit(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str] | None:
    """A k x k (any rank, stride, dilation, groups of many channels) float32 convolution as an implicit GEMM on
    the segmented microkernels: the input is copied once, zero-padded and split into stride phases (fused
    producers applied), so that each tap reads a contiguous run of a grid of output rows padded to the phase
    width, with no im2col; weights are packed at compile time in (tap, channel) order; the grid's padding
    columns are computed and never stored. Where the output rows are whole vectors, so are the grid's rows
    (more padding): every run of stored columns is then whole vectors, with no scalar remainder of the
    epilogue (EfficientNet-B0's stem with its Swish, 1 thread: 0.47 -> 0.37 ms). None where this CPU has no
    microkernels or the type is not float."""
    isa = microkernel.target_isa()
    if isa is None or ct != "float":
        return None
    x, w = node.inputs[0], node.inputs[1]
    images, channels, kernel, out = x.shape[0], x.shape[1], window.kernel, window.out
    cg, mg, taps, rank = channels // group, w.shape[0] // group, numel(window.kernel), len(window.kernel)
    phases = Phases(window, tuple(x.shape[2:]), isa.lanes if out[-1] % isa.lanes == 0 else 1)
    grid = (out[-2] if rank > 1 else 1, phases.extent[-1])
    columns = numel(grid)
    rows, vectors, _ = isa.tile_shape(mg, columns)
    outer = tuple(out[:-2])
    weights = direct_buffer(ctx, 1, w.shape, ct) is not None and w.const is not None
    width = vectors * isa.lanes
    panels = panels_pay(-(-mg // rows), cg, taps * cg, width, images * group * numel(out[:-2]) * -(-columns // width))
    if weights and pixel_rows_pay(isa, out, columns, mg, taps * cg, panels):
        return implicit_pixel_rows(ctx, node, window, group)
    col_tiles = -(-columns // width)
    farthest = sum((o - 1) * s for o, s in zip(outer, phases.steps)) + max(phases.offsets) + col_tiles * width
    buffer = ctx.scratch(ct, images * channels * phases.block + max(0, farthest - phases.block))
    lines = phases.copy(ctx, x.shape, ct, buffer)
    batch = (images, group, *outer)
    a_batch = (1, group, *(1,) * len(outer))
    const = tap_major(w.const, group, taps, a_batch) if weights else None
    a = Operand(a_batch, mg, taps * cg, lambda bidx, r, c: cast(
        ctx.read(1, (bidx[1] * mg + r, mod(c, cg), *unravel(floordiv(c, cg), kernel))), ct), constant=const)
    a_lines, a_at, a_steps = packed_a(ctx, a, rows)
    store = biased_store(ctx, node, mg, ct, lambda bidx, j: (*bidx[2:], *(j if rank > 1 else j[1:])))
    unused = Operand(batch, taps * cg, columns, lambda bidx, r, c: Lit(0))
    finish = tile_finish(ctx, Product(batch, a, unused, ct, store, grid, out[-1]), width)

    def b_at(bidx: Index, jt: Var) -> str:
        start = (bidx[0] * channels + bidx[1] * cg) * phases.block + jt * width + \
            sum((o * s for o, s in zip(bidx[2:], phases.steps)), Lit(0))
        return f"({buffer} + {ctx.c(start)})"

    tiling = Tiling(isa, batch, mg, columns, cg, tuple(phases.offsets), rows, vectors, a_steps, phases.block,
                    lambda bidx, it: a_at(broadcast_index(bidx, batch, a_batch), it), b_at, finish)
    if panels:
        return lines + a_lines + [PANELS_NOTE] + panel_tasks(ctx, tiling)
    return lines + a_lines + microkernel_tasks(ctx, tiling)


def panels_pay(row_tiles: int, channels: int, depth: int, width: int, tasks: int) -> bool:
    """Whether an implicit-GEMM convolution's column tiles are better packed into a contiguous panel per task
    than read in place by the segmented microkernels, whose B rows lie a channel's phase block apart: a
    stream per channel, which neither the prefetchers nor L1 keep up with (Intel Xeon, AVX-512, 1 thread:
    128 -> 128 3 x 3 stride 2 at 56 x 56 2.18 -> 1.86 ms, 32 -> 64 stride 2 at 208 x 208 4.69 -> 3.79). It
    pays where PANEL_MIN_ROW_TILES row tiles reuse a panel, the input has PANEL_MIN_CHANNELS channels per
    group (a stem's 3 planes stream well: S3D's 1 x 7 x 7 went 20.5 -> 23.6 ms), the panel (depth x width)
    fits a thread's stack and half of L2, and there are PANEL_MIN_TASKS column tiles to share among the
    threads (one task per column tile: 7 x 7 outputs have too few)."""
    return row_tiles >= PANEL_MIN_ROW_TILES and channels >= PANEL_MIN_CHANNELS and tasks >= PANEL_MIN_TASKS and \
        fits_stack(depth * width) and depth * width * 4 <= gemm.l2_bytes() // 2


def panel_tasks(ctx: KernelContext, t: Tiling) -> list[str]:
    """One task per batch entry and column tile: its B rows (each segment's at its offset, `t.ldb` apart per
    row of the depth) copied into one contiguous stack panel, then every row tile's product on the plain
    microkernel over the whole depth, reading the panel `width` apart."""
    row_tiles, col_tiles = t.tiles
    depth = t.depth * len(t.segments)
    task, jt, j0, it, i0, k, s, j = (ctx.var(h) for h in ("t", "jt", "j", "it", "i", "k", "s", "jj"))
    head: list[str] = [f"const int64_t {jt.name} = {task.name} % {col_tiles}, {j0.name} = {jt.name} * {t.width};"]
    bidx = unravel(floordiv(task, col_tiles), t.batch) if numel(t.batch) > 1 else tuple(Lit(0) for _ in t.batch)
    offsets = ctx.var("seg_offsets")
    copy = [f"const float* const from = {t.b_at(bidx, jt)} + {offsets.name}[{s.name}] + {k.name} * {t.ldb};",
            "#pragma omp simd",
            f"for (int64_t {j.name} = 0; {j.name} < {t.width}; ++{j.name}) "
            f"panel[({s.name} * {t.depth} + {k.name}) * {t.width} + {j.name}] = from[{j.name}];"]
    pack = serial_for(s, len(t.segments), serial_for(k, t.depth, copy))

    def tile(got: int) -> list[str]:
        call = f"{t.kernel(ctx, got)}({depth}, {t.a_at(bidx, it)}, panel, {t.width}, tile);"
        return [call] + edges(j0, t.width, t.n, lambda cols: t.finish(bidx, i0, j0, got, cols, "tile", t.width))
    body = head + [local_array("float", "panel", depth * t.width), local_array("float", "tile", t.rows * t.width)]
    body += pack + [f"for (int64_t {it.name} = 0; {it.name} < {row_tiles}; ++{it.name}) {{",
                    f"  const int64_t {i0.name} = {it.name} * {t.rows};", *indent(edges(i0, t.rows, t.m, tile)), "}"]
    work = numel(t.batch) * t.m * t.n * depth
    return [table(offsets.name, t.segments)] + parallel_for(task, numel(t.batch) * col_tiles, body, work)


def implicit_tile_costs(isa: microkernel.Isa, out: Sequence[int], columns: int, mg: int, depth: int,
                        panels: bool = False) -> tuple[float, float]:
    """Cycles per step of depth of an implicit-GEMM convolution's tiles: with the output channels as rows over
    `columns` of the padded grid (per outer position; with `panels`, each column tile's panel packed first),
    and with each output row's pixels as rows (tiles as `column_step` shapes them for a product `depth` deep).
    Their stores are not charged: both finish on whole vectors (pixel rows by register transposes,
    `column_finish`); charging pixel rows 32 depth steps a tile, as when they stored by scalars, kept the
    3-channel stems on channel rows, 1 thread on the AMD EPYC (Zen 4) 7-20% slower (C3D's 3 x 3 x 3 at
    16 x 112 x 112 33.4 -> 29.7 ms, YOLOv4's 3 x 3 at 416 x 416 5.7-6.5 -> 4.8-5.0, S3D's 1 x 7 x 7 stride 2
    53.8 -> 48.7)."""
    by_channels = numel(out[:-2]) * isa.tile_shape(mg, columns)[2] * (1 + PANEL_PACK_ROWS / mg if panels else 1)
    by_pixels = numel(out[:-1]) * isa.tile_shape(out[-1], mg, column_step(isa, out[-1], depth))[2]
    return by_channels, by_pixels


def pixel_rows_pay(isa: microkernel.Isa, out: Sequence[int], columns: int, mg: int, depth: int,
                   panels: bool = False) -> bool:
    """Whether an implicit-GEMM convolution's tiles cost less with each output row's pixels as rows than with
    the output channels as rows (`implicit_tile_costs`)."""
    by_channels, by_pixels = implicit_tile_costs(isa, out, columns, mg, depth, panels)
    return by_pixels < by_channels


def implicit_pixel_rows(ctx: KernelContext, node: Node, window: Window, group: int) -> list[str]:
    """`conv_implicit` the other way round, for output rows too short to fill a grid of column tiles without
    waste (VGG's 14 x 14, YOLO's 13 x 13) and wherever it saves packing panels (strided 3 x 3): per output
    row, its pixels are the product's rows, read in place from a phased copy with the channels interleaved by
    rows (A's column k one phased row further, each tap's segment at its shift), and the output channels its
    columns, from the weights packed at compile time in (tap, channel) order; each tile column is stored as
    one run of pixels down its channel's plane. Where the whole copy would not stay in L2, each task copies
    and computes one band of output rows (`pixel_row_bands`)."""
    isa = microkernel.target_isa()
    assert isa is not None
    x, w = node.inputs[0], node.inputs[1]
    images, channels, out, ct = x.shape[0], x.shape[1], window.out, "float"
    cg, mg, taps = channels // group, w.shape[0] // group, numel(window.kernel)
    rows, vectors, _ = isa.tile_shape(out[-1], mg, column_step(isa, out[-1], taps * cg))
    width = vectors * isa.lanes
    b_batch = (1, group, *(1,) * (len(out) - 1))
    b = Operand(b_batch, taps * cg, mg, lambda bidx, r, c: Lit(0),
                constant=tap_major(w.const, group, taps, b_batch).swapaxes(-2, -1))
    store = pixel_rows_store(ctx, node, mg, ct, lambda bidx, i: (*bidx[2:], i))
    packed = packed_b(ctx, Product((1,), Operand((1,), out[-1], taps * cg, lambda bidx, r, c: Lit(0)), b, ct, store),
                      width)
    assert packed is not None
    _, b_at, ldb, _ = packed

    def tiling(phases: Phases, batch: tuple[int, ...], buffer: str, entry: Callable[[Index], Expr],
               store: Callable[[Index, Expr, Index, Expr], list[str]]) -> Tiling:
        """Tiles over `batch` (group index second to last, output positions after it) reading A from `buffer`,
        a copy laid out as `phases` in which a batch entry's row starts at element `entry(batch index)`."""
        product = Product(batch, Operand(batch, out[-1], taps * cg, lambda bidx, r, c: Lit(0)), b, ct, store,
                          by_columns=True)
        entry_b = (*(1,) * (len(batch) - len(out)), group, *(1,) * (len(out) - 1))

        def a_at(bidx: Index, it: Var) -> str:
            return f"({buffer} + {ctx.c(entry(bidx) + it * rows)})"
        return Tiling(isa, batch, out[-1], mg, cg, tuple(phases.offsets), rows, vectors, (1, phases.channel_step),
                      int(ldb), a_at,
                      lambda bidx, jt: b_at((Lit(0), *broadcast_index(bidx, batch, entry_b)[-len(out):]), jt),
                      column_finish(ctx, product, isa.lanes), shift_a=True, b_batch=entry_b)

    phases = Phases(window, tuple(x.shape[2:]), channels=channels)
    band = 0 if gemm.depth_splits(taps * cg, width) else band_rows(window, tuple(x.shape[2:]), images, channels)
    if band:
        return pixel_row_bands(ctx, node, window, band, tiling, store)
    buffer = ctx.scratch(ct, images * channels * phases.block)
    lines = [PIXEL_ROWS_NOTE] + phases.copy(ctx, x.shape, ct, buffer)
    whole = tiling(phases, (images, group, *out[:-1]), buffer, lambda bidx: phases.channel_start(
        bidx[0], bidx[1] * cg, channels) + sum((o * s for o, s in zip(bidx[2:], phases.steps)), Lit(0)), store)
    spans = kernel_row_spans(ctx, window, x.shape[2]) if len(out) == 2 and not whole.splits_depth() else None
    if spans is not None:
        tables, whole = spans[0], replace(whole, spans=spans[1])
        lines = tables + lines
    return lines + microkernel_tasks(ctx, whole)


def band_rows(window: Window, spatial: tuple[int, ...], images: int, channels: int) -> int:
    """Output rows per band of a 2-D pixel-row convolution whose whole phased copy outgrows half of L2: the most
    whose copy (every channel's padded rows) fits BAND_CACHE_SHARE of L2 and a thread's stack, while the
    bands give BAND_MIN_TASKS tasks to share among the threads. 0 where the whole copy serves (it fits L2, a
    3-D window, a band of one row not fitting)."""
    if len(window.kernel) != 2:
        return 0
    whole = Phases(window, spatial, channels=channels)
    if images * channels * whole.block * 4 <= gemm.l2_bytes() // 2:
        return 0
    height = window.out[0]

    sizes = {band: channels * Phases(replace(window, out=(band, window.out[1])), spatial, channels=channels).block
             for band in range(1, height + 1)}
    fitting = [band for band, size in sizes.items() if size * 4 <= BAND_CACHE_SHARE * gemm.l2_bytes() and
               fits_stack(size)]
    if not fitting:
        return 0
    band = fitting[-1]
    while band > 1 and images * -(-height // band) < BAND_MIN_TASKS:
        band -= 1
    return band


def pixel_row_bands(ctx: KernelContext, node: Node, window: Window, band: int,
                    tiling: Callable[[Phases, tuple[int, ...], str, Callable[[Index], Expr],
                                      Callable[[Index, Expr, Index, Expr], list[str]]], Tiling],
                    store: Callable[[Index, Expr, Index, Expr], list[str]]) -> list[str]:
    """A 2-D pixel-row convolution one band of `band` output rows per task: the band's padded input rows are
    copied (phased, channels interleaved, fused producers applied) into a stack array that stays in L2, and
    its tiles run at once from there, instead of a whole copy written out to memory and read back (YOLOv4's
    32 -> 64 stride 2 at 416 x 416: a 22 MB copy)."""
    x = node.inputs[0]
    images, channels, spatial, out = x.shape[0], x.shape[1], tuple(x.shape[2:]), window.out
    group = channels // node.inputs[1].shape[1]
    cg, bands = channels // group, -(-out[0] // band)
    task, o0, c, padded = ctx.var("t"), ctx.var("o"), ctx.var("c"), ctx.var("pr")
    n = floordiv(task, bands)
    spans = kernel_row_spans(ctx, window, spatial[0])

    def body(height: int) -> list[str]:
        phases = Phases(replace(window, out=(height, out[1])), spatial, channels=channels)
        copy = phases.fill_rows(ctx, n, c, padded, "float", "band", phases.channel_start(Lit(0), c, channels),
                                origin=(o0,))

        def band_store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
            return store((n, bidx[0], o0 + bidx[1]), i, j, value)
        tiles = tiling(phases, (group, height), "band",
                       lambda bidx: phases.channel_start(Lit(0), bidx[0] * cg, channels) + bidx[1] * phases.steps[0],
                       band_store)
        if spans is not None:
            tiles = replace(tiles, spans=lambda bidx: spans[1]((n, bidx[0], o0 + bidx[1])))
        return serial_for(c, channels, serial_for(padded, phases.rows, copy)) + \
            microkernel_tasks(ctx, tiles, parallel=False)

    biggest = Phases(replace(window, out=(band, out[1])), spatial, channels=channels)
    head = [f"const int64_t {o0.name} = {task.name} % {bands} * {band};",
            local_array("float", "band", channels * biggest.block)]
    work = numel(node.outputs[0].shape) * numel(window.kernel) * cg
    lines = [PIXEL_ROWS_NOTE, BANDS_NOTE] + (spans[0] if spans is not None else [])
    return lines + parallel_for(task, images * bands, head + edges(o0, band, out[0], body), work)


def kernel_row_spans(ctx: KernelContext, window: Window, height: int
                     ) -> tuple[list[str], Callable[[Index], tuple[str, str]]] | None:
    """For a 2-D window with each output row as a batch entry (index 2): per output row, the run of taps whose
    kernel row lands inside the input's rows (first tap, count), so that rows of taps reading only the zero
    padding are left out (a 3 x 3 head on SSD's 1 x 1 map sums 3 of its 9 taps; the first and last rows of
    VGG's 14 x 14 maps 6). None where every output row uses every kernel row."""
    kh, kw = window.kernel
    used = [covered(kh, o * window.strides[0] - window.pads_begin[0], window.dilations[0], 0, height)
            for o in range(window.out[0])]
    if all(span == (0, kh) for span in used):
        return None
    return span_tables(ctx, used, kw)


def span_tables(ctx: KernelContext, spans: Sequence[tuple[int, int]], taps_per: int
                ) -> tuple[list[str], Callable[[Index], tuple[str, str]]]:
    """Tables of the taps each batch entry sums, indexed by the entry's index 2 (an output depth or row):
    `spans` [lo, hi) of the kernel's outer axis, each step of which is `taps_per` taps. Returns the tables and,
    per batch index, the C expressions of its first tap and tap count (a Tiling's `spans`)."""
    first, count = ctx.var("span_first"), ctx.var("span_count")
    tables = [table(first.name, [lo * taps_per for lo, _ in spans]),
              table(count.name, [(hi - lo) * taps_per for lo, hi in spans])]
    return tables, lambda bidx: (f"{first.name}[{ctx.c(bidx[2])}]", f"{count.name}[{ctx.c(bidx[2])}]")


def conv_depthwise(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str] | None:
    """One input channel per group (depthwise, any channel multiplier): on small planes with the channels in
    the vector lanes (lanes.py), otherwise on `plane_window`, each output the balanced sum of its taps times
    their weights (held in registers per output channel), plus the bias."""
    x, w = node.inputs[0], node.inputs[1]
    if x.shape[1] != group:
        return None
    lanes = depthwise_lanes(ctx, node, window, ct)
    if lanes is not None:
        return lanes
    taps = list(np.ndindex(*window.kernel))

    def prelude(m: Expr) -> list[str]:
        lines = []
        for k, tap in enumerate(taps):
            lines += ctx.value(f"wt{k}", cast(ctx.read(1, (m, Lit(0), *(Lit(t) for t in tap))), ct))
        return lines

    def finish(m: Expr, value: Expr) -> Expr:
        return value + cast(ctx.read(2, (m,)), ct) if node.input(2) is not None else value

    def combine(values: list[Expr], name: str) -> list[str]:
        return [f"const {ct} {name} = {ctx.c(balanced_sum([Var(f'wt{k}', ct) * v for k, v in enumerate(values)]))};"]

    fold = PlaneFold(combine, "0", prelude, finish)
    return plane_window(ctx, node, window, group, w.shape[0] // group, ct, fold)
