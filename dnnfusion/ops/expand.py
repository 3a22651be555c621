"""Growing and cropping: Expand, Tile, Pad, CenterCropPad (One-to-Many, extents from constant inputs), and the
operators whose output extents depend on the data: NonZero and Unique (None in the shape)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, binary, broadcast_index, cast, ctype, lit, mod, select
from ..kir.kernel import Reader
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, broadcast, shape_of
from .registry import register
from .shape_ops import (DataMovement, attr_or_input, clamp, ints, normalize_axes, optional_axis, prod,
                        required_const)

Widths = list[tuple[int, int]]   # (before, after) per axis; negative counts crop
PAD_MODES = {"constant": 2, "reflect": 2, "edge": 2, "wrap": 19}   # mode -> first opset that has it


@register
class Expand(DataMovement):
    """The input broadcast (numpy rules, in both directions) with a constant shape."""

    op_type = "Expand"
    mapping = MappingType.ONE_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        target = tuple(ints(required_const(node, 1, "shape")))
        return [TensorType(node.inputs[0].dtype, broadcast(node, shape_of(node, 0), target))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        return [np.array(np.broadcast_to(x, broadcast(node, x.shape, tuple(ints(inputs[1])))))]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        return read(0, broadcast_index(index, node.outputs[0].shape, node.inputs[0].shape))


@register
class Tile(DataMovement):
    """The input repeated `repeats[i]` times along each axis i."""

    op_type = "Tile"
    mapping = MappingType.ONE_TO_MANY

    def repeats(self, node: Node, rank: int) -> list[int]:
        repeats = ints(required_const(node, 1, "repeats"))
        if len(repeats) != rank or any(r < 0 for r in repeats):
            raise self.invalid(node, f"repeats {repeats} must be {rank} non-negative counts, one per axis")
        return repeats

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        out = tuple(None if d is None else d * r for d, r in zip(shape, self.repeats(node, len(shape))))
        return [TensorType(node.inputs[0].dtype, out)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [np.tile(inputs[0], self.repeats(node, inputs[0].ndim))]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        shape = node.inputs[0].shape
        repeats = self.repeats(node, len(shape))
        return read(0, tuple(e if r == 1 else mod(e, d) for e, d, r in zip(index, shape, repeats)))


class Resizing(DataMovement):
    """Pads and/or crops each axis: a (before, after) count per axis, negative counts cropping."""

    mapping = MappingType.ONE_TO_MANY

    def widths(self, node: Node, shape: tuple) -> Widths:
        raise NotImplementedError

    def fill(self, node: Node, x: np.ndarray, widths: Widths, inputs: Sequence[np.ndarray | None]) -> np.ndarray:
        """x (already cropped) padded by the non-negative widths."""
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        out = tuple(None if d is None else d + a + b for d, (a, b) in zip(shape, self.widths(node, shape)))
        if any(d is not None and d < 0 for d in out):
            raise self.invalid(node, f"crops input of shape {shape} to the negative extents {out}")
        return [TensorType(node.inputs[0].dtype, out)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        widths = self.widths(node, x.shape)
        cropped = x[tuple(slice(-min(a, 0), d + min(b, 0)) for d, (a, b) in zip(x.shape, widths))]
        return [self.fill(node, cropped, [(max(a, 0), max(b, 0)) for a, b in widths], inputs)]

    def mode(self, node: Node) -> str:
        """How the border is filled: constant, reflect, edge or wrap."""
        return "constant"

    def fill_value(self, node: Node, read: Reader) -> Expr:
        """The value of the border in constant mode (of the output's C type)."""
        return lit(0, ctype(node.outputs[0].dtype))

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        """Per axis, the output position in the cropped input window, folded back into it (reflect, edge, wrap)
        or, in constant mode, clamped into it with the border value selected outside."""
        shape, mode = node.inputs[0].shape, self.mode(node)
        source: list[Expr] = []
        inside: list[Expr] = []
        for e, d, (before, after) in zip(index, shape, self.widths(node, shape)):
            start, extent = max(-before, 0), d + min(before, 0) + min(after, 0)
            low, high = max(before, 0), max(after, 0)
            if (low or high) and extent == 0:
                return self.fill_value(node, read)
            if mode == "constant":
                inside += [binary(">=", e, Lit(low))] if low else []
                inside += [binary("<", e, Lit(low + extent))] if high else []
            source.append(fold(e - low, extent, low, high, mode) + start)
        value = read(0, tuple(source))
        if not inside:
            return value
        condition = inside[0]
        for c in inside[1:]:
            condition = binary("&&", condition, c)
        return select(condition, value, cast(self.fill_value(node, read), value.ctype))


def fold(q: Expr, extent: int, low: int, high: int, mode: str) -> Expr:
    """A position q in [-low, extent + high) of a padded axis mapped into [0, extent) as the border mode reads it
    (constant mode clamps: the border value is selected elsewhere, but the read must stay in bounds)."""
    if mode in ("constant", "edge"):
        return clamp(q, 0, extent - 1, -low, extent - 1 + high)
    if not (low or high):
        return q
    if mode == "wrap":
        return mod(q + -(-low // extent) * extent, extent)
    period = 2 * (extent - 1)                     # reflect: the axis mirrored without repeating its ends
    if period == 0:
        return Lit(0)
    r = mod(q + -(-low // period) * period, period)
    return select(binary("<", r, Lit(extent)), r, Lit(period) - r)


@register
class Pad(Resizing):
    """The input padded (or cropped, for negative pads) per axis; mode constant, reflect, edge or wrap."""

    op_type = "Pad"

    def mode(self, node: Node) -> str:
        mode = node.attr("mode", "constant")
        if mode not in PAD_MODES or node.opset < PAD_MODES[mode]:
            raise self.fail(node, f"with mode='{mode}' is not supported")
        return mode

    def widths(self, node: Node, shape: tuple) -> Widths:
        pads, axes = attr_or_input(node, "pads", 1, 11, "pads"), attr_or_input(node, "axes", 3, 18, "axes")
        if pads is None:
            raise self.invalid(node, "has no pads")
        axes = normalize_axes(node, axes if axes is not None else range(len(shape)), len(shape))
        if len(pads) != 2 * len(axes):
            raise self.invalid(node, f"pads {pads} must hold a begin and an end count for each of {len(axes)} axes")
        widths = [(0, 0)] * len(shape)
        for i, axis in enumerate(axes):
            widths[axis] = (pads[i], pads[i + len(axes)])
        return widths

    def infer(self, node: Node) -> list[Inferred]:
        mode, shape = self.mode(node), shape_of(node, 0)
        widths = self.widths(node, shape)
        if mode != "constant" and any(d == 0 and (a > 0 or b > 0) for d, (a, b) in zip(shape, widths)):
            raise self.invalid(node, f"cannot pad an empty axis of shape {shape} in mode '{mode}'")
        return super().infer(node)

    def fill(self, node: Node, x: np.ndarray, widths: Widths, inputs: Sequence[np.ndarray | None]) -> np.ndarray:
        mode = self.mode(node)
        if mode != "constant":
            return np.pad(x, widths, mode=mode)
        if node.opset < 11:
            value = node.attr("value", 0.0)
        else:
            given = inputs[2] if len(inputs) > 2 else None
            value = given.reshape(-1)[0] if given is not None and given.size else 0
        return np.pad(x, widths, mode="constant", constant_values=np.array(value).astype(x.dtype))

    def fill_value(self, node: Node, read: Reader) -> Expr:
        ct = ctype(node.outputs[0].dtype)
        if node.opset < 11:
            return lit(node.attr("value", 0.0), ct)
        given = node.input(2)
        if given is None or given.numel == 0:
            return lit(0, ct)
        if given.const is not None:
            return cast(lit(given.const.reshape(-1)[0].item(), ctype(given.dtype)), ct)
        return cast(read(2, tuple(Lit(0) for _ in given.shape)), ct)


@register
class CenterCropPad(Resizing):
    """The input centre-cropped or zero-padded to a constant shape on the given axes."""

    op_type = "CenterCropPad"

    def widths(self, node: Node, shape: tuple) -> Widths:
        target = ints(required_const(node, 1, "shape"))
        axes = normalize_axes(node, node.attr("axes", range(len(shape))), len(shape))
        if len(target) != len(axes) or any(t < 0 for t in target):
            raise self.invalid(node, f"shape {target} must give a non-negative extent for each of the axes {axes}")
        widths = [(0, 0)] * len(shape)
        for axis, extent in zip(axes, target):
            if shape[axis] is not None:
                grow = extent - shape[axis]
                before = int(grow / 2)   # half the change, rounded towards zero: the odd element goes after
                widths[axis] = (before, grow - before)
        return widths

    def fill(self, node: Node, x: np.ndarray, widths: Widths, inputs: Sequence[np.ndarray | None]) -> np.ndarray:
        return np.pad(x, widths, mode="constant")


@register
class NonZero(Op):
    """The indices of the non-zero elements, one column per element: shape (rank, count), count data-dependent."""

    op_type = "NonZero"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(np.dtype(np.int64), (max(len(shape_of(node, 0)), 1), None))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [np.array(np.nonzero(np.atleast_1d(inputs[0])), dtype=np.int64)]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel


@register
class Unique(Op):
    """The distinct elements (or slices along `axis`), sorted or in first-occurrence order, with the index
    of each one's first occurrence, the inverse mapping and the counts; their number is data-dependent."""

    op_type = "Unique"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        axis = optional_axis(node, len(shape))
        int64 = np.dtype(np.int64)
        if axis is None:
            values, positions = (None,), prod(shape)
        else:
            values, positions = shape[:axis] + (None,) + shape[axis + 1:], shape[axis]
        return [TensorType(node.inputs[0].dtype, values), TensorType(int64, (None,)),
                TensorType(int64, (positions,)), TensorType(int64, (None,))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        axis = optional_axis(node, x.ndim)
        values, first, inverse, counts = np.unique(x.reshape(-1) if axis is None else x, axis=axis, return_index=True,
                                                   return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        if not node.attr("sorted", 1):
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            values = np.take(values, order, axis=0 if axis is None else axis)
            first, inverse, counts = first[order], rank[inverse], counts[order]
        return [values, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel
