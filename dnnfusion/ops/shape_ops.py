"""Shape queries and reshapes: Shape, Size (known constants for static inputs, which is what folds shape
subgraphs), and the Reorganize family Reshape, Flatten, Squeeze, Unsqueeze. Also the small helpers the
other data-movement modules share (zero-FLOP base, integer lists, attribute-or-input arguments)."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, binary, cast, linear, lit, select, unravel
from ..kir.kernel import Reader
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, const_input, normalize_axis, shape_of
from .registry import register


class DataMovement(Op):
    """An operator that only moves, copies or selects elements: it performs no arithmetic."""

    def flops(self, node: Node) -> int:
        return 0


def ints(array: np.ndarray | Sequence[int]) -> list[int]:
    """A constant tensor (or attribute list) as a flat list of Python ints."""
    return [int(v) for v in np.asarray(array).reshape(-1)]


def prod(dims: Iterable[int | None]) -> int | None:
    """The product of static extents; None when any of them is data-dependent."""
    total = 1
    for d in dims:
        if d is None:
            return None
        total *= d
    return total


def required_const(node: Node, index: int, what: str) -> np.ndarray:
    """The compile-time value of a required input; an InvalidModelError when the input is omitted."""
    value = const_input(node, index, what)
    if value is None:
        raise Op.invalid(node, f"has no {what} (input {index})")
    return value


def attr_or_input(node: Node, name: str, index: int, since: int, what: str) -> list[int] | None:
    """An integer list given as attribute `name` before opset `since` and as constant input `index` from then
    on (the axes of Squeeze/Unsqueeze, the sizes of Split, ...); None when omitted."""
    if node.opset < since:
        value = node.attr(name)
        return None if value is None else ints(value)
    return const_ints(node, index, what)


def const_ints(node: Node, index: int, what: str) -> list[int] | None:
    """An optional constant integer input as a list; None when omitted."""
    value = const_input(node, index, what)
    return None if value is None else ints(value)


def optional_axis(node: Node, rank: int) -> int | None:
    """The node's `axis` attribute normalized to [0, rank), or None when absent (meaning: flatten first)."""
    axis = node.attr("axis")
    return None if axis is None else normalize_axis(node, axis, rank)


def normalize_axes(node: Node, axes: Iterable[int], rank: int) -> list[int]:
    """Axes in [0, rank), each once; an InvalidModelError for out-of-range or repeated axes."""
    axes = list(axes)
    out = [normalize_axis(node, a, rank) for a in axes]
    if len(set(out)) != len(out):
        raise Op.invalid(node, f"axes {axes} name an axis twice")
    return out


def regroup_index(index: Sequence[Expr], out_shape: Sequence[int], in_shape: Sequence[int]) -> Index:
    """Where a reshape's output element `index` comes from in its input, re-linearising only the runs of axes
    that actually merge or split (size-1 axes and axes kept whole map directly, without division)."""
    if 0 in out_shape or 0 in in_shape:
        return tuple(Lit(0) for _ in in_shape)
    outs = [(e, d) for e, d in zip(index, out_shape) if d != 1]
    ins = [k for k, d in enumerate(in_shape) if d != 1]
    result: list[Expr] = [Lit(0)] * len(in_shape)
    i = j = 0
    while i < len(outs) or j < len(ins):
        group_out, group_in = [outs[i]], [ins[j]]
        i, j = i + 1, j + 1
        size_out, size_in = group_out[0][1], in_shape[group_in[0]]
        while size_out != size_in:
            if size_out < size_in:
                group_out.append(outs[i])
                size_out, i = size_out * outs[i][1], i + 1
            else:
                group_in.append(ins[j])
                size_in, j = size_in * in_shape[ins[j]], j + 1
        offset = linear([e for e, _ in group_out], [d for _, d in group_out])
        for k, e in zip(group_in, unravel(offset, [in_shape[k] for k in group_in])):
            result[k] = e
    return tuple(result)


def clamp(e: Expr, low: int, high: int, least: int | None = None, greatest: int | None = None) -> Expr:
    """An index held within [low, high], on the sides that its known range [least, greatest] crosses (a read
    that a select may not take must still stay in bounds)."""
    e = binary("max", e, Lit(low)) if least is None or least < low else e
    return binary("min", e, Lit(high)) if greatest is None or greatest > high else e


def wrapped(e: Expr, extent: int, known: np.ndarray | None = None) -> Expr:
    """An index value read from a tensor as an int64 in [0, extent), negative values counting from the end.
    `known` is the index tensor when it is a compile-time constant (checked here: in range, no clamp needed);
    other indices are clamped so that an out-of-range one cannot read outside the data."""
    e = cast(e, "int64_t")
    if isinstance(e, Lit):
        return lit(e.value + extent if e.value < 0 else e.value, "int64_t")
    checked = known is not None and bool(np.all((known >= -extent) & (known < extent)))
    if checked and np.all(known >= 0):
        return e
    e = select(binary("<", e, Lit(0)), e + extent, e)
    return e if checked else clamp(e, 0, extent - 1)


