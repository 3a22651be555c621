"""Single-stage detectors with their box decoding in the graph: MobileNetV1-SSD (TF object-detection layout,
1917 anchors at 300x300) and YOLOv4 (darknet yolov4.cfg: CSPDarknet53, SPP, PANet, three YOLO heads).

Both end before non-maximum suppression, so every shape but the batch is static."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import init_weights, scaled
from .registry import Config, TorchModel, ZooError

DETECTION_AXES = {"image": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}}


def _finish(module: nn.Module, config: Config) -> TorchModel:
    """Put the detector in eval mode with an example image and the boxes/scores outputs."""
    image = torch.randn(config["batch"], 3, config["image"], config["image"])
    return TorchModel(init_weights(module, he_normal=False), {"image": image}, ["boxes", "scores"], DETECTION_AXES)


# ---------------------------------------------------------------- MobileNetV1-SSD

class ConvBNReLU6(nn.Sequential):
    """Convolution without bias, BatchNorm, ReLU6: MobileNet's basic unit (groups=channels for depthwise)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6())


class DepthwiseSeparable(nn.Sequential):
    """MobileNetV1 block: depthwise 3x3 then pointwise 1x1, each with BatchNorm and ReLU6."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(ConvBNReLU6(cin, cin, 3, stride, groups=cin), ConvBNReLU6(cin, cout, 1))


# (output channels, stride) of MobileNetV1's 13 depthwise-separable blocks.
MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
SSD_TAP_BLOCKS = (11, 13)                  # blocks whose outputs feed the heads (strides 16 and 32)
SSD_EXTRAS = [(256, 512), (128, 256), (128, 256), (64, 128)]   # (1x1 bottleneck, 3x3/2 output) channels
SSD_MIN_SCALE, SSD_MAX_SCALE = 0.2, 0.95
SSD_ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
SSD_VARIANCES = (0.1, 0.2)


def _ssd_anchor_shapes(level: int, levels: int) -> list[tuple[float, float]]:
    """(width, height) of one location's anchors at feature level `level` (TF SSD anchor generator)."""
    scales = [SSD_MIN_SCALE + (SSD_MAX_SCALE - SSD_MIN_SCALE) * k / (levels - 1) for k in range(levels)] + [1.0]
    scale = scales[level]
    if level == 0:                          # the lowest layer gets three boxes: a small square and two 2:1
        pairs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
    else:
        pairs = [(scale, ar) for ar in SSD_ASPECT_RATIOS] + [(math.sqrt(scale * scales[level + 1]), 1.0)]
    return [(s * math.sqrt(ar), s / math.sqrt(ar)) for s, ar in pairs]


def _ssd_priors(sizes: list[int]) -> torch.Tensor:
    """Center-size priors [anchors, 4] (cx, cy, w, h, normalized), ordered as the heads' flattened outputs."""
    priors = []
    for level, size in enumerate(sizes):
        shapes = torch.tensor(_ssd_anchor_shapes(level, len(sizes)))                      # [A, 2]
        centers = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        cy, cx = torch.meshgrid(centers, centers, indexing="ij")
        cxcy = torch.stack([cx, cy], -1).reshape(-1, 1, 2).expand(-1, len(shapes), 2)      # [H*W, A, 2]
        priors.append(torch.cat([cxcy, shapes.expand_as(cxcy)], -1).reshape(-1, 4))
    return torch.cat(priors)


