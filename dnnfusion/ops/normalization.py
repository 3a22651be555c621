"""Normalizations: BatchNormalization (inference: a per-channel affine map, One-to-One) and the statistics-
computing ones (Many-to-Many): Instance/Layer/Group/RMS/Lp/MeanVariance normalization and LRN."""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, Var, binary, broadcast_index, call, cast, ctype, lit, numel, select
from ..kir.kernel import KernelContext, serial_for
from ..ir import dtypes
from ..ir.graph import Node
from .activations import below, onnx_constant, onnx_node
from .base import ChannelAffine, Inferred, MappingType, Op, TensorType, normalize_axis, same_as_input, shape_of
from ..kernels.rows import FLOAT_C, fold, folds, map_row, over_rows
from .reduce import normalize_axes, reduced_shape
from .registry import register


LAYER_NORM_OPSET = 17      # the first default-domain opsets with LayerNormalization, GroupNormalization and
GROUP_NORM_OPSET = 18      # RMSNormalization (below them such a node was recognised in its decomposition,
RMS_NORM_OPSET = 23        # passes/rewrite/decomposed.py, and `onnx_body` spells it out again)
AXES_INPUT_OPSET = 18      # ReduceMean takes its axes as an input from this opset on


def work_dtype(dtype: np.dtype) -> np.dtype:
    """The precision statistics are computed in: float64 stays, anything narrower goes to float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def channel_param(p: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel parameter of shape (C, ...) laid out to broadcast against (N, C, ...) of `rank`."""
    return p.reshape((1,) + p.shape + (1,) * (rank - 1 - p.ndim))


def standardize(x: np.ndarray, axes: tuple[int, ...], epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean) / sqrt(var + epsilon) over `axes`, with the mean and 1/sqrt(var + epsilon) it used."""
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    inv_std = 1 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + x.dtype.type(epsilon))
    return centered * inv_std, mean, inv_std


def moments(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int], row: dict[int, Expr], work: str,
            at: Callable[[Index], Index] | None = None) -> tuple[list[str], Var, Var]:
    """Statements computing the row's mean and (biased) variance in C type `work`, reading the row once, and the
    locals holding them. The sweep sums each element's deviation from the row's first element and its square,
    in double: shifted and wide, the variance s2/n - (s1/n)^2 neither cancels nor loses precision however far
    the row lies from zero or the first element from the mean."""
    count = lit(numel([shape[a] for a in axes]), "double")
    first, total, square = Var("first", "double"), Var("dev", "double"), Var("dev2", "double")
    head = tuple(row.get(a, Lit(0)) for a in range(len(shape)))
    lines = ctx.value(first.name, cast(ctx.read(0, at(head) if at else head), "double"))

    def deviation(x: Expr) -> Expr:
        return cast(x, "double") - first
    lines += folds(ctx, shape, axes, row, [(total, lit(0, "double"), lambda x: total + deviation(x)),
                                           (square, lit(0, "double"), lambda x: square + deviation(x) * deviation(x))],
                   at, "+")
    offset, spread = Var("offset", "double"), Var("spread", "double")
    lines += ctx.value(offset.name, total / count) + ctx.value(spread.name, square / count - offset * offset)
    mean, var = Var("mean", work), Var("var", work)
    zero = lit(0, "double")
    lines += ctx.value(mean.name, cast(first + offset, work))
    return lines + ctx.value(var.name, cast(select(binary("<", spread, zero), zero, spread), work)), mean, var


def inverse_std(ctx: KernelContext, var: Var, epsilon: float) -> tuple[list[str], Var]:
    """Statements computing 1 / sqrt(var + epsilon) into a local, and that local."""
    inv = Var("inv_std", var.ctype)
    return ctx.value(inv.name, lit(1, var.ctype) / call("sqrt", var + lit(epsilon, var.ctype))), inv


def onnx_mean(data: str, out: str, axes: Sequence[int], opset: int) -> list:
    """NodeProtos for ReduceMean of `data` over `axes` (kept) at `opset`: the axes an attribute or an input."""
    if opset < AXES_INPUT_OPSET:
        return [onnx_node("ReduceMean", [data], out, axes=list(axes))]
    return [onnx_constant(f"{out}_axes", np.array(axes), np.int64), onnx_node("ReduceMean", [data, f"{out}_axes"], out)]


def onnx_root_mean_square(data: str, prefix: str, axes: Sequence[int], epsilon: float, dtype: np.dtype,
                          opset: int) -> list:
    """NodeProtos computing `{prefix}_sd` = sqrt(mean(data^2) + epsilon) over `axes`."""
    square, mean, eps, shifted = (f"{prefix}_{name}" for name in ("sq", "ms", "eps", "ve"))
    return [onnx_node("Mul", [data, data], square)] + onnx_mean(square, mean, axes, opset) + \
        [onnx_constant(eps, epsilon, dtype), onnx_node("Add", [mean, eps], shifted),
         onnx_node("Sqrt", [shifted], f"{prefix}_sd")]


class Normalization(Op):
    """A normalization whose output has the input's type and shape; `flops_per_element` sets its cost."""

    mapping = MappingType.MANY_TO_MANY
    flops_per_element: ClassVar[int] = 7   # mean, subtract, square, sum, scale by 1/std, weight, bias

    def infer(self, node: Node) -> list[Inferred]:
        return [same_as_input(node)]

    def flops(self, node: Node) -> int:
        return self.flops_per_element * node.inputs[0].numel

    def supported(self, node: Node) -> bool:
        """Whether the generated code covers this node (its types and attributes); otherwise a fallback."""
        return ctype(node.inputs[0].dtype) in FLOAT_C

    def stash_dtype(self, node: Node) -> np.dtype:
        """The precision of the statistics that `stash_type` names (float32 by default)."""
        dtype = dtypes.to_numpy(node.attr("stash_type", 1))
        if not dtypes.is_float(dtype):
            raise self.invalid(node, f"stash_type {node.attr('stash_type')} ({dtype}) is not a floating-point type")
        return dtype