@register
class Shape(DataMovement):
    """The input's shape (optionally a start:end range of it) as an int64 vector."""

    op_type = "Shape"
    mapping = MappingType.ONE_TO_ONE

    def dims(self, node: Node, shape: tuple) -> tuple:
        return tuple(shape)[node.attr("start", 0):node.attr("end", None)]

    def infer(self, node: Node) -> list[Inferred]:
        dims = self.dims(node, shape_of(node, 0))
        if None in dims:
            return [TensorType(np.dtype(np.int64), (len(dims),))]
        return [np.array(dims, dtype=np.int64)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [np.array(self.dims(node, inputs[0].shape), dtype=np.int64)]


@register
class Size(DataMovement):
    """The input's element count as an int64 scalar."""

    op_type = "Size"
    mapping = MappingType.ONE_TO_ONE

    def infer(self, node: Node) -> list[Inferred]:
        count = prod(shape_of(node, 0))
        if count is None:
            return [TensorType(np.dtype(np.int64), ())]
        return [np.array(count, dtype=np.int64)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [np.array(inputs[0].size, dtype=np.int64)]


class Reorganization(DataMovement):
    """Same elements in the same order under a new shape; subclasses give the new shape."""

    mapping = MappingType.REORGANIZE

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        """The output shape for an input of `shape` (other inputs, such as a target shape, are constants)."""
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        return [TensorType(node.inputs[0].dtype, self.new_shape(node, shape_of(node, 0)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [inputs[0].reshape(self.new_shape(node, inputs[0].shape))]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        return read(0, regroup_index(index, node.outputs[0].shape, node.inputs[0].shape))


@register
class Reshape(Reorganization):
    """The input under a new shape given as a constant tensor (0 copies a dimension, -1 is inferred)."""

    op_type = "Reshape"

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        target = ints(required_const(node, 1, "target shape"))
        allowzero = node.attr("allowzero", 0)
        if target.count(-1) > 1:
            raise self.invalid(node, f"target shape {target} has more than one -1")
        if allowzero and 0 in target and -1 in target:
            raise self.invalid(node, f"target shape {target} has both 0 and -1 while allowzero=1")
        out: list[int | None] = []
        for axis, d in enumerate(target):
            if d < -1:
                raise self.invalid(node, f"target shape {target} has the negative extent {d}")
            if d == 0 and not allowzero:
                if axis >= len(shape):
                    raise self.invalid(node, f"target shape {target} copies dimension {axis} "
                                             f"of a rank-{len(shape)} input")
                out.append(shape[axis])
            else:
                out.append(d)
        return self._resolve(node, shape, out)

    def _resolve(self, node: Node, shape: tuple, out: list[int | None]) -> tuple:
        """Fill in the -1 extent (if any) and check that the element count is preserved."""
        total = prod(shape)
        if -1 in out:
            k = out.index(-1)
            known = prod(d for i, d in enumerate(out) if i != k)
            if total is None or known is None:
                out[k] = None
            elif known == 0 or total % known:
                raise self.invalid(node, f"cannot reshape {tuple(shape)} to {tuple(out)}: -1 has no integer solution")
            else:
                out[k] = total // known
        elif total is not None and prod(out) not in (None, total):
            raise self.invalid(node, f"cannot reshape {tuple(shape)} ({total} elements) to {tuple(out)}")
        return tuple(out)


@register
class Flatten(Reorganization):
    """A 2-D view: dimensions before `axis` form the rows, the rest the columns."""

    op_type = "Flatten"

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        axis, rank = node.attr("axis", 1), len(shape)
        if not -rank <= axis <= rank:
            raise self.invalid(node, f"axis {axis} is out of range for rank {rank}")
        axis += rank if axis < 0 else 0
        return prod(shape[:axis]), prod(shape[axis:])


@register
class Squeeze(Reorganization):
    """The input without the given size-1 axes (all size-1 axes when none are given)."""

    op_type = "Squeeze"

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        axes = attr_or_input(node, "axes", 1, 13, "axes")
        if axes is None:
            return tuple(d for d in shape if d != 1)
        axes = normalize_axes(node, axes, len(shape))
        for a in axes:
            if shape[a] not in (1, None):
                raise self.invalid(node, f"cannot squeeze axis {a} of extent {shape[a]} (shape {tuple(shape)})")
        return tuple(d for i, d in enumerate(shape) if i not in axes)


@register
class Unsqueeze(Reorganization):
    """The input with size-1 axes inserted at the given positions of the output."""

    op_type = "Unsqueeze"

    def new_shape(self, node: Node, shape: tuple) -> tuple:
        axes = attr_or_input(node, "axes", 1, 13, "axes")
        if axes is None:
            raise self.invalid(node, "has no axes")
        rank = len(shape) + len(axes)
        inserted = set(normalize_axes(node, axes, rank))
        rest = iter(shape)
        return tuple(1 if i in inserted else next(rest) for i in range(rank))
