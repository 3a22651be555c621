"""Normalizations: BatchNormalization (inference: a per-channel affine map, One-to-One) and the statistics-
computing ones (Many-to-Many): Instance/Layer/Group/RMS/Lp/MeanVariance normalization and LRN."""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from ..ir import dtypes
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, normalize_axis, same_as_input, shape_of
from .reduce import normalize_axes, reduced_shape
from .registry import register


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


class Normalization(Op):
    """A normalization whose output has the input's type and shape; `flops_per_element` sets its cost."""

    mapping = MappingType.MANY_TO_MANY
    flops_per_element: ClassVar[int] = 7   # mean, subtract, square, sum, scale by 1/std, weight, bias

    def infer(self, node: Node) -> list[Inferred]:
        return [same_as_input(node)]

    def flops(self, node: Node) -> int:
        return self.flops_per_element * node.inputs[0].numel

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
