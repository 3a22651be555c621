"""Object-detection operators: NonMaxSuppression and RoiAlign (Many-to-Many)."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from ..kir.emit import literal
from ..kir.expr import INDEX, Cast, Load, Var, ctype, lit
from ..kir.kernel import KernelContext, fits_stack, local_array, parallel_for, serial_for
from ..ir.graph import Node, Value
from .base import Inferred, MappingType, Op, PickedRows, TensorType, shape_of
from .registry import register

IOU_FLOPS = 10     # intersection, union and the ratio for one pair of boxes
INTERNAL = "ai.dnnfusion"   # the domain of operators the compiler makes for itself
BILINEAR_TAPS = 4
LEVELS = "RoiAlignLevels"      # the operator for picked rows of RoiAligns per pyramid level (roi_levels.py)
CHANNELS_LAST_MAX_RATIO = 4   # sampling ratios whose taps per bin (ratio^2 x 4) the channels-last kernel unrolls


@register
class NonMaxSuppression(Op):
    """Greedy per-batch, per-class selection of high-scoring boxes that overlap less than an IoU threshold."""

    op_type = "NonMaxSuppression"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        boxes, scores = shape_of(node, 0), shape_of(node, 1)
        if len(boxes) != 3 or boxes[2] != 4:
            raise self.invalid(node, f"boxes must have shape [batch, boxes, 4], not {boxes}")
        if len(scores) != 3 or scores[0] != boxes[0] or scores[2] != boxes[1]:
            raise self.invalid(node, f"scores must have shape [batch, classes, boxes] = [{boxes[0]}, C, {boxes[1]}], "
                                     f"not {scores}")
        self._center_point_box(node)
        return [TensorType(np.dtype(np.int64), (None, 3))]   # how many boxes survive depends on the data

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        boxes, scores = inputs[0], inputs[1]
        limit = _scalar(inputs, 2, 0)
        iou_threshold = _scalar(inputs, 3, 0.0)
        score_threshold = _scalar(inputs, 4, None)
        corners = _corners(boxes.astype(np.float64), self._center_point_box(node))
        selected = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                for box in select_boxes(corners[b], scores[b, c], int(limit), float(iou_threshold), score_threshold):
                    selected.append((b, c, box))
        return [np.array(selected, dtype=np.int64).reshape(-1, 3)]

    def flops(self, node: Node) -> int:
        """Worst case: every pair of boxes compared once per batch and class."""
        batch, classes, count = shape_of(node, 1)
        return IOU_FLOPS * batch * classes * count * count

    def padded(self, node: Node) -> tuple[str, str] | None:
        """With a constant max_output_boxes_per_class the result has a static bound (NonMaxSuppressionPadded)."""
        limit = node.input(2)
        return (NonMaxSuppressionPadded.op_type, INTERNAL) if limit is None or limit.const is not None else None

    def _center_point_box(self, node: Node) -> bool:
        flag = node.attr("center_point_box", 0)
        if flag not in (0, 1):
            raise self.invalid(node, f"center_point_box must be 0 or 1, not {flag}")
        return bool(flag)


@register
class NonMaxSuppressionPadded(NonMaxSuppression):
    """NonMaxSuppression with static outputs: the selected [batch, class, box] triples followed by zero rows up
    to the most that can be selected (batch * classes * min(limit, boxes)), and how many rows are valid. The
    padded-extents rewrite (passes/padded.py) makes it, so that detection heads run as generated code."""

    op_type = "NonMaxSuppressionPadded"
    domain = INTERNAL

    def padded(self, node: Node) -> tuple[str, str] | None:
        return None

    def bound(self, node: Node) -> int:
        """The most rows NonMaxSuppression can select, given a constant limit per class."""
        batch, classes, count = shape_of(node, 1)
        limit = node.input(2)
        per_class = int(limit.const.reshape(-1)[0]) if limit is not None and limit.const.size else 0
        return batch * classes * min(max(per_class, 0), count)

    def infer(self, node: Node) -> list[Inferred]:
        super().infer(node)
        limit = node.input(2)
        if limit is not None and limit.const is None:
            raise self.invalid(node, "max_output_boxes_per_class must be a constant to bound the output")
        return [TensorType(np.dtype(np.int64), (self.bound(node), 3)), TensorType(np.dtype(np.int64), ())]

    def onnx_body(self, node: Node) -> list:
        """NonMaxSuppression, then Pad its rows up to the bound; the count is the row count (Shape)."""
        from onnx import helper, numpy_helper  # noqa: PLC0415

        def const(name: str, array: np.ndarray):
            return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))

        selected, count = (v.name for v in node.outputs)
        names = [v.name if v is not None else "" for v in node.inputs]
        return [helper.make_node("NonMaxSuppression", names, ["nms_raw"], **node.attrs),
                helper.make_node("Shape", ["nms_raw"], ["nms_shape"]),
                const("nms_first", np.array([0], np.int64)),
                helper.make_node("Gather", ["nms_shape", "nms_first"], ["nms_rows"]),
                const("nms_scalar", np.array([], np.int64)),
                helper.make_node("Reshape", ["nms_rows", "nms_scalar"], [count]),
                const("nms_bound", np.array([self.bound(node)], np.int64)),
                helper.make_node("Sub", ["nms_bound", "nms_rows"], ["nms_missing"]),
                const("nms_zeros", np.zeros(2, np.int64)),
                const("nms_zero", np.zeros(1, np.int64)),
                helper.make_node("Concat", ["nms_zeros", "nms_missing", "nms_zero"], ["nms_pads"], axis=0),
                helper.make_node("Pad", ["nms_raw", "nms_pads"], [selected])]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        selected = super().compute(node, *inputs)[0]
        padded = np.zeros((self.bound(node), 3), np.int64)
        padded[:len(selected)] = selected
        return [padded, np.array(len(selected), np.int64)]

    def kernel(self, node: Node, ctx: KernelContext) -> list[str] | None:
        """Per batch: corners in double; per class: candidates above the score threshold, stable merge sort by
        score (NaN last), then greedy selection against the boxes kept so far; zero rows pad the rest."""
        if ctype(node.inputs[0].dtype) not in ("float", "double") or ctype(node.inputs[1].dtype) not in ("float", "double"):
            return None
        batch, count = shape_of(node, 0)[:2]
        classes = shape_of(node, 1)[1]
        limit = min(self.bound(node) // max(batch * classes, 1), count)
        corners, scores = ctx.scratch("double", count * 4), ctx.scratch("double", count)
        order, spare = ctx.scratch(INDEX, count), ctx.scratch(INDEX, count)
        b, c, n, k = ctx.var("nb"), ctx.var("nc"), ctx.var("nn"), ctx.var("nk")
        zero = lit(0, INDEX)

        def scalar(i: int, default: str) -> tuple[list[str], str]:
            v = node.input(i)
            if v is None or v.numel == 0:
                return [], default
            name = f"nms_t{i}"
            return ctx.value(name, Cast(ctx.read(i, tuple(zero for _ in v.shape)), "double")), name

        lines, iou_limit = scalar(3, "0.0")
        more, score_limit = scalar(4, "")
        lines += more + ["int64_t nms_total = 0;"]
        loads = []
        for j in range(4):
            loads += ctx.value(f"nms_p{j}", Cast(ctx.read(0, (b, n, lit(j, INDEX))), "double"))
        if node.attr("center_point_box", 0):
            convert = [f"{corners}[{n.name} * 4 + {j}] = nms_p{j % 2} {'-+'[j // 2]} nms_p{j % 2 + 2} / 2.0;"
                       for j in range(4)]
        else:
            convert = [f"{corners}[{n.name} * 4 + {j}] = NMS_PICK(nms_p{j % 2}, nms_p{j % 2 + 2}, {'<>'[j // 2]});"
                       for j in range(4)]
        score = ctx.value("nms_s", Cast(ctx.read(1, (b, c, n)), "double"))
        keep_score = f"!({score_limit} < nms_s) ? 0 : " if score_limit else ""
        candidates = score + [f"{scores}[{n.name}] = nms_s;",
                              f"if ({keep_score}1) {order}[nms_m++] = {n.name};"]
        select = [f"if (nms_total - nms_first >= {limit}) break;",
                  f"const int64_t nms_i = {order}[{k.name}];", "int nms_keep = 1;",
                  "for (int64_t nms_q = nms_first; nms_q < nms_total && nms_keep; ++nms_q) {",
                  "  const int64_t nms_j = nms_rows[nms_q];",
                  f"  if (nms_iou({corners} + 4 * nms_i, {corners} + 4 * nms_j) > {iou_limit}) nms_keep = 0;",
                  "}",
                  "if (nms_keep) {",
                  "  nms_rows[nms_total] = nms_i;"]
        select += ["  " + line for line in ctx.store(0, (Var("nms_total"), lit(0, INDEX)), b)]
        select += ["  " + line for line in ctx.store(0, (Var("nms_total"), lit(1, INDEX)), c)]
        select += ["  " + line for line in ctx.store(0, (Var("nms_total"), lit(2, INDEX)), Var("nms_i"))]
        select += ["  ++nms_total;", "}"]
        per_class = ["int64_t nms_m = 0;", "const int64_t nms_first = nms_total;"] + \
            serial_for(n, count, candidates) + \
            [f"nms_sort({order}, {spare}, nms_m, {scores});"] + serial_for(k, "nms_m", select)
        lines += serial_for(b, batch, serial_for(n, count, loads + convert) + serial_for(c, classes, per_class))
        pad = ctx.store(0, (Var("nms_r"), lit(0, INDEX)), zero) + ctx.store(0, (Var("nms_r"), lit(1, INDEX)), zero) + \
            ctx.store(0, (Var("nms_r"), lit(2, INDEX)), zero)
        lines += [f"for (int64_t nms_r = nms_total; nms_r < {self.bound(node)}; ++nms_r) {{"] + \
            ["  " + line for line in pad] + ["}"]
        lines += ctx.store(1, (), Var("nms_total"))
        rows = ctx.scratch(INDEX, max(self.bound(node), 1))
        ctx.helper("NMS_PICK", NMS_PICK)
        ctx.helper("nms_iou", NMS_IOU)
        ctx.helper("nms_sort", NMS_SORT)
        return [f"int64_t *nms_rows = {rows};"] + lines


NMS_PICK = """\
/* numpy's minimum / maximum (NaN propagates) of two corners: op is < for the minimum, > for the maximum. */
#define NMS_PICK(a, b, op) (((a) != (a) || (a) op (b)) ? (a) : (b))
"""

NMS_IOU = """\
/* Intersection over union of two [x1, y1, x2, y2] boxes in double; 0 for empty boxes (as the reference). */
static double nms_iou(const double* p, const double* q) {
  const double lo0 = NMS_PICK(p[0], q[0], >), lo1 = NMS_PICK(p[1], q[1], >);
  const double hi0 = NMS_PICK(p[2], q[2], <), hi1 = NMS_PICK(p[3], q[3], <);
  const double s0 = hi0 - lo0, s1 = hi1 - lo1;
  const double inter = (s0 > 0 && s1 > 0) ? s0 * s1 : 0.0;
  const double area = (p[2] - p[0]) * (p[3] - p[1]), areas = (q[2] - q[0]) * (q[3] - q[1]);
  const double uni = area + areas - inter;
  return (inter > 0 && area > 0 && areas > 0 && uni > 0) ? inter / uni : 0.0;
}
"""

NMS_SORT = """\
/* Stable bottom-up merge sort of box indices by score, highest first, NaN last (numpy's argsort(-s)). */
static void nms_sort(int64_t* order, int64_t* spare, int64_t n, const double* s) {
  for (int64_t width = 1; width < n; width *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * width) {
      int64_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
      int64_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        const double a = s[order[i]], b = s[order[j]];
        const int b_first = b == b && (a != a || b > a);
        spare[k++] = b_first ? order[j++] : order[i++];
      }
      while (i < mid) spare[k++] = order[i++];
      while (j < hi) spare[k++] = order[j++];
    }
    memcpy(order, spare, sizeof(int64_t) * n);
  }
}
"""


def select_boxes(corners: np.ndarray, scores: np.ndarray, limit: int, iou_threshold: float,
                 score_threshold: float | None) -> list[int]:
    """Indices kept by greedy NMS for one class: highest score first (ties: lower index first)."""
    order = np.argsort(-scores, kind="stable")
    if score_threshold is not None:
        order = order[scores[order] > score_threshold]
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best, order = order[0], order[1:]
        kept.append(int(best))
        order = order[~(iou(corners[best], corners[order]) > iou_threshold)]
    return kept


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one [x1, y1, x2, y2] box with each of `others`; 0 for empty boxes."""
    lo = np.maximum(box[:2], others[:, :2])
    hi = np.minimum(box[2:], others[:, 2:])
    sides = hi - lo
    inter = np.where((sides > 0).all(axis=1), sides.prod(axis=1), 0.0)
    area = (box[2:] - box[:2]).prod()
    areas = (others[:, 2:] - others[:, :2]).prod(axis=1)
    union = area + areas - inter
    valid = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    return np.where(valid, inter / np.where(valid, union, 1.0), 0.0)


