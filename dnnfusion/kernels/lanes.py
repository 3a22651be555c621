"""Depthwise convolutions on small planes with the channels in the vector lanes: per image and block of as
many channels as a vector holds, the padded input is copied (fused producers applied) into a stack array of
[row][column][lane], so that every tap of every output pixel, at any stride or dilation, is one aligned
vector load multiplied by one vector of weights (packed at compile time as [block][tap][lane]); output
pixels accumulate a few at a time in registers, and the fused epilogue runs per channel over the whole plane
in one flat vector loop. On 7 x 7 outputs this beats the plane kernel (planes.py), whose per-channel padding
and rows shorter than a vector dominate there (EfficientNet-B0's 1152-channel 5 x 5: 0.156 -> 0.109 ms)."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Node
from ..kir.expr import Expr, Load, Var, cast, ctype, floordiv, mod, unravel
from ..kir.kernel import KernelContext, fits_stack, local_array, parallel_for, serial_for
from . import microkernel
from .blocked import vector_type
from .gemm import direct_buffer
from .planes import producer_plane
from .window import Window

PIXELS_PER_STEP = 4        # output pixels of a row accumulated together (they share every weight vector)
LANES_MAX_WIDTH = 8        # output widths up to which the lanes kernel replaces the plane kernel (measured: at
                           # 14 and 28 its copies in and out cost more than the plane kernel's short rows)
LANES_STACK_FLOATS = 1 << 15   # floats each of the padded input and the output may take on the stack


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
    if channels < lanes or out_w > LANES_MAX_WIDTH or rows_p * cols_p * lanes > LANES_STACK_FLOATS or \
            out_h * out_w * lanes > LANES_STACK_FLOATS or not fits_stack(LANES_STACK_FLOATS):
        return None
    blocks, taps = -(-channels // lanes), kh * kw
    vtype = vector_type(ctx, lanes)

    def packed(weights: np.ndarray = w.const) -> np.ndarray:
        padded = np.zeros((blocks * lanes, taps), np.float32)
        padded[:channels] = weights.reshape(channels, taps)
        return padded.reshape(blocks, lanes, taps).swapaxes(1, 2)        # [block][tap][lane]
    weights = ctx.weight(packed)

    task, lane, h, col = (ctx.var(v) for v in ("t", "l", "h", "w"))
    n, block = floordiv(task, blocks), mod(task, blocks)
    channel = block * lanes + lane
    valid = f"{ctx.c(channel)} < {channels}" if channels % lanes else "1"
    body = [local_array(ct, "lanes_in", rows_p * cols_p * lanes), local_array(ct, "lanes_out", out_h * out_w * lanes),
            "memset(lanes_in, 0, sizeof lanes_in);",
            f"const float* const wb = {weights} + {ctx.c(block)} * {taps * lanes};"]
    plane = producer_plane(ctx, n, channel, (height, width), ct, lanes)
    plane += serial_for(h, height, serial_for(col, width, [
        f"lanes_in[(({h.name} + {top}) * {cols_p} + {col.name} + {left}) * {lanes} + {lane.name}] = "
        f"src[{h.name} * {width} + {col.name}];"]))
    body += serial_for(lane, lanes, [f"if (!({valid})) continue;"] + plane)
    body += _pixels(window, cols_p, out_w, lanes, vtype)
    body += _epilogue(ctx, node, n, channel, lane, channels % lanes == 0, valid, (out_h, out_w), lanes, ct)
    return parallel_for(task, images * blocks, body, node.outputs[0].numel * taps)


def _epilogue(ctx: KernelContext, node: Node, n: Expr, channel: Expr, lane: Var, whole: bool, valid: str,
              out: tuple[int, int], lanes: int, ct: str) -> list[str]:
    """Bias and fused epilogue from `lanes_out` to the output. With every block's lanes valid (`whole`), per
    output pixel across the lanes: each epilogue vector is one contiguous load, and only the stores scatter
    down the channels' planes (EfficientNet-B0's 1152-channel 3 x 3 with a Swish, AMD EPYC (AVX2), 1 thread:
    0.167 -> 0.119 ms). Otherwise per lane along the pixels, a strided read of the block."""
    y, p = node.outputs[0], ctx.var("p")
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
    start = [f"if (!({valid})) continue;", f"const float* const lane_out = lanes_out + {lane.name};"]
    return serial_for(lane, lanes, start + serial_for(p, out[0] * out[1], store, simd=True))


def _pixels(window: Window, cols_p: int, out_w: int, lanes: int, vtype: str) -> list[str]:
    """The accumulation: per output row, PIXELS_PER_STEP pixels at a time (then one at a time), each tap one
    vector load of the padded input times the tap's weight vector."""
    (sh, sw), (dh, dw), (kh, kw) = window.strides, window.dilations, window.kernel
    out_h = window.out[0]

    def step(count: int) -> list[str]:
        lines = [f"{vtype} acc{k} = {{0}};" for k in range(count)]
        for a in range(kh):
            for b in range(kw):
                lines.append(f"{{ const {vtype} wv = *(const {vtype}*)(wb + {(a * kw + b) * lanes});")
                for k in range(count):
                    at = f"((oh * {sh} + {a * dh}) * {cols_p} + (ow + {k}) * {sw} + {b * dw}) * {lanes}"
                    lines.append(f"  acc{k} += wv * *(const {vtype}*)(lanes_in + {at});")
                lines.append("}")
        lines += [f"*({vtype}*)(lanes_out + (oh * {out_w} + ow + {k}) * {lanes}) = acc{k};" for k in range(count)]
        return lines

    full = out_w - out_w % PIXELS_PER_STEP
    row = [f"for (int64_t ow = 0; ow < {full}; ow += {PIXELS_PER_STEP}) {{", *("  " + s for s in step(PIXELS_PER_STEP)),
           "}", f"for (int64_t ow = {full}; ow < {out_w}; ++ow) {{", *("  " + s for s in step(1)), "}"]
    return [f"for (int64_t oh = 0; oh < {out_h}; ++oh) {{", *("  " + s for s in row), "}"]

