"""Softmax, LogSoftmax and Hardmax (Many-to-Many).

Before opset 13 these coerce the input to 2-D at `axis` ([prod(shape[:axis]), prod(shape[axis:])], default
axis 1) and normalize each row; since opset 13 they normalize along the single axis `axis` (default -1).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Load, Var, binary, call, ctype, linear, lit, numel, select
from ..kir.kernel import KernelContext, local_array
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, normalize_axis, same_as_input, shape_of
from ..kernels.rows import FLOAT_C, arg_fold, fold, map_row, over_row, over_rows
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

    # --- codegen ------------------------------------------------------------------------------------
    def row(self, ctx: KernelContext, node: Node, axes: tuple[int, ...], row: dict[int, Expr]) -> list[str]:
        """C statements normalizing one row (the elements along `axes` at `row`) and storing it."""
        raise NotImplementedError

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per row (one parallel loop over rows), the passes of `row`, the last storing every element."""
        x = node.inputs[0]
        if not x.shape or ctype(x.dtype) not in FLOAT_C:
            return None
        axis = self._axis(node, len(x.shape))
        axes = (axis,) if node.opset >= SINGLE_AXIS_SINCE else tuple(range(axis, len(x.shape)))
        return over_rows(ctx, x.shape, axes, lambda row: self.row(ctx, node, axes, row),
                         self.flops_per_element * x.numel)

    @staticmethod
    def row_max(ctx: KernelContext, node: Node, axes: tuple[int, ...],
                row: dict[int, Expr]) -> tuple[list[str], Var]:
        """Statements finding the row's maximum into a local, and that local (a NaN anywhere in the row makes
        the whole row NaN through the sum, whichever maximum this finds)."""
        ct = ctype(node.inputs[0].dtype)
        peak = Var("peak", ct)
        return fold(ctx, node.inputs[0].shape, axes, row, peak, lit(-np.inf, ct),
                    lambda x: select(binary(">", x, peak), x, peak), combine="max"), peak

    @staticmethod
    def row_sum_exp(ctx: KernelContext, node: Node, axes: tuple[int, ...], row: dict[int, Expr],
                    peak: Var) -> tuple[list[str], Var]:
        """Statements summing exp(x - peak) over the row into a local, and that local."""
        total = Var("total", peak.ctype)
        return fold(ctx, node.inputs[0].shape, axes, row, total, lit(0, peak.ctype),
                    lambda x: total + call("exp", x - peak), combine="+"), total

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

    saved_row_max: ClassVar[int] = 8192   # rows up to this long keep their exponentials in a local array

    def row(self, ctx: KernelContext, node: Node, axes: tuple[int, ...], row: dict[int, Expr]) -> list[str]:
        """Max pass, sum-of-exp pass, then exp(x - max) / sum per element. Rows that fit a local array read the
        input once (the max pass keeps each x, so a fused producer is evaluated once, not twice) and keep each
        exp from the sum pass, so the last pass divides instead of computing exp again."""
        shape = node.inputs[0].shape
        extents = [shape[a] for a in axes]
        if numel(extents) > self.saved_row_max:
            peak_lines, peak = self.row_max(ctx, node, axes, row)
            sum_lines, total = self.row_sum_exp(ctx, node, axes, row, peak)
            return peak_lines + sum_lines + map_row(ctx, shape, axes, row,
                                                    lambda x, index: call("exp", x - peak) / total)
        ct = ctype(node.inputs[0].dtype)
        peak, total, x, e = Var("peak", ct), Var("total", ct), Var("x", ct), Var("e", ct)

        def saved(index: Index) -> Expr:
            return Load("saved", linear([index[a] for a in axes], extents), ct)

        def keep_x(index: Index) -> list[str]:
            return ctx.value(x.name, ctx.read(0, index)) + [
                f"{ctx.c(saved(index))} = {x.name};", f"{peak.name} = {ctx.c(select(binary('>', x, peak), x, peak))};"]

        def keep_exp(index: Index) -> list[str]:
            return ctx.value(e.name, call("exp", saved(index) - peak)) + [
                f"{ctx.c(saved(index))} = {e.name};", f"{total.name} = {ctx.c(total + e)};"]
        lines = [local_array(ct, "saved", numel(extents)), f"{ct} {peak.name} = {ctx.c(lit(-np.inf, ct))};"]
        lines += over_row(ctx, shape, axes, row, keep_x, f"reduction(max:{peak.name})")
        lines += [f"{ct} {total.name} = {ctx.c(lit(0, ct))};"]
        lines += over_row(ctx, shape, axes, row, keep_exp, f"reduction(+:{total.name})")
        return lines + map_row(ctx, shape, axes, row, lambda _, index: saved(index) / total)


@register
class LogSoftmax(AxisNormalizer):
    """x - log(sum(exp(x))) along the axis, shifted by the maximum for stability."""

    op_type = "LogSoftmax"
    flops_per_element = 5   # max, subtract, exp, sum, subtract (the log is per row)

    def fn(self, x: np.ndarray, axis: int) -> np.ndarray:
        shifted = x - np.max(x, axis=axis, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))

    def row(self, ctx: KernelContext, node: Node, axes: tuple[int, ...], row: dict[int, Expr]) -> list[str]:
        peak_lines, peak = self.row_max(ctx, node, axes, row)
        sum_lines, total = self.row_sum_exp(ctx, node, axes, row, peak)
        log_total = Var("log_total", peak.ctype)
        return peak_lines + sum_lines + ctx.value(log_total.name, call("log", total)) + map_row(
            ctx, node.inputs[0].shape, axes, row, lambda x, index: (x - peak) - log_total)


@register
class Hardmax(AxisNormalizer):
    """1 at the first maximum along the axis, 0 elsewhere."""

    op_type = "Hardmax"

    def fn(self, x: np.ndarray, axis: int) -> np.ndarray:
        first = np.expand_dims(np.argmax(x, axis=axis), axis)
        y = np.zeros_like(x)
        np.put_along_axis(y, first, 1, axis=axis)
        return y

    def row(self, ctx: KernelContext, node: Node, axes: tuple[int, ...], row: dict[int, Expr]) -> list[str]:
        x = node.inputs[0]
        ct = ctype(x.dtype)
        extents = [x.shape[a] for a in axes]

        def position(index: Index) -> Expr:
            return linear([index[a] for a in axes], extents)
        lines, pos = arg_fold(ctx, x.shape, axes, row, True, lambda index: (index, position(index)))
        one, zero = lit(1, ct), lit(0, ct)
        return lines + map_row(ctx, x.shape, axes, row,
                               lambda v, index: select(binary("==", position(index), pos), one, zero))