def _corners(boxes: np.ndarray, center_point_box: bool) -> np.ndarray:
    """Boxes as [min, min, max, max] corners, from either corner format or [xc, yc, w, h]."""
    if center_point_box:
        half = boxes[..., 2:] / 2
        return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)
    a, b = boxes[..., :2], boxes[..., 2:]
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=-1)


def _scalar(inputs: Sequence[np.ndarray | None], i: int, default: float | None) -> float | None:
    """The single value of an optional scalar input (given as a scalar or a 1-element tensor)."""
    a = inputs[i] if i < len(inputs) else None
    return default if a is None or a.size == 0 else a.reshape(-1)[0].item()


class _Samples(NamedTuple):
    """Bilinear sampling along one axis of a RoiAlign: per (bin, sample), two taps and their weights."""

    low: np.ndarray      # (bins, samples) int
    high: np.ndarray
    w_low: np.ndarray    # (bins, samples) float, zero for samples outside the map
    w_high: np.ndarray


@register
class RoiAlign(Op):
    """Pools a fixed-size feature map per region of interest by averaging (or max of) bilinear samples."""

    op_type = "RoiAlign"
    mapping = MappingType.MANY_TO_MANY

    def infer(self, node: Node) -> list[Inferred]:
        x, rois, indices = shape_of(node, 0), shape_of(node, 1), shape_of(node, 2)
        if len(x) != 4:
            raise self.invalid(node, f"X must be 4-D [N, C, H, W], not {x}")
        if len(rois) != 2 or rois[1] != 4 or tuple(indices) != (rois[0],):
            raise self.invalid(node, f"rois {rois} and batch_indices {indices} must be [R, 4] and [R]")
        self._mode(node)
        self._half_pixel(node)
        return [TensorType(node.inputs[0].dtype, (rois[0], x[1], *self._output_size(node)))]

    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        return [self.pooled(node, x, inputs[1], inputs[2], self._scale(node)).astype(x.dtype)]

    def pooled(self, node: Node, x: np.ndarray, rois: np.ndarray, indices: np.ndarray, scale: float) -> np.ndarray:
        """Each roi's bins over the map x at `scale`, in float64 (the reference arithmetic)."""
        out_h, out_w = self._output_size(node)
        y = np.zeros((len(rois), x.shape[1], out_h, out_w))
        for r, (roi, b) in enumerate(zip(rois.astype(np.float64), indices)):
            if not 0 <= b < x.shape[0]:
                raise self.invalid(node, f"batch index {b} of roi {r} is out of range for {x.shape[0]} images")
            ys, xs = self._samples(node, roi, x.shape[2:], scale)
            if ys.low.shape[1] and xs.low.shape[1]:
                y[r] = _pool_max(x[b], ys, xs) if self._mode(node) == "max" else _pool_avg(x[b], ys, xs)
        return y

    def flops(self, node: Node) -> int:
        """Two per bilinear tap per sample; adaptive sampling is counted as if the region covered the map."""
        _, _, height, width = shape_of(node, 0)
        out_h, out_w = self._output_size(node)
        ratio = node.attr("sampling_ratio", 0)
        samples = ratio * ratio if ratio > 0 else math.ceil(height / out_h) * math.ceil(width / out_w)
        return 2 * BILINEAR_TAPS * samples * node.outputs[0].numel

    def kernel(self, node: Node, ctx: KernelContext) -> list[str]:
        """Per (roi, channel): the roi's bins and sample counts from its loaded corners (adaptive counts are
        computed at run time), then per bin the mean or the max of its bilinear samples, in double. Averages
        over a fixed sampling ratio take `_channels_last_kernel` instead."""
        if self.channels_last(node):
            return self._channels_last_kernel(node, ctx)
        images, channels, height, width = shape_of(node, 0)
        rois = shape_of(node, 1)[0]
        out_h, out_w = self._output_size(node)
        rc, ph, pw, iy, ix = (ctx.var(h) for h in ("rc", "ph", "pw", "sy", "sx"))
        r, c, b = Var("roi_r"), Var("roi_c"), Var("roi_b")
        lines = [f"const int64_t roi_r = {rc.name} / {channels};", f"const int64_t roi_c = {rc.name} % {channels};"]
        lines += self._roi_plan(node, ctx, self._scale(node), (1, 2))
        lines.append(f"const int roi_ok = roi_b >= 0 && roi_b < {images} && ry_count > 0 && rx_count > 0;")
        corners = []
        for name, y, x in (("ll", "ry_lo", "rx_lo"), ("lh", "ry_lo", "rx_hi"), ("hl", "ry_hi", "rx_lo"),
                           ("hh", "ry_hi", "rx_hi")):
            corners += ctx.value(f"roi_{name}", Cast(ctx.read(0, (b, c, Var(y), Var(x))), "double"))
        if self._mode(node) == "max":
            init, finish = "-INFINITY", "roi_acc"
            update = ["double roi_w = roi_ll * (wy_lo * wx_lo);"]
            for name, wy, wx in (("lh", "wy_lo", "wx_hi"), ("hl", "wy_hi", "wx_lo"), ("hh", "wy_hi", "wx_hi")):
                update += [f"const double roi_w{name} = roi_{name} * ({wy} * {wx});",
                           f"if (roi_w{name} > roi_w || roi_w{name} != roi_w{name}) roi_w = roi_w{name};"]
            update.append("if (!(roi_acc != roi_acc) && (roi_w > roi_acc || roi_w != roi_w)) roi_acc = roi_w;")
        else:
            init, finish = "0.0", "roi_acc / (double)(ry_count * rx_count)"
            update = ["roi_acc += wy_lo * wx_lo * roi_ll + wy_lo * wx_hi * roi_lh + wy_hi * wx_lo * roi_hl"
                      " + wy_hi * wx_hi * roi_hh;"]
        ratio = node.attr("sampling_ratio", 0)
        if ratio > 0:        # the taps of every (bin, sample) along each axis, once per (roi, channel)
            lines += _tap_table("y", ph, iy, out_h, ratio, height) + _tap_table("x", pw, ix, out_w, ratio, width)
            y_taps, x_taps = _table_taps("y", ph, iy, ratio), _table_taps("x", pw, ix, ratio)
        else:
            y_taps, x_taps = _roi_taps("y", iy, ph, height), _roi_taps("x", ix, pw, width)
        samples = serial_for(iy, "ry_count", y_taps + serial_for(ix, "rx_count", x_taps + corners + update))
        body = [f"double roi_acc = {init};", "if (roi_ok) {"] + ["  " + line for line in samples] + ["}"]
        body += [f"const double roi_res = roi_ok ? {finish} : 0.0;"]
        body += ctx.store(0, (r, c, ph, pw), Cast(Var("roi_res", "double"), ctype(node.outputs[0].dtype)))
        lines += serial_for(ph, out_h, serial_for(pw, out_w, body))
        return parallel_for(rc, rois * channels, lines, self.flops(node))

    def picked_rows(self, nodes: list[Node], picks: Value) -> PickedRows | None:
        """RoiAligns over the same rois with the same attributes but for their scales (a feature pyramid's
        levels), each kernel channels-last: one RoiAlignLevels computing only the picked (level, roi) rows."""
        def unscaled(n: Node) -> dict:
            return {key: value for key, value in n.attrs.items() if key != "spatial_scale"}
        first = nodes[0]
        attrs = unscaled(first)
        if any(n.op_type != first.op_type or n.domain != first.domain or n.inputs[1:] != first.inputs[1:] or
               unscaled(n) != attrs or
               self._half_pixel(n) != self._half_pixel(first) or not self.channels_last(n) for n in nodes):
            return None
        maps = [n.inputs[0] for n in nodes]
        if any(m.shape is None or tuple(m.shape[:2]) != tuple(maps[0].shape[:2]) for m in maps) or \
                picks.dtype is None or not np.issubdtype(picks.dtype, np.integer):
            return None
        # spelled out: RoiAlign's default transformation depends on the opset of the model it came from
        attrs["coordinate_transformation_mode"] = "half_pixel" if self._half_pixel(first) else "output_half_pixel"
        attrs["spatial_scales"] = [self._scale(n) for n in nodes]
        return PickedRows(LEVELS, INTERNAL, [*maps, first.inputs[1], first.inputs[2], picks], attrs)

    def channels_last(self, node: Node) -> bool:
        """Whether `_channels_last_kernel` runs this node: averages over a fixed sampling ratio of float32
        channels that fit a stack row."""
        return self._mode(node) == "avg" and 0 < node.attr("sampling_ratio", 0) <= CHANNELS_LAST_MAX_RATIO and \
            ctype(node.outputs[0].dtype) == "float" and fits_stack(shape_of(node, 0)[1])

    def _channels_last_kernel(self, node: Node, ctx: KernelContext) -> list[str]:
        """Averages over a fixed sampling ratio with every channel in the vector lanes: the input is first
        copied channels-last (its fused producers applied), so that a bilinear tap of all channels is one
        contiguous run; then per roi its taps are planned once (offsets into the copy, weights with the
        1 / samples of the mean folded in, from the same double arithmetic as the per-channel kernel) and
        each bin sums its samples' taps for all channels at once into a stack row, stored down the channels.
        Faster R-CNN's 1000 rois x 256 channels at 64 x 64, 2 threads: 97 ms as one task per (roi, channel),
        10 ms so."""
        rois = shape_of(node, 1)[0]
        lines, copy = channels_last_copy(ctx, 0, shape_of(node, 0))
        r = ctx.var("r")
        body = [f"const int64_t roi_r = {r.name};"] + self._roi_bins(node, ctx, copy, shape_of(node, 0),
                                                                     self._scale(node), (1, 2), Var("roi_r"))
        return lines + parallel_for(r, rois, body, self.flops(node))

    def _roi_bins(self, node: Node, ctx: KernelContext, copy: str, shape: Sequence[int], scale: float,
                  inputs: tuple[int, int], row: Var) -> list[str]:
        """C for roi `roi_r` (its corners and image from inputs `inputs`: rois, batch indices) over the
        channels-last `copy` of a map of `shape` at `scale`: every bin's mean of its taps for all channels,
        stored as output row `row`."""
        images, channels, height, width = shape
        out_h, out_w = self._output_size(node)
        ratio = int(node.attr("sampling_ratio", 0))
        taps = ratio * ratio * BILINEAR_TAPS
        c, ph, pw, iy, ix = (ctx.var(h) for h in ("c", "ph", "pw", "sy", "sx"))
        body = self._roi_plan(node, ctx, scale, inputs)
        body.append(f"const int roi_ok = roi_b >= 0 && roi_b < {images};")
        body += _tap_table("y", ph, iy, out_h, ratio, height) + _tap_table("x", pw, ix, out_w, ratio, width)
        body += [f"int64_t roi_off[{taps}];", f"float roi_w[{taps}];", local_array("float", "roi_sum", channels)]
        plan = _table_taps("y", ph, iy, ratio) + _table_taps("x", pw, ix, ratio) + [
            f"const int64_t roi_at = ({iy.name} * {ratio} + {ix.name}) * {BILINEAR_TAPS};",
            f"const int64_t roi_base = (roi_ok ? roi_b : 0) * {height};"]
        corners = [(y, x) for y in ("lo", "hi") for x in ("lo", "hi")]
        for t, (y, x) in enumerate(corners):
            plan += [f"roi_off[roi_at + {t}] = ((roi_base + ry_{y}) * {width} + rx_{x}) * {channels};",
                     f"roi_w[roi_at + {t}] = (float)(wy_{y} * wx_{x} / {ratio * ratio}.0);"]
        total = " + ".join(f"roi_w[{t}] * {copy}[roi_off[{t}] + {c.name}]" for t in range(taps))
        bin_body = serial_for(iy, ratio, serial_for(ix, ratio, plan))
        bin_body += serial_for(c, channels, [f"roi_sum[{c.name}] = roi_ok ? {total} : 0.0f;"], simd=True)
        bin_body += serial_for(c, channels, ctx.store(0, (row, c, ph, pw), Load("roi_sum", c, "float")))
        return body + serial_for(ph, out_h, serial_for(pw, out_w, bin_body))

    def _roi_plan(self, node: Node, ctx: KernelContext, scale: float, inputs: tuple[int, int]) -> list[str]:
        """C for roi `roi_r`: its image `roi_b`, its corners `roi_p0..3` (in double, from inputs `inputs`: rois,
        batch indices) and each axis's plan at `scale`."""
        r = Var("roi_r")
        out_h, out_w = self._output_size(node)
        lines = ctx.value("roi_b", Cast(ctx.read(inputs[1], (r,)), INDEX))
        for k in range(4):
            lines += ctx.value(f"roi_p{k}", Cast(ctx.read(inputs[0], (r, lit(k, INDEX))), "double"))
        return lines + self._axis_plan(node, "y", "roi_p1", "roi_p3", out_h, scale) + \
            self._axis_plan(node, "x", "roi_p0", "roi_p2", out_w, scale)

    def _axis_plan(self, node: Node, axis: str, start: str, end: str, bins: int, scale: float) -> list[str]:
        """C for one axis of a roi (as `_samples`): its start at `scale`, bin size and sample count per bin."""
        half_pixel = self._half_pixel(node)
        factor = literal(lit(scale, "double"))
        offset = " - 0.5" if half_pixel else ""
        ratio = node.attr("sampling_ratio", 0)
        a = f"r{axis}"
        length = f"{a}_end - {a}_start" if half_pixel else f"fmax({a}_end - {a}_start, 1.0)"
        count = str(ratio) if ratio > 0 else f"(int64_t)fmax(ceil({a}_length / {bins}.0), 0.0)"
        return [f"const double {a}_start = {start} * {factor}{offset};",
                f"const double {a}_end = {end} * {factor}{offset};",
                f"const double {a}_length = {length};", f"const int64_t {a}_count = {count};",
                f"const double {a}_bin = {a}_length / {bins}.0;"]

    def _samples(self, node: Node, roi: np.ndarray, size: tuple, scale: float) -> tuple[_Samples, _Samples]:
        """Sampling plans along y and x for one region [x1, y1, x2, y2] of a map at `scale`."""
        offset = 0.5 if self._half_pixel(node) else 0.0
        scaled = roi * scale - offset
        bins_h, bins_w = self._output_size(node)
        ratio = node.attr("sampling_ratio", 0)
        plans = []
        for start, end, extent, bins in ((scaled[1], scaled[3], size[0], bins_h),
                                         (scaled[0], scaled[2], size[1], bins_w)):
            length = end - start if offset else max(end - start, 1.0)   # output_half_pixel forces >= 1
            count = ratio if ratio > 0 else max(int(np.ceil(length / bins)), 0)
            plans.append(_axis_samples(start, length / bins, bins, count, extent))
        return plans[0], plans[1]

    def _scale(self, node: Node) -> float:
        """The node's spatial_scale: map coordinates per roi coordinate."""
        return float(node.attr("spatial_scale", 1.0))

    def _output_size(self, node: Node) -> tuple[int, int]:
        size = (int(node.attr("output_height", 1)), int(node.attr("output_width", 1)))
        if min(size) < 1:
            raise self.invalid(node, f"output_height/output_width {size} must be positive")
        return size

    def _mode(self, node: Node) -> str:
        mode = node.attr("mode", "avg")
        if mode not in ("avg", "max"):
            raise self.fail(node, f"with mode='{mode}' is not supported")
        return mode

    def _half_pixel(self, node: Node) -> bool:
        default = "half_pixel" if node.opset >= 16 else "output_half_pixel"
        mode = node.attr("coordinate_transformation_mode", default)
        if mode not in ("half_pixel", "output_half_pixel"):
            raise self.fail(node, f"with coordinate_transformation_mode='{mode}' is not supported")
        return mode == "half_pixel"


