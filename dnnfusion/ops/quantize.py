"""Quantization: QuantizeLinear and DequantizeLinear (One-to-One affine maps with scales per tensor, per axis or
per block), DynamicQuantizeLinear, QLinearMatMul and QLinearConv (Many-to-Many).

Integer types include ml_dtypes' 4- and 2-bit ones; float8 and float4 targets go through ml_dtypes casts."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ..kir.expr import Expr, Index, call, cast, ctype, floordiv, lit
from ..kir.kernel import Reader
from ..ir import dtypes
from ..ir.graph import Node
from .arithmetic import maximum
from .base import Inferred, MappingType, Op, TensorType, normalize_axis, shape_of
from .conv import ConvLike, channel_column, convolve
from .matmul import centered, matmul_flops, matmul_shape
from .registry import register

LOW_PRECISION_FLOATS = frozenset({"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                                  "float4_e2m1fn"})


def int_range(dtype: np.dtype) -> tuple[int, int] | None:
    """(min, max) of an integer dtype, ml_dtypes' int4/uint4/int2/uint2 included; None for other types."""
    try:
        info = ml_dtypes.iinfo(dtype)
    except (ValueError, TypeError):
        return None
    return int(info.min), int(info.max)


def is_quantized(dtype: np.dtype) -> bool:
    """True for the types that QuantizeLinear produces: integers of up to 16 bits, float8 and float4."""
    dtype = np.dtype(dtype)
    return dtype.name in LOW_PRECISION_FLOATS or (int_range(dtype) is not None and dtype.itemsize <= 2)


def attr_dtype(node: Node, name: str) -> np.dtype | None:
    """A dtype given as an ONNX element type code in attribute `name` (None when absent or 0)."""
    code = node.attr(name, 0)
    return dtypes.to_numpy(code) if code else None


