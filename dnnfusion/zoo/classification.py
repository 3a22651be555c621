"""Image classifiers written with plain torch.nn and random weights: EfficientNet-B0 and VGG-16."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import init_weights
from .registry import Config, TorchModel

LOGITS_AXES = {"image": {0: "batch"}, "logits": {0: "batch"}}

# EfficientNet-B0 stages: (expand ratio, kernel, first stride, output channels, repeats), Tan & Le 2019, Table 1.
EFFICIENTNET_B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
VGG16_STAGES = (2, 2, 3, 3, 3)   # 3x3 convolutions per stage, configuration D of Simonyan & Zisserman


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's width rule: scale, round to a multiple of 8, and never lose more than 10%."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _round_repeats(repeats: int, depth: float) -> int:
    """EfficientNet's depth rule: scale the number of blocks in a stage and round up."""
    return int(math.ceil(depth * repeats))


class ConvBnAct(nn.Sequential):
    """Bias-free convolution with 'same' padding, BatchNorm, then SiLU unless `act` is False."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-3), nn.SiLU() if act else nn.Identity())


class SqueezeExcite(nn.Module):
    """Channel attention: global average pool, 1x1 reduce + SiLU, 1x1 expand + sigmoid, rescale the input."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand (skipped at ratio 1), depthwise kxk, squeeze-excite, 1x1 project,
    and an identity shortcut when the shape is kept (drop-connect is the identity in eval)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, se_ratio: float = 0.25) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [ConvBnAct(cin, hidden, 1)] if expand != 1 else []
        layers += [ConvBnAct(hidden, hidden, kernel, stride, groups=hidden),
                   SqueezeExcite(hidden, max(1, int(cin * se_ratio))),
                   ConvBnAct(hidden, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.shortcut else y


class EfficientNet(nn.Module):
    """EfficientNet-B0 scaled by `width` and `depth`: stem, seven MBConv stages, 1x1 head, pool, classifier."""

    def __init__(self, width: float, depth: float, classes: int) -> None:
        super().__init__()
        cin = _round_filters(32, width)
        layers: list[nn.Module] = [ConvBnAct(3, cin, 3, 2)]
        for expand, kernel, stride, channels, repeats in EFFICIENTNET_B0_STAGES:
            cout = _round_filters(channels, width)
            for i in range(_round_repeats(repeats, depth)):
                layers.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        head = _round_filters(1280, width)
        layers.append(ConvBnAct(cin, head, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(head, classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(image)), 1))


class VGG16(nn.Module):
    """VGG-16 (configuration D): 13 3x3 conv + ReLU in five max-pooled stages, then three fully connected layers."""

    def __init__(self, width: int, fc: int, classes: int, image: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for stage, convs in enumerate(VGG16_STAGES):
            cout = width * min(2 ** stage, 8)
            for _ in range(convs):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = image // 32           # five floor-halving poolings
        self.classifier = nn.Sequential(nn.Linear(cin * side * side, fc), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(fc, fc), nn.ReLU(), nn.Dropout(0.5), nn.Linear(fc, classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(image), 1))


def _classifier(module: nn.Module, config: Config) -> TorchModel:
    image = torch.randn(config["batch"], 3, config["image"], config["image"])
    return TorchModel(init_weights(module), {"image": image}, ["logits"], LOGITS_AXES)


def efficientnet_b0(config: Config) -> TorchModel:
    """EfficientNet-B0 (MBConv, squeeze-excitation, SiLU) with width/depth multipliers."""
    return _classifier(EfficientNet(config["width"], config["depth"], config["classes"]), config)


def vgg16(config: Config) -> TorchModel:
    """VGG-16 with `width` base channels and `fc` hidden units in the classifier."""
    return _classifier(VGG16(config["width"], config["fc"], config["classes"], config["image"]), config)
