"""Depthwise convolutions with the channels in the vector lanes (on planes that fit the stack): per image and
block of as many channels as a vector holds, the padded input is copied (fused producers applied) into a
stack array of [row][column][lane], so that every tap of every output pixel, at any stride or dilation, is
one aligned vector load multiplied by one vector of weights (packed at compile time as [block][tap][lane]);
output pixels accumulate a few at a time in registers, and the fused epilogue runs per channel over the whole
plane in one flat vector loop. Whole blocks of channels go in and out by register transposes, as NCHWc
runtimes reorder. On 7 x 7 outputs this beats the plane kernel (planes.py), whose per-channel padding and rows
shorter than a vector dominate there, and on strided or 5 x 5 windows at any size: AMD EPYC (AVX-512), 1
thread, against onnxruntime 1.32: 240 channels 5 x 5 at 28 x 28 0.189 -> 0.146 ms (ORT 0.157), the same
at stride 2 0.086 -> 0.069 (ORT 0.063), 1152 channels 5 x 5 at 7 x 7 0.080 -> 0.060 (ORT 0.057)."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Node
from ..kir.expr import Expr, Load, cast, ctype, floordiv, mod, numel, unravel
from ..kir.kernel import KernelContext, fits_stack, local_array, overlapped_for, overlapped_groups, parallel_for
from ..kir.kernel import serial_for
from . import microkernel
from .blocked import pixels_per_step
from .gemm import direct_buffer
from .planes import producer_plane
from .vectors import transpose_helper, vector_type
from .window import Window

LANES_MAX_WIDTH = 8        # output widths up to which the lanes kernel takes every depthwise window
LANES_MIN_TAPS = 25        # taps from which it takes wider outputs too (strided windows take it at any size)
LANES_STACK_FLOATS = 1 << 16   # floats each of the padded input and the output may take on the stack


def depthwise_lanes(ctx: KernelContext, node: Node, window: Window, ct: str) -> list[str] | None:
    """The 2-D depthwise convolution (one output channel per input channel, weights known at compile time)
    with channels in the vector lanes; None where it does not apply or would not pay (wide rows, too few
    channels to fill a vector, planes beyond LANES_STACK_FLOATS)."""
    isa = microkernel.target_isa()
    x, w = node.inputs[0], node.inputs[1]
    if isa is None or ct != "float" or len(window.kernel) != 2 or w.const is None or \
            direct_buffer(ctx, 1, w.shape, ct) is None or w.shape[0] != x.shape[1]:
        return None
    lanes, (images, channels, height, width) = isa.lanes, x.shape
    out_h, out_w = window.out
    (top, left), (sh, sw), (dh, dw) = window.pads_begin, window.strides, window.dilations
    kh, kw = window.kernel
    rows_p = max((out_h - 1) * sh + (kh - 1) * dh + 1, top + height)
    cols_p = max((out_w - 1) * sw + (kw - 1) * dw + 1, left + width)
    if channels < lanes or not lanes_pay(window) or rows_p * cols_p * lanes > LANES_STACK_FLOATS or \
            out_h * out_w * lanes > LANES_STACK_FLOATS or not fits_stack(LANES_STACK_FLOATS):
        return None
    blocks, taps = -(-channels // lanes), kh * kw
    vtype = vector_type(ctx, lanes)

    def packed(weights: np.ndarray = w.const) -> np.ndarray:
        padded = np.zeros((blocks * lanes, taps), np.float32)
        padded[:channels] = weights.reshape(channels, taps)
        return padded.reshape(blocks, lanes, taps).swapaxes(1, 2)        # [block][tap][lane]
    weights = ctx.weight(packed)

    task = ctx.var("t")
    n, block = floordiv(task, blocks), mod(task, blocks)
    body = [local_array(ct, "lanes_in", rows_p * cols_p * lanes), local_array(ct, "lanes_out", out_h * out_w * lanes),
            f"const float* const wb = {weights} + {ctx.c(block)} * {taps * lanes};"]
    geometry = (height, width, rows_p, cols_p, top, left)
    transposed = channels % lanes == 0 and height * width >= lanes and out_h * out_w >= lanes
    body += _transposed_in(ctx, node, n, block, geometry, lanes, vtype, ct) if transposed else \
        _scattered_in(ctx, n, block * lanes, channels, geometry, lanes, ct)
    body += _pixels(window, cols_p, out_w, pixels_per_step(isa), lanes, vtype)
    body += _transposed_out(ctx, node, n, block, (out_h, out_w), lanes, vtype, ct) if transposed else \
        _epilogue(ctx, node, n, block * lanes, channels, (out_h, out_w), lanes, ct)
    return parallel_for(task, images * blocks, body, node.outputs[0].numel * taps)


def lanes_pay(window: Window) -> bool:
    """Whether the lanes kernel beats the plane kernel (planes.py) on this window. The plane kernel shares each
    row it loads among several output rows and needs no transposes, which wins for unstrided windows of few
    taps on rows wider than LANES_MAX_WIDTH. AMD EPYC (AVX-512), 1 thread, lanes against planes (ms):
    3 x 3 at 28 x 28, 256 channels 0.096 / 0.085; 5 x 5 at 28 x 28, 240 channels 0.146 / 0.188; 5 x 5 stride 2
    at 56 x 56, 144 channels 0.135 / 0.171; 3 x 3 stride 2 at 56 x 56, 144 channels 0.092 / 0.100."""
    return window.out[-1] <= LANES_MAX_WIDTH or any(s > 1 for s in window.strides) or \
        numel(window.kernel) >= LANES_MIN_TAPS


def _scattered_in(ctx: KernelContext, n: Expr, first: Expr, channels: int, geometry: tuple[int, ...], lanes: int,
                  ct: str) -> list[str]:
    """Fill `lanes_in` one lane at a time, element by element (channels that do not fill the last block, or
    planes smaller than a vector): zeroed first, the lanes beyond the channels left at zero."""
    height, width, _, cols_p, top, left = geometry
    lane, h, col = ctx.var("l"), ctx.var("h"), ctx.var("w")
    channel = first + lane
    plane = producer_plane(ctx, n, channel, (height, width), ct, lanes)
    plane += serial_for(h, height, serial_for(col, width, [
        f"lanes_in[(({h.name} + {top}) * {cols_p} + {col.name} + {left}) * {lanes} + {lane.name}] = "
        f"src[{h.name} * {width} + {col.name}];"]))
    skip = [f"if ({ctx.c(channel)} >= {channels}) continue;"] if channels % lanes else []
    return ["memset(lanes_in, 0, sizeof lanes_in);"] + serial_for(lane, lanes, skip + plane)


def _transposed_in(ctx: KernelContext, node: Node, n: Expr, block: Expr, geometry: tuple[int, ...], lanes: int,
                   vtype: str, ct: str) -> list[str]:
    """Fill `lanes_in` from a whole block of channel planes by register transposes of `lanes` pixels at a time,
    straight into place along each row where rows are that wide, else through a square of `lanes` vectors
    per group of the flat plane (a last group of a row or plane overlaps the one before), the padding zeroed
    around them. The planes are read in place, or first computed through the fused producers into a stack
    array, one flat loop per channel."""
    height, width, rows_p, cols_p, top, left = geometry
    plane = height * width
    x = node.inputs[0]
    lines: list[str] = []
    source = direct_buffer(ctx, 0, x.shape, ct)
    if source is not None:
        start = ctx.c((n * x.shape[1] + block * lanes) * plane)
        lines.append(f"const float* const planes_in = {source} + {start};")
    else:
        lane, e = ctx.var("l"), ctx.var("e")
        value = cast(ctx.read(0, (n, block * lanes + lane, *unravel(e, (height, width)))), ct)
        fill = overlapped_for(e, 0, plane, lanes, ctx.value("sv", value) + [f"planes_src[{lane.name} * {plane} + "
                                                                               f"{e.name}] = sv;"])
        lines += [local_array(ct, "planes_src", lanes * plane)] + serial_for(lane, lanes, fill)
        lines.append("const float* const planes_in = planes_src;")
    r, c = ctx.var("r"), ctx.var("c")
    at = f"lanes_in + ({r.name} * {cols_p} + {c.name}) * {lanes}"
    zero_row = f"for (int64_t {c.name} = 0; {c.name} < {cols_p}; ++{c.name}) *({vtype}*)({at}) = zero;"
    sides = [f"for (int64_t {c.name} = 0; {c.name} < {left}; ++{c.name}) *({vtype}*)({at}) = zero;",
             f"for (int64_t {c.name} = {left + width}; {c.name} < {cols_p}; ++{c.name}) *({vtype}*)({at}) = zero;"]
    lines += [f"const {vtype} zero = {{0}};",
              f"for (int64_t {r.name} = 0; {r.name} < {rows_p}; ++{r.name}) {{",
              f"  if ({r.name} < {top} || {r.name} >= {top + height}) {{ {zero_row} }}",
              f"  else {{ {' '.join(sides)} }}", "}"]
    transpose = transpose_helper(ctx, lanes)
    if width >= lanes:
        h = ctx.var("h")
        put = f"lanes_in + (({h.name} + {top}) * {cols_p} + {c.name} + {left}) * {lanes}"
        row = overlapped_groups(c, 0, width, lanes, [
            f"{transpose}(planes_in + {h.name} * {width} + {c.name}, {plane}, {put}, {lanes});"])
        return lines + serial_for(h, height, row)
    p, j = ctx.var("p"), ctx.var("j")
    q = f"({p.name} + {j.name})"
    put = f"lanes_in + (({q} / {width} + {top}) * {cols_p} + {q} % {width} + {left}) * {lanes}"
    return lines + [local_array(ct, "square", lanes * lanes)] + overlapped_groups(p, 0, plane, lanes, [
        f"{transpose}(planes_in + {p.name}, {plane}, square, {lanes});",
        f"for (int64_t {j.name} = 0; {j.name} < {lanes}; ++{j.name}) "
        f"*({vtype}*)({put}) = *(const {vtype}*)(square + {j.name} * {lanes});"])


def _transposed_out(ctx: KernelContext, node: Node, n: Expr, block: Expr, out: tuple[int, int], lanes: int,
                    vtype: str, ct: str) -> list[str]:
    """Bias and fused epilogue from `lanes_out` to the output of a whole block of channels: the pixels are
    transposed back into channel planes `lanes` at a time (register transposes), then each channel's plane
    runs the epilogue in one flat vector loop, its loads and stores contiguous."""
    y, pixels = node.outputs[0], out[0] * out[1]
    lane, p, e = ctx.var("l"), ctx.var("p"), ctx.var("e")
    transpose = transpose_helper(ctx, lanes)
    lines = [local_array(ct, "planes_out", lanes * pixels)] + overlapped_groups(p, 0, pixels, lanes, [
        f"{transpose}(lanes_out + {p.name} * {lanes}, {lanes}, planes_out + {p.name}, {pixels});"])
    channel = block * lanes + lane
    result: Expr = Load("planes_out", lane * pixels + e, ct)
    if node.input(2) is not None:
        result = result + cast(ctx.read(2, (channel,)), ct)
    store = ctx.store(0, (n, channel, *unravel(e, out)), cast(result, ctype(y.dtype)))
    return lines + serial_for(lane, lanes, overlapped_for(e, 0, pixels, lanes, store))


def _epilogue(ctx: KernelContext, node: Node, n: Expr, first: Expr, channels: int, out: tuple[int, int],
              lanes: int, ct: str) -> list[str]:
    """Bias and fused epilogue from `lanes_out` to the output where `_transposed_out` does not apply. With every
    block's lanes valid, per output pixel across the lanes: each epilogue vector is one contiguous load, and
    only the stores scatter down the channels' planes. Otherwise per lane along the pixels, a strided read of
    the block."""
    y, p, lane = node.outputs[0], ctx.var("p"), ctx.var("l")
    channel, whole = first + lane, channels % lanes == 0
    if whole:
        result: Expr = Load("lanes_out", p * lanes + lane, ct)
    else:
        # strided through a pointer, in a plain SIMD loop: gcc 12 vectorizes neither a read of the array itself
        # nor one in an overlapped loop
        result = Load("lane_out", p * lanes, ct)
    if node.input(2) is not None:
        result = result + cast(ctx.read(2, (channel,)), ct)
    store = ctx.store(0, (n, channel, *unravel(p, out)), cast(result, ctype(y.dtype)))
    if whole:
        return serial_for(p, out[0] * out[1], serial_for(lane, lanes, store, simd=True))
    start = [f"if ({ctx.c(channel)} >= {channels}) continue;", f"const float* const lane_out = lanes_out + {lane.name};"]
    return serial_for(lane, lanes, start + serial_for(p, out[0] * out[1], store, simd=True))


def _pixels(window: Window, cols_p: int, out_w: int, per_step: int, lanes: int, vtype: str) -> list[str]:
    """The accumulation: per output row, `per_step` pixels at a time (`blocked.pixels_per_step`), the rest of
    the row in one more step. Per kernel row, each input column the step's pixels read is loaded once and
    multiplied by the weight vector of every tap that lands on it (a 5-wide stride-1 row: 12 loads for 8
    pixels' 40 products, not 40)."""
    (sh, sw), (dh, dw), (kh, kw) = window.strides, window.dilations, window.kernel
    out_h = window.out[0]

    def step(count: int) -> list[str]:
        lines = [f"{vtype} acc{k} = {{0}};" for k in range(count)]
        for a in range(kh):
            lines.append("{")
            lines += [f"  const {vtype} w{b} = *(const {vtype}*)(wb + {(a * kw + b) * lanes});" for b in range(kw)]
            users: dict[int, list[tuple[int, int]]] = {}
            for k in range(count):
                for b in range(kw):
                    users.setdefault(k * sw + b * dw, []).append((k, b))
            for column, pairs in sorted(users.items()):
                at = f"((oh * {sh} + {a * dh}) * {cols_p} + ow * {sw} + {column}) * {lanes}"
                lines.append(f"  {{ const {vtype} v = *(const {vtype}*)(lanes_in + {at});")
                lines += [f"    acc{k} += w{b} * v;" for k, b in pairs]
                lines.append("  }")
            lines.append("}")
        lines += [f"*({vtype}*)(lanes_out + (oh * {out_w} + ow + {k}) * {lanes}) = acc{k};" for k in range(count)]
        return lines

    full, rest = out_w - out_w % per_step, out_w % per_step
    row = [f"for (int64_t ow = 0; ow < {full}; ow += {per_step}) {{", *("  " + s for s in step(per_step)), "}"]
    if rest:
        row += ["{", f"  const int64_t ow = {full};", *("  " + s for s in step(rest)), "}"]
    return [f"for (int64_t oh = 0; oh < {out_h}; ++oh) {{", *("  " + s for s in row), "}"]
