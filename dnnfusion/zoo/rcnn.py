"""Faster R-CNN and Mask R-CNN (ResNet-50-FPN, torchvision's layout) with proposal and detection selection in the
graph: per-level TopK, NonMaxSuppression, then a keep mask and a fixed-size TopK so that everything downstream of
each NMS is statically shaped.

When fewer than `proposals` boxes survive the RPN's NMS, the fixed TopK fills up with the best suppressed candidates;
when fewer than `detections` survive the box head's NMS and 0.05 score threshold, the remaining output rows are the
best suppressed candidates with score 0 (and their candidate's label), ranked after every kept detection."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .onnx_custom import non_max_suppression, roi_align
from .registry import Config, TorchModel, ZooError

RESNET50_BLOCKS = (3, 4, 6, 3)
EXPANSION = 4
ANCHOR_SIZES = (32, 64, 128, 256, 512)         # one size per FPN level P2..P6
ASPECT_RATIOS = (0.5, 1.0, 2.0)
ROI_LEVELS = 4                                  # box and mask RoIAlign pool from P2..P5
CANONICAL_SCALE, CANONICAL_LEVEL = 224, 4       # FPN paper eq. 1: a 224x224 box maps to P4
RPN_IOU, BOX_IOU, BOX_SCORE = 0.7, 0.5, 0.05
RPN_MIN_SIZE, BOX_MIN_SIZE = 1e-3, 1e-2
RPN_WEIGHTS, BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)
DELTA_CLAMP = math.log(1000.0 / 16)
DROPPED = 2.0                                   # subtracted from a probability in [0, 1] to rank it after kept ones
SAMPLING_RATIO = 2
CLASS_GAIN = 0.5                                # spreads the random class logits so that some scores clear 0.05


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with random affine parameters; its running statistics come from `_calibrate`."""
    bn = nn.BatchNorm2d(channels, momentum=None)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    return bn


