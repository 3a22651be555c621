"""Scans and selections along axes: CumSum, CumProd, TopK, Einsum and Det (Many-to-Many)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, Load, Var, binary, call, cast, ctype, lit, numel, select, unravel
from ..kir.expr import Unary as ExprUnary
from ..kir.expr import strides
from ..kir.kernel import KernelContext, parallel_for, serial_for
from ..kernels.gemm import Operand, Product, direct_buffer, product_kernel, strided
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, broadcast, normalize_axis, same_as_input, shape_of
from ..kernels.rows import FLOAT_C, beats, over_row, over_rows
from .registry import register


class Cumulative(Op):
    """Running `accumulate` along the axis given as input 1; `exclusive` shifts by one, `reverse` runs backwards."""

    mapping = MappingType.MANY_TO_MANY
    accumulate: ClassVar[Callable[..., np.ndarray]]
    identity: ClassVar[int]

    def infer(self, node: Node) -> list[Inferred]:
        axis = node.input(1)
        if axis is None:
            raise self.invalid(node, "input axis is missing")
        if axis.shape is not None and int(np.prod(axis.shape)) != 1:
            raise self.invalid(node, f"axis must be a scalar or a 1-element tensor, not of shape {axis.shape}")
        if axis.const is not None:
            self._axis(node, axis.const, len(shape_of(node, 0)))
        return [same_as_input(node)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        axis = self._axis(node, inputs[1], x.ndim)
        reverse = bool(node.attr("reverse", 0))
        seq = np.moveaxis(x, axis, 0)
        if reverse:
            seq = seq[::-1]
        y = self.accumulate(seq, axis=0, dtype=x.dtype)
        if node.attr("exclusive", 0):
            y = np.concatenate([np.full_like(y[:1], self.identity), y[:-1]])
        if reverse:
            y = y[::-1]
        return [np.ascontiguousarray(np.moveaxis(y, 0, axis))]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel

    def step(self, acc: Expr, x: Expr) -> Expr:
        """The running accumulation in C."""
        raise NotImplementedError

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per line along the axis, a running accumulator stored after (or, exclusive, before) each element."""
        x, axis_value = node.inputs[0], node.inputs[1]
        if axis_value.const is None or not x.shape:
            return None
        shape, ct = x.shape, ctype(x.dtype)
        axis = self._axis(node, axis_value.const, len(shape))
        reverse, exclusive = bool(node.attr("reverse", 0)), bool(node.attr("exclusive", 0))
        acc, step = Var("acc", ct), ctx.var("s")

        def body(row: dict[int, Expr]) -> list[str]:
            at = lit(shape[axis] - 1, "int64_t") - step if reverse else step
            index = tuple(row.get(a, at) for a in range(len(shape)))
            x_value = Var("acc_x", ct)
            update = [f"{acc.name} = {ctx.c(cast(self.step(acc, x_value), ct))};"]
            store = ctx.store(0, index, acc)
            line = ctx.value(x_value.name, ctx.read(0, index)) + (store + update if exclusive else update + store)
            return [f"{ct} {acc.name} = {ctx.c(lit(self.identity, ct))};"] + serial_for(step, shape[axis], line)
        return over_rows(ctx, shape, (axis,), body, x.numel)

    def _axis(self, node: Node, axis: np.ndarray, rank: int) -> int:
        if axis.dtype.kind not in "iu":
            raise self.invalid(node, f"axis must be an integer, not {axis.dtype}")
        return normalize_axis(node, int(axis.reshape(-1)[0]), rank)


@register
class CumSum(Cumulative):
    """Cumulative sum along an axis."""

    op_type = "CumSum"
    accumulate = staticmethod(np.cumsum)
    identity = 0

    def step(self, acc: Expr, x: Expr) -> Expr:
        return acc + x


@register
class CumProd(Cumulative):
    """Cumulative product along an axis."""

    op_type = "CumProd"
    accumulate = staticmethod(np.cumprod)
    identity = 1

    def step(self, acc: Expr, x: Expr) -> Expr:
        return acc * x