class MobileNetV1SSD(nn.Module):
    """MobileNetV1 backbone, four extra stride-2 layers, 3x3 box/class heads on six maps, priors decoded."""

    def __init__(self, image: int, width: float, classes: int) -> None:
        super().__init__()
        channels = scaled(32, width)
        self.stem = ConvBNReLU6(3, channels, 3, 2)
        blocks, taps = [], []
        for index, (cout, stride) in enumerate(MOBILENET_BLOCKS, start=1):
            blocks.append(DepthwiseSeparable(channels, scaled(cout, width), stride))
            channels = scaled(cout, width)
            if index in SSD_TAP_BLOCKS:
                taps.append(channels)
        self.blocks = nn.ModuleList(blocks)
        extras = []
        for mid, cout in SSD_EXTRAS:
            extras.append(nn.Sequential(ConvBNReLU6(channels, scaled(mid, width), 1),
                                        ConvBNReLU6(scaled(mid, width), scaled(cout, width), 3, 2)))
            channels = scaled(cout, width)
            taps.append(channels)
        self.extras = nn.ModuleList(extras)
        sizes = self._map_sizes(image)
        anchors = [len(_ssd_anchor_shapes(level, len(sizes))) for level in range(len(sizes))]
        self.box_heads = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(taps, anchors))
        self.class_heads = nn.ModuleList(nn.Conv2d(c, a * classes, 3, padding=1) for c, a in zip(taps, anchors))
        self.classes = classes
        self.register_buffer("priors", _ssd_priors(sizes).unsqueeze(0))                # [1, anchors, 4]

    @staticmethod
    def _map_sizes(image: int) -> list[int]:
        """Side of each of the six feature maps: every stride-2 3x3 conv (padding 1) maps n to ceil(n/2)."""
        size = image
        for _ in range(4):                  # stem and blocks 2, 4, 6: stride 16 at block 11
            size = (size + 1) // 2
        sizes = [size]
        for _ in range(1 + len(SSD_EXTRAS)):  # block 12, then each extra layer
            size = (size + 1) // 2
            sizes.append(size)
        return sizes

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = image.shape[0]
        x = self.stem(image)
        maps = []
        for index, block in enumerate(self.blocks, start=1):
            x = block(x)
            if index in SSD_TAP_BLOCKS:
                maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        deltas = torch.cat([head(m).permute(0, 2, 3, 1).reshape(batch, -1, 4)
                            for head, m in zip(self.box_heads, maps)], 1)
        logits = torch.cat([head(m).permute(0, 2, 3, 1).reshape(batch, -1, self.classes)
                            for head, m in zip(self.class_heads, maps)], 1)
        return self._decode(deltas), torch.softmax(logits, -1)

    def _decode(self, deltas: torch.Tensor) -> torch.Tensor:
        """Center-size deltas against the priors, with variances, to corner boxes (x1, y1, x2, y2)."""
        prior_xy, prior_wh = self.priors[..., :2], self.priors[..., 2:]
        center = deltas[..., :2] * SSD_VARIANCES[0] * prior_wh + prior_xy
        half = torch.exp(deltas[..., 2:] * SSD_VARIANCES[1]) * prior_wh * 0.5
        return torch.cat([center - half, center + half], -1)


def mobilenetv1_ssd(config: Config) -> TorchModel:
    """MobileNetV1-SSD with anchors decoded to corner boxes and softmax class scores."""
    return _finish(MobileNetV1SSD(config["image"], config["width"], config["classes"]), config)


# ---------------------------------------------------------------- YOLOv4

class Mish(nn.Module):
    """Mish activation, x * tanh(softplus(x)), written out so it exports as Softplus/Tanh/Mul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


class ConvBNAct(nn.Sequential):
    """Darknet's convolutional layer: convolution without bias, BatchNorm, then Mish or LeakyReLU(0.1)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, mish: bool = False) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         Mish() if mish else nn.LeakyReLU(0.1))


