"""Reductions: the Reduce* family over a set of axes, and ArgMax/ArgMin along one axis (Many-to-Many).

The axes of Reduce* are an attribute in older opsets and an optional input since opset 13 (ReduceSum) or 18
(the rest). When that input is computed at run time, the output rank is still known from its length, but
which extents collapse to 1 is not, so those extents are left data-dependent (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, Load, Var, binary, call, cast, ctype, floordiv, lit, mod, numel, select, \
    unravel
from ..kir.expr import Bin as ExprBin, Unary as ExprUnary
from ..kir.kernel import KernelContext, local_array, parallel_for, serial_for
from ..ir import dtypes
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, const_input, normalize_axis, shape_of
from .registry import register


def reduced_shape(shape: tuple, axes: Sequence[int], keepdims: bool) -> tuple:
    """The shape left after reducing the (normalized) `axes` of `shape`."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def normalize_axes(node: Node, axes: Sequence[int], rank: int) -> tuple[int, ...]:
    """Axes mapped into [0, rank), rejecting out-of-range and repeated ones."""
    out = tuple(normalize_axis(node, int(a), rank) for a in axes)
    if len(set(out)) != len(out):
        raise Op.invalid(node, f"axes {list(axes)} name the same axis twice")
    return out


def float_work(x: np.ndarray) -> np.ndarray:
    """x itself when floating-point, else as float64 (for sqrt/log/mean of integers)."""
    return x if dtypes.is_float(x.dtype) else x.astype(np.float64)


def _extreme(dtype: np.dtype, lowest: bool) -> np.ndarray:
    """The identity of max (lowest=True) or min over `dtype`: -inf/+inf, the integer limits, False/True."""
    if dtype == np.bool_:
        return np.array(not lowest)
    if dtypes.is_float(dtype):
        return np.array(-np.inf if lowest else np.inf, dtype)
    info = np.iinfo(dtype)
    return np.array(info.min if lowest else info.max, dtype)


# --- codegen helpers: loops over the rows of a reduction and folds along them -------------------------

FLOAT_C = ("float", "double")


def over_rows(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int],
              body: Callable[[dict[int, Expr]], list[str]], work: int) -> list[str]:
    """One flat loop (parallel when `work` is large) over every row: each combination of the axes not in `axes`,
    whose index expressions `body` gets by axis."""
    kept = [a for a in range(len(shape)) if a not in axes]
    row = ctx.var("o")
    extents = [shape[a] for a in kept]
    return parallel_for(row, numel(extents), body(dict(zip(kept, unravel(row, extents)))), work)


def over_row(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int], row: dict[int, Expr],
             body: Callable[[Index], list[str]], simd: str | None = None) -> list[str]:
    """Serial loops over `axes` (the last innermost) inside `row`; `body` gets each element's full index.
    `simd` (clauses, "" for none) marks the innermost loop `#pragma omp simd` when it runs along the
    contiguous last axis."""
    index = dict(row)
    loops = []
    for a in axes:
        if shape[a] == 1:
            index[a] = Lit(0)
        else:
            index[a] = ctx.var("r")
            loops.append((index[a], shape[a], a == len(shape) - 1))
    lines = body(tuple(index[a] for a in range(len(shape))))
    if not loops:
        return ["{"] + ["  " + line for line in lines] + ["}"]
    for k, (var, extent, last) in enumerate(reversed(loops)):
        pragma = [f"#pragma omp simd {simd}".rstrip()] if simd is not None and k == 0 and last else []
        lines = pragma + serial_for(var, extent, lines)
    return lines


