"""Selection and placement by index: Concat, Split, Slice (One-to-One index maps), the Gather and Scatter
families (One-to-Many), Compress and ReverseSequence."""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, Load, Var, binary, cast, ctype, linear, lit, numel, select, unravel
from ..kir.kernel import KernelContext, Reader, parallel_for, serial_for
from ..ir.graph import Graph, Node, Value
from .arithmetic import maximum
from .base import Inferred, MappingType, Op, TensorType, input_values, normalize_axis, same_as_input, shape_of
from .registry import register
from .shape_ops import DataMovement, attr_or_input, clamp, normalize_axes, optional_axis, prod, wrapped

REDUCTIONS: dict[str, np.ufunc | None] = {"none": None, "add": np.add, "mul": np.multiply,
                                          "max": np.maximum, "min": np.minimum}


def total(dims: Iterable[int | None]) -> int | None:
    """The sum of extents; None when any of them is data-dependent."""
    dims = list(dims)
    return None if None in dims else sum(dims)


def wrap_indices(node: Node, indices: np.ndarray, extent: int | np.ndarray) -> np.ndarray:
    """Indices in [-extent, extent) as non-negative int64; an InvalidModelError for any outside."""
    indices = np.asarray(indices, dtype=np.int64)
    outside = (indices < -extent) | (indices >= extent)
    if np.any(outside):
        raise Op.invalid(node, f"index {indices[outside].reshape(-1)[0]} is out of range for extent "
                               f"{np.broadcast_to(extent, indices.shape)[outside].reshape(-1)[0]}")
    return np.where(indices < 0, indices + extent, indices)


def axis_grid(indices: np.ndarray, axis: int) -> tuple[np.ndarray, ...]:
    """An index tuple over an array of `indices`' shape whose `axis` component is `indices` itself."""
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = indices
    return tuple(np.broadcast_arrays(*grid))