@register
class BatchNormalization(Normalization):
    """Inference-mode batch norm: (x - mean) / sqrt(var + epsilon) * scale + B per channel."""

    op_type = "BatchNormalization"
    mapping = MappingType.ONE_TO_ONE
    flops_per_element = 2   # folded into one multiply-add per element

    def infer(self, node: Node) -> list[Inferred]:
        if node.attr("training_mode", 0) or any(v is not None for v in node.outputs[1:]):
            raise self.fail(node, "in training mode (batch statistics, running-mean outputs) is not supported; "
                                  "export the model for inference")
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, scale, bias, mean, var = inputs[:5]
        work = work_dtype(x.dtype)
        gain = scale.astype(work) / np.sqrt(var.astype(work) + work.type(node.attr("epsilon", 1e-5)))
        shift = bias.astype(work) - mean.astype(work) * gain
        y = x.astype(work) * channel_param(gain, x.ndim) + channel_param(shift, x.ndim)
        return [y.astype(x.dtype)]

    def supported(self, node: Node) -> bool:
        x = node.inputs[0]
        return ctype(x.dtype) in FLOAT_C and len(x.shape) >= 2 and not node.attr("training_mode", 0) and \
            all(v is not None and len(v.shape) == 1 for v in node.inputs[1:5])

    def channel_affine(self, node: Node) -> ChannelAffine | None:
        """x * gain + shift along axis 1, when scale, B, mean and var are constants."""
        params = [v.const if v is not None else None for v in node.inputs[1:5]]
        x = node.inputs[0]
        if not self.supported(node) or any(p is None for p in params) or x.dtype not in (np.float32, np.float64):
            return None
        scale, bias, mean, var = (p.astype(np.float64) for p in params)
        gain = scale / np.sqrt(var + float(node.attr("epsilon", 1e-5)))
        return ChannelAffine(0, channel_param(gain, len(x.shape)), channel_param(bias - mean * gain, len(x.shape)))

    def pointwise(self, node: Node, out: int, index: Index, read) -> Expr | None:
        """x * gain + shift with gain = scale / sqrt(var + epsilon), shift = B - mean * gain, per channel."""
        if out != 0 or not self.supported(node):
            return None
        work = ctype(work_dtype(node.inputs[0].dtype))
        channel = (index[1],)
        scale, bias, mean, var = (cast(read(i, channel), work) for i in range(1, 5))
        gain = scale / call("sqrt", var + lit(node.attr("epsilon", 1e-5), work))
        return cast(cast(read(0, index), work) * gain + (bias - mean * gain), ctype(node.inputs[0].dtype))