def _calibrate(trunk: nn.Module, image: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of one pass over `image`, as if estimated from data:
    non-trivial, and they keep activations at a sane scale through the deep trunk despite random weights."""
    trunk.train()
    with torch.no_grad():
        trunk(image)
    trunk.eval()


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Bias-free convolution followed by BatchNorm."""
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, _batch_norm(cout))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand, plus a (projected) shortcut."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * EXPANSION
        self.body = nn.Sequential(_conv_bn(cin, width, 1), nn.ReLU(), _conv_bn(width, width, 3, stride), nn.ReLU(),
                                  _conv_bn(width, cout, 1))
        self.shortcut = _conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-50 trunk: 7x7/2 stem, 3x3/2 max pool, four bottleneck stages; returns C2..C5."""

    def __init__(self, width: int, depth: float) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, width, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.stages = nn.ModuleList()
        cin = width
        for i, blocks in enumerate(RESNET50_BLOCKS):
            planes = width * 2 ** i
            count = max(1, round(blocks * depth))
            layers = [Bottleneck(cin if b == 0 else planes * EXPANSION, planes, 2 if b == 0 and i > 0 else 1)
                      for b in range(count)]
            self.stages.append(nn.Sequential(*layers))
            cin = planes * EXPANSION
        self.channels = [width * 2 ** i * EXPANSION for i in range(len(RESNET50_BLOCKS))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _conv(cin: int, cout: int, kernel: int, gain: float = 1.0) -> nn.Conv2d:
    """Convolution with bias, weights N(0, gain^2 / fan_in): output scale about `gain` times the input's."""
    conv = nn.Conv2d(cin, cout, kernel, 1, kernel // 2)
    nn.init.normal_(conv.weight, std=gain / math.sqrt(cin * kernel * kernel))
    nn.init.uniform_(conv.bias, -0.1, 0.1)
    return conv


class FPN(nn.Module):
    """Feature pyramid: lateral 1x1 convs, nearest top-down upsampling and sums, 3x3 smoothing, P6 by max pool."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_conv(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(_conv(channels, channels, 3) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        inner = self.lateral[-1](features[-1])
        outputs = [self.output[-1](inner)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral[i](features[i])
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outputs.insert(0, self.output[i](inner))
        outputs.append(F.max_pool2d(outputs[-1], 1, 2))
        return outputs


def _feature_sizes(image: int, count: int) -> list[int]:
    """Sides of P2, P3, ...: stride 4 after the stem, then 2 per level; every strided layer rounds up."""
    sizes = [-(-image // 4)]
    while len(sizes) < count:
        sizes.append(-(-sizes[-1] // 2))
    return sizes


def _anchors(image: int, side: int, size: int) -> torch.Tensor:
    """[side*side*3, 4] anchors of one level, ordered (y, x, ratio) like the head's output."""
    stride = image // side
    ratios = torch.tensor(ASPECT_RATIOS)
    heights = size * ratios.sqrt()
    widths = size / ratios.sqrt()
    base = (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()
    shifts = torch.arange(side, dtype=torch.float32) * stride
    y, x = torch.meshgrid(shifts, shifts, indexing="ij")
    offsets = torch.stack([x, y, x, y], dim=-1).reshape(-1, 1, 4)
    return (offsets + base[None]).reshape(-1, 4)


def decode(deltas: torch.Tensor, anchors: torch.Tensor, weights: tuple[float, ...], image: int) -> torch.Tensor:
    """Apply (dx, dy, dw, dh) deltas to [x1, y1, x2, y2] reference boxes and clip to the image."""
    widths = anchors[..., 2] - anchors[..., 0]
    heights = anchors[..., 3] - anchors[..., 1]
    cx = anchors[..., 0] + 0.5 * widths
    cy = anchors[..., 1] + 0.5 * heights
    dx, dy = deltas[..., 0] / weights[0], deltas[..., 1] / weights[1]
    dw = (deltas[..., 2] / weights[2]).clamp(max=DELTA_CLAMP)
    dh = (deltas[..., 3] / weights[3]).clamp(max=DELTA_CLAMP)
    px, py = dx * widths + cx, dy * heights + cy
    half_w, half_h = 0.5 * dw.exp() * widths, 0.5 * dh.exp() * heights
    boxes = torch.stack([px - half_w, py - half_h, px + half_w, py + half_h], dim=-1)
    return boxes.clamp(min=0.0, max=float(image))


def _wide_enough(boxes: torch.Tensor, minimum: float) -> torch.Tensor:
    """Whether each box is at least `minimum` wide and high."""
    return ((boxes[..., 2] - boxes[..., 0]) >= minimum) & ((boxes[..., 3] - boxes[..., 1]) >= minimum)


def _keep_mask(selected: torch.Tensor, count: int) -> torch.Tensor:
    """[count] float mask, 1 at each (data-dependently many) selected index: NMS output back to a static shape.

    The ones are computed elementwise from `selected` (not expanded to its run-time shape) so that no operator
    needs a data-dependent shape as an input."""
    return torch.zeros(count).scatter(0, selected, (selected >= 0).float())


class RPN(nn.Module):
    """Region proposal network: shared 3x3 head per level, per-level TopK (as many as the proposals kept, like
    torchvision at test time), anchor decoding, NMS across levels kept apart by offsets, fixed TopK."""

    def __init__(self, channels: int, image: int, proposals: int) -> None:
        super().__init__()
        anchors = len(ASPECT_RATIOS)
        self.conv = _conv(channels, channels, 3, math.sqrt(2))
        self.objectness = _conv(channels, anchors, 1)
        self.deltas = _conv(channels, 4 * anchors, 1, 0.1)
        self.image, self.proposals = image, proposals
        sizes = _feature_sizes(image, len(ANCHOR_SIZES))
        per_level = [_anchors(image, side, size) for side, size in zip(sizes, ANCHOR_SIZES)]
        self.register_buffer("anchors", torch.cat(per_level), persistent=False)
        self.counts = [len(a) for a in per_level]
        self.top = [min(count, proposals) for count in self.counts]
        if sum(self.top) < proposals:
            raise ZooError(f"{proposals} proposals asked for, only {sum(self.top)} candidates")
        levels = torch.cat([torch.full((k,), float(i)) for i, k in enumerate(self.top)])
        self.register_buffer("level_offsets", (levels * (image + 1))[:, None], persistent=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        logits, deltas = [], []
        for x in features:
            x = F.relu(self.conv(x))
            logits.append(self.objectness(x).permute(0, 2, 3, 1).reshape(-1))
            d = self.deltas(x)
            deltas.append(d.reshape(len(ASPECT_RATIOS), 4, *d.shape[-2:]).permute(2, 3, 0, 1).reshape(-1, 4))
        logits, deltas = torch.cat(logits), torch.cat(deltas)
        picks, start = [], 0
        for count, k in zip(self.counts, self.top):
            picks.append(logits[start:start + count].topk(k).indices + start)
            start += count
        index = torch.cat(picks)
        boxes = decode(deltas[index], self.anchors[index], RPN_WEIGHTS, self.image)
        scores = logits[index].sigmoid()
        candidates = torch.where(_wide_enough(boxes, RPN_MIN_SIZE), scores, torch.full_like(scores, -1.0))
        selected = non_max_suppression((boxes + self.level_offsets)[None], candidates[None, None], self.proposals,
                                       RPN_IOU, 0.0)
        keep = _keep_mask(selected[:, 2], len(index))
        order = (scores - DROPPED * (1.0 - keep)).topk(self.proposals).indices
        return boxes[order]


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign from the FPN level each box maps to (FPN eq. 1), computed on every level and gathered per box."""

    def __init__(self, size: int, count: int) -> None:
        super().__init__()
        self.size, self.count = size, count
        self.register_buffer("batch_indices", torch.zeros(count, dtype=torch.int64), persistent=False)
        self.register_buffer("rows", torch.arange(count), persistent=False)

    def forward(self, features: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([roi_align(f, boxes, self.batch_indices, self.size, 2.0 ** -(i + 2), SAMPLING_RATIO)
                            for i, f in enumerate(features[:ROI_LEVELS])])
        side = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
        level = (CANONICAL_LEVEL + torch.log2(side / CANONICAL_SCALE) + 1e-6).floor().clamp(2, ROI_LEVELS + 1)
        return pooled[(level.long() - 2) * self.count + self.rows]


def _linear(cin: int, cout: int, gain: float = 1.0) -> nn.Linear:
    """Fully connected layer, weights N(0, gain^2 / fan_in): output scale about `gain` times the input's."""
    fc = nn.Linear(cin, cout)
    nn.init.normal_(fc.weight, std=gain / math.sqrt(cin))
    nn.init.uniform_(fc.bias, -0.1, 0.1)
    return fc


class BoxHead(nn.Module):
    """TwoMLPHead + FastRCNNPredictor + postprocessing: softmax, per-class decode, per-class NMS, fixed TopK."""

    def __init__(self, channels: int, representation: int, config: Config) -> None:
        super().__init__()
        self.pool = MultiScaleRoIAlign(7, config["proposals"])
        self.fc6 = _linear(channels * 7 * 7, representation, math.sqrt(2))
        self.fc7 = _linear(representation, representation, math.sqrt(2))
        self.classes, self.detections, self.image = config["classes"], config["detections"], config["image"]
        self.cls_score = _linear(representation, self.classes, CLASS_GAIN)
        self.bbox_pred = _linear(representation, 4 * self.classes)
        if (self.classes - 1) * config["proposals"] < self.detections:
            raise ZooError(f"{self.detections} detections asked for, only {(self.classes - 1) * config['proposals']}"
                             " candidates")

    def forward(self, features: list[torch.Tensor], proposals: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.pool(features, proposals).flatten(1)
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        probs = self.cls_score(x).softmax(-1)
        count = len(proposals)
        boxes = decode(self.bbox_pred(x).reshape(count, self.classes, 4), proposals[:, None], BOX_WEIGHTS, self.image)
        boxes = boxes[:, 1:].transpose(0, 1)                  # [classes - 1, proposals, 4]: background dropped
        scores = probs[:, 1:].transpose(0, 1)
        candidates = torch.where(_wide_enough(boxes, BOX_MIN_SIZE), scores, torch.zeros_like(scores))
        selected = non_max_suppression(boxes, candidates[:, None], self.detections, BOX_IOU, BOX_SCORE)
        scores = scores.reshape(-1)
        keep = _keep_mask(selected[:, 0] * count + selected[:, 2], len(scores))
        order = (scores - DROPPED * (1.0 - keep)).topk(self.detections).indices
        labels = torch.div(order, count, rounding_mode="trunc") + 1
        return boxes.reshape(-1, 4)[order], scores[order] * keep[order], labels


class MaskHead(nn.Module):
    """Mask R-CNN head: RoIAlign 14x14, four 3x3 conv+ReLU, 2x2/2 transposed conv+ReLU, 1x1 to per-class masks."""

    def __init__(self, channels: int, classes: int, detections: int) -> None:
        super().__init__()
        self.pool = MultiScaleRoIAlign(14, detections)
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [_conv(channels, channels, 3, math.sqrt(2)), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, 2)
        nn.init.kaiming_normal_(self.upsample.weight, mode="fan_out", nonlinearity="relu")
        self.logits = _conv(channels, classes, 1)
        self.register_buffer("rows", torch.arange(detections) * classes, persistent=False)

    def forward(self, features: list[torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.upsample(self.convs(self.pool(features, boxes))))
        masks = self.logits(x).sigmoid()
        return masks.flatten(0, 1)[self.rows + labels][:, None]


class RCNN(nn.Module):
    """ResNet-50-FPN + RPN + box head, optionally + mask head; batch 1, outputs for the one image."""

    def __init__(self, config: Config, masks: bool) -> None:
        super().__init__()
        width, channels = config["width"], 4 * config["width"]
        self.backbone = ResNet(width, config["depth"])
        self.fpn = FPN(self.backbone.channels, channels)
        self.rpn = RPN(channels, config["image"], config["proposals"])
        self.box_head = BoxHead(channels, 16 * width, config)
        self.mask_head = MaskHead(channels, config["classes"], config["detections"]) if masks else None

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.fpn(self.backbone(image))
        boxes, scores, labels = self.box_head(features, self.rpn(features))
        if self.mask_head is None:
            return boxes, scores, labels
        return boxes, scores, labels, self.mask_head(features, boxes, labels)


def _build(config: Config, masks: bool) -> TorchModel:
    """The model in eval mode with a random batch-1 image; no dynamic axes (NMS fixes the batch to one)."""
    if config["batch"] != 1:
        raise ZooError("the R-CNN zoo models take one image (batch 1)")
    module = RCNN(config, masks).eval()
    image = torch.randn(1, 3, config["image"], config["image"])
    _calibrate(module.backbone, torch.randn_like(image))
    outputs = ["boxes", "scores", "labels"] + (["masks"] if masks else [])
    return TorchModel(module, {"image": image}, outputs)


def faster_rcnn(config: Config) -> TorchModel:
    """Faster R-CNN, ResNet-50-FPN, with in-graph proposal and detection selection."""
    return _build(config, masks=False)


def mask_rcnn(config: Config) -> TorchModel:
    """Mask R-CNN, ResNet-50-FPN: Faster R-CNN plus the 14x14 RoIAlign mask head."""
    return _build(config, masks=True)