class Residual(nn.Module):
    """Darknet residual unit: 1x1 then 3x3 Mish convolutions added to the input."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(channels, hidden, 1, mish=True),
                                  ConvBNAct(hidden, channels, 3, mish=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CSPStage(nn.Module):
    """CSPDarknet53 stage: 3x3/2 downsample, split into a shortcut 1x1 and a residual path, concat, 1x1 fuse."""

    def __init__(self, cin: int, cout: int, blocks: int, first: bool) -> None:
        super().__init__()
        half = cout if first else cout // 2              # the first stage keeps full width in both paths
        self.down = ConvBNAct(cin, cout, 3, 2, mish=True)
        self.shortcut = ConvBNAct(cout, half, 1, mish=True)
        self.main = nn.Sequential(ConvBNAct(cout, half, 1, mish=True),
                                  *(Residual(half, cout // 2 if first else half) for _ in range(blocks)),
                                  ConvBNAct(half, half, 1, mish=True))
        self.fuse = ConvBNAct(2 * half, cout, 1, mish=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.fuse(torch.cat([self.main(x), self.shortcut(x)], 1))


class SPP(nn.Module):
    """Spatial pyramid pooling: stride-1 max pools of 5, 9 and 13 concatenated with the input."""

    def __init__(self) -> None:
        super().__init__()
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (13, 9, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([pool(x) for pool in self.pools] + [x], 1)


def _leaky_stack(cin: int, channels: int, count: int) -> nn.Sequential:
    """Alternating 1x1 (channels) and 3x3 (2*channels) LeakyReLU convolutions, starting and ending with 1x1."""
    layers, c = [], cin
    for i in range(count):
        out = channels if i % 2 == 0 else 2 * channels
        layers.append(ConvBNAct(c, out, 1 if i % 2 == 0 else 3))
        c = out
    return nn.Sequential(*layers)


# Darknet yolov4.cfg anchors (pixels) per head, and each head's scale_x_y.
YOLO_ANCHORS = [[(12, 16), (19, 36), (40, 28)], [(36, 75), (76, 55), (72, 146)],
                [(142, 110), (192, 243), (459, 401)]]
YOLO_STRIDES = (8, 16, 32)
YOLO_SCALE_XY = (1.2, 1.1, 1.05)
CSP_BLOCKS = (1, 2, 8, 8, 4)


class YoloDecode(nn.Module):
    """One YOLO head's decoding: sigmoid xy plus grid times stride, exp(wh) times anchors, objectness*class."""

    def __init__(self, size: int, stride: int, anchors: list[tuple[int, int]], scale_xy: float,
                 classes: int) -> None:
        super().__init__()
        self.size, self.stride, self.scale_xy, self.classes = size, stride, scale_xy, classes
        self.anchors = len(anchors)
        gy, gx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                                torch.arange(size, dtype=torch.float32), indexing="ij")
        self.register_buffer("grid", torch.stack([gx, gy], -1).reshape(1, 1, size, size, 2))
        self.register_buffer("anchor_wh", torch.tensor(anchors, dtype=torch.float32).reshape(1, -1, 1, 1, 2))

    def forward(self, x: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = x.reshape(batch, self.anchors, 5 + self.classes, self.size, self.size).permute(0, 1, 3, 4, 2)
        offset = torch.sigmoid(p[..., 0:2]) * self.scale_xy - (self.scale_xy - 1) / 2
        center = (offset + self.grid) * self.stride
        half = torch.exp(p[..., 2:4]) * self.anchor_wh * 0.5
        boxes = torch.cat([center - half, center + half], -1).reshape(batch, -1, 4)
        scores = torch.sigmoid(p[..., 4:5]) * torch.sigmoid(p[..., 5:])
        return boxes, scores.reshape(batch, -1, self.classes)


class YOLOv4(nn.Module):
    """CSPDarknet53 backbone, SPP, PANet neck and three decoded YOLO heads (strides 8, 16, 32)."""

    def __init__(self, image: int, width: float, depth: float, classes: int) -> None:
        super().__init__()
        c = [scaled(ch, width) for ch in (32, 64, 128, 256, 512, 1024)]
        self.stem = ConvBNAct(3, c[0], 3, mish=True)
        self.stages = nn.ModuleList(CSPStage(c[i], c[i + 1], max(1, round(n * depth)), first=i == 0)
                                    for i, n in enumerate(CSP_BLOCKS))
        c128, c256, c512 = c[2], c[3], c[4]
        self.pre_spp = _leaky_stack(c[5], c512, 3)
        self.spp = SPP()
        self.post_spp = _leaky_stack(4 * c512, c512, 3)
        self.up5, self.lateral4 = ConvBNAct(c512, c256, 1), ConvBNAct(c512, c256, 1)
        self.td4 = _leaky_stack(2 * c256, c256, 5)
        self.up4, self.lateral3 = ConvBNAct(c256, c128, 1), ConvBNAct(c256, c128, 1)
        self.td3 = _leaky_stack(2 * c128, c128, 5)
        self.down3, self.bu4 = ConvBNAct(c128, c256, 3, 2), _leaky_stack(2 * c256, c256, 5)
        self.down4, self.bu5 = ConvBNAct(c256, c512, 3, 2), _leaky_stack(2 * c512, c512, 5)
        outputs = len(YOLO_ANCHORS[0]) * (5 + classes)
        self.heads = nn.ModuleList(nn.Sequential(ConvBNAct(ch, 2 * ch, 3), nn.Conv2d(2 * ch, outputs, 1))
                                   for ch in (c128, c256, c512))
        self.decoders = nn.ModuleList(YoloDecode(image // s, s, a, k, classes)
                                      for s, a, k in zip(YOLO_STRIDES, YOLO_ANCHORS, YOLO_SCALE_XY))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(image)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        c3, c4, c5 = features[2:]
        p5 = self.post_spp(self.spp(self.pre_spp(c5)))
        p4 = self.td4(torch.cat([self.lateral4(c4), F.interpolate(self.up5(p5), scale_factor=2.0)], 1))
        p3 = self.td3(torch.cat([self.lateral3(c3), F.interpolate(self.up4(p4), scale_factor=2.0)], 1))
        n4 = self.bu4(torch.cat([self.down3(p3), p4], 1))
        n5 = self.bu5(torch.cat([self.down4(n4), p5], 1))
        decoded = [decode(head(f), image.shape[0]) for head, decode, f in zip(self.heads, self.decoders, (p3, n4, n5))]
        return torch.cat([b for b, _ in decoded], 1), torch.cat([s for _, s in decoded], 1)


def yolov4(config: Config) -> TorchModel:
    """YOLOv4 with its three heads decoded to corner boxes (pixels) and objectness*class scores."""
    if config["image"] % 32:
        raise ZooError(f"yolov4 needs an image size that is a multiple of 32, not {config['image']}")
    return _finish(YOLOv4(config["image"], config["width"], config["depth"], config["classes"]), config)