@register
class InstanceNormalization(Normalization):
    """Per instance and channel, standardize over the spatial axes, then scale and shift per channel."""

    op_type = "InstanceNormalization"

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, scale, bias = inputs[:3]
        work = work_dtype(x.dtype)
        normalized, _, _ = standardize(x.astype(work), tuple(range(2, x.ndim)), node.attr("epsilon", 1e-5))
        y = normalized * channel_param(scale.astype(work), x.ndim) + channel_param(bias.astype(work), x.ndim)
        return [y.astype(x.dtype)]

    def supported(self, node: Node) -> bool:
        x = node.inputs[0]
        return ctype(x.dtype) in FLOAT_C and len(x.shape) >= 2 and all(len(v.shape) == 1 for v in node.inputs[1:3])

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per (instance, channel): mean and variance over the spatial axes, then the affine map per element."""
        x = node.inputs[0]
        if not self.supported(node):
            return None
        work, ct = ctype(work_dtype(x.dtype)), ctype(x.dtype)
        axes = tuple(range(2, len(x.shape)))

        def body(row: dict[int, Expr]) -> list[str]:
            lines, mean, var = moments(ctx, x.shape, axes, row, work)
            inv_lines, inv = inverse_std(ctx, var, node.attr("epsilon", 1e-5))
            scale, bias = Var("scale", work), Var("bias", work)
            lines += inv_lines + ctx.value(scale.name, cast(ctx.read(1, (row[1],)), work)) + \
                ctx.value(bias.name, cast(ctx.read(2, (row[1],)), work))
            return lines + map_row(ctx, x.shape, axes, row,
                                   lambda v, index: cast((cast(v, work) - mean) * inv * scale + bias, ct))
        return over_rows(ctx, x.shape, axes, body, self.flops_per_element * x.numel)


@register
class LayerNormalization(Normalization):
    """Standardize over the axes from `axis` on, then scale and shift; optionally output Mean and InvStdDev."""

    op_type = "LayerNormalization"

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        stats = TensorType(self.stash_dtype(node), reduced_shape(shape, self._axes(node, len(shape)), True))
        return [same_as_input(node), stats, stats]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, scale, bias = (list(inputs) + [None])[:3]
        normalized, mean, inv_std = standardize(
            x.astype(self.stash_dtype(node)), self._axes(node, x.ndim), node.attr("epsilon", 1e-5))
        y = normalized.astype(x.dtype) * scale
        if bias is not None:
            y = y + bias
        return [y.astype(x.dtype, copy=False), mean, inv_std]

    @staticmethod
    def _axes(node: Node, rank: int) -> tuple[int, ...]:
        return tuple(range(normalize_axis(node, node.attr("axis", -1), rank), rank))

    def supported(self, node: Node) -> bool:
        x = node.inputs[0]
        return ctype(x.dtype) in FLOAT_C and len(x.shape) >= 1 and ctype(self.stash_dtype(node)) in FLOAT_C

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per row (the axes before `axis`): mean and variance, the optional Mean/InvStdDev outputs, then the
        normalized, scaled and shifted elements."""
        x, scale, bias = node.inputs[0], node.inputs[1], node.input(2)
        if not self.supported(node):
            return None
        shape, ct, work = x.shape, ctype(x.dtype), ctype(self.stash_dtype(node))
        axes = self._axes(node, len(shape))

        def body(row: dict[int, Expr]) -> list[str]:
            lines, mean, var = moments(ctx, shape, axes, row, work)
            inv_lines, inv = inverse_std(ctx, var, node.attr("epsilon", 1e-5))
            lines += inv_lines
            stats = tuple(row.get(a, Lit(0)) for a in range(len(shape)))
            for k, local in ((1, mean), (2, inv)):
                if k < len(node.outputs) and node.outputs[k] is not None:
                    lines += ctx.store(k, stats, local)

            def value(v: Expr, index: Index) -> Expr:
                y = cast((cast(v, work) - mean) * inv, ct) * ctx.read(1, broadcast_index(index, shape, scale.shape))
                return y + ctx.read(2, broadcast_index(index, shape, bias.shape)) if bias is not None else y
            return lines + map_row(ctx, shape, axes, row, value)
        return over_rows(ctx, shape, axes, body, self.flops_per_element * x.numel)

    def onnx_body(self, node: Node) -> list | None:
        """Below opset 17: mean, x - mean, its root mean square, the quotient times scale plus bias (in the
        input's type), and the Mean and InvStdDev outputs where the node has them."""
        if not below(node, LAYER_NORM_OPSET):
            return None
        x, scale, bias = node.inputs[0], node.inputs[1], node.input(2)
        axes = self._axes(node, len(x.shape))
        nodes = onnx_mean(x.name, "ln_mean", axes, node.opset) + [onnx_node("Sub", [x.name, "ln_mean"], "ln_d")]
        nodes += onnx_root_mean_square("ln_d", "ln", axes, node.attr("epsilon", 1e-5), x.dtype, node.opset)
        scaled = node.outputs[0].name if bias is None else "ln_scaled"
        nodes += [onnx_node("Div", ["ln_d", "ln_sd"], "ln_n"), onnx_node("Mul", ["ln_n", scale.name], scaled)]
        nodes += [onnx_node("Add", [scaled, bias.name], node.outputs[0].name)] if bias is not None else []
        stash = dtypes.to_onnx(self.stash_dtype(node))
        for k, local, made in ((1, "ln_mean", []), (2, "ln_inv", [onnx_node("Reciprocal", ["ln_sd"], "ln_inv")])):
            if k < len(node.outputs) and node.outputs[k] is not None:
                nodes += made + [onnx_node("Cast", [local], node.outputs[k].name, to=stash)]
        return nodes


