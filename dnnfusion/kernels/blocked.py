"""Convolutions on channel-blocked arrays ([N][C / block][*spatial][block], one vector of channels per pixel;
codegen/layouts.py decides which values are held so). A pointwise convolution is a product with the pixels as
rows: read from a blocked input, A is row-major within each block of channels (rows `block` apart), so a tile
over one block is one contiguous run and the depth runs block after block as segments; each finished tile row
(a pixel across output channels) stores whole vectors into a blocked output. A depthwise convolution keeps a
pixel's channels in one vector: every tap of a few output pixels is one vector load each, times one vector of
weights, with no copy of the input (taps that fall in the padding are skipped at the borders)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..ir.graph import Node
from ..kir.expr import Bin, Expr, Index, Lit, Load, Var, blocked_linear, cast, ctype, floordiv, linear, mod, numel
from ..kir.expr import unravel, variables, walk
from ..kir.kernel import KernelContext, indent, parallel_for, serial_for
from . import microkernel
from .gemm import Operand, Product, Tiling, direct_buffer, loaded_buffer, microkernel_tasks, packed_a, packed_b
from .gemm import column_finish, column_step, probe_index, strided
from .vectors import vector_type
from .window import Window

BLOCKED_NOTE = "/* channel-blocked ({block}c): "
SCALED_NOTE = "/* the input's per-channel scale applied to the weights per image */"
PLAIN_A_IN_PLACE_DEPTH = 64   # input channels up to which a row-major input is read in place as a column-major A
                              # however often it is swept (gemm.A_IN_PLACE_BYTES packs it): a tile's rows then
                              # span few lines. AMD EPYC Zen 4, 1 thread, 24 -> 144 at 56 x 56: 0.39 -> 0.34 ms


def block_size() -> int:
    """Channels per block of a blocked layout on this target (one float32 vector; 0 without microkernels)."""
    isa = microkernel.target_isa()
    return isa.lanes if isa is not None else 0


def holds_blocks(shape: Sequence[int], block: int) -> bool:
    """Whether a blocked layout of `shape` differs from its row-major one: (N, C, *spatial) with whole blocks of
    channels and more than one pixel (a (N, C, 1, 1) array is the same in both)."""
    return len(shape) >= 3 and shape[1] % block == 0 and numel(shape[2:]) > 1


def blocked_buffer(ctx: KernelContext, i: int, shape: Sequence[int], ct: str, block: int) -> str | None:
    """The array input `i` is loaded from when the block reads it as it is, channel-blocked by `block` (whole
    blocks of channels, and more than one pixel: else the offsets equal a row-major array's)."""
    if not holds_blocks(shape, block):
        return None
    return loaded_buffer(ctx, i, shape, ct, lambda index: blocked_linear(index, shape, block))


def reads_blocked(ctx: KernelContext, i: int, shape: Sequence[int], ct: str, block: int) -> bool:
    """Whether input `i` comes from a channel-blocked array, as it is or through fused producers (a
    squeeze-excitation scale): a read of it loads at a blocked offset."""
    if not holds_blocks(shape, block):
        return False
    probe = probe_index(len(shape))
    target = blocked_linear(probe, shape, block)
    return any(isinstance(e, Load) and e.index == target for e in walk(ctx.read(i, probe)))


def channel_scale(ctx: KernelContext, shape: Sequence[int], ct: str, block: int = 0
                  ) -> tuple[str, Callable[[Expr, Expr], Expr]] | None:
    """When input 0 reaches the kernel as a plain array (row-major, or channel-blocked by `block`) times a factor
    that varies only with the image and the channel (a fused squeeze-excitation scale, a Mul by per-channel
    constants): the array, and the factor at (image, channel). None for any other prologue."""
    probe = probe_index(len(shape))
    offset = blocked_linear(probe, shape, block) if block else linear(probe, shape)
    e = ctx.read(0, probe)
    if not (isinstance(e, Bin) and e.op == "*" and e.ctype == ct):
        return None
    for side in (0, 1):
        load, factor = (e.a, e.b) if side == 0 else (e.b, e.a)
        if isinstance(load, Load) and load.ctype == ct and load.index == offset and \
                variables(factor) <= {probe[0].name, probe[1].name}:
            def at(n: Expr, c: Expr, side: int = side) -> Expr:
                found = ctx.read(0, (n, c, *(Lit(0) for _ in shape[2:])))
                assert isinstance(found, Bin) and found.op == "*"
                return found.b if side == 0 else found.a
            return load.buffer, at
    return None


def pointwise_applies(node: Node, window: Window, group: int) -> bool:
    """A 1 x 1 convolution over every pixel (unstrided, unpadded), one group, weights known at compile time."""
    x, w = node.inputs[0], node.inputs[1]
    return group == 1 and w.const is not None and numel(window.kernel) == 1 and \
        tuple(window.out) == tuple(x.shape[2:]) and set(window.strides) == {1} and not any(window.pads_begin)


def depthwise_applies(node: Node, window: Window, group: int) -> bool:
    """A 2-D depthwise convolution (one output channel per input channel), weights known at compile time."""
    x, w = node.inputs[0], node.inputs[1]
    return len(window.kernel) == 2 and w.const is not None and group == x.shape[1] == w.shape[0]


def blocked_conv(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str] | None:
    """The convolution on its channel-blocked input or output, where one of them is and a blocked kernel
    applies; None otherwise (the row-major templates then serve, reading through the index maps)."""
    block = block_size()
    x = node.inputs[0]
    if block == 0 or ct != "float" or ctype(node.outputs[0].dtype) != "float":
        return None
    if pointwise_applies(node, window, group) and \
            (ctx.output_block == block or reads_blocked(ctx, 0, x.shape, ct, block)):
        return blocked_pointwise(ctx, node, block)
    source = blocked_buffer(ctx, 0, x.shape, ct, block) if depthwise_applies(node, window, group) else None
    if source is not None:
        return blocked_depthwise(ctx, node, window, block, source)
    return None


def blocked_pointwise(ctx: KernelContext, node: Node, block: int) -> list[str] | None:
    """Per image, (pixels x C) times (C x M) on the microkernels: A read in place from a blocked input (one
    segment per block of channels, rows `block` apart), or packed per call through its fused producers; B the
    weights packed at compile time; each tile row stored as whole vectors of a blocked output (or down the
    channel planes of a row-major one)."""
    isa = microkernel.target_isa()
    assert isa is not None
    x, w = node.inputs[0], node.inputs[1]
    images, channels, spatial = x.shape[0], x.shape[1], tuple(x.shape[2:])
    count, mg = numel(spatial), w.shape[0]
    columns = not (ctx.output_block == block and mg % block == 0)      # a row-major output, stored by columns
    rows, vectors, _ = isa.tile_shape(count, mg, column_step(isa, count, channels) if columns else 1)
    width = vectors * isa.lanes
    batch = (images,)
    weights = w.const.reshape(1, mg, channels).swapaxes(-2, -1)
    b = Operand((1,), channels, mg, lambda bidx, r, c: Lit(0), constant=weights)
    store = _pixel_store(ctx, node, spatial)
    source, plain, lines = blocked_buffer(ctx, 0, x.shape, "float", block), direct_buffer(ctx, 0, x.shape, "float"), []
    weights_buffer = direct_buffer(ctx, 1, w.shape, "float")
    if source is None and plain is None and weights_buffer is not None and mg < count:
        for layout in (block, 0) if channels % block == 0 else (0,):
            scaled = channel_scale(ctx, x.shape, "float", layout)
            if scaled is not None:   # scaling the weights per image costs less than copying the input
                factor = scaled[1]
                b = Operand(batch, channels, mg, lambda bidx, r, c: Load(str(weights_buffer), c * channels + r,
                                                                         "float") * factor(bidx[0], r))
                source, plain = (scaled[0], None) if layout else (None, scaled[0])
                lines = [SCALED_NOTE]
                break
    if source is None and plain is None and reads_blocked(ctx, 0, x.shape, "float", block):
        lines, source = blocked_copy(ctx, x.shape, block)
    if source is not None:
        a = Operand(batch, count, channels, lambda bidx, r, c: Lit(0))
        depth, segments = block, tuple(s * count * block for s in range(channels // block))
        a_lines: list[str] = []
        a_steps = (block, 1)

        def a_at(bidx: Index, it: Var) -> str:
            return f"({source} + {ctx.c(bidx[0] * (channels * count) + it * (rows * block))})"
        how = f"blocked input, {channels // block} segments */"
    else:
        a = strided(plain, "float", batch, (channels * count,), count, channels, 1, count) if plain is not None else \
            Operand(batch, count, channels, lambda bidx, r, c: cast(ctx.read(0, (bidx[0], c, *unravel(r, spatial))),
                                                                    "float"))
        depth, segments = channels, (0,)
        sweeps = 1 if channels <= PLAIN_A_IN_PLACE_DEPTH else -(-mg // width)
        a_lines, a_at, a_steps = packed_a(ctx, a, rows, sweeps)
        how = "row-major input */" if plain is not None else "input packed through its producers */"
    p = Product(batch, a, b, "float", store)
    packed = packed_b(ctx, p, width)
    if packed is None:          # too few rows to pack a per-call B for: the generic template
        return None
    b_lines, b_at, ldb, _ = packed
    finish = column_finish(ctx, p, isa.lanes) if columns else _blocked_finish(p, block)
    tiling = Tiling(isa, batch, count, mg, depth, segments, rows, vectors, a_steps, int(ldb), a_at,
                    lambda bidx, jt: b_at(bidx if b.batch == batch else (Lit(0),), jt), finish,
                    shift_a=len(segments) > 1, b_batch=b.batch)
    return [BLOCKED_NOTE.format(block=block) + how] + lines + b_lines + a_lines + microkernel_tasks(ctx, tiling)


def blocked_copy(ctx: KernelContext, shape: Sequence[int], block: int) -> tuple[list[str], str]:
    """Statements that write input 0 through its fused producers (a squeeze-excitation scale) into a blocked
    scratch array, a vector of channels per pixel (the reads are contiguous vectors too), and its name."""
    images, channels, spatial = shape[0], shape[1], tuple(shape[2:])
    count, blocks = numel(spatial), shape[1] // block
    name = ctx.scratch("float", images * channels * count)
    task, p, lane = ctx.var("t"), ctx.var("p"), Var("cl", below=block)
    n, cb = floordiv(task, blocks), mod(task, blocks)
    value = cast(ctx.read(0, (n, cb * block + lane, *unravel(p, spatial))), "float")
    body = ctx.value("cv", value) + [f"{name}[{ctx.c((task * count + p) * block + lane)}] = cv;"]
    loop = serial_for(p, count, serial_for(lane, block, body, simd=True))
    return parallel_for(task, images * blocks, loop, images * channels * count), name


def _pixel_store(ctx: KernelContext, node: Node, spatial: tuple[int, ...]) -> Callable[[Index, Expr, Index, Expr],
                                                                                          list[str]]:
    """The product's store: row i (a pixel of image bidx[0]), column j (an output channel), plus the bias."""
    bias = node.input(2)

    def store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
        channel = j[0]
        if bias is not None:
            value = value + cast(ctx.read(2, (channel,)), "float")
        return ctx.store(0, (bidx[0], channel, *unravel(i, spatial)), cast(value, ctype(node.outputs[0].dtype)))
    return store


def _blocked_finish(p: Product, block: int) -> Callable[[Index, Var, Var, int, int, str, int], list[str]]:
    """A Tiling's `finish` that stores each tile row a vector of `block` channels at a time: the channel is
    (block of channels) * block + lane, which a blocked output's offset takes apart without a division."""
    def finish(bidx: Index, i0: Var, j0: Var, got: int, cols: int, tile: str, stride: int) -> list[str]:
        r, v = Var(f"{i0.name}r"), Var(f"{j0.name}v")
        lane = Var(f"{j0.name}l", below=block)
        channel = (floordiv(j0, block) + v) * block + lane
        value = Load(tile, r * stride + v * block + lane, "float")
        body = serial_for(lane, block, p.store(bidx, i0 + r, (channel,), value), simd=True)
        return serial_for(r, got, serial_for(v, cols // block, body))
    return finish


def blocked_depthwise(ctx: KernelContext, node: Node, window: Window, block: int, source: str) -> list[str]:
    """Per image, block of channels and output row: PIXEL_STEP output pixels at a time accumulate in vector
    registers over the taps (each one vector load of the blocked input times the tap's weight vector); pixels
    whose taps all lie inside the row run without checks, the few at the borders check each tap; input rows
    outside the plane are skipped. The bias and fused epilogue run per pixel across the lanes."""
    isa = microkernel.target_isa()
    assert isa is not None
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    images, channels, height, width_in = x.shape
    out_h, out_w = window.out
    (top, left), (sh, sw), (dh, dw) = window.pads_begin, window.strides, window.dilations
    kh, kw = window.kernel
    blocks, taps = channels // block, kh * kw
    vtype = vector_type(ctx, block)

    def packed(weights: np.ndarray = w.const) -> np.ndarray:
        return weights.reshape(blocks, block, taps).swapaxes(1, 2).astype(np.float32)     # [block][tap][lane]
    weights = ctx.weight(packed)
    step = pixels_per_step(isa)
    lo = min(out_w, -(-left // sw))
    hi = max(lo, min(out_w, (width_in - 1 + left - (kw - 1) * dw) // sw + 1))

    task = ctx.var("t")
    n, cb, oh = unravel(task, (images, blocks, out_h))
    lane = Var("bl", below=block)
    head = [f"const float* const xb = {source} + {ctx.c((n * blocks + cb) * (height * width_in * block))};",
            f"const float* const wb = {weights} + {ctx.c(cb * (taps * block))};",
            f"const int64_t oh = {ctx.c(oh)};",
            f"float outv[{step * block}] __attribute__((aligned(64)));"]
    value = Load("outv", Var("k") * block + lane, "float")
    if node.input(2) is not None:
        value = value + cast(ctx.read(2, (cb * block + lane,)), "float")
    ow = Var("ow")

    def pixels(count: int, checked: bool) -> list[str]:
        lines = [f"{vtype} acc{k} = {{0}};" for k in range(count)]
        for a in range(kh):
            row = [f"const int64_t ih = oh * {sh} + {a * dh - top};", f"if (ih >= 0 && ih < {height}) {{"]
            for b in range(kw):
                row.append(f"  {{ const {vtype} wv = *(const {vtype}*)(wb + {(a * kw + b) * block});")
                for k in range(count):
                    at = f"(ow + {k}) * {sw} + {b * dw - left}"
                    load = f"acc{k} += wv * *(const {vtype}*)(xb + (ih * {width_in} + {at}) * {block});"
                    row.append(f"    if ({at} >= 0 && {at} < {width_in}) {load}" if checked else f"    {load}")
                row.append("  }")
            lines += ["{", *indent(row + ["}"]), "}"]
        lines += [f"*({vtype}*)(outv + {k * block}) = acc{k};" for k in range(count)]
        epilogue = ctx.store(0, (n, cb * block + lane, oh, ow + Var("k")), cast(value, ctype(y.dtype)))
        lines += [f"for (int64_t k = 0; k < {count}; ++k) {{", *indent(serial_for(lane, block, epilogue, simd=True)),
                  "}"]
        return ["{", *indent(lines), "}"]

    full = lo + (hi - lo) // step * step
    body = head + [f"for (int64_t ow = 0; ow < {lo}; ++ow) {{", *indent(pixels(1, True)), "}",
                   f"for (int64_t ow = {lo}; ow < {full}; ow += {step}) {{", *indent(pixels(step, False)), "}",
                   f"for (int64_t ow = {full}; ow < {hi}; ++ow) {{", *indent(pixels(1, False)), "}",
                   f"for (int64_t ow = {hi}; ow < {out_w}; ++ow) {{", *indent(pixels(1, True)), "}"]
    note = [BLOCKED_NOTE.format(block=block) + f"depthwise, {step} pixels per step */"]
    return note + parallel_for(task, images * blocks * out_h, body, y.numel * taps)


def pixels_per_step(isa: microkernel.Isa) -> int:
    """Output pixels a channels-in-lanes depthwise kernel accumulates together: a quarter of the vector
    registers, leaving the rest to the weight vectors and the loads in flight."""
    return max(1, isa.registers // 4)
