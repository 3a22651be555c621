"""Convolutions: Conv, ConvTranspose, ConvInteger, DeformConv (Many-to-Many), and the sliding-window geometry
that convolutions and pools share: output extents, auto_pad/ceil_mode padding and strided window views."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..kir.expr import Expr, Index, Lit, Load, cast, ctype, floordiv, linear, lit, mod, numel, unravel
from ..kir.kernel import KernelContext, fits_stack, indent, local_array, parallel_for, serial_for
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, channel_vector, shape_of
from ..kernels.gemm import Operand, Product, direct_buffer, layout, product_kernel, strided
from .matmul import centered, widened
from .registry import register

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True)
class Window:
    """Where a sliding window visits the spatial axes: kernel, strides, dilations, pads and output extents."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def extent(self) -> tuple[int, ...]:
        """The span of each dilated kernel axis."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    def windows(self, x: np.ndarray, fill: float = 0) -> np.ndarray:
        """A strided view (..., *out, *kernel) of the trailing spatial axes of x, padded with `fill`."""
        n = len(self.kernel)
        spatial = x.shape[x.ndim - n:]
        needed = [(o - 1) * s + e for o, s, e in zip(self.out, self.strides, self.extent)]
        pad = [(b, max(0, t - i - b)) for b, t, i in zip(self.pads_begin, needed, spatial)]
        if any(p for pair in pad for p in pair):
            x = np.pad(x, [(0, 0)] * (x.ndim - n) + pad, constant_values=fill)
        x = x[(Ellipsis, *(slice(0, t) for t in needed))]
        view = sliding_window_view(x, self.extent, axis=tuple(range(x.ndim - n, x.ndim)))
        steps = (*(slice(None, None, s) for s in self.strides), *(slice(None, None, d) for d in self.dilations))
        return view[(Ellipsis, *steps)]


def int_attrs(node: Node, name: str, count: int, default: int, minimum: int) -> tuple[int, ...]:
    """An ints attribute with one entry per axis (`default` everywhere when absent), checked against `minimum`."""
    value = node.attr(name)
    if not value:
        return (default,) * count
    value = tuple(int(v) for v in value)
    if len(value) != count:
        raise Op.invalid(node, f"{name} has {len(value)} entries but {count} are needed for its spatial axes")
    if min(value) < minimum:
        raise Op.invalid(node, f"{name} {list(value)} must all be at least {minimum}")
    return value


def auto_pad_of(node: Node) -> str:
    """The auto_pad attribute, checked."""
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PADS:
        raise Op.invalid(node, f"auto_pad '{auto_pad}' is not one of {', '.join(AUTO_PADS)}")
    return auto_pad


def window_of(node: Node, spatial: Sequence[int], kernel: Sequence[int], ceil_mode: bool = False) -> Window:
    """The window of a conv/pool node over `spatial` from its strides, dilations, pads and auto_pad attributes."""
    n = len(spatial)
    strides = int_attrs(node, "strides", n, 1, 1)
    dilations = int_attrs(node, "dilations", n, 1, 1)
    pads = int_attrs(node, "pads", 2 * n, 0, 0)
    auto_pad = auto_pad_of(node)
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = tuple(-(-i // s) for i, s in zip(spatial, strides))
        # clamped at 0 where strides outrun the window (as TensorFlow's SAME), so windows still start at 0
        total = [max(0, (o - 1) * s + e - i) for o, s, e, i in zip(out, strides, extent, spatial)]
        small, large = tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
        begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    else:
        begin, end = (pads[:n], pads[n:]) if auto_pad == "NOTSET" else ((0,) * n, (0,) * n)
        out = tuple(_out_extent(size, b, e, span, s, ceil_mode)
                    for size, b, e, span, s in zip(spatial, begin, end, extent, strides))
    if any(o < 1 for o in out):
        raise Op.invalid(node, f"a window of extent {list(extent)} does not fit the input's spatial shape "
                               f"{list(spatial)} with pads {list(begin) + list(end)}")
    return Window(tuple(kernel), strides, dilations, begin, end, out)


def _out_extent(size: int, begin: int, end: int, extent: int, stride: int, ceil_mode: bool) -> int:
    """Windows along one axis; in ceil mode a last window that would start in the end padding is dropped."""
    span = size + begin + end - extent
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= size + begin else out


def kernel_of(node: Node, x_shape: tuple, w_shape: tuple, group: int, x_channels: int) -> tuple[int, ...]:
    """The kernel shape (W's spatial extents), after checking ranks, kernel_shape and that X has `x_channels`."""
    if len(x_shape) < 3 or len(w_shape) != len(x_shape):
        raise Op.invalid(node, f"needs X of rank >= 3 and W of the same rank, got {x_shape} and {w_shape}")
    kernel = tuple(w_shape[2:])
    declared = node.attr("kernel_shape")
    if declared and tuple(declared) != kernel:
        raise Op.invalid(node, f"kernel_shape {list(declared)} disagrees with the weights' shape {w_shape}")
    if group < 1 or x_shape[1] != x_channels or x_channels % group or w_shape[0] % group:
        raise Op.invalid(node, f"X has {x_shape[1]} channels and W shape {w_shape}, which group={group} cannot split")
    return kernel


def conv_window(node: Node, x_shape: tuple, w_shape: tuple, group: int) -> Window:
    """The window of a convolution after checking that X (N, C, ...) and W (M, C/group, ...) agree."""
    return window_of(node, x_shape[2:], kernel_of(node, x_shape, w_shape, group, w_shape[1] * group))


def convolve(x: np.ndarray, w: np.ndarray, window: Window, group: int) -> np.ndarray:
    """Grouped N-D convolution as im2col and one batched matmul, in the dtype of x and w (callers widen)."""
    return contract_taps(window.windows(x), w, group)


def contract_taps(taps: np.ndarray, w: np.ndarray, group: int) -> np.ndarray:
    """Window taps (N, C, *out, *k) summed against weights (M, C/group, *k) group by group: (N, M, *out)."""
    n = w.ndim - 2
    batch, channels, out, m = taps.shape[0], taps.shape[1], taps.shape[2:2 + n], w.shape[0]
    cols = taps.reshape(batch, group, channels // group, *taps.shape[2:])                # N, G, C/G, *out, *k
    cols = np.moveaxis(cols, 2, 2 + n).reshape(batch, group, math.prod(out), -1)         # N, G, out, C/G*k
    kernels = w.reshape(group, m // group, -1).transpose(0, 2, 1)                        # G, C/G*k, M/G
    y = np.matmul(cols, kernels)                                                          # N, G, out, M/G
    return y.transpose(0, 1, 3, 2).reshape(batch, m, *out)


def channel_column(v: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel vector (or a scalar) shaped to broadcast over axis 1 of a rank-`rank` tensor."""
    v = np.asarray(v)
    return v.reshape(-1, *(1,) * (rank - 2)) if v.ndim else v


# --- codegen: convolutions as im2col + a register-tiled matrix product, or direct loops ------------------

PRODUCT_MIN_CHANNELS = 8   # output channels per group from which a convolution runs as a matrix product


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
    return parallel_for(row, rows, serial_for(col, cols, body), numel(shape)), name


def reader(buffer: str, shape: Sequence[int], ct: str) -> Callable[[Index], Expr]:
    """Loads from a row-major array of `shape`."""
    return lambda index: Load(buffer, linear(index, shape), ct)


def conv_product(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str]:
    """Per image and group, (M/G x C/G*k) weights times the (C/G*k x out) columns of the input's windows;
    a 1x1 unstrided, unpadded convolution reads its input as the columns directly."""
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    images, channels, spatial, kernel = x.shape[0], x.shape[1], tuple(x.shape[2:]), window.kernel
    cg, mg = channels // group, w.shape[0] // group
    depth, out, count = cg * numel(kernel), window.out, numel(window.out)
    batch = (images, group)
    weights = direct_buffer(ctx, 1, w.shape, ct)
    if weights is not None:
        a = strided(weights, ct, (1, group), (0, mg * depth), mg, depth, depth, 1)
    else:
        a = Operand((1, group), mg, depth, lambda bidx, r, c: cast(
            ctx.read(1, (bidx[1] * mg + r, *unravel(c, (cg, *kernel)))), ct))
    if numel(kernel) == 1 and out == spatial and set(window.strides) == {1} and not any(window.pads_begin):
        lines, pixels = source(ctx, 0, x.shape, ct)
        b = strided(pixels, ct, batch, (channels * count, cg * count), depth, count, count, 1)
    else:
        lines, b = im2col(ctx, x.shape, window, group, ct)
    bias = node.input(2)

    def store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
        m = bidx[1] * mg + i
        if bias is not None:
            value = value + cast(ctx.read(2, (m,)), ct)
        return ctx.store(0, (bidx[0], m, *j), cast(value, ctype(y.dtype)))

    return lines + product_kernel(ctx, Product(batch, a, b, ct, store, out))


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


def table(name: str, values: Sequence[int]) -> str:
    """A static C array of index constants."""
    return f"static const int64_t {name}[{max(len(values), 1)}] = {{{', '.join(str(v) for v in values) or '0'}}};"


def covered(count: int, start: int, step: int, low: int, high: int) -> tuple[int, int]:
    """The i in [0, count) with low <= start + i * step < high, as [first, last + 1); (0, 0) if there is none."""
    hits = [i for i in range(count) if low <= start + i * step < high]
    return (hits[0], hits[-1] + 1) if hits else (0, 0)


def range_tables(ranges: Sequence[tuple[int, int]]) -> list[str]:
    """lo_tab[k] and hi_tab[k]: the ranges [lo, hi) that the loop of tap k sweeps."""
    return [table("lo_tab", [a for a, _ in ranges]), table("hi_tab", [b for _, b in ranges])]


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


def conv_transpose(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str]:
    """Per image and group, the (M/G * k x C/G) transposed weights times the (C/G x in) input give every
    input pixel's contribution to each tap (a register-tiled product into a scratch array); a row of outputs
    then gathers them: output (in * stride - pad + tap * dilation) from input `in` for each tap, over the
    ranges of `in` that land inside the output (tables), before one vectorisable loop stores the row."""
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    images, spatial, kernel, out = x.shape[0], tuple(x.shape[2:]), window.kernel, window.out
    cg, mg, taps, pixels = x.shape[1] // group, w.shape[1], numel(window.kernel), numel(x.shape[2:])
    batch = (images, group)
    weights = direct_buffer(ctx, 1, w.shape, ct)
    if weights is not None:
        a = strided(weights, ct, (1, group), (0, cg * mg * taps), mg * taps, cg, 1, mg * taps)
    else:
        a = Operand((1, group), mg * taps, cg, lambda bidx, r, c: cast(
            ctx.read(1, (bidx[1] * cg + c, *unravel(r, (mg, *kernel)))), ct))
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


class ConvLike(Op):
    """Shared shape rule and FLOP count of Conv, ConvInteger and QLinearConv (X and W at given input positions)."""

    mapping = MappingType.MANY_TO_MANY
    x_index: int = 0
    w_index: int = 1
    bias_index: int | None = 2

    def window(self, node: Node, x_shape: tuple, w_shape: tuple) -> Window:
        return conv_window(node, tuple(x_shape), tuple(w_shape), int(node.attr("group", 1)))

    def out_shape(self, node: Node) -> tuple:
        x, w = shape_of(node, self.x_index), shape_of(node, self.w_index)
        return (x[0], w[0], *self.window(node, x, w).out)

    def check_bias(self, node: Node) -> None:
        b = node.input(self.bias_index) if self.bias_index is not None else None
        channels = shape_of(node, self.w_index)[0]
        if b is not None and b.shape is not None and tuple(b.shape) != (channels,):
            raise self.invalid(node, f"bias B has shape {b.shape} but the convolution has {channels} output channels")

    def input_reuse(self, node: Node, i: int) -> float:
        x = shape_of(node, self.x_index)
        return window_reuse(self.window(node, x, shape_of(node, self.w_index)), x[2:]) if i == self.x_index else 1.0

    def flops(self, node: Node) -> int:
        y, w = node.outputs[0], shape_of(node, self.w_index)
        bias = self.bias_index is not None and node.input(self.bias_index) is not None
        return 2 * y.numel * math.prod(w[1:]) + (y.numel if bias else 0)


@register
class Conv(ConvLike):
    """Y = X (*) W + B: grouped, strided, dilated, padded N-D cross-correlation."""

    op_type = "Conv"
    dense = True

    def infer(self, node: Node) -> list[Inferred]:
        self.check_bias(node)
        return [TensorType(node.inputs[0].dtype, self.out_shape(node))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x, w, b = (inputs + (None,))[:3]
        dtype = widened(x.dtype)
        y = convolve(x.astype(dtype), w.astype(dtype), self.window(node, x.shape, w.shape), int(node.attr("group", 1)))
        if b is not None:
            y += channel_column(b.astype(dtype), y.ndim)
        return [y.astype(x.dtype, copy=False)]

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """A matrix product over im2col columns, or direct loops when groups have few output channels."""
        x, w = node.inputs[0], node.inputs[1]
        group, ct = int(node.attr("group", 1)), ctype(widened(x.dtype))
        window = self.window(node, x.shape, w.shape)
        direct = w.shape[0] // group < PRODUCT_MIN_CHANNELS and fits_stack(window.out[-1])
        lower = conv_direct if direct else conv_product
        return lower(ctx, node, window, group, ct)

    def absorb_channel_affine(self, node: Node, scale: np.ndarray, shift: np.ndarray) -> dict[int, np.ndarray] | None:
        """W[m] * scale[m] and B[m] * scale[m] + shift[m] (BatchNormalization folded into the conv)."""
        return scaled_weights(node, scale, shift, lambda w, s: w * s.reshape((-1,) + (1,) * (w.ndim - 1)))


@register
class ConvInteger(ConvLike):
    """Y = (X - x_zero_point) (*) (W - w_zero_point) accumulated exactly in int32."""

    op_type = "ConvInteger"
    dense = True
    bias_index = None

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(np.dtype(np.int32), self.out_shape(node))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x, w, x_zero, w_zero = (inputs + (None,) * 4)[:4]
        xs, ws = centered(x, x_zero), centered(w, w_zero, axis=0)
        y = convolve(xs, ws, self.window(node, x.shape, w.shape), int(node.attr("group", 1)))
        return [y.astype(np.int32)]


@register
class ConvTranspose(Op):
    """Y = the transpose (gradient) of a grouped strided convolution of X with W, plus B."""

    op_type = "ConvTranspose"
    dense = True
    mapping = MappingType.MANY_TO_MANY

    def geometry(self, node: Node, x_shape: tuple, w_shape: tuple) -> tuple[Window, tuple[int, ...]]:
        """The window with resolved pads whose `out` is the output's spatial shape, and the output_padding."""
        kernel = kernel_of(node, x_shape, w_shape, int(node.attr("group", 1)), w_shape[0])
        spatial = tuple(x_shape[2:])
        n = len(spatial)
        strides = int_attrs(node, "strides", n, 1, 1)
        dilations = int_attrs(node, "dilations", n, 1, 1)
        extra = int_attrs(node, "output_padding", n, 0, 0)
        auto_pad = auto_pad_of(node)
        natural = [s * (i - 1) + (k - 1) * d + 1 + e
                   for s, i, k, d, e in zip(strides, spatial, kernel, dilations, extra)]
        wanted = node.attr("output_shape")
        if not wanted and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            wanted = [i * s for i, s in zip(spatial, strides)]
        if wanted:
            wanted = tuple(int(v) for v in wanted)[-n:]
            total = [f - o for f, o in zip(natural, wanted)]
            small, large = tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
            begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        else:
            pads = int_attrs(node, "pads", 2 * n, 0, 0) if auto_pad == "NOTSET" else (0,) * (2 * n)
            begin, end = pads[:n], pads[n:]
        out = tuple(f - b - e for f, b, e in zip(natural, begin, end))
        if any(o < 1 for o in out):
            raise self.invalid(node, f"the output's spatial shape {list(out)} is empty")
        return Window(kernel, strides, dilations, begin, end, out), extra

    def infer(self, node: Node) -> list[Inferred]:
        x, w = shape_of(node, 0), shape_of(node, 1)
        window, _ = self.geometry(node, x, w)
        channels = w[1] * int(node.attr("group", 1))
        b = node.input(2)
        if b is not None and b.shape is not None and tuple(b.shape) != (channels,):
            raise self.invalid(node, f"bias B has shape {b.shape} but the output has {channels} channels")
        return [TensorType(node.inputs[0].dtype, (x[0], channels, *window.out))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x, w, b = (inputs + (None,))[:3]
        window, extra = self.geometry(node, x.shape, w.shape)
        dtype = widened(x.dtype)
        full = _scatter_windows(x.astype(dtype), w.astype(dtype), window, extra, int(node.attr("group", 1)))
        y = np.zeros((*full.shape[:2], *window.out), dtype)
        src, dst = [], []
        for size, begin, out in zip(full.shape[2:], window.pads_begin, window.out):
            lo, hi = max(begin, 0), min(size, begin + out)
            src.append(slice(lo, hi))
            dst.append(slice(lo - begin, hi - begin))
        y[(Ellipsis, *dst)] = full[(Ellipsis, *src)]
        if b is not None:
            y += channel_column(b.astype(dtype), y.ndim)
        return [y.astype(x.dtype, copy=False)]

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        window, _ = self.geometry(node, node.inputs[0].shape, node.inputs[1].shape)
        if not fits_stack(window.out[-1]):
            return None
        return conv_transpose(ctx, node, window, int(node.attr("group", 1)), ctype(widened(node.inputs[0].dtype)))

    def absorb_channel_affine(self, node: Node, scale: np.ndarray, shift: np.ndarray) -> dict[int, np.ndarray] | None:
        """W is [C_in, M/group, k...]: input channel c of group g feeds output channels g * M/group + j."""
        group = int(node.attr("group", 1))

        def rescale(w: np.ndarray, s: np.ndarray) -> np.ndarray:
            per_group = s.reshape(group, 1, w.shape[1])                     # [g, 1, M/g]
            rows = np.broadcast_to(per_group, (group, w.shape[0] // group, w.shape[1])).reshape(w.shape[:2])
            return w * rows.reshape(rows.shape + (1,) * (w.ndim - 2))

        return scaled_weights(node, scale, shift, rescale)

    def flops(self, node: Node) -> int:
        x, w = node.inputs[0], shape_of(node, 1)
        bias = node.outputs[0].numel if node.input(2) is not None else 0
        return 2 * x.numel * w[1] * math.prod(w[2:]) + bias


def window_reuse(window: Window, spatial: Sequence[int]) -> float:
    """Window reads per input pixel: output positions times taps over input positions (im2col's duplication)."""
    return max(math.prod(window.out) * math.prod(window.kernel) / max(math.prod(spatial), 1), 1.0)


def scaled_weights(node: Node, scale: np.ndarray, shift: np.ndarray,
                   weight_scale: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[int, np.ndarray] | None:
    """New W (input 1) and B (input 2) of a convolution whose output channels (axis 1) get `* scale + shift`:
    W rescaled by `weight_scale(W, per-channel scale)`, B' = B * scale + shift. None unless W and B are float
    constants and the affine map varies along the channels only."""
    w, b, y = node.inputs[1], node.input(2), node.outputs[0]
    channels = y.shape[1]
    s, t = channel_vector(scale, 1, channels), channel_vector(shift, 1, channels)
    if s is None or t is None or w.const is None or w.dtype not in (np.float32, np.float64) or \
            b is not None and b.const is None:
        return None
    bias = b.const.astype(np.float64) if b is not None else np.zeros(channels)
    return {1: weight_scale(w.const.astype(np.float64), s).astype(w.dtype), 2: (bias * s + t).astype(w.dtype)}


def _scatter_windows(x: np.ndarray, w: np.ndarray, window: Window, extra: Sequence[int], group: int) -> np.ndarray:
    """Every input pixel times its kernel, summed into the unpadded output (col2im): shape (N, M, *full)."""
    n = len(window.kernel)
    batch, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    per_group = w.shape[1]
    rows = x.reshape(batch, group, channels // group, -1).transpose(0, 1, 3, 2)          # N, G, P, C/G
    cols = np.matmul(rows, w.reshape(group, channels // group, -1))                      # N, G, P, M/G*k
    cols = cols.reshape(batch, group, *spatial, per_group, *window.kernel)
    cols = np.moveaxis(cols, 2 + n, 2).reshape(batch, group * per_group, *spatial, *window.kernel)
    full = [s * (i - 1) + e + p for s, i, e, p in zip(window.strides, spatial, window.extent, extra)]
    y = np.zeros((batch, group * per_group, *full), x.dtype)
    for tap in np.ndindex(*window.kernel):
        target = tuple(slice(t * d, t * d + (i - 1) * s + 1, s)
                       for t, d, i, s in zip(tap, window.dilations, spatial, window.strides))
        y[(Ellipsis, *target)] += cols[(Ellipsis, *tap)]
    return y


@register
class DeformConv(ConvLike):
    """Y = a convolution whose taps sample X at learned fractional offsets (multilinear, zero outside), times a mask."""

    op_type = "DeformConv"
    bias_index = 3

    def infer(self, node: Node) -> list[Inferred]:
        self.check_bias(node)
        shape = self.out_shape(node)
        groups, kernel = int(node.attr("offset_group", 1)), shape_of(node, 1)[2:]
        if groups < 1 or shape_of(node, 0)[1] % groups:
            raise self.invalid(node, f"offset_group={groups} does not divide the {shape_of(node, 0)[1]} input channels")
        taps = groups * math.prod(kernel)
        for i, what, channels in ((2, "offset", taps * len(kernel)), (4, "mask", taps)):
            v = node.input(i)
            expected = (shape[0], channels, *shape[2:])
            if v is not None and v.shape is not None and tuple(v.shape) != expected:
                raise self.invalid(node, f"{what} has shape {v.shape} but offset_group={groups}, the kernel and "
                                         f"the output's shape need {expected}")
        return [TensorType(node.inputs[0].dtype, shape)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x, w, offset, b, mask = (inputs + (None,) * 2)[:5]
        dtype = widened(x.dtype)
        window = self.window(node, x.shape, w.shape)
        mask = None if mask is None else mask.astype(dtype)
        taps = deformed_taps(x.astype(dtype), offset.astype(dtype), mask, window, int(node.attr("offset_group", 1)))
        y = contract_taps(taps, w.astype(dtype), int(node.attr("group", 1)))
        if b is not None:
            y += channel_column(b.astype(dtype), y.ndim)
        return [y.astype(x.dtype, copy=False)]


def deformed_taps(x: np.ndarray, offset: np.ndarray, mask: np.ndarray | None, window: Window,
                  groups: int) -> np.ndarray:
    """X sampled at each window tap moved by its offset and scaled by its mask (both per offset group), as taps
    (N, C, *out, *k)."""
    n, kernel, out = len(window.kernel), window.kernel, window.out
    batch, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    offset = offset.reshape(batch, groups, *kernel, n, *out)
    coords = []
    for i in range(n):
        along_kernel = (np.arange(kernel[i]) * window.dilations[i]).reshape([-1 if a == i else 1 for a in range(2 * n)])
        along_out = (np.arange(out[i]) * window.strides[i] - window.pads_begin[i]).reshape(
            [-1 if a == n + i else 1 for a in range(2 * n)])
        coords.append(along_kernel + along_out + offset[(slice(None),) * (2 + n) + (i,)])   # N, G, *k, *out
    lower = [np.floor(c) for c in coords]
    planes = x.reshape(batch, groups, channels // groups, -1)
    sampled = np.zeros((batch, groups, channels // groups, math.prod(kernel) * math.prod(out)), x.dtype)
    for corner in itertools.product((0, 1), repeat=n):
        weight, index, inside = 1.0, 0, True
        for i, step in enumerate(corner):
            pos = lower[i] + step
            frac = coords[i] - lower[i]
            weight = weight * (frac if step else 1 - frac)
            inside = inside & (pos >= 0) & (pos < spatial[i])
            index = index * spatial[i] + np.clip(pos, 0, spatial[i] - 1).astype(np.int64)
        weight = np.where(inside, weight, 0).reshape(batch, groups, 1, -1)
        sampled += np.take_along_axis(planes, index.reshape(batch, groups, 1, -1), axis=-1) * weight
    if mask is not None:
        sampled *= mask.reshape(batch, groups, 1, -1)
    taps = sampled.reshape(batch, channels, *kernel, *out)
    return taps.transpose(0, 1, *range(2 + n, 2 + 2 * n), *range(2, 2 + n))