@register
class GroupNormalization(Normalization):
    """Standardize each group of channels per instance, then scale and shift (per group before opset 21)."""

    op_type = "GroupNormalization"
    per_channel_since = 21

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        groups = self._groups(node, shape)
        expected = shape[1] if node.opset >= self.per_channel_since else groups
        for i, what in ((1, "scale"), (2, "bias")):
            if shape_of(node, i) != (expected,):
                unit = "channel" if node.opset >= self.per_channel_since else "group"
                raise self.invalid(node, f"{what} has shape {shape_of(node, i)} but opset {node.opset} expects "
                                         f"one value per {unit}: ({expected},)")
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, scale, bias = inputs[:3]
        n, c = x.shape[:2]
        groups = self._groups(node, x.shape)
        grouped = x.astype(self.stash_dtype(node)).reshape(n, groups, (c // groups) * int(np.prod(x.shape[2:])))
        normalized, _, _ = standardize(grouped, (2,), node.attr("epsilon", 1e-5))
        normalized = normalized.reshape(x.shape).astype(x.dtype)
        if node.opset < self.per_channel_since:
            scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
        return [(normalized * channel_param(scale, x.ndim) + channel_param(bias, x.ndim)).astype(x.dtype)]

    def _groups(self, node: Node, shape: tuple) -> int:
        groups = node.attr("num_groups")
        if groups is None or groups <= 0 or len(shape) < 2 or shape[1] % groups:
            raise self.invalid(node, f"num_groups={groups} must be a positive divisor of the channel count "
                                     f"(input shape {shape})")
        return int(groups)

    def supported(self, node: Node) -> bool:
        return ctype(node.inputs[0].dtype) in FLOAT_C and ctype(self.stash_dtype(node)) in FLOAT_C

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """The input viewed as (N, groups, channels per group, spatial...): per (instance, group), mean and
        variance over the rest, then the normalized element times scale plus bias."""
        x = node.inputs[0]
        if not self.supported(node):
            return None
        shape, ct, work = x.shape, ctype(x.dtype), ctype(self.stash_dtype(node))
        groups = self._groups(node, shape)
        per_group = shape[1] // groups
        view = (shape[0], groups, per_group) + tuple(shape[2:])
        axes = tuple(range(2, len(view)))

        def at(index: Index) -> Index:
            return (index[0], index[1] * per_group + index[2]) + tuple(index[3:])

        def body(row: dict[int, Expr]) -> list[str]:
            lines, mean, var = moments(ctx, view, axes, row, work, at)
            inv_lines, inv = inverse_std(ctx, var, node.attr("epsilon", 1e-5))

            def value(v: Expr, index: Index) -> Expr:
                param = (index[1],) if node.opset >= self.per_channel_since else (row[1],)
                normalized = cast((cast(v, work) - mean) * inv, ct)
                return normalized * cast(ctx.read(1, param), ct) + cast(ctx.read(2, param), ct)
            return lines + inv_lines + map_row(ctx, view, axes, row, value, at)
        return over_rows(ctx, view, axes, body, self.flops_per_element * x.numel)

    def onnx_body(self, node: Node) -> list | None:
        """Below opset 18 (scale and bias per group): x viewed as (N, groups, rest), InstanceNormalization with
        the group scale and bias, viewed back."""
        if not below(node, GROUP_NORM_OPSET):
            return None
        x, scale, bias = (v.name for v in node.inputs[:3])
        view = np.array([0, self._groups(node, node.inputs[0].shape), -1])
        return [onnx_constant("gn_view", view, np.int64), onnx_node("Reshape", [x, "gn_view"], "gn_grouped"),
                onnx_node("InstanceNormalization", ["gn_grouped", scale, bias], "gn_norm",
                          epsilon=node.attr("epsilon", 1e-5)),
                onnx_node("Shape", [x], "gn_shape"),
                onnx_node("Reshape", ["gn_norm", "gn_shape"], node.outputs[0].name)]


@register
class RMSNormalization(Normalization):
    """x / sqrt(mean(x^2) + epsilon) over the axes from `axis` on, times scale (output has scale's type)."""

    op_type = "RMSNormalization"
    flops_per_element = 4   # square, sum, divide, scale

    def infer(self, node: Node) -> list[Inferred]:
        normalize_axis(node, node.attr("axis", -1), len(shape_of(node, 0)))
        return [TensorType(node.inputs[1].dtype, shape_of(node, 0))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, scale = inputs[:2]
        axis = normalize_axis(node, node.attr("axis", -1), x.ndim)
        w = x.astype(self.stash_dtype(node))
        mean_square = np.mean(w * w, axis=tuple(range(axis, x.ndim)), keepdims=True)
        normalized = w / np.sqrt(mean_square + w.dtype.type(node.attr("epsilon", 1e-5)))
        return [normalized.astype(scale.dtype) * scale]

    def supported(self, node: Node) -> bool:
        return ctype(node.inputs[0].dtype) in FLOAT_C and ctype(node.inputs[1].dtype) in FLOAT_C and \
            ctype(self.stash_dtype(node)) in FLOAT_C and len(node.inputs[0].shape) >= 1

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per row (the axes before `axis`): the mean square, then each element over its root, times scale."""
        x, scale = node.inputs[0], node.inputs[1]
        if not self.supported(node):
            return None
        shape, work, out = x.shape, ctype(self.stash_dtype(node)), ctype(scale.dtype)
        axes = tuple(range(normalize_axis(node, node.attr("axis", -1), len(shape)), len(shape)))
        count = lit(numel([shape[a] for a in axes]), work)
        total, root = Var("total", work), Var("root", work)

        def body(row: dict[int, Expr]) -> list[str]:
            lines = fold(ctx, shape, axes, row, total, lit(0, work), lambda v: total + cast(v, work) * cast(v, work),
                         combine="+")
            lines += ctx.value(root.name, call("sqrt", total / count + lit(node.attr("epsilon", 1e-5), work)))

            def value(v: Expr, index: Index) -> Expr:
                return cast(cast(v, work) / root, out) * ctx.read(1, broadcast_index(index, shape, scale.shape))
            return lines + map_row(ctx, shape, axes, row, value)
        return over_rows(ctx, shape, axes, body, self.flops_per_element * x.numel)

    def onnx_body(self, node: Node) -> list | None:
        """Below opset 23: x over its root mean square (in the input's type), cast to scale's type, times scale."""
        if not below(node, RMS_NORM_OPSET):
            return None
        x, scale = node.inputs[0], node.inputs[1]
        axes = tuple(range(normalize_axis(node, node.attr("axis", -1), len(x.shape)), len(x.shape)))
        nodes = onnx_root_mean_square(x.name, "rms", axes, node.attr("epsilon", 1e-5), x.dtype, node.opset)
        nodes += [onnx_node("Div", [x.name, "rms_sd"], "rms_n"),
                  onnx_node("Cast", ["rms_n"], "rms_cast", to=dtypes.to_onnx(scale.dtype))]
        return nodes + [onnx_node("Mul", ["rms_cast", scale.name], node.outputs[0].name)]


@register
class LpNormalization(Normalization):
    """x divided by its L1 or L2 norm along `axis` (0 where the norm is 0)."""

    op_type = "LpNormalization"
    flops_per_element = 3   # |x| or x^2, sum, divide

    def infer(self, node: Node) -> list[Inferred]:
        normalize_axis(node, node.attr("axis", -1), len(shape_of(node, 0)))
        self._p(node)
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        axis = normalize_axis(node, node.attr("axis", -1), x.ndim)
        if self._p(node) == 1:
            norm = np.sum(np.abs(x), axis=axis, keepdims=True)
        else:
            norm = np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
        y = np.zeros_like(x)
        np.divide(x, norm, out=y, where=np.broadcast_to(norm != 0, x.shape))
        return [y]

    def _p(self, node: Node) -> int:
        p = node.attr("p", 2)
        if p not in (1, 2):
            raise self.invalid(node, f"p={p} is not supported by the operator; it must be 1 or 2")
        return int(p)

    def supported(self, node: Node) -> bool:
        return ctype(node.inputs[0].dtype) in FLOAT_C and len(node.inputs[0].shape) >= 1

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per row along `axis`: the L1 or L2 norm, then each element divided by it (0 where it is 0)."""
        x = node.inputs[0]
        if not self.supported(node):
            return None
        shape, ct = x.shape, ctype(x.dtype)
        axes = (normalize_axis(node, node.attr("axis", -1), len(shape)),)
        total, norm = Var("total", ct), Var("norm", ct)
        l1 = self._p(node) == 1
        zero = lit(0, ct)

        def body(row: dict[int, Expr]) -> list[str]:
            lines = fold(ctx, shape, axes, row, total, zero, lambda v: total + (call("abs", v) if l1 else v * v),
                         combine="+")
            lines += ctx.value(norm.name, total if l1 else call("sqrt", total))
            return lines + map_row(ctx, shape, axes, row,
                                   lambda v, index: select(binary("!=", norm, zero), v / norm, zero))
        return over_rows(ctx, shape, axes, body, self.flops_per_element * x.numel)


@register
class MeanVarianceNormalization(Normalization):
    """(x - mean) / (std + 1e-9) over `axes` (default [0, 2, 3])."""

    op_type = "MeanVarianceNormalization"
    flops_per_element = 6   # mean, subtract, square, sum, sqrt per group, divide
    epsilon = 1e-9          # the constant in the operator's function body

    def infer(self, node: Node) -> list[Inferred]:
        normalize_axes(node, node.attr("axes", [0, 2, 3]), len(shape_of(node, 0)))
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        axes = normalize_axes(node, node.attr("axes", [0, 2, 3]), x.ndim)
        w = x.astype(work_dtype(x.dtype))
        centered = w - np.mean(w, axis=axes, keepdims=True)
        std = np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True))
        return [(centered / (std + w.dtype.type(self.epsilon))).astype(x.dtype)]

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per row (the axes not reduced): mean and standard deviation, then each element standardized."""
        x = node.inputs[0]
        if not self.supported(node):
            return None
        shape, ct, work = x.shape, ctype(x.dtype), ctype(work_dtype(x.dtype))
        axes = tuple(sorted(normalize_axes(node, node.attr("axes", [0, 2, 3]), len(shape))))
        std = Var("std", work)

        def body(row: dict[int, Expr]) -> list[str]:
            lines, mean, var = moments(ctx, shape, axes, row, work)
            lines += ctx.value(std.name, call("sqrt", var) + lit(self.epsilon, work))
            return lines + map_row(ctx, shape, axes, row, lambda v, index: cast((cast(v, work) - mean) / std, ct))
        return over_rows(ctx, shape, axes, body, self.flops_per_element * x.numel)


@register
class LRN(Normalization):
    """Local response normalization across channels: x / (bias + alpha/size * sum of x^2 in the window)^beta."""

    op_type = "LRN"

    def infer(self, node: Node) -> list[Inferred]:
        self._size(node)
        if len(shape_of(node, 0)) < 2:
            raise self.invalid(node, f"the input must be (N, C, ...), not of shape {shape_of(node, 0)}")
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        size = self._size(node)
        w = x.astype(work_dtype(x.dtype))
        before, after = (size - 1) // 2, size // 2   # floor and ceil of (size - 1) / 2
        pad = [(0, 0)] * x.ndim
        pad[1] = (before, after)
        squares = np.pad(w * w, pad)
        window = sum(squares[:, k:k + x.shape[1]] for k in range(size))
        alpha, beta, bias = (node.attr(k, d) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
        return [(w / (bias + alpha / size * window) ** beta).astype(x.dtype)]

    def flops(self, node: Node) -> int:
        return (self._size(node) + 4) * node.inputs[0].numel   # square, window sum, scale, power, divide

    def _size(self, node: Node) -> int:
        size = node.attr("size")
        if size is None or size <= 0:
            raise self.invalid(node, f"size must be a positive integer, not {size}")
        return int(size)

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per element: the sum of squares over its channel window, then x / (bias + alpha/size * sum)^beta."""
        x = node.inputs[0]
        if not self.supported(node):
            return None
        shape, ct, work = x.shape, ctype(x.dtype), ctype(work_dtype(x.dtype))
        size = self._size(node)
        alpha, beta, bias = (node.attr(k, d) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
        total, step, channel = Var("total", work), ctx.var("w"), Var("channel")

        def body(row: dict[int, Expr]) -> list[str]:
            index = tuple(row.values())
            near = Var("near", work)
            inside = binary("&&", binary(">=", channel, lit(0, "int64_t")),
                            binary("<", channel, lit(shape[1], "int64_t")))
            square = ctx.value(near.name, cast(ctx.read(0, index[:1] + (channel,) + index[2:]), work))
            window = ctx.value(channel.name, index[1] - (size - 1) // 2 + step) + \
                [f"if ({ctx.c(inside)}) {{"] + ["  " + line for line in square] + \
                [f"  {total.name} = {ctx.c(total + near * near)};", "}"]
            scaled = lit(bias, work) + lit(alpha / size, work) * total
            y = cast(ctx.read(0, index), work) / call("pow", scaled, lit(beta, work))
            return [f"{work} {total.name} = {ctx.c(lit(0, work))};"] + serial_for(step, size, window) + \
                ctx.store(0, index, cast(y, ct))
        return over_rows(ctx, shape, (), body, (size + 4) * x.numel)