def param_layout(node: Node, p_shape: tuple, x_shape: tuple) -> tuple[int, int] | None:
    """Where a scale or zero point varies: None per tensor, else (axis, block_size) with block_size 0 per axis."""
    block = int(node.attr("block_size", 0) or 0)
    if block < 0:
        raise Op.invalid(node, f"block_size must be positive, not {block}")
    if not block and len(p_shape) <= 1 and math.prod(p_shape) == 1:
        return None
    axis = normalize_axis(node, int(node.attr("axis", 1)), len(x_shape))
    if not block:
        if len(p_shape) != 1 or p_shape[0] != x_shape[axis]:
            raise Op.invalid(node, f"a per-axis scale/zero point must be 1-D of length {x_shape[axis]} (axis {axis} "
                                   f"of input shape {tuple(x_shape)}), not of shape {tuple(p_shape)}")
        return axis, 0
    expected = tuple(-(-d // block) if i == axis else d for i, d in enumerate(x_shape))
    if tuple(p_shape) != expected:
        raise Op.invalid(node, f"a blocked scale/zero point for input shape {tuple(x_shape)}, axis {axis} and "
                               f"block_size {block} must have shape {expected}, not {tuple(p_shape)}")
    return axis, block


def spread(param: np.ndarray, layout: tuple[int, int] | None, x_shape: tuple) -> np.ndarray:
    """A scale or zero point reshaped (and for blocks repeated) so that it broadcasts against x."""
    if layout is None:
        return param.reshape(())
    axis, block = layout
    if not block:
        return param.reshape([-1 if i == axis else 1 for i in range(len(x_shape))])
    repeated = np.repeat(param, block, axis=axis)
    return repeated[(slice(None),) * axis + (slice(0, x_shape[axis]),)]


def param_index(layout: tuple[int, int] | None, index: Index, p_shape: tuple) -> Index:
    """Where the scale or zero point of x's element `index` is, for a layout from `param_layout`."""
    if layout is None:
        return tuple(lit(0, "int64_t") for _ in p_shape)
    axis, block = layout
    if not block:
        return (index[axis],)
    return tuple(floordiv(e, block) if i == axis else e for i, e in enumerate(index))


class AffineQuantization(Op):
    """Shared checks of QuantizeLinear/DequantizeLinear: inputs (x, scale, optional zero point)."""

    mapping = MappingType.ONE_TO_ONE

    def check_params(self, node: Node) -> None:
        x, scale = shape_of(node, 0), shape_of(node, 1)
        layout = param_layout(node, scale, x)
        zero = node.input(2)
        if zero is not None and param_layout(node, shape_of(node, 2), x) != layout:
            raise self.invalid(node, f"zero point shape {zero.shape} does not match scale shape {scale}")

    def params(self, node: Node, x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None) -> tuple:
        """The scale (in its own type) and zero point (float64, 0 when absent), both broadcastable against x."""
        layout = param_layout(node, scale.shape, x.shape)
        zero_f = np.zeros(()) if zero is None else spread(zero.astype(np.float64), layout, x.shape)
        return spread(scale, layout, x.shape), zero_f

    def param_exprs(self, node: Node, index: Index, read: Reader) -> tuple[Expr, Expr | None]:
        """The scale and zero point (None when absent) of x's element at `index`, constant or read at run time."""
        p_shape = node.inputs[1].shape
        at = param_index(param_layout(node, p_shape, node.inputs[0].shape), index, p_shape)
        return read(1, at), None if node.input(2) is None else read(2, at)


@register
class QuantizeLinear(AffineQuantization):
    """y = saturate(round_half_even(x / y_scale) + y_zero_point) in the zero point's (or output_dtype's) type."""

    op_type = "QuantizeLinear"

    def out_dtype(self, node: Node) -> np.dtype:
        zero = node.input(2)
        declared = attr_dtype(node, "output_dtype")
        if zero is not None and declared is not None and zero.dtype != declared:
            raise self.invalid(node, f"output_dtype {declared} differs from the zero point's type {zero.dtype}")
        dtype = zero.dtype if zero is not None else declared if declared is not None else np.dtype(np.uint8)
        if not is_quantized(dtype):
            raise self.fail(node, f"cannot quantize to {dtypes.name(dtype)}")
        return np.dtype(dtype)

    def infer(self, node: Node) -> list[Inferred]:
        self.check_params(node)
        return [TensorType(self.out_dtype(node), shape_of(node, 0))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x, scale, zero = (inputs + (None,))[:3]
        dtype = self.out_dtype(node)
        scale, zero_f = self.params(node, x, scale, zero)
        precision = self.precision(node)
        q = (x.astype(precision) / scale.astype(precision)).astype(np.float64)
        limits = int_range(dtype)
        if limits is not None:
            return [np.clip(np.rint(q) + zero_f, *limits).astype(dtype)]
        q = q + zero_f
        if node.attr("saturate", 1):
            top = float(ml_dtypes.finfo(dtype).max)
            q = np.clip(q, -top, top)
        return [q.astype(dtype)]

    def precision(self, node: Node) -> np.dtype:
        """The type x / y_scale is computed in: the precision attribute, else the scale's type."""
        precision = attr_dtype(node, "precision")
        return node.inputs[1].dtype if precision is None else precision

    def lowering(self, node: Node) -> str | None:
        return super().lowering(node) if ctype(self.precision(node)) is not None else None

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        """An integer result (the only C-typed quantized types): saturate(nearbyint(x / scale) + zero point)."""
        scale, zero = self.param_exprs(node, index, read)
        precision = ctype(self.precision(node))
        q = call("round", cast(cast(read(0, index), precision) / cast(scale, precision), "double"))
        if zero is not None:
            q = q + cast(zero, "double")
        low, high = int_range(self.out_dtype(node))
        return cast(maximum(maximum(q, lit(low, "double")), lit(high, "double"), "<="), ctype(self.out_dtype(node)))


@register
class DequantizeLinear(AffineQuantization):
    """y = (x - x_zero_point) * x_scale in the scale's (or output_dtype's) type."""

    op_type = "DequantizeLinear"

    def out_dtype(self, node: Node) -> np.dtype:
        declared = attr_dtype(node, "output_dtype")
        return node.inputs[1].dtype if declared is None else declared

    def infer(self, node: Node) -> list[Inferred]:
        x = node.inputs[0]
        if not (is_quantized(x.dtype) or x.dtype == np.int32):
            raise self.fail(node, f"cannot dequantize {dtypes.name(x.dtype)}")
        self.check_params(node)
        return [TensorType(self.out_dtype(node), x.shape)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x, scale, zero = (inputs + (None,))[:3]
        scale, zero_f = self.params(node, x, scale, zero)
        shifted = (x.astype(np.float64) - zero_f).astype(np.float32)
        return [(shifted * scale.astype(np.float32)).astype(self.out_dtype(node))]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        scale, zero = self.param_exprs(node, index, read)
        shifted = cast(read(0, index), "double")
        if zero is not None:
            shifted = shifted - cast(zero, "double")
        return cast(cast(shifted, "float") * cast(scale, "float"), ctype(self.out_dtype(node)))


@register
class DynamicQuantizeLinear(Op):
    """(y, y_scale, y_zero_point): x quantized to uint8 over the range [min(x, 0), max(x, 0)]."""

    op_type = "DynamicQuantizeLinear"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        u8 = np.dtype(np.uint8)
        return [TensorType(u8, shape_of(node, 0)), TensorType(np.dtype(np.float32), ()), TensorType(u8, ())]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x = inputs[0].astype(np.float32)
        low = np.float32(min(0.0, x.min())) if x.size else np.float32(0)
        high = np.float32(max(0.0, x.max())) if x.size else np.float32(0)
        scale = np.float32((high - low) / np.float32(255)) if high != low else np.float32(1)
        zero = np.clip(np.rint(-low / scale), 0, 255)
        y = np.clip(np.rint(x / scale) + zero, 0, 255)
        return [y.astype(np.uint8), np.array(scale, np.float32), np.array(zero, np.uint8)]


def along(v: np.ndarray | None, axis: int, rank: int) -> np.ndarray | None:
    """A 1-D per-row/per-column parameter laid along `axis` of a rank-`rank` result (scalars unchanged)."""
    if v is None or v.ndim != 1 or v.size == 1:
        return v
    return v.reshape([-1 if i == axis % rank else 1 for i in range(rank)])


def requantize(acc: np.ndarray, multiplier: np.ndarray, zero: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """saturate(round_half_even(acc * multiplier) + zero_point) in the quantized integer dtype."""
    y = np.rint(acc * multiplier)
    if zero is not None:
        y = y + zero.astype(np.float64)
    return np.clip(y, *int_range(dtype)).astype(dtype)


def quantized_out_dtype(op: Op, node: Node, zero_index: int, fallback_index: int) -> np.dtype:
    """The output type: the output zero point's, else the quantized input's; an 8-bit integer either way."""
    zero = node.input(zero_index)
    dtype = (zero if zero is not None else node.inputs[fallback_index]).dtype
    if int_range(dtype) is None:
        raise op.invalid(node, f"the quantized output type must be an integer type, not {dtypes.name(dtype)}")
    return dtype


@register
class QLinearMatMul(Op):
    """y = quantize(dequantize(a) @ dequantize(b)) with per-tensor, per-row (a, y) or per-column (b) parameters."""

    op_type = "QLinearMatMul"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        shape = matmul_shape(node, shape_of(node, 0), shape_of(node, 3))
        return [TensorType(quantized_out_dtype(self, node, 7, 0), shape)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = (inputs + (None,) * 8)[:8]
        acc = np.matmul(centered(a, a_zero, axis=-2), centered(b, b_zero, axis=-1))
        rank = max(acc.ndim, 1)
        multiplier = along(a_scale, -2, rank) * along(b_scale, -1, rank) / along(y_scale, -2, rank)
        return [requantize(acc, multiplier, along(y_zero, -2, rank), quantized_out_dtype(self, node, 7, 0))]

    def flops(self, node: Node) -> int:
        return matmul_flops(node) + node.outputs[0].numel


@register
class QLinearConv(ConvLike):
    """y = quantize(conv(dequantize(x), dequantize(w)) + B * x_scale * w_scale) with per-channel w parameters."""

    op_type = "QLinearConv"
    w_index = 3
    bias_index = 8

    def infer(self, node: Node) -> list[Inferred]:
        self.check_bias(node)
        channels = shape_of(node, 3)[0]
        for i, what in ((4, "w_scale"), (5, "w_zero_point")):
            v = node.input(i)
            if v is not None and v.shape is not None and math.prod(v.shape) not in (1, channels):
                raise self.invalid(node, f"{what} has shape {v.shape}; it must be a scalar or have one entry per "
                                         f"output channel ({channels})")
        return [TensorType(quantized_out_dtype(self, node, 7, 0), self.out_shape(node))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> list[np.ndarray]:
        x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero, b = (inputs + (None,) * 9)[:9]
        window = self.window(node, x.shape, w.shape)
        acc = convolve(centered(x, x_zero), centered(w, w_zero, axis=0), window, int(node.attr("group", 1)))
        if b is not None:
            acc += channel_column(b.astype(np.float64), acc.ndim)
        multiplier = x_scale * channel_column(w_scale.reshape(-1), acc.ndim) / y_scale
        return [requantize(acc, multiplier, y_zero, quantized_out_dtype(self, node, 7, 0))]