@register
class TopK(Op):
    """The k largest (or smallest) values along an axis and their int64 indices, sorted, ties by lower index."""

    op_type = "TopK"
    mapping = MappingType.MANY_TO_MANY
    k_input_since = 10

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        axis = normalize_axis(node, node.attr("axis", -1), len(shape))
        k = self._static_k(node)
        if k is not None:
            self._check_k(node, k, shape[axis])
        out = shape[:axis] + (k,) + shape[axis + 1:]
        return [TensorType(node.inputs[0].dtype, out), TensorType(np.dtype(np.int64), out)]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        axis = normalize_axis(node, node.attr("axis", -1), x.ndim)
        k = self._k(node, inputs[1] if node.opset >= self.k_input_since else None)
        self._check_k(node, k, x.shape[axis])
        order = self._order(x, axis, bool(node.attr("largest", 1)))
        indices = np.take(order, np.arange(k), axis=axis)
        return [np.take_along_axis(x, indices, axis=axis), indices.astype(np.int64, copy=False)]

    def flops(self, node: Node) -> int:
        return node.inputs[0].numel   # one comparison per element against the current k-th value

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per row along the axis, insert each element into a sorted list of the best k so far (one that ties an
        entry goes behind it: lower index first), then store the list as both outputs."""
        x, k = node.inputs[0], self._static_k(node)
        if not x.shape or k is None:
            return None
        if k == 0:
            return []
        shape, ct = x.shape, ctype(x.dtype)
        axis = normalize_axis(node, node.attr("axis", -1), len(shape))
        kept = [a for a in range(len(shape)) if a != axis]
        extents = [shape[a] for a in kept]
        values, indices = ctx.scratch(ct, numel(extents) * k), ctx.scratch("int64_t", numel(extents) * k)
        row, step, rank = ctx.var("o"), ctx.var("s"), ctx.var("t")
        outer = dict(zip(kept, unravel(row, extents)))
        x_value, count, place = Var("top_x", ct), Var("count"), Var("place")
        before = self._before(bool(node.attr("largest", 1)))
        c, one, full = ctx.c, lit(1, "int64_t"), lit(k, "int64_t")

        def slot(p: Expr) -> str:
            return c(row * k + p)

        def at(position: Expr) -> Index:
            return tuple(outer.get(a, position) for a in range(len(shape)))

        enters = binary("||", binary("<", count, full), before(x_value, Load(values, row * k + count - one, ct)))
        shifts = binary("&&", binary(">", place, lit(0, "int64_t")),
                        before(x_value, Load(values, row * k + place - one, ct)))
        insert = ctx.value(x_value.name, ctx.read(0, at(step))) + [
            f"if ({c(enters)}) {{",
            f"  int64_t {place.name} = {c(select(binary('<', count, full), count, full - one))};",
            f"  while ({c(shifts)}) {{",
            f"    {values}[{slot(place)}] = {values}[{slot(place - one)}];",
            f"    {indices}[{slot(place)}] = {indices}[{slot(place - one)}];",
            f"    --{place.name};",
            "  }",
            f"  {values}[{slot(place)}] = {x_value.name};",
            f"  {indices}[{slot(place)}] = {step.name};",
            f"  if ({c(binary('<', count, full))}) ++{count.name};",
            "}"]
        emit = ctx.store(0, at(rank), Load(values, row * k + rank, ct)) + \
            ctx.store(1, at(rank), Load(indices, row * k + rank, "int64_t"))
        body = [f"int64_t {count.name} = 0;"] + serial_for(step, shape[axis], insert) + serial_for(rank, k, emit)
        return parallel_for(row, numel(extents), body, x.numel)

    @staticmethod
    def _before(largest: bool) -> Callable[[Expr, Expr], Expr]:
        """Whether value a sorts strictly before b: larger (or smaller) first, NaN as the largest value (numpy)."""
        def smaller(a: Expr, b: Expr) -> Expr:
            if a.ctype not in FLOAT_C:
                return binary("<", a, b)
            number_before_nan = binary("&&", ExprUnary("!", call("isnan", a, ctype_="bool"), "bool"),
                                       call("isnan", b, ctype_="bool"))
            return binary("||", binary("<", a, b), number_before_nan)
        return (lambda a, b: beats(a, b, True)) if largest else smaller

    @staticmethod
    def _order(x: np.ndarray, axis: int, largest: bool) -> np.ndarray:
        """Indices along `axis` sorting x ascending (or descending), equal values by lower index first."""
        if not largest:
            return np.argsort(x, axis=axis, kind="stable")
        n = x.shape[axis]
        backwards = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        return n - 1 - np.flip(backwards, axis)

    def _static_k(self, node: Node) -> int | None:
        """k at compile time; None when it is a run-time input."""
        if node.opset < self.k_input_since:
            return self._k(node, None)
        v = node.input(1)
        if v is None:
            raise self.invalid(node, "input K is missing")
        return None if v.const is None else self._k(node, v.const)

    def _k(self, node: Node, given: np.ndarray | None) -> int:
        if given is None:
            return int(node.attr("k", -1))
        if given.size != 1 or given.dtype.kind not in "iu":
            raise self.invalid(node, f"K must be a 1-element integer tensor, not {given.dtype} of shape {given.shape}")
        return int(given.reshape(-1)[0])

    def _check_k(self, node: Node, k: int, extent: int | None) -> None:
        if k < 0 or (extent is not None and k > extent):
            raise self.invalid(node, f"k={k} is not in [0, {extent}], the extent of the axis")


def _group_step(names: list[str], extents: dict[str, int], steps: dict[str, int]) -> int | None:
    """The one element stride that walks indices `names` flattened in order (0 for none), or None when their
    strides do not nest (a transposed pair)."""
    if not names:
        return 0
    for outer, inner in zip(names, names[1:]):
        if steps[outer] != steps[inner] * extents[inner] and extents[outer] != 1:
            return None
    return steps[names[-1]]


@dataclass(frozen=True)
class Equation:
    """A parsed einsum equation: one term per input and the output term, '...' written as '.'."""

    inputs: tuple[str, ...]
    output: str

    @classmethod
    def parse(cls, node: Node) -> Equation:
        text = str(node.attr("equation", "")).replace(" ", "")
        lhs, arrow, rhs = text.partition("->")
        terms = tuple(t.replace("...", ".") for t in lhs.split(","))
        if len(terms) != len(node.inputs):
            raise Op.invalid(node, f"equation '{text}' has {len(terms)} input terms but the node has "
                                   f"{len(node.inputs)} inputs")
        if not arrow:
            once = sorted(c for c in set("".join(terms)) - {"."} if "".join(terms).count(c) == 1)
            rhs = ("." if any("." in t for t in terms) else "") + "".join(once)
        output = rhs.replace("...", ".")
        for term in terms + (output,):
            if not all(c.isalpha() or c == "." for c in term) or term.count(".") > 1:
                raise Op.invalid(node, f"equation '{text}' has a malformed term '{term.replace('.', '...')}'")
        if len(set(output)) != len(output) or not set(output) <= set("".join(terms)):
            raise Op.invalid(node, f"equation '{text}' has an output term that repeats an index or names "
                                   "one no input has")
        return cls(terms, output)

    def text(self) -> str:
        """The equation in explicit form, as numpy reads it."""
        return (",".join(self.inputs) + "->" + self.output).replace(".", "...")

    def extents(self, node: Node, shapes: Sequence[tuple]) -> tuple[dict[str, int], tuple]:
        """Each index letter's extent and the broadcast shape that '...' stands for."""
        letters: dict[str, int] = {}
        ellipses = []
        for i, (term, shape) in enumerate(zip(self.inputs, shapes)):
            spread = len(shape) - (len(term) - ("." in term))
            if spread < 0 or ("." not in term and spread):
                raise Op.invalid(node, f"term '{term.replace('.', '...')}' does not fit input {i} of rank {len(shape)}")
            pos = 0
            for c in term:
                if c == ".":
                    ellipses.append(shape[pos:pos + spread])
                    pos += spread
                    continue
                letters[c] = self._merge(node, c, letters.get(c, 1), shape[pos])
                pos += 1
        return letters, broadcast(node, *ellipses) if ellipses else ()

    def output_shape(self, node: Node, shapes: Sequence[tuple]) -> tuple:
        letters, ellipsis = self.extents(node, shapes)
        return sum(((ellipsis if c == "." else (letters[c],)) for c in self.output), ())

    @staticmethod
    def _merge(node: Node, letter: str, known: int, extent: int) -> int:
        """The extent of `letter` given another occurrence; 1 broadcasts as numpy does."""
        if known != extent and 1 not in (known, extent):
            raise Op.invalid(node, f"index '{letter}' has extents {known} and {extent}")
        return extent if known == 1 else known