def fold(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int], row: dict[int, Expr], acc: Var,
         init: Expr, step: Callable[[Expr], Expr], at: Callable[[Index], Index] | None = None,
         combine: str | None = None) -> list[str]:
    """Declare the accumulator `acc = init`, then `acc = step(element)` for each element of the row of input 0
    (read through the prologue); `at` maps a loop index of `shape` to the input's index when they differ.
    `combine` ("+", "*" or "max": how the step combines acc with f(x)) lets the innermost loop vectorize as an
    OpenMP reduction (partial accumulators, combined at the end)."""
    def body(index: Index) -> list[str]:
        element = ctx.read(0, at(index) if at else index)
        x = Var(f"{acc.name}_x", element.ctype)
        return ctx.value(x.name, element) + [f"{acc.name} = {ctx.c(cast(step(x), acc.ctype))};"]
    simd = f"reduction({combine}:{acc.name})" if combine else None
    return [f"{acc.ctype} {acc.name} = {ctx.c(cast(init, acc.ctype))};"] + \
        over_row(ctx, shape, axes, row, body, simd)


def map_row(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int], row: dict[int, Expr],
            value: Callable[[Expr, Index], Expr], at: Callable[[Index], Index] | None = None) -> list[str]:
    """Statements storing output 0 at every element of the row: `value(element of input 0, its index)`."""
    def body(index: Index) -> list[str]:
        index = at(index) if at else index
        return ctx.store(0, index, value(ctx.read(0, index), index))
    return over_row(ctx, shape, axes, row, body, simd="")


def beats(x: Expr, best: Expr, largest: bool) -> Expr:
    """Whether x replaces best in a running maximum (or minimum) that treats NaN as numpy does: the first NaN
    wins over everything after it."""
    better = binary(">" if largest else "<", x, best)
    if x.ctype not in FLOAT_C:
        return better
    nan = call("isnan", x, ctype_="bool")
    return binary("||", better, binary("&&", nan, ExprUnary("!", call("isnan", best, ctype_="bool"), "bool")))


def arg_fold(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int], row: dict[int, Expr], largest: bool,
             place: Callable[[Index], tuple[Index, Expr]]) -> tuple[list[str], Var]:
    """Statements scanning the row for its first largest (or smallest) element of input 0, and the int64 local
    that ends up holding its position; `place(index)` gives, per step, the element to read and its position."""
    ct = ctype(ctx.node.inputs[0].dtype)
    best, pos = Var("best", ct), Var("pos")

    def scan(index: Index) -> list[str]:
        at, position = place(index)
        x = Var("best_x", ct)
        update = binary("||", binary("<", pos, lit(0, "int64_t")), beats(x, best, largest))
        return ctx.value(x.name, ctx.read(0, at)) + [
            f"if ({ctx.c(update)}) {{ {best.name} = {x.name}; {pos.name} = {ctx.c(position)}; }}"]
    lines = [f"{ct} {best.name} = {ctx.c(lit(0, ct))};", f"int64_t {pos.name} = -1;"]
    return lines + over_row(ctx, shape, axes, row, scan), pos


def extreme_lit(dtype: np.dtype, lowest: bool) -> Expr:
    """`_extreme` as a C expression (the 64-bit limits spelled so no literal overflows)."""
    ct = ctype(dtype)
    value = _extreme(np.dtype(dtype), lowest).item()
    if ct == "int64_t" and lowest:
        return ExprBin("-", lit(value + 1, ct), lit(1, ct), ct)
    if ct == "uint64_t" and not lowest:
        return ExprBin("-", lit(0, ct), lit(1, ct), ct)
    return lit(value, ct)


@dataclass(frozen=True)
class Fold:
    """How a Reduce* op accumulates in C: the accumulator's type and start, `step(acc, x)` per element (x already
    in the accumulator's type) and `finish(acc, count)`; `shifted`: a first pass puts the row's finite maximum
    (0 otherwise) in the local SHIFT, as LogSumExp needs; `combine`: see `fold`."""

    acc: str
    init: Expr
    step: Callable[[Expr, Expr], Expr]
    finish: Callable[[Expr, int], Expr] = lambda acc, count: acc
    shifted: bool = False
    combine: str | None = "+"          # the step as an OpenMP reduction operator (None: none applies)


SHIFT = "shift"
COLUMNS_FROM = 16        # kept elements after the last reduced axis from which `Reduce._columns` is used
COLUMN_WIDTH = 256       # the most output elements one of its tasks folds at once
COLUMN_TASKS = 64        # blocks narrow (down to COLUMNS_FROM) until there are this many tasks


