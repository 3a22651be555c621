"""Detection operators that torch cannot export on its own (without torchvision): NonMaxSuppression and RoiAlign.

Each is a `torch.autograd.Function` whose forward computes the real result in plain torch (so eager runs and
tracing see true values and shapes) and whose `symbolic` emits the ONNX operator for the TorchScript exporter.
NonMaxSuppression takes corner boxes; RoiAlign works in `output_half_pixel` mode (torchvision's `aligned=False`),
the only mode before opset 16 and named explicitly from 16 on, where the default became `half_pixel`."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

ROI_CHUNK = 64      # regions pooled at a time in eager RoiAlign, bounding its temporary memory


@contextlib.contextmanager
def _untraced() -> Iterator[None]:
    """Run a forward's eager computation outside the tracer: the symbolic stands for it in the exported graph,
    and the TorchScript exporter's peephole pass fails on the traced sub-block it would otherwise record."""
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


def _iou(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """IoU of one [x1, y1, x2, y2] box with each of `others`; 0 where either box or the union is empty."""
    lo = torch.maximum(box[:2], others[:, :2])
    hi = torch.minimum(box[2:], others[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=1)
    area = (box[2:] - box[:2]).prod()
    areas = (others[:, 2:] - others[:, :2]).prod(dim=1)
    union = area + areas - inter
    valid = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    return torch.where(valid, inter / torch.where(valid, union, torch.ones_like(union)), torch.zeros_like(union))


def _greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, limit: int, iou_threshold: float,
                score_threshold: float | None) -> list[int]:
    """Indices kept by greedy NMS for one batch and class, best score first (ties: lower index first)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    if score_threshold is not None:
        order = order[scores[order] > score_threshold]
    kept: list[int] = []
    while order.numel() and len(kept) < limit:
        best, order = order[0], order[1:]
        kept.append(int(best))
        order = order[~(_iou(boxes[best], boxes[order]) > iou_threshold)]
    return kept


class NonMaxSuppression(torch.autograd.Function):
    """ONNX NonMaxSuppression: boxes [B, N, 4], scores [B, C, N] -> selected [M, 3] (batch, class, box)."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, limit: int, iou_threshold: float,
                score_threshold: float | None) -> torch.Tensor:
        with _untraced():
            rows = [(b, c, i) for b in range(scores.shape[0]) for c in range(scores.shape[1])
                    for i in _greedy_nms(boxes[b], scores[b, c], limit, iou_threshold, score_threshold)]
            return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)

    @staticmethod
    def symbolic(g, boxes, scores, limit: int, iou_threshold: float, score_threshold: float | None):
        inputs = [boxes, scores, g.op("Constant", value_t=torch.tensor([limit], dtype=torch.int64)),
                  g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32))]
        if score_threshold is not None:
            inputs.append(g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)))
        return g.op("NonMaxSuppression", *inputs)


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor, limit: int, iou_threshold: float,
                        score_threshold: float | None = None) -> torch.Tensor:
    """Selected (batch, class, box) triples, at most `limit` per batch and class; the row count is data-dependent."""
    return NonMaxSuppression.apply(boxes, scores, limit, iou_threshold, score_threshold)


def _axis_taps(pos: torch.Tensor, extent: int) -> tuple[torch.Tensor, ...]:
    """Bilinear taps along one axis: low and high indices and weights (zero outside [-1, extent])."""
    inside = (pos >= -1.0) & (pos <= extent)
    pos = pos.clamp(min=0.0)
    low = pos.floor().long()
    edge = low >= extent - 1
    low = torch.where(edge, torch.full_like(low, extent - 1), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(pos), pos - low)
    zero = torch.zeros_like(pos)
    return low, high, torch.where(inside, 1.0 - frac, zero), torch.where(inside, frac, zero)


def _sample_positions(start: torch.Tensor, length: torch.Tensor, bins: int, ratio: int) -> torch.Tensor:
    """[R, bins * ratio] sample coordinates: ratio evenly spaced points inside each of `bins` bins."""
    size = (length / bins)[:, None, None]
    steps = torch.arange(bins, dtype=start.dtype)[None, :, None]
    offsets = (torch.arange(ratio, dtype=start.dtype)[None, None, :] + 0.5) / ratio
    return (start[:, None, None] + (steps + offsets) * size).reshape(len(start), bins * ratio)


def _roi_align_chunk(flat: torch.Tensor, shape: tuple[int, int, int], rois: torch.Tensor, batch: torch.Tensor,
                     out_size: tuple[int, int], scale: float, ratio: int) -> torch.Tensor:
    """RoiAlign (average mode) of a few regions over features flattened to [N*H*W, C]."""
    _, height, width = shape
    scaled = rois * scale
    x1, y1 = scaled[:, 0], scaled[:, 1]
    roi_w = (scaled[:, 2] - x1).clamp(min=1.0)
    roi_h = (scaled[:, 3] - y1).clamp(min=1.0)
    ys = _axis_taps(_sample_positions(y1, roi_h, out_size[0], ratio), height)
    xs = _axis_taps(_sample_positions(x1, roi_w, out_size[1], ratio), width)
    base = batch[:, None, None] * height
    out = 0
    for y_index, y_weight in ((ys[0], ys[2]), (ys[1], ys[3])):
        for x_index, x_weight in ((xs[0], xs[2]), (xs[1], xs[3])):
            index = (base + y_index[:, :, None]) * width + x_index[:, None, :]
            weight = y_weight[:, :, None] * x_weight[:, None, :]
            out = out + flat[index] * weight[..., None]
    r, channels = len(rois), flat.shape[1]
    out = out.reshape(r, out_size[0], ratio, out_size[1], ratio, channels).mean(dim=(2, 4))
    return out.permute(0, 3, 1, 2)


class RoiAlign(torch.autograd.Function):
    """ONNX RoiAlign (avg, output_half_pixel): X [N, C, H, W], rois [R, 4], batch_indices [R] -> [R, C, h, w]."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor, height: int,
                width: int, spatial_scale: float, sampling_ratio: int) -> torch.Tensor:
        with _untraced():
            n, c, h, w = features.shape
            flat = features.permute(0, 2, 3, 1).reshape(n * h * w, c)
            chunks = [_roi_align_chunk(flat, (n, h, w), rois[i:i + ROI_CHUNK], batch_indices[i:i + ROI_CHUNK],
                                       (height, width), spatial_scale, sampling_ratio)
                      for i in range(0, len(rois), ROI_CHUNK)]
            return torch.cat(chunks) if chunks else features.new_zeros((0, c, height, width))

    @staticmethod
    def symbolic(g, features, rois, batch_indices, height: int, width: int, spatial_scale: float,
                 sampling_ratio: int):
        since16 = {"coordinate_transformation_mode_s": "output_half_pixel"} if g.opset >= 16 else {}
        return g.op("RoiAlign", features, rois, batch_indices, mode_s="avg", output_height_i=height,
                    output_width_i=width, sampling_ratio_i=sampling_ratio, spatial_scale_f=spatial_scale, **since16)


def roi_align(features: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor, size: int,
              spatial_scale: float, sampling_ratio: int) -> torch.Tensor:
    """Average-pooled `size` x `size` bilinear samples of each region (sampling_ratio^2 samples per bin)."""
    if sampling_ratio <= 0:
        raise ValueError("roi_align needs a fixed sampling_ratio > 0")
    return RoiAlign.apply(features, rois, batch_indices, size, size, spatial_scale, sampling_ratio)