@register
class Einsum(Op):
    """Sum of products over the indices an einsum equation contracts."""

    op_type = "Einsum"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        shapes = [shape_of(node, i) for i in range(len(node.inputs))]
        return [TensorType(node.inputs[0].dtype, Equation.parse(node).output_shape(node, shapes))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        dtype = inputs[0].dtype
        native = dtype.kind in "biufc"   # numpy's einsum has no kernels for bfloat16 and friends
        operands = [x if native else x.astype(np.float32) for x in inputs]
        return [np.asarray(np.einsum(Equation.parse(node).text(), *operands)).astype(dtype, copy=False)]

    def flops(self, node: Node) -> int:
        letters, ellipsis = Equation.parse(node).extents(node, [v.shape for v in node.inputs])
        return 2 * int(np.prod([d or 0 for d in [*letters.values(), *ellipsis]], dtype=np.int64))

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Over the output indices (one parallel loop), sum the product of the inputs over the contracted ones."""
        equation = Equation.parse(node)
        shapes = [v.shape for v in node.inputs]
        extents, ellipsis = equation.extents(node, shapes)
        spread = [f"{d}" for d in range(len(ellipsis))]          # digits name the dimensions '...' stands for
        extents = {**extents, **dict(zip(spread, ellipsis))}
        terms = [self._expand(term, len(shape), spread) for term, shape in zip(equation.inputs, shapes)]
        out = self._expand(equation.output, len(spread) + len(equation.output) - ("." in equation.output), spread)
        contraction = self._contraction(node, ctx, extents, terms, out)
        if contraction is not None:
            return contraction
        summed = [n for n in dict.fromkeys(n for term in terms for n in term) if n not in out]
        names = out + summed
        view, contracted = tuple(extents[n] for n in names), range(len(out), len(names))
        ct = ctype(node.outputs[0].dtype)
        acc = Var("acc", ct)
        simd = f"reduction(+:{acc.name})" if ct != "bool" else None

        def term_index(i: int, index: Index) -> Index:
            at = dict(zip(names, index))
            return tuple(Lit(0) if d == 1 else at[n] for n, d in zip(terms[i], shapes[i]))

        def body(row: dict[int, Expr]) -> list[str]:
            def add(index: Index) -> list[str]:
                product = ctx.read(0, term_index(0, index))
                for i in range(1, len(terms)):
                    product = product * ctx.read(i, term_index(i, index))
                term = Var("term", product.ctype)
                return ctx.value(term.name, product) + [f"{acc.name} = {ctx.c(cast(acc + term, ct))};"]
            sums = over_row(ctx, view, contracted, row, add, simd)
            return [f"{ct} {acc.name} = {ctx.c(lit(0, ct))};"] + sums + ctx.store(0, tuple(row.values()), acc)
        return over_rows(ctx, view, contracted, body, numel(view) * len(terms))

    def _contraction(self, node: Node, ctx: KernelContext, extents: dict[str, int], terms: list[list[str]],
                     out: list[str]) -> list[str] | None:
        """Two floating-point operands whose indices are each batch (both inputs and the output), rows (A and
        the output), columns (B and the output) or contracted (A and B only): a batched matrix product on the
        GEMM template, operands flattened to (batch, rows, depth) and (batch, depth, columns), read in place
        where each group of indices has one stride. None for any other equation (the generic loops run it)."""
        if len(terms) != 2 or node.outputs[0].dtype not in (np.float32, np.float64):
            return None
        a, b = terms
        shapes = [tuple(v.shape) for v in node.inputs]
        if any(len(set(t)) != len(t) for t in terms) or any(
                extents[n] != d for t, shape in zip(terms, shapes) for n, d in zip(t, shape)):
            return None                      # a diagonal or a broadcast index: not a plain product
        if any(n not in out and (n not in a or n not in b) for n in a + b):
            return None                      # an index summed within one operand
        batch = [n for n in out if n in a and n in b]
        rows, cols = [n for n in out if n in a and n not in b], [n for n in out if n in b and n not in a]
        depth = [n for n in a if n in b and n not in out]
        if not depth:
            return None
        acc = ctype(node.outputs[0].dtype)
        group = tuple(extents[n] for n in batch)
        operand_a = self._operand(node, ctx, 0, a, extents, (batch, rows, depth), acc)
        operand_b = self._operand(node, ctx, 1, b, extents, (batch, depth, cols), acc)
        row_shape, col_shape = [extents[n] for n in rows], [extents[n] for n in cols]

        def store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
            at = {**dict(zip(batch, bidx)), **dict(zip(rows, unravel(i, row_shape))), **dict(zip(cols, j))}
            return ctx.store(0, tuple(at[n] for n in out), value)
        return product_kernel(ctx, Product(group, operand_a, operand_b, acc, store, tuple(col_shape) or (1,)))

    @staticmethod
    def _operand(node: Node, ctx: KernelContext, i: int, term: list[str], extents: dict[str, int],
                 groups: tuple[list[str], list[str], list[str]], acc: str) -> Operand:
        """Input `i` (index names `term`) as the product operand (batch, rows, cols), each group of its indices
        flattened in order; strided when it is a plain array in which each group steps by one stride, with its
        values when constant."""
        batch, rows, cols = groups
        shape = tuple(node.inputs[i].shape)
        group = tuple(extents[n] for n in batch)
        row_shape, col_shape = [extents[n] for n in rows], [extents[n] for n in cols]
        order = [term.index(n) for n in batch + rows + cols]
        const = node.inputs[i].const
        if const is not None:
            const = const.transpose(order).reshape(*group, numel(row_shape), numel(col_shape))

        def element(bidx: Index, r: Expr, c: Expr) -> Expr:
            at = {**dict(zip(batch, bidx)), **dict(zip(rows, unravel(r, row_shape))),
                  **dict(zip(cols, unravel(c, col_shape)))}
            return cast(ctx.read(i, tuple(at[n] for n in term)), acc)

        buffer = direct_buffer(ctx, i, shape, acc)
        steps = dict(zip(term, strides(shape)))
        row_step, col_step = _group_step(rows, extents, steps), _group_step(cols, extents, steps)
        if buffer is None or row_step is None or col_step is None:
            return Operand(group, numel(row_shape), numel(col_shape), element, constant=const)
        return strided(buffer, acc, group, [steps[n] for n in batch], numel(row_shape), numel(col_shape),
                       row_step, col_step, const)

    @staticmethod
    def _expand(term: str, rank: int, spread: list[str]) -> list[str]:
        """The index names of a term's dimensions, '...' replaced by the (right-aligned) names in `spread`."""
        names: list[str] = []
        for c in term:
            names += spread[len(spread) - (rank - len(term) + 1):] if c == "." else [c]
        return names


@register
class Det(Op):
    """Determinant of each square matrix in the last two axes."""

    op_type = "Det"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        shape = shape_of(node, 0)
        if len(shape) < 2 or shape[-1] != shape[-2]:
            raise self.invalid(node, f"the input must be square matrices (..., M, M), not of shape {shape}")
        return [TensorType(node.inputs[0].dtype, shape[:-2])]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        return [np.asarray(np.linalg.det(x.astype(np.float64))).astype(x.dtype)]

    def flops(self, node: Node) -> int:
        shape = node.inputs[0].shape
        return int(np.prod(shape[:-2], dtype=np.int64)) * 2 * shape[-1] ** 3 // 3   # LU factorization
