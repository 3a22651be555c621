"""Softmax, LogSoftmax and Hardmax (Many-to-Many).

Before opset 13 these coerce the input to 2-D at `axis` ([prod(shape[:axis]), prod(shape[axis:])], default
axis 1) and normalize each row; since opset 13 they normalize along the single axis `axis` (default -1).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from ..ir.graph import Node
from .base import Inferred, MappingType, Op, normalize_axis, same_as_input, shape_of
from .registry import register

SINGLE_AXIS_SINCE = 13


class AxisNormalizer(Op):
    """y = f(x) along one axis (since opset 13) or along the trailing block of a 2-D view (before)."""

    mapping = MappingType.MANY_TO_MANY
    flops_per_element: ClassVar[int] = 1

    def fn(self, x: np.ndarray, axis: int) -> np.ndarray:
        """The normalization along `axis` of a non-empty array."""
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        self._axis(node, len(shape_of(node, 0)))
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        if x.size == 0:
            return [x.copy()]
        axis = self._axis(node, x.ndim)
        with np.errstate(invalid="ignore"):   # a row of all -inf gives NaN, as the operator defines
            if node.opset >= SINGLE_AXIS_SINCE:
                return [self.fn(x, axis).astype(x.dtype, copy=False)]
            rows = int(np.prod(x.shape[:axis], dtype=np.int64))
            return [self.fn(x.reshape(rows, x.size // rows), 1).reshape(x.shape).astype(x.dtype, copy=False)]

    def flops(self, node: Node) -> int:
        return self.flops_per_element * node.inputs[0].numel

    @staticmethod
    def _axis(node: Node, rank: int) -> int:
        default = -1 if node.opset >= SINGLE_AXIS_SINCE else 1
        return normalize_axis(node, node.attr("axis", default), rank)


@register
class Softmax(AxisNormalizer):
    """exp(x) / sum(exp(x)) along the axis, shifted by the maximum for stability."""

    op_type = "Softmax"
    flops_per_element = 5   # max, subtract, exp, sum, divide

    def fn(self, x: np.ndarray, axis: int) -> np.ndarray:
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)


@register
class LogSoftmax(AxisNormalizer):
    """x - log(sum(exp(x))) along the axis, shifted by the maximum for stability."""

    op_type = "LogSoftmax"
    flops_per_element = 5   # max, subtract, exp, sum, subtract (the log is per row)

    def fn(self, x: np.ndarray, axis: int) -> np.ndarray:
        shifted = x - np.max(x, axis=axis, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@register
class Hardmax(AxisNormalizer):
    """1 at the first maximum along the axis, 0 elsewhere."""

    op_type = "Hardmax"

    def fn(self, x: np.ndarray, axis: int) -> np.ndarray:
        first = np.expand_dims(np.argmax(x, axis=axis), axis)
        y = np.zeros_like(x)
        np.put_along_axis(y, first, 1, axis=axis)
        return y