def work_c(dtype: np.dtype) -> str:
    """The C type float_work computes in: the input's own for floats, double otherwise."""
    ct = ctype(dtype)
    return ct if ct in FLOAT_C else "double"


def _add(acc: Expr, x: Expr) -> Expr:
    return acc + x


def _add_square(acc: Expr, x: Expr) -> Expr:
    return acc + x * x


def _finite_or_zero(peak: Expr) -> Expr:
    """The shift LogSumExp subtracts: the maximum where it is finite, else 0."""
    finite = binary("&&", binary(">", peak, lit(-np.inf, peak.ctype)), binary("<", peak, lit(np.inf, peak.ctype)))
    return select(finite, peak, lit(0, peak.ctype))


def _keep_extreme(largest: bool) -> Callable[[Expr, Expr], Expr]:
    """The step of a running maximum (or minimum) with numpy's NaN propagation."""
    return lambda acc, x: select(beats(x, acc, largest), x, acc)


class Reduce(Op):
    """Reduce the input over `axes` (all when empty, none with noop_with_empty_axes), keeping dims on request.

    With no axis to reduce, the elementwise part still applies (ReduceSumSquare squares, ReduceL1 takes the
    absolute value), as the operator's definition, onnx's reference and onnxruntime have it."""

    mapping = MappingType.MANY_TO_MANY
    reduction = True
    axes_input_since: ClassVar[int] = 18

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        """The reduction itself over the normalized `axes` (() applies only the elementwise part)."""
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        x = node.inputs[0]
        keepdims = bool(node.attr("keepdims", 1))
        axes = self._static_axes(node, len(shape_of(node, 0)))
        if axes is None:
            return [TensorType(x.dtype, self._shape_for_runtime_axes(node, x.shape, keepdims))]
        return [TensorType(x.dtype, x.shape if not axes else reduced_shape(x.shape, axes, keepdims))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        given = inputs[1] if self._axes_are_input(node) and len(inputs) > 1 else None
        axes = self._resolve(node, self._written_axes(node, given), x.ndim)
        y = self.reduce(x, axes, bool(node.attr("keepdims", 1)))   # axes=(): only the elementwise part
        return [np.asarray(y).astype(x.dtype, copy=False)]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel

    # --- codegen ------------------------------------------------------------------------------------
    def fold(self, dtype: np.dtype) -> Fold | None:
        """The C accumulation over elements of `dtype`; None: no generated code."""
        return None

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per output element, fold the reduced axes (maybe none) into a local, then store the result; where
        kept axes follow the last reduced one, per block of output elements along them (see `_columns`)."""
        x = node.inputs[0]
        spec, axes = self.fold(x.dtype), self._static_axes(node, len(x.shape))
        if axes is None or spec is None:
            return None
        keepdims = bool(node.attr("keepdims", 1))
        if axes and numel(x.shape[max(axes) + 1:]) >= COLUMNS_FROM:
            return self._columns(ctx, spec, axes, keepdims)
        shape, ct = x.shape, ctype(x.dtype)
        count = numel([shape[a] for a in axes])
        acc = Var("acc", spec.acc)

        def body(row: dict[int, Expr]) -> list[str]:
            out = tuple(row.get(a, Lit(0)) for a in range(len(shape))) if keepdims else tuple(row.values())
            lines = []
            if spec.shifted:
                peak = Var("peak", spec.acc)
                lines += fold(ctx, shape, axes, row, peak, lit(-np.inf, spec.acc),
                              lambda v: _keep_extreme(largest=True)(peak, cast(v, spec.acc)))
                lines += ctx.value(SHIFT, _finite_or_zero(peak))
            lines += fold(ctx, shape, axes, row, acc, spec.init, lambda v: spec.step(acc, cast(v, spec.acc)),
                          combine=spec.combine if spec.acc != "bool" else None)
            return lines + ctx.store(0, out, cast(spec.finish(acc, count), ct))
        return over_rows(ctx, shape, axes, body, x.numel * (2 if spec.shifted else 1))

    @staticmethod
    def _columns(ctx: KernelContext, spec: Fold, axes: tuple[int, ...], keepdims: bool) -> list[str]:
        """A reduction with kept axes after the last reduced one, whose elements per output lie strided: each
        task folds a block of consecutive output elements along those (contiguous) trailing axes into a local
        array, so the innermost loop runs along memory."""
        x = ctx.node.inputs[0]
        shape, ct, work = x.shape, ctype(x.dtype), spec.acc
        trailing = list(range(max(axes) + 1, len(shape)))
        leading = [a for a in range(max(axes)) if a not in axes]
        inner, outer = numel([shape[a] for a in trailing]), numel([shape[a] for a in leading])
        width = min(inner, COLUMN_WIDTH)
        while width >= 2 * COLUMNS_FROM and outer * -(-inner // width) < COLUMN_TASKS:
            width //= 2
        blocks = -(-inner // width)
        task, lane = ctx.var("o"), ctx.var("j")
        first = mod(task, blocks) * width
        position = dict(zip(leading, unravel(floordiv(task, blocks), [shape[a] for a in leading])))
        position.update(zip(trailing, unravel(first + lane, [shape[a] for a in trailing])))
        bound = lit(width, "int64_t") if inner % width == 0 else \
            binary("min", lit(width, "int64_t"), lit(inner, "int64_t") - first)
        acc, peak = Load("acc", lane, work), Load("peak", lane, work)
        shift = [f"const {work} {SHIFT} = {ctx.c(peak)};"] if spec.shifted else []

        def lanes(body: list[str], simd: bool = True) -> list[str]:
            return (["#pragma omp simd"] if simd else []) + \
                [f"for (int64_t {lane.name} = 0; {lane.name} < {ctx.c(bound)}; ++{lane.name}) {{"] + \
                ["  " + line for line in body] + ["}"]

        def sweep(target: Load, step: Callable[[Expr], Expr], prefix: list[str]) -> list[str]:
            def body(index: Index) -> list[str]:
                element = Var("acc_x", ct)
                return lanes(prefix + ctx.value(element.name, ctx.read(0, index)) +
                             [f"{ctx.c(target)} = {ctx.c(cast(step(cast(element, work)), work))};"])
            return over_row(ctx, shape, axes, position, body)

        lines = [local_array(work, "acc", width)] + lanes([f"acc[{lane.name}] = {ctx.c(cast(spec.init, work))};"])
        if spec.shifted:
            lines += [local_array(work, "peak", width)] + lanes([f"peak[{lane.name}] = {ctx.c(lit(-np.inf, work))};"])
            lines += sweep(peak, lambda v: _keep_extreme(largest=True)(peak, v), [])
            lines += lanes([f"peak[{lane.name}] = {ctx.c(_finite_or_zero(peak))};"])
        lines += sweep(acc, lambda v: spec.step(acc, v), shift)
        out = tuple(position.get(a, Lit(0)) for a in range(len(shape)) if keepdims or a not in axes)
        count = numel([shape[a] for a in axes])
        lines += lanes(shift + ctx.store(0, out, cast(spec.finish(acc, count), ct)), simd=False)
        return parallel_for(task, outer * blocks, lines, x.numel * (2 if spec.shifted else 1))

    # --- axes ---------------------------------------------------------------------------------------
    def _axes_are_input(self, node: Node) -> bool:
        return node.opset >= self.axes_input_since

    def _written_axes(self, node: Node, given: np.ndarray | None) -> list[int]:
        """The axes as the model writes them: the input (in newer opsets) or the attribute; [] if absent."""
        if not self._axes_are_input(node):
            return list(node.attr("axes", []))
        if given is None:
            return []
        if given.ndim > 1 or given.dtype.kind not in "iu":
            raise self.invalid(node, f"axes must be a 1-D integer tensor, not {given.dtype} of shape {given.shape}")
        return given.reshape(-1).tolist()

    def _resolve(self, node: Node, axes: list[int], rank: int) -> tuple[int, ...]:
        """The normalized axes to reduce; () means the input passes through unchanged."""
        if axes:
            return normalize_axes(node, axes, rank)
        if self._axes_are_input(node) and node.attr("noop_with_empty_axes", 0):
            return ()
        return tuple(range(rank))

    def _static_axes(self, node: Node, rank: int) -> tuple[int, ...] | None:
        """The axes to reduce at compile time, or None when a run-time input decides them."""
        v = node.input(1) if self._axes_are_input(node) else None
        if v is None or v.const is not None:
            return self._resolve(node, self._written_axes(node, None if v is None else v.const), rank)
        if v.shape == (0,):
            return self._resolve(node, [], rank)
        return None

    def _shape_for_runtime_axes(self, node: Node, shape: tuple, keepdims: bool) -> tuple:
        """Output shape when only the number of axes is known: the reduced extents become None."""
        axes_shape = node.inputs[1].shape
        if keepdims:
            return tuple(1 if d == 1 else None for d in shape)
        if axes_shape is None or len(axes_shape) != 1 or axes_shape[0] is None:
            const_input(node, 1, "axes")  # raises the standard data-dependent error
        return (None,) * (len(shape) - axes_shape[0])


@register
class ReduceSum(Reduce):
    """Sum over the axes."""

    op_type = "ReduceSum"
    axes_input_since = 13

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)

    def fold(self, dtype: np.dtype) -> Fold | None:
        ct = ctype(dtype)
        return Fold(ct, lit(0, ct), _add)


@register
class ReduceMean(Reduce):
    """Arithmetic mean over the axes (truncated for integers)."""

    op_type = "ReduceMean"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.mean(float_work(x), axis=axes, keepdims=keepdims)

    def fold(self, dtype: np.dtype) -> Fold | None:
        w = work_c(dtype)
        return Fold(w, lit(0, w), _add, lambda acc, count: acc / lit(count, w))


@register
class ReduceMax(Reduce):
    """Maximum over the axes; -inf (or the type's lowest value) over an empty set."""

    op_type = "ReduceMax"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.max(x, axis=axes, keepdims=keepdims, initial=_extreme(x.dtype, lowest=True))

    def fold(self, dtype: np.dtype) -> Fold | None:
        return Fold(ctype(dtype), extreme_lit(dtype, lowest=True), _keep_extreme(largest=True), combine=None)


@register
class ReduceMin(Reduce):
    """Minimum over the axes; +inf (or the type's highest value) over an empty set."""

    op_type = "ReduceMin"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.min(x, axis=axes, keepdims=keepdims, initial=_extreme(x.dtype, lowest=False))

    def fold(self, dtype: np.dtype) -> Fold | None:
        return Fold(ctype(dtype), extreme_lit(dtype, lowest=False), _keep_extreme(largest=False), combine=None)


@register
class ReduceProd(Reduce):
    """Product over the axes."""

    op_type = "ReduceProd"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype)

    def fold(self, dtype: np.dtype) -> Fold | None:
        ct = ctype(dtype)
        return Fold(ct, lit(1, ct), lambda acc, x: acc * x, combine="*")


@register
class ReduceL1(Reduce):
    """Sum of absolute values over the axes."""

    op_type = "ReduceL1"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(np.abs(x), axis=axes, keepdims=keepdims, dtype=x.dtype)

    def fold(self, dtype: np.dtype) -> Fold | None:
        ct = ctype(dtype)
        signed = ct in FLOAT_C or ct.startswith("int")
        return Fold(ct, lit(0, ct), lambda acc, x: acc + (call("abs", x) if signed else x))


@register
class ReduceL2(Reduce):
    """Euclidean norm over the axes."""

    op_type = "ReduceL2"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        w = float_work(x)
        return np.sqrt(np.sum(w * w, axis=axes, keepdims=keepdims))

    def fold(self, dtype: np.dtype) -> Fold | None:
        w = work_c(dtype)
        return Fold(w, lit(0, w), _add_square, lambda acc, count: call("sqrt", acc))


@register
class ReduceLogSum(Reduce):
    """Natural log of the sum over the axes (-inf over an empty set)."""

    op_type = "ReduceLogSum"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.sum(float_work(x), axis=axes, keepdims=keepdims))

    def fold(self, dtype: np.dtype) -> Fold | None:
        w = work_c(dtype)
        return Fold(w, lit(0, w), _add, lambda acc, count: call("log", acc))