def same_extent(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


@register
class Concat(DataMovement):
    """The inputs joined along `axis`."""

    op_type = "Concat"
    mapping = MappingType.ONE_TO_ONE

    def axis(self, node: Node, rank: int) -> int:
        if node.attr("axis") is None:
            raise self.invalid(node, "has no axis attribute")
        return normalize_axis(node, node.attr("axis"), rank)

    def infer(self, node: Node) -> list[Inferred]:
        values = input_values(node)
        shapes = [v.shape for v in values]
        axis = self.axis(node, len(shapes[0]))
        for shape in shapes[1:]:
            if len(shape) != len(shapes[0]) or not all(
                    same_extent(a, b) for i, (a, b) in enumerate(zip(shape, shapes[0])) if i != axis):
                raise self.invalid(node, f"inputs of shapes {', '.join(map(str, shapes))} do not join on axis {axis}")
        out = [next((s[i] for s in shapes if s[i] is not None), None) for i in range(len(shapes[0]))]
        out[axis] = total(s[axis] for s in shapes)
        return [TensorType(values[0].dtype, tuple(out))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        arrays = [x for x in inputs if x is not None]
        return [np.concatenate(arrays, axis=self.axis(node, arrays[0].ndim))]

    def stacks_rows(self, node: Node) -> bool:
        out = node.outputs[0]
        return out is not None and out.shape is not None and self.axis(node, len(out.shape)) == 0

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        """A select over the inputs' offsets along the axis (the loop joint); every read stays in bounds."""
        axis = self.axis(node, len(index))
        parts, offset = [], 0
        for i, v in enumerate(node.inputs):
            if v is not None and v.shape[axis]:
                parts.append((i, offset, v.shape[axis]))
                offset += v.shape[axis]
        if not parts:
            return lit(0, ctype(node.outputs[0].dtype))
        pick = None
        for i, start, extent in reversed(parts):
            local = clamp(index[axis] - start, 0, extent - 1, -start, offset - 1 - start)
            term = read(i, index[:axis] + (local,) + index[axis + 1:])
            pick = term if pick is None else select(binary("<", index[axis], Lit(start + extent)), term, pick)
        return pick


@register
class Split(DataMovement):
    """The input cut along `axis` into consecutive parts, one per output."""

    op_type = "Split"
    mapping = MappingType.ONE_TO_ONE

    def sizes(self, node: Node, extent: int | None) -> list[int | None]:
        """Each output's extent along the axis: the given sizes, or equal parts (the last smaller from opset 18)."""
        parts = len(node.outputs)
        split = attr_or_input(node, "split", 1, 13, "split sizes")
        if split is not None:
            if len(split) != parts or any(s < 0 for s in split) or extent not in (None, sum(split)):
                raise self.invalid(node, f"split sizes {split} do not cut extent {extent} into {parts} outputs")
            return list(split)
        if node.attr("num_outputs", parts) != parts:
            raise self.invalid(node, f"num_outputs={node.attr('num_outputs')} but the node has {parts} outputs")
        if extent is None:
            return [None] * parts
        if node.opset >= 18:
            chunk = math.ceil(extent / parts)
            return [min(chunk, max(extent - i * chunk, 0)) for i in range(parts)]
        if extent % parts:
            raise self.invalid(node, f"extent {extent} does not split into {parts} equal parts")
        return [extent // parts] * parts

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        axis = normalize_axis(node, node.attr("axis", 0), len(shape))
        dtype = node.inputs[0].dtype
        return [TensorType(dtype, shape[:axis] + (size,) + shape[axis + 1:]) for size in self.sizes(node, shape[axis])]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        axis = normalize_axis(node, node.attr("axis", 0), x.ndim)
        cuts = np.cumsum(self.sizes(node, x.shape[axis]))[:-1]
        return np.split(x, cuts, axis=axis)

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        shape = node.inputs[0].shape
        axis = normalize_axis(node, node.attr("axis", 0), len(shape))
        start = sum(self.sizes(node, shape[axis])[:out])
        return read(0, index[:axis] + (index[axis] + start,) + index[axis + 1:])


@register
class Slice(DataMovement):
    """A strided window of the input: starts/ends/steps per axis, clamped to the extents (attributes before
    opset 10, constant inputs since)."""

    op_type = "Slice"
    mapping = MappingType.ONE_TO_ONE

    def params(self, node: Node) -> tuple[list[int], list[int], list[int] | None, list[int] | None]:
        """starts, ends, axes (None: the leading axes) and steps (None: all 1)."""
        starts, ends = attr_or_input(node, "starts", 1, 10, "starts"), attr_or_input(node, "ends", 2, 10, "ends")
        if starts is None or ends is None:
            raise self.invalid(node, "needs both starts and ends")
        return starts, ends, attr_or_input(node, "axes", 3, 10, "axes"), attr_or_input(node, "steps", 4, 10, "steps")

    def windows(self, node: Node, shape: tuple) -> list[slice | None]:
        """A slice per axis (None where the extent is data-dependent)."""
        starts, ends, axes, steps = self.params(node)
        axes = normalize_axes(node, axes if axes is not None else range(len(starts)), len(shape))
        steps = steps if steps is not None else [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise self.invalid(node, f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
        out: list[slice | None] = [slice(None)] * len(shape)
        for axis, start, end, step in zip(axes, starts, ends, steps):
            if step == 0:
                raise self.invalid(node, f"step 0 on axis {axis}")
            out[axis] = None if shape[axis] is None else _clamped(start, end, step, shape[axis])
        return out

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        out = tuple(d if w is None else len(range(d)[w]) for d, w in zip(shape, self.windows(node, shape)))
        return [TensorType(node.inputs[0].dtype, out)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        return [inputs[0][tuple(self.windows(node, inputs[0].shape))]]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        shape = node.inputs[0].shape
        picked = [range(d)[w] for d, w in zip(shape, self.windows(node, shape))]
        return read(0, tuple(e * r.step + r.start if len(r) else Lit(0) for e, r in zip(index, picked)))


def _clamped(start: int, end: int, step: int, extent: int) -> slice:
    """ONNX's clamping: start in [0, extent] ([0, extent-1] stepping back), end in [0, extent] ([-1, extent-1])."""
    start += extent if start < 0 else 0
    end += extent if end < 0 else 0
    if step > 0:
        return slice(min(max(start, 0), extent), min(max(end, 0), extent), step)
    start, end = min(max(start, 0), extent - 1), min(max(end, -1), extent - 1)
    return slice(start, end if end >= 0 else None, step)


class Gathering(DataMovement):
    """Reads data elements at positions given by an index tensor."""

    mapping = MappingType.ONE_TO_MANY

    def axis(self, node: Node, rank: int) -> int:
        return normalize_axis(node, node.attr("axis", 0), rank)


@register
class Gather(Gathering):
    """Slices of the data along `axis` picked by an index tensor: data[..., indices, ...]."""

    op_type = "Gather"

    def infer(self, node: Node) -> list[Inferred]:
        data, indices = shape_of(node, 0), shape_of(node, 1)
        axis = self.axis(node, len(data))
        return [TensorType(node.inputs[0].dtype, data[:axis] + indices + data[axis + 1:])]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        data, indices = inputs[0], inputs[1]
        axis = self.axis(node, data.ndim)
        return [np.take(data, wrap_indices(node, indices, data.shape[axis]), axis=axis)]

    def row_picks(self, node: Node) -> int | None:
        data, indices = node.inputs[0], node.inputs[1]
        ranked = data.shape is not None and indices.shape is not None
        return 1 if ranked and self.axis(node, len(data.shape)) == 0 and len(indices.shape) == 1 else None

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        data, indices = node.inputs[0], node.inputs[1]
        axis, depth = self.axis(node, len(data.shape)), len(indices.shape)
        picked = wrapped(read(1, index[axis:axis + depth]), data.shape[axis], indices.const)
        return read(0, index[:axis] + (picked,) + index[axis + depth:])

    def padded_rows(self, node: Node, padded: dict[int, int]) -> int | None:
        """Padded data rows stay rows of the result unless they are the gathered axis (an index could pick a
        padding row); padded index rows are result rows (their picks are clamped into the data)."""
        if len(padded) != 1:
            return None
        (i, a), = padded.items()
        axis, depth = self.axis(node, len(node.inputs[0].shape)), len(node.inputs[1].shape)
        if i == 1:
            return axis + a
        return None if a == axis else a if a < axis else a + depth - 1


@register
class GatherElements(Gathering):
    """out[i][j][k] = data[i][indices[i][j][k]][k] (for axis 1): an index per output element."""

    op_type = "GatherElements"

    def infer(self, node: Node) -> list[Inferred]:
        data, indices = shape_of(node, 0), shape_of(node, 1)
        self.axis(node, len(data))
        if len(indices) != len(data):
            raise self.invalid(node, f"indices of shape {indices} do not have the rank of data {data}")
        return [TensorType(node.inputs[0].dtype, indices)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        data, indices = inputs[0], inputs[1]
        axis = self.axis(node, data.ndim)
        return [data[axis_grid(wrap_indices(node, indices, data.shape[axis]), axis)]]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        data, indices = node.inputs[0], node.inputs[1]
        axis = self.axis(node, len(data.shape))
        picked = wrapped(read(1, index), data.shape[axis], indices.const)
        return read(0, index[:axis] + (picked,) + index[axis + 1:])


@register
class GatherND(Gathering):
    """Slices of the data addressed by the index tuples in the last axis of `indices` (after batch_dims)."""

    op_type = "GatherND"

    def infer(self, node: Node) -> list[Inferred]:
        data, indices = shape_of(node, 0), shape_of(node, 1)
        batch = node.attr("batch_dims", 0)
        depth = indices[-1] if indices else None
        if depth is None or not 0 <= batch < len(indices) or batch + depth > len(data) or \
                not all(same_extent(a, b) for a, b in zip(data[:batch], indices[:batch])):
            raise self.invalid(node, f"indices of shape {indices} cannot address data of shape {data} "
                                     f"with batch_dims={batch}")
        return [TensorType(node.inputs[0].dtype, indices[:-1] + data[batch + depth:])]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        data, indices = inputs[0], inputs[1]
        batch, depth = node.attr("batch_dims", 0), indices.shape[-1]
        batches = int(np.prod(data.shape[:batch], dtype=np.int64))
        flat = data.reshape((batches,) + data.shape[batch:])
        tuples = wrap_indices(node, indices.reshape(batches, -1, depth), np.array(data.shape[batch:batch + depth]))
        picked = flat[(np.arange(batches)[:, None],) + tuple(np.moveaxis(tuples, -1, 0))]
        return [picked.reshape(indices.shape[:-1] + data.shape[batch + depth:])]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        data, indices = node.inputs[0], node.inputs[1]
        batch, depth = node.attr("batch_dims", 0), indices.shape[-1]
        rows = len(indices.shape) - 1
        known = indices.const
        picked = tuple(wrapped(read(1, index[:rows] + (Lit(k),)), data.shape[batch + k],
                               None if known is None else known[..., k]) for k in range(depth))
        return read(0, index[:batch] + picked + index[rows:])


class Scattering(DataMovement):
    """A copy of the data with `updates` written (or combined by `reduction`) at indexed positions."""

    mapping = MappingType.ONE_TO_MANY

    def reduction(self, node: Node) -> np.ufunc | None:
        name = node.attr("reduction", "none")
        if name not in REDUCTIONS:
            raise self.fail(node, f"with reduction='{name}' is not supported")
        return REDUCTIONS[name]

    def positions(self, node: Node, data: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """The index tuple of the data elements each update goes to."""
        raise NotImplementedError

    def check(self, node: Node, data: tuple, indices: tuple, updates: tuple) -> None:
        """An InvalidModelError when the three shapes do not fit together."""
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        self.reduction(node)
        self.check(node, shape_of(node, 0), shape_of(node, 1), shape_of(node, 2))
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        data, indices, updates = inputs[0], inputs[1], inputs[2]
        out = data.copy()
        where = self.positions(node, data, indices)
        reduce = self.reduction(node)
        if reduce is None:
            out[where] = updates
        else:
            reduce.at(out, where, updates)
        return [out]

    def flops(self, node: Node) -> int:
        return node.inputs[2].numel if self.reduction(node) is not None else 0

    def target(self, node: Node, ctx: KernelContext, update: Index) -> Index:
        """The data index that update element `update` goes to (indices read and wrapped into range)."""
        raise NotImplementedError

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Copy the data into a scratch copy, apply the updates in order (the last of equal indices wins, as
        numpy's assignment; reductions combine in order), then store the copy through the epilogue."""
        data, updates = node.inputs[0], node.inputs[2]
        if not data.is_static or not updates.is_static:
            return None
        ct, shape = ctype(data.dtype), data.shape
        work = ctx.scratch(ct, numel(shape))
        flat, step = ctx.var("e"), ctx.var("u")
        copy = [f"{work}[{flat.name}] = {ctx.c(ctx.read(0, unravel(flat, shape)))};"]
        u_index = unravel(step, updates.shape)
        where = ctx.c(linear(self.target(node, ctx, u_index), shape))
        current, value = Load(work, Var("sc_at"), ct), cast(ctx.read(2, u_index), ct)
        combine = {"none": value, "add": current + value, "mul": current * value,
                   "max": maximum(current, value), "min": maximum(current, value, "<="),
                   }[node.attr("reduction", "none")]
        scatter = [f"const int64_t sc_at = {where};"] + ctx.value("sc_new", combine) + [f"{work}[sc_at] = sc_new;"]
        store = ctx.store(0, unravel(flat, shape), Load(work, flat, ct))
        return parallel_for(flat, numel(shape), copy, numel(shape)) + serial_for(step, numel(updates.shape), scatter) + \
            parallel_for(flat, numel(shape), store, numel(shape))


@register
class ScatterElements(Scattering):
    """out = data, then out[i][indices[i][j]] = updates[i][j] (for axis 1), optionally reduced."""

    op_type = "ScatterElements"

    def check(self, node: Node, data: tuple, indices: tuple, updates: tuple) -> None:
        normalize_axis(node, node.attr("axis", 0), len(data))
        if len(indices) != len(data) or not all(same_extent(a, b) for a, b in zip(indices, updates)) \
                or len(updates) != len(indices):
            raise self.invalid(node, f"indices {indices} and updates {updates} must share one shape "
                                     f"of the data's rank {len(data)}")

    def positions(self, node: Node, data: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        axis = normalize_axis(node, node.attr("axis", 0), data.ndim)
        return axis_grid(wrap_indices(node, indices, data.shape[axis]), axis)

    def target(self, node: Node, ctx: KernelContext, update: Index) -> Index:
        shape = node.inputs[0].shape
        axis = normalize_axis(node, node.attr("axis", 0), len(shape))
        picked = wrapped(ctx.read(1, update), shape[axis], node.inputs[1].const)
        return update[:axis] + (picked,) + update[axis + 1:]

    def padding_sink(self, node: Node, padded: dict[int, int]) -> Callable[[Graph, Value], None] | None:
        """Indices and updates padded along the same axis: padding rows are sent to an extra slot appended to
        the data along the scatter axis, which a Gather then drops (standard operators, fused as usual)."""
        data, indices = node.inputs[0], node.inputs[1]
        if set(padded) != {1, 2} or padded[1] != padded[2] or data.shape is None or not all(
                isinstance(d, int) for d in data.shape):
            return None
        axis, rows = normalize_axis(node, node.attr("axis", 0), len(data.shape)), padded[1]
        extent, rank = data.shape[axis], len(data.shape)

        def edit(graph: Graph, count: Value) -> None:
            def const(hint: str, array: np.ndarray) -> Value:
                return graph.add_constant(graph.fresh_name(hint), array)

            def apply(op_type: str, inputs: list[Value], **attrs) -> Value:
                out = graph.value(graph.fresh_name(f"{node.name}_{op_type.lower()}"))
                graph.add_node(op_type, inputs, [out], attrs)
                return out

            itype = indices.dtype.type
            slab = np.zeros([1 if k == axis else d for k, d in enumerate(data.shape)], data.dtype)
            extended = apply("Concat", [data, const("slot", slab)], axis=axis)
            positive = apply("Where", [apply("Less", [indices, const("zero", itype(0))]),
                                       apply("Add", [indices, const("extent", itype(extent))]), indices])
            row = np.arange(indices.shape[rows], dtype=np.int64)     # static by now: the bound
            valid = apply("Less", [const("row", row.reshape([-1 if k == rows else 1 for k in range(rank)])), count])
            target = apply("Where", [valid, positive, const("spare", itype(extent))])
            scattered = apply(node.op_type, [extended, target, node.inputs[2]], **node.attrs)
            result = node.outputs[0]
            graph.remove_node(node)
            graph.add_node("Gather", [scattered, const("kept", np.arange(extent, dtype=np.int64))], [result],
                           {"axis": axis})

        return edit


@register
class Scatter(ScatterElements):
    """The deprecated name of ScatterElements (opsets 9 and 10)."""

    op_type = "Scatter"


@register
class ScatterND(Scattering):
    """out = data, then out[indices[i]] = updates[i] for each index tuple, optionally reduced."""

    op_type = "ScatterND"

    def check(self, node: Node, data: tuple, indices: tuple, updates: tuple) -> None:
        depth = indices[-1] if indices else None
        expected = indices[:-1] + data[depth:] if depth is not None and depth <= len(data) else None
        if expected is None or len(expected) != len(updates) or not all(map(same_extent, expected, updates)):
            raise self.invalid(node, f"updates of shape {updates} do not fit indices {indices} into data {data}")

    def positions(self, node: Node, data: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        depth = indices.shape[-1]
        tuples = wrap_indices(node, indices, np.array(data.shape[:depth], dtype=np.int64))
        return tuple(np.moveaxis(tuples, -1, 0))

    def target(self, node: Node, ctx: KernelContext, update: Index) -> Index:
        """indices[i][0..depth) address the data's leading axes; the update's trailing axes the rest."""
        shape, indices = node.inputs[0].shape, node.inputs[1]
        depth, rows = indices.shape[-1], len(indices.shape) - 1
        known = indices.const
        picked = tuple(wrapped(ctx.read(1, update[:rows] + (lit(k, "int64_t"),)), shape[k],
                               None if known is None else known[..., k]) for k in range(depth))
        return picked + update[rows:]


@register
class Compress(DataMovement):
    """The slices along `axis` (elements of the flattened input without one) where `condition` is true."""

    op_type = "Compress"
    mapping = MappingType.ONE_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        axis = optional_axis(node, len(shape))
        condition = node.inputs[1].const
        if axis is None:
            shape, axis = (prod(shape),), 0
        kept = None if condition is None or shape[axis] is None else \
            int(np.count_nonzero(condition.reshape(-1)[:shape[axis]]))
        return [TensorType(node.inputs[0].dtype, shape[:axis] + (kept,) + shape[axis + 1:])]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, condition = inputs[0], inputs[1].reshape(-1).astype(bool)
        axis = optional_axis(node, x.ndim)
        extent = x.size if axis is None else x.shape[axis]
        return [np.compress(condition[:extent], x, axis=axis)]


@register
class ReverseSequence(DataMovement):
    """For each batch entry i, the first sequence_lens[i] steps along the time axis reversed."""

    op_type = "ReverseSequence"
    mapping = MappingType.ONE_TO_MANY

    def axes(self, node: Node) -> tuple[int, int]:
        batch, time = node.attr("batch_axis", 1), node.attr("time_axis", 0)
        if {batch, time} != {0, 1}:
            raise self.invalid(node, f"batch_axis={batch} and time_axis={time} must be 0 and 1 in some order")
        return batch, time

    def infer(self, node: Node) -> list[Inferred]:
        self.axes(node)
        if len(shape_of(node, 0)) < 2:
            raise self.invalid(node, f"needs an input of rank 2 or more, not {shape_of(node, 0)}")
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        batch, time = self.axes(node)
        x = np.moveaxis(inputs[0], (batch, time), (0, 1))
        lengths = inputs[1].astype(np.int64).reshape(-1, 1)
        steps = np.arange(x.shape[1])
        if lengths.shape[0] != x.shape[0] or np.any((lengths < 0) | (lengths > x.shape[1])):
            raise self.invalid(node, f"sequence_lens {lengths.reshape(-1).tolist()} do not fit {x.shape[0]} "
                                     f"sequences of {x.shape[1]} steps")
        source = np.where(steps < lengths, lengths - 1 - steps, steps)
        return [np.moveaxis(x[np.arange(x.shape[0])[:, None], source], (0, 1), (batch, time))]

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr:
        batch, time = self.axes(node)
        steps = node.inputs[0].shape[time]
        length = clamp(cast(read(1, (index[batch],)), "int64_t"), 0, steps)
        step = index[time]
        source = list(index)
        source[time] = select(binary("<", step, length), length - 1 - step, step)
        return read(0, tuple(source))