def channels_last_copy(ctx: KernelContext, i: int, shape: Sequence[int]) -> tuple[list[str], str]:
    """Statements copying input `i` (images, channels, height, width; its fused producers applied) into a
    channels-last scratch array, one task per image row, and the array's name."""
    images, channels, height, width = shape
    copy = ctx.scratch("float", images * height * width * channels)
    row, q, c = ctx.var("row"), ctx.var("q"), ctx.var("c")
    n, y = Var(f"{row.name}_n"), Var(f"{row.name}_y")
    head = [f"const int64_t {n.name} = {row.name} / {height}, {y.name} = {row.name} % {height};"]
    fill = ctx.value("cl_v", Cast(ctx.read(i, (n, c, y, q)), "float")) + \
        [f"{copy}[({row.name} * {width} + {q.name}) * {channels} + {c.name}] = cl_v;"]
    lines = ["/* RoiAlign: input copied channels-last, each bin's taps summed for every channel at once */"]
    lines += parallel_for(row, images * height, head + serial_for(c, channels, serial_for(q, width, fill)),
                          images * height * width * channels)
    return lines, copy


def _roi_taps(axis: str, k: Var, p: Var, extent: int) -> list[str]:
    """C for the bilinear taps of sample k of bin p along one axis (as _axis_samples): indices r{axis}_lo/_hi
    and weights w{axis}_lo/_hi, zero for samples outside [-1, extent]."""
    a = f"r{axis}"
    return [f"const double {a}_pos = {a}_start + {p.name} * {a}_bin + ({k.name} + 0.5) * {a}_bin / {a}_count;",
            f"const int {a}_inside = {a}_pos >= -1.0 && {a}_pos <= {extent}.0;",
            f"const double {a}_at = {a}_pos > 0.0 ? ({a}_pos < {extent}.0 ? {a}_pos : {extent}.0) : 0.0;",
            f"const int64_t {a}_floor = (int64_t)floor({a}_at);",
            f"const int {a}_edge = {a}_floor >= {extent - 1};",
            f"const int64_t {a}_lo = {a}_edge ? {extent - 1} : {a}_floor;",
            f"const int64_t {a}_hi = {a}_edge ? {a}_lo : {a}_lo + 1;",
            f"const double {a}_frac = {a}_edge ? 0.0 : {a}_at - (double){a}_lo;",
            f"const double w{axis}_lo = {a}_inside ? 1.0 - {a}_frac : 0.0;",
            f"const double w{axis}_hi = {a}_inside ? {a}_frac : 0.0;"]


