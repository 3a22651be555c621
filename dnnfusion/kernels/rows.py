"""Row templates of reductions and normalisations: loops over the rows of a reduction, folds along a row (as
OpenMP reductions where they vectorise), a first-extreme scan, and a column fold for reductions whose kept axes
follow the reduced ones. Which operators use them and what they fold lives with the operators in `ops/`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, Load, Select, Var, assume, binary, call, cast, ctype, floordiv, lit, mod, \
    numel, select, unravel, variables, walk
from ..kir.expr import Unary as ExprUnary
from ..kir.kernel import KernelContext, indent, local_array, parallel_for, serial_for

FLOAT_C = ("float", "double")
UNSWITCHED_BODIES = 8      # row bodies a row loop may be unswitched into (one per concatenated source)


def over_rows(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int],
              body: Callable[[dict[int, Expr]], list[str]], work: int) -> list[str]:
    """One flat loop (parallel when `work` is large) over every row: each combination of the axes not in `axes`,
    whose index expressions `body` gets by axis (`unswitched` on the row's choice of source)."""
    kept = [a for a in range(len(shape)) if a not in axes]
    row = ctx.var("o")
    extents = [shape[a] for a in kept]
    index = dict(zip(kept, unravel(row, extents)))
    return parallel_for(row, numel(extents), unswitched(ctx, shape, axes, index, body, [UNSWITCHED_BODIES]), work)


def unswitched(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int], row: dict[int, Expr],
               body: Callable[[dict[int, Expr]], list[str]], left: list[int]) -> list[str]:
    """`body(row)`; or, where input 0's element picks its source by a condition on the row alone (a Concat
    along a kept axis fused in), an if on that condition around one body per branch, each reading its own
    source: inside a vectorised row every select would compute all its branches (SSD's softmax over six
    concatenated heads gathered all six per element). The outermost such select goes first (`walk` visits a
    node before its children). `left` counts the bodies still allowed."""
    probe = {a: Var(f"probe{a}") for a in axes}
    element = ctx.read(0, tuple(row[d] if d in row else probe[d] for d in range(len(shape))))
    names = {v.name for v in probe.values()}
    cond = next((x for x in walk(element) if isinstance(x, Select) and not variables(x.cond) & names), None)
    if cond is None or left[0] < 2:
        return body(row)
    left[0] -= 1
    branches = []
    for value in (True, False):
        read = ctx.read
        ctx.read = lambda i, index, read=read, value=value: assume(read(i, index), cond.cond, value)
        try:
            branches.append(unswitched(ctx, shape, axes, row, body, left))
        finally:
            ctx.read = read
    return [f"if ({ctx.c(cond.cond)}) {{", *indent(branches[0]), "} else {", *indent(branches[1]), "}"]


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
    return folds(ctx, shape, axes, row, [(acc, init, step)], at, combine)


def folds(ctx: KernelContext, shape: Sequence[int], axes: Sequence[int], row: dict[int, Expr],
          accumulators: Sequence[tuple[Var, Expr, Callable[[Expr], Expr]]], at: Callable[[Index], Index] | None = None,
          combine: str | None = None) -> list[str]:
    """Several folds (accumulator, init, step) in one sweep: each element of the row is read once and every
    accumulator stepped with it (as `fold`, all combined by `combine` when given)."""
    first = accumulators[0][0]

    def body(index: Index) -> list[str]:
        element = ctx.read(0, at(index) if at else index)
        x = Var(f"{first.name}_x", element.ctype)
        return ctx.value(x.name, element) + \
            [f"{acc.name} = {ctx.c(cast(step(x), acc.ctype))};" for acc, _, step in accumulators]
    simd = f"reduction({combine}:{', '.join(acc.name for acc, _, _ in accumulators)})" if combine else None
    return [f"{acc.ctype} {acc.name} = {ctx.c(cast(init, acc.ctype))};" for acc, init, _ in accumulators] + \
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


def finite_or_zero(peak: Expr) -> Expr:
    """The shift LogSumExp subtracts: the maximum where it is finite, else 0."""
    finite = binary("&&", binary(">", peak, lit(-np.inf, peak.ctype)), binary("<", peak, lit(np.inf, peak.ctype)))
    return select(finite, peak, lit(0, peak.ctype))


def keep_extreme(largest: bool) -> Callable[[Expr, Expr], Expr]:
    """The step of a running maximum (or minimum) with numpy's NaN propagation."""
    return lambda acc, x: select(beats(x, acc, largest), x, acc)


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
COLUMNS_FROM = 16        # kept elements after the last reduced axis from which `column_fold` is used
COLUMN_WIDTH = 256       # the most output elements one of its tasks folds at once
COLUMN_TASKS = 64        # blocks narrow (down to COLUMNS_FROM) until there are this many tasks


def column_fold(ctx: KernelContext, spec: Fold, axes: tuple[int, ...], keepdims: bool) -> list[str]:
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
        lines += sweep(peak, lambda v: keep_extreme(largest=True)(peak, v), [])
        lines += lanes([f"peak[{lane.name}] = {ctx.c(finite_or_zero(peak))};"])
    lines += sweep(acc, lambda v: spec.step(acc, v), shift)
    out = tuple(position.get(a, Lit(0)) for a in range(len(shape)) if keepdims or a not in axes)
    count = numel([shape[a] for a in axes])
    lines += lanes(shift + ctx.store(0, out, cast(spec.finish(acc, count), ct)), simd=False)
    return parallel_for(task, outer * blocks, lines, x.numel * (2 if spec.shifted else 1))


def reduce_rows(ctx: KernelContext, spec: Fold, axes: tuple[int, ...], keepdims: bool) -> list[str]:
    """Input 0 of the kernel's node folded over `axes` (maybe none) as `spec` says, per output element into a
    local, or per block of output elements where kept axes follow the last reduced one (`column_fold`)."""
    x = ctx.node.inputs[0]
    if axes and numel(x.shape[max(axes) + 1:]) >= COLUMNS_FROM:
        return column_fold(ctx, spec, axes, keepdims)
    shape, ct = x.shape, ctype(x.dtype)
    count = numel([shape[a] for a in axes])
    acc = Var("acc", spec.acc)

    def body(row: dict[int, Expr]) -> list[str]:
        out = tuple(row.get(a, Lit(0)) for a in range(len(shape))) if keepdims else tuple(row.values())
        lines = []
        if spec.shifted:
            peak = Var("peak", spec.acc)
            lines += fold(ctx, shape, axes, row, peak, lit(-np.inf, spec.acc),
                          lambda v: keep_extreme(largest=True)(peak, cast(v, spec.acc)))
            lines += ctx.value(SHIFT, finite_or_zero(peak))
        lines += fold(ctx, shape, axes, row, acc, spec.init, lambda v: spec.step(acc, cast(v, spec.acc)),
                      combine=spec.combine if spec.acc != "bool" else None)
        return lines + ctx.store(0, out, cast(spec.finish(acc, count), ct))
    return over_rows(ctx, shape, axes, body, x.numel * (2 if spec.shifted else 1))
