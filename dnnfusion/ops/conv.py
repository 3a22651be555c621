"""Convolutions: Conv, ConvTranspose, ConvInteger, DeformConv (Many-to-Many), and the window attributes that
convolutions and pools share (output extents, auto_pad/ceil_mode padding). Their generated code is the
templates in kernels/conv.py; the Window geometry is kernels/window.py."""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

from ..ir.graph import Node
from ..kernels.blocked import blocked_conv, depthwise_applies, pointwise_applies
from ..kernels.conv import PRODUCT_MIN_CHANNELS, conv_depthwise, conv_direct, conv_implicit, conv_outer_window
from ..kernels.conv import conv_product
from ..kernels.conv import conv_transpose, conv_transpose_disjoint, pointwise
from ..kernels.window import Window
from ..kernels.winograd import applies as winograd_applies, conv_winograd, costs as winograd_costs
from ..kernels.winograd import method as winograd_method_of
from ..kir.expr import ctype
from ..kir.kernel import KernelContext, KernelOptions, fits_stack
from .base import Inferred, MappingType, Op, TensorType, channel_vector, shape_of
from .matmul import centered, widened
from .registry import register

DIRECT = "direct implicit GEMM"     # the method named where a convolution is not run as Winograd

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


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
        blocked = blocked_conv(ctx, node, window, group, ct)
        if blocked is not None:
            return blocked
        direct = w.shape[0] // group < PRODUCT_MIN_CHANNELS and fits_stack(window.out[-1])
        if direct:
            return conv_depthwise(ctx, node, window, group, ct) or conv_direct(ctx, node, window, group, ct)
        winograd = winograd_method(ctx, node, window, group, ct)
        if winograd is not None:
            return winograd
        implicit = None if pointwise(window, x.shape[2:]) else \
            conv_outer_window(ctx, node, window, group, ct) or conv_implicit(ctx, node, window, group, ct)
        return implicit if implicit is not None else conv_product(ctx, node, window, group, ct)

    def blocked_channels(self, node: Node, block: int) -> str:
        """kernels/blocked.py runs float32 pointwise convolutions (one group) on blocked arrays on either side,
        and 2-D depthwise ones from a blocked input (weights known at compile time)."""
        x, w = node.inputs[0], node.inputs[1]
        if x.dtype is None or x.dtype.name != "float32" or len(x.shape) != 4:
            return ""
        group = int(node.attr("group", 1))
        window = self.window(node, x.shape, w.shape)
        if pointwise_applies(node, window, group):
            return "any"
        return "input" if depthwise_applies(node, window, group) else ""

    def kernel_choices(self, node: Node, options: KernelOptions) -> list[tuple[str, float]]:
        """Where Winograd may run this convolution: every Winograd form's estimated cycles and the direct
        implicit GEMM's (`winograd.costs`), cheapest first, which is the one `kernel` takes."""
        x, w = node.inputs[0], node.inputs[1]
        group, ct = int(node.attr("group", 1)), ctype(widened(x.dtype))
        window = self.window(node, x.shape, w.shape)
        if not options.winograd or not winograd_applies(node, window, group, ct):
            return []
        estimates = winograd_costs(node, window)
        return sorted(((DIRECT if how is None else str(how), cycles) for how, cycles in estimates.items()),
                      key=lambda choice: (choice[1], choice[0] != DIRECT))

    def absorb_channel_affine(self, node: Node, scale: np.ndarray, shift: np.ndarray) -> dict[int, np.ndarray] | None:
        """W[m] * scale[m] and B[m] * scale[m] + shift[m] (BatchNormalization folded into the conv)."""
        return scaled_weights(node, scale, shift, lambda w, s: w * s.reshape((-1,) + (1,) * (w.ndim - 1)))


def winograd_method(ctx: KernelContext, node: Node, window: Window, group: int, ct: str) -> list[str] | None:
    """The convolution as Winograd F(m x m, 3 x 3) where the options allow it and the method the options name
    for it (measured by tuning), else its cost estimate, is a Winograd one, naming the choice; None otherwise."""
    if not ctx.options.winograd or not winograd_applies(node, window, group, ct):
        return None
    named = ctx.options.method_for(node.name)
    how = winograd_method_of(node, window) if named is None else \
        next((h for h in winograd_costs(node, window) if h is not None and str(h) == named), None)
    code = None if how is None else conv_winograd(ctx, node, window, group, ct, how)
    if code is not None:
        ctx.choose(str(how))
    return code


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
        y = deconvolve(x.astype(dtype), w.astype(dtype), window, extra, int(node.attr("group", 1)))
        if b is not None:
            y += channel_column(b.astype(dtype), y.ndim)
        return [y.astype(x.dtype, copy=False)]

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        window, _ = self.geometry(node, node.inputs[0].shape, node.inputs[1].shape)
        if not fits_stack(window.out[-1]):
            return None
        group, ct = int(node.attr("group", 1)), ctype(widened(node.inputs[0].dtype))
        return conv_transpose_disjoint(ctx, node, window, group, ct) or conv_transpose(ctx, node, window, group, ct)

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


def deconvolve(x: np.ndarray, w: np.ndarray, window: Window, extra: Sequence[int], group: int) -> np.ndarray:
    """Grouped N-D transposed convolution (no bias) in the dtype of x and w: every input pixel times its kernel
    summed into the full output, then cropped to `window.out` by the pads (output_padding `extra` included)."""
    full = _scatter_windows(x, w, window, extra, group)
    y = np.zeros((*full.shape[:2], *window.out), full.dtype)
    src, dst = [], []
    for size, begin, out in zip(full.shape[2:], window.pads_begin, window.out):
        lo, hi = max(begin, 0), min(size, begin + out)
        src.append(slice(lo, hi))
        dst.append(slice(lo - begin, hi - begin))
    y[(Ellipsis, *dst)] = full[(Ellipsis, *src)]
    return y


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
