"""Tensors made from a few numbers: ConstantOfShape, Range, EyeLike, OneHot, Trilu. Their output extents come
from constant inputs (a shape, range bounds, a depth), so these fold when the whole subgraph is constant."""

from __future__ import annotations

import math
from typing import Sequence

import ml_dtypes
import numpy as np

from ..kir.expr import Expr, Index, Lit, binary, cast, ctype, lit, select
from ..kir.kernel import Reader
from ..ir import dtypes
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, normalize_axis, same_as_input, shape_of
from .registry import register
from .shape_ops import DataMovement, ints, required_const

LOW_PRECISION = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
STASH_TYPES = {1: np.dtype(np.float32), 11: np.dtype(np.float64)}


@register
class ConstantOfShape(DataMovement):
    """A tensor of the given (constant) shape filled with the one-element `value` (float32 0 by default)."""

    op_type = "ConstantOfShape"
    mapping = MappingType.ONE_TO_MANY

    def fill(self, node: Node) -> np.ndarray:
        value = node.attr("value")
        if value is None:
            return np.zeros((), np.float32)
        value = np.asarray(value)
        if value.size != 1:
            raise self.invalid(node, f"value must hold one element, not {value.size}")
        return value.reshape(())

    def shape(self, node: Node) -> tuple[int, ...]:
        shape = tuple(ints(required_const(node, 0, "shape")))
        if any(d < 0 for d in shape):
            raise self.invalid(node, f"shape {shape} has a negative extent")
        return shape

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(self.fill(node).dtype, self.shape(node))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        fill = self.fill(node)
        return [np.full(self.shape(node), fill, dtype=fill.dtype)]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        return lit(self.fill(node).item(), ctype(node.outputs[0].dtype))


@register
class Range(Op):
    """start, start + delta, ... up to limit (exclusive), from constant scalar inputs."""

    op_type = "Range"
    mapping = MappingType.ONE_TO_MANY

    def bounds(self, node: Node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start, limit, delta = (required_const(node, i, what).reshape(-1)
                               for i, what in enumerate(("start", "limit", "delta")))
        if start.size != 1 or limit.size != 1 or delta.size != 1:
            raise self.invalid(node, "start, limit and delta must be scalars")
        if delta[0] == 0:
            raise self.invalid(node, "delta is 0")
        return start[0], limit[0], delta[0]

    def length(self, start: np.generic, limit: np.generic, delta: np.generic) -> int:
        """max(ceil((limit - start) / delta), 0), exact for integers."""
        if isinstance(start, np.integer):
            return max(-((int(start) - int(limit)) // int(delta)), 0)
        return max(math.ceil((float(limit) - float(start)) / float(delta)), 0)

    def infer(self, node: Node) -> list[Inferred]:
        start, limit, delta = self.bounds(node)
        return [TensorType(start.dtype, (self.length(start, limit, delta),))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        start, limit, delta = self.bounds(node)
        work = start.dtype
        if work in LOW_PRECISION:
            work = STASH_TYPES.get(node.attr("stash_type", 1), np.dtype(np.float32))
        steps = np.arange(self.length(start, limit, delta), dtype=work)
        return [(work.type(start) + steps * work.type(delta)).astype(start.dtype)]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        start, _, delta = self.bounds(node)
        ct = ctype(start.dtype)
        return lit(start.item(), ct) + cast(index[0], ct) * lit(delta.item(), ct)


@register
class EyeLike(DataMovement):
    """A 2-D tensor shaped like the input with ones on the k-th diagonal and zeros elsewhere."""

    op_type = "EyeLike"
    mapping = MappingType.ONE_TO_ONE

    def dtype(self, node: Node) -> np.dtype:
        code = node.attr("dtype")
        return node.inputs[0].dtype if code is None else dtypes.to_numpy(code)

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        if len(shape) != 2:
            raise self.invalid(node, f"needs a 2-D input, not shape {shape}")
        return [TensorType(self.dtype(node), shape)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        rows, cols = inputs[0].shape
        return [np.eye(rows, cols, k=node.attr("k", 0), dtype=self.dtype(node))]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        ct = ctype(node.outputs[0].dtype)
        on_diagonal = binary("==", index[1] - index[0], Lit(node.attr("k", 0)))
        return select(on_diagonal, lit(1, ct), lit(0, ct))


@register
class OneHot(DataMovement):
    """values[1] where the new `axis` position equals the index, values[0] elsewhere (depth from a constant)."""

    op_type = "OneHot"
    mapping = MappingType.ONE_TO_MANY

    def depth(self, node: Node) -> int:
        depth = required_const(node, 1, "depth").reshape(-1)
        if depth.size != 1 or depth[0] < 1:
            raise self.invalid(node, f"depth must be one positive number, not {depth.tolist()}")
        return int(depth[0])

    def axis(self, node: Node, rank: int) -> int:
        return normalize_axis(node, node.attr("axis", -1), rank + 1)

    def infer(self, node: Node) -> list[Inferred]:
        indices = shape_of(node, 0)
        axis = self.axis(node, len(indices))
        if shape_of(node, 2) != (2,):
            raise self.invalid(node, f"values must be [off_value, on_value], not of shape {shape_of(node, 2)}")
        return [TensorType(node.inputs[2].dtype, indices[:axis] + (self.depth(node),) + indices[axis:])]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        indices, values = inputs[0].astype(np.int64), inputs[2]
        depth = self.depth(node)
        indices = np.where(indices < 0, indices + depth, indices)
        hot = np.moveaxis(indices[..., None] == np.arange(depth), -1, self.axis(node, indices.ndim))
        return [np.where(hot, values[1], values[0]).astype(values.dtype)]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        axis, depth = self.axis(node, len(node.inputs[0].shape)), self.depth(node)
        position = cast(read(0, index[:axis] + index[axis + 1:]), "int64_t")
        position = select(binary("<", position, Lit(0)), position + depth, position)
        values = node.inputs[2]
        if values.const is not None:
            off, on = (lit(v.item(), ctype(values.dtype)) for v in values.const.reshape(-1))
        else:
            off, on = read(2, (Lit(0),)), read(2, (Lit(1),))
        return select(binary("==", position, index[axis]), on, off)


@register
class Trilu(DataMovement):
    """The upper (or lower) triangle of the last two axes from the k-th diagonal; zeros elsewhere."""

    op_type = "Trilu"
    mapping = MappingType.ONE_TO_ONE

    def infer(self, node: Node) -> list[Inferred]:
        if len(shape_of(node, 0)) < 2:
            raise self.invalid(node, f"needs an input of rank 2 or more, not {shape_of(node, 0)}")
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, k = inputs[0], 0 if len(inputs) < 2 or inputs[1] is None else int(inputs[1].reshape(-1)[0])
        return [np.triu(x, k) if node.attr("upper", 1) else np.tril(x, k)]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        given = node.input(1)
        if given is None:
            k: Expr = Lit(0)
        elif given.const is not None:
            k = Lit(int(given.const.reshape(-1)[0]))
        else:
            k = cast(read(1, tuple(Lit(0) for _ in given.shape)), "int64_t")
        diagonal = index[-1] - index[-2]
        kept = binary(">=" if node.attr("upper", 1) else "<=", diagonal, k)
        x = read(0, index)
        return select(kept, x, lit(0, x.ctype))