def _tap_table(axis: str, p: Var, k: Var, bins: int, count: int, extent: int) -> list[str]:
    """C that fills stack tables of sample k of bin p's bilinear taps along one axis (`_roi_taps`), indexed
    p * count + k: computed once per (roi, channel) instead of once per output and sample."""
    a, size = f"r{axis}", bins * count
    entry = f"{p.name} * {count} + {k.name}"
    fill = _roi_taps(axis, k, p, extent) + [f"t{axis}_lo[{entry}] = {a}_lo;", f"t{axis}_hi[{entry}] = {a}_hi;",
                                            f"t{axis}_wlo[{entry}] = w{axis}_lo;", f"t{axis}_whi[{entry}] = w{axis}_hi;"]
    return [f"int64_t t{axis}_lo[{size}], t{axis}_hi[{size}];", f"double t{axis}_wlo[{size}], t{axis}_whi[{size}];"] + \
        serial_for(p, bins, serial_for(k, count, fill))


def _table_taps(axis: str, p: Var, k: Var, count: int) -> list[str]:
    """C that reads sample k of bin p's taps from `_tap_table`'s tables under `_roi_taps`'s names."""
    a, entry = f"r{axis}", f"{p.name} * {count} + {k.name}"
    return [f"const int64_t {a}_lo = t{axis}_lo[{entry}], {a}_hi = t{axis}_hi[{entry}];",
            f"const double w{axis}_lo = t{axis}_wlo[{entry}], w{axis}_hi = t{axis}_whi[{entry}];"]