@register
class ReduceLogSumExp(Reduce):
    """log(sum(exp(x))) over the axes, shifted by the maximum for stability (-inf over an empty set)."""

    op_type = "ReduceLogSumExp"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        w = float_work(x)
        peak = np.max(w, axis=axes, keepdims=True, initial=-np.inf)
        shift = np.where(np.isfinite(peak), peak, 0).astype(w.dtype)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            total = np.log(np.sum(np.exp(w - shift), axis=axes, keepdims=True)) + shift
        return total if keepdims else np.squeeze(total, axis=axes)

    def fold(self, dtype: np.dtype) -> Fold | None:
        w = work_c(dtype)
        shift = Var(SHIFT, w)
        return Fold(w, lit(0, w), lambda acc, x: acc + call("exp", x - shift),
                    lambda acc, count: call("log", acc) + shift, shifted=True)


@register
class ReduceSumSquare(Reduce):
    """Sum of squares over the axes."""

    op_type = "ReduceSumSquare"

    def reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(x * x, axis=axes, keepdims=keepdims, dtype=x.dtype)

    def fold(self, dtype: np.dtype) -> Fold | None:
        ct = ctype(dtype)
        return Fold(ct, lit(0, ct), _add_square)


class ArgReduce(Op):
    """Index (int64) of the extreme value along `axis`: the first one, or the last with select_last_index."""

    mapping = MappingType.MANY_TO_MANY
    reduction = True
    largest: ClassVar[bool] = True   # ArgMax; ArgMin looks for the smallest

    def pick(self, x: np.ndarray, axis: int) -> np.ndarray:
        """Index of the first extreme element along `axis`."""
        raise NotImplementedError

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        axis = self._axis(node, len(shape))
        if shape and shape[axis] == 0:
            raise self.invalid(node, f"axis {axis} of the input {shape} is empty, so it has no {self.op_type}")
        return [TensorType(np.dtype(np.int64), reduced_shape(shape, (axis,), bool(node.attr("keepdims", 1))))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        axis = self._axis(node, x.ndim)
        if node.attr("select_last_index", 0):
            index = x.shape[axis] - 1 - self.pick(np.flip(x, axis), axis)
        else:
            index = self.pick(x, axis)
        if node.attr("keepdims", 1):
            index = np.expand_dims(index, axis)
        return [np.asarray(index, dtype=np.int64)]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per output element, scan the axis (backwards with select_last_index) keeping the first extreme."""
        shape = node.inputs[0].shape
        if not shape:
            return None
        axis = self._axis(node, len(shape))
        keepdims, last = bool(node.attr("keepdims", 1)), bool(node.attr("select_last_index", 0))

        def place(index: Index) -> tuple[Index, Expr]:
            at = lit(shape[axis] - 1, "int64_t") - index[axis] if last else index[axis]
            return index[:axis] + (at,) + index[axis + 1:], at

        def body(row: dict[int, Expr]) -> list[str]:
            out = tuple(row.get(a, Lit(0)) for a in range(len(shape))) if keepdims else tuple(row.values())
            lines, pos = arg_fold(ctx, shape, (axis,), row, self.largest, place)
            return lines + ctx.store(0, out, pos)
        return over_rows(ctx, shape, (axis,), body, node.inputs[0].numel)

    @staticmethod
    def _axis(node: Node, rank: int) -> int:
        return normalize_axis(node, node.attr("axis", 0), rank)


@register
class ArgMax(ArgReduce):
    """Index of the maximum along an axis."""

    op_type = "ArgMax"

    def pick(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.argmax(x, axis=axis)


@register
class ArgMin(ArgReduce):
    """Index of the minimum along an axis."""

    op_type = "ArgMin"
    largest = False

    def pick(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.argmin(x, axis=axis)
