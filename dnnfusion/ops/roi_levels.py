"""RoiAlignLevels: the rows that a Gather picks out of RoiAligns stacked by a Concat, computed alone.

A feature-pyramid detector's exported pooler (torchvision's MultiScaleRoIAlign, Faster and Mask R-CNN) runs
RoiAlign on every level for every roi, stacks the results and gathers each roi's row from its own level: three
quarters of the work thrown away. `RoiAlign.picked_rows` (asked by passes/structural.py's `pick_rows_first`)
replaces the three steps by this operator, which pools each picked (level, roi) once."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..ir.graph import Node, Value
from ..kir.kernel import KernelContext, indent, parallel_for
from .base import Inferred, PickedRows, TensorType, shape_of
from .detection import BILINEAR_TAPS, INTERNAL, LEVELS, RoiAlign, channels_last_copy
from .indexing import wrap_indices
from .registry import register
from .shape_ops import wrapped


@register
class RoiAlignLevels(RoiAlign):
    """Inputs: the maps X_0 .. X_{L-1} (one per level, the same channels), rois [R, 4], batch_indices [R] and
    picks [K]; attributes: RoiAlign's, with `spatial_scales` (one per level) for spatial_scale. Output row k is
    RoiAlign of roi (picks[k] mod R) over level (picks[k] div R) at that level's scale: Gather(Concat(RoiAlign
    per level), picks). A negative pick counts from the end (L * R); generated code clamps picks out of range,
    as its Gather does."""

    op_type = LEVELS
    domain = INTERNAL

    def levels(self, node: Node) -> int:
        return len(self.scales(node))

    def scales(self, node: Node) -> list[float]:
        scales = [float(s) for s in node.attr("spatial_scales", [])]
        if not scales or len(node.inputs) != len(scales) + 3:
            raise self.invalid(node, f"needs one spatial scale per map: {len(scales)} scales, "
                                     f"{len(node.inputs) - 3} maps")
        return scales

    def infer(self, node: Node) -> list[Inferred]:
        levels = self.levels(node)
        maps = [shape_of(node, i) for i in range(levels)]
        rois, indices, picks = (shape_of(node, levels + k) for k in range(3))
        if any(len(x) != 4 or x[:2] != maps[0][:2] for x in maps):
            raise self.invalid(node, f"the maps must be [N, C, H, W] with one N and C, not {maps}")
        if len(rois) != 2 or rois[1] != 4 or tuple(indices) != (rois[0],) or len(picks) != 1:
            raise self.invalid(node, f"rois {rois}, batch_indices {indices} and picks {picks} must be [R, 4], [R] "
                                     "and [K]")
        self._mode(node)
        self._half_pixel(node)
        return [TensorType(node.inputs[0].dtype, (picks[0], maps[0][1], *self._output_size(node)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        levels, scales = self.levels(node), self.scales(node)
        rois, indices = inputs[levels], inputs[levels + 1]
        picks = wrap_indices(node, inputs[levels + 2], levels * len(rois))
        level, row = np.divmod(picks, max(len(rois), 1))
        out_h, out_w = self._output_size(node)
        y = np.zeros((len(picks), inputs[0].shape[1], out_h, out_w))
        for k in range(levels):
            chosen = np.flatnonzero(level == k)
            y[chosen] = self.pooled(node, inputs[k], rois[row[chosen]], indices[row[chosen]], scales[k])
        return [y.astype(inputs[0].dtype)]

    def picked_rows(self, nodes: list[Node], picks: Value) -> PickedRows | None:
        """Its own rows are picked already (RoiAlign's rewrite does not apply to it)."""
        return None

    def flops(self, node: Node) -> int:
        ratio = int(node.attr("sampling_ratio", 1)) or 1
        return 2 * BILINEAR_TAPS * ratio * ratio * node.outputs[0].numel

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Each level copied channels-last once (`channels_last_copy`), then per picked row its level and roi,
        and that roi's bins over that level's copy (RoiAlign's `_roi_bins`, one branch per level)."""
        if not self.channels_last(node):
            return None
        levels, scales = self.levels(node), self.scales(node)
        rois = shape_of(node, levels)[0]
        lines, copies = [], []
        for k in range(levels):
            copy_lines, copy = channels_last_copy(ctx, k, shape_of(node, k))
            lines += copy_lines
            copies.append(copy)
        r = ctx.var("r")
        body = ctx.value("roi_in", wrapped(ctx.read(levels + 2, (r,)), levels * rois)) + [
            f"const int64_t roi_r = roi_in % {rois};",
            f"switch (roi_in / {rois}) {{"]
        for k in range(levels):
            bins = self._roi_bins(node, ctx, copies[k], shape_of(node, k), scales[k], (levels, levels + 1), r)
            body += [f"case {k}: {{", *indent(bins), "  break;", "}"]
        body.append("}")
        return lines + parallel_for(r, node.outputs[0].shape[0], body, self.flops(node))

    def onnx_body(self, node: Node) -> list[Any]:
        """One RoiAlign per level over every roi, their Concat, and the Gather of the picked rows (the
        coordinate transformation named only where it is not RoiAlign's only one before opset 16)."""
        from onnx import helper  # noqa: PLC0415

        levels, scales = self.levels(node), self.scales(node)
        names = [v.name for v in node.inputs]
        rois, indices, picks = names[levels:levels + 3]
        attrs = {key: value for key, value in node.attrs.items() if key != "spatial_scales" and
                 (key, value) != ("coordinate_transformation_mode", "output_half_pixel")}
        pooled = [f"{node.name}_level{k}" for k in range(levels)]
        nodes = [helper.make_node("RoiAlign", [names[k], rois, indices], [pooled[k]], spatial_scale=scales[k], **attrs)
                 for k in range(levels)]
        nodes.append(helper.make_node("Concat", pooled, [f"{node.name}_stacked"], axis=0))
        nodes.append(helper.make_node("Gather", [f"{node.name}_stacked", picks], [node.outputs[0].name], axis=0))
        return nodes