def _axis_samples(start: float, bin_size: float, bins: int, count: int, extent: int) -> _Samples:
    """Sample positions (bin, k) at start + bin * size + (k + 0.5) * size / count, with their bilinear taps."""
    pos = start + np.arange(bins)[:, None] * bin_size + (np.arange(count)[None, :] + 0.5) * bin_size / max(count, 1)
    inside = (pos >= -1.0) & (pos <= extent)
    pos = np.maximum(pos, 0.0)
    low = np.floor(pos).astype(np.int64)
    edge = low >= extent - 1
    low = np.where(edge, extent - 1, low)
    high = np.where(edge, low, low + 1)
    frac = np.where(edge, 0.0, pos - low)
    return _Samples(low, high, np.where(inside, 1.0 - frac, 0.0), np.where(inside, frac, 0.0))


def _pool_avg(image: np.ndarray, ys: _Samples, xs: _Samples) -> np.ndarray:
    """Mean of the bilinear samples per bin: separable, as (bins_y, H) @ image @ (W, bins_x)."""
    rows = _interpolation_matrix(ys, image.shape[1])
    cols = _interpolation_matrix(xs, image.shape[2])
    return np.einsum("ph,chw,qw->cpq", rows, image.astype(np.float64), cols)


def _interpolation_matrix(samples: _Samples, extent: int) -> np.ndarray:
    """(bins, extent): each bin's average of its samples' bilinear weights over the input positions."""
    bins, count = samples.low.shape
    matrix = np.zeros((bins, extent))
    rows = np.broadcast_to(np.arange(bins)[:, None], samples.low.shape)
    np.add.at(matrix, (rows, samples.low), samples.w_low / count)
    np.add.at(matrix, (rows, samples.high), samples.w_high / count)
    return matrix


def _pool_max(image: np.ndarray, ys: _Samples, xs: _Samples) -> np.ndarray:
    """Max over a bin's samples of the largest weighted corner (the ONNX Runtime definition of max mode)."""
    image = image.astype(np.float64)
    best = None
    for y_index, y_weight in ((ys.low, ys.w_low), (ys.high, ys.w_high)):
        for x_index, x_weight in ((xs.low, xs.w_low), (xs.high, xs.w_high)):
            corner = image[:, y_index[:, :, None, None], x_index[None, None, :, :]]   # (C, ph, iy, pw, ix)
            weighted = corner * (y_weight[:, :, None, None] * x_weight[None, None, :, :])
            best = weighted if best is None else np.maximum(best, weighted)
    return best.max(axis=(2, 4))
