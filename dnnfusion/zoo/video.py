"""Video action recognition models written with plain torch.nn and random weights: C3D and S3D-G.
Inputs are clips shaped [batch, 3, frames, image, image] (NCDHW)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import init_weights
from .registry import Config, TorchModel, ZooError

LOGITS_AXES = {"image": {0: "batch"}, "logits": {0: "batch"}}

# C3D (Tran et al. 2015): conv3d channels per stage, as multiples of `width` (64 in the paper).
C3D_STAGES = ((1,), (2,), (4, 4), (8, 8), (8, 8))

# S3D-G inception blocks (Xie et al. 2018; I3D's Inception-v1 widths): name, then the 1x1 branch, the 1x1 reduce
# and separable 3x3x3 of the second branch, the same for the third, and the 1x1 after the pool branch's max pool.
S3D_BLOCKS = (("Mixed_3b", 64, 96, 128, 16, 32, 32), ("Mixed_3c", 128, 128, 192, 32, 96, 64),
              ("Mixed_4b", 192, 96, 208, 16, 48, 64), ("Mixed_4c", 160, 112, 224, 24, 64, 64),
              ("Mixed_4d", 128, 128, 256, 24, 64, 64), ("Mixed_4e", 112, 144, 288, 32, 64, 64),
              ("Mixed_4f", 256, 160, 320, 32, 128, 128), ("Mixed_5b", 256, 160, 320, 32, 128, 128),
              ("Mixed_5c", 384, 192, 384, 48, 128, 128))
S3D_POOLS_BEFORE = {"Mixed_4b": (3, 1), "Mixed_5b": (2, 0)}   # stride-2 max pools 4a and 5a: (kernel, padding)
S3D_MIN_CHANNELS = 16   # the reference implementation's floor on scaled channel counts


def _clip_model(module: nn.Module, config: Config) -> TorchModel:
    clip = torch.randn(config["batch"], 3, config["frames"], config["image"], config["image"])
    return TorchModel(init_weights(module), {"image": clip}, ["logits"], LOGITS_AXES)


class C3D(nn.Module):
    """C3D: eight 3x3x3 conv + ReLU in five stages, max pools (the first spatial only, the last padded
    spatially so a 112x112 clip ends at 4x4), then fc6, fc7 (+ ReLU, dropout) and fc8."""

    def __init__(self, width: int, fc: int, classes: int, frames: int, image: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for stage, multiples in enumerate(C3D_STAGES):
            for multiple in multiples:
                layers += [nn.Conv3d(cin, width * multiple, 3, padding=1), nn.ReLU()]
                cin = width * multiple
            if stage == 0:
                layers.append(nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2)))
            else:
                layers.append(nn.MaxPool3d(2, stride=2, padding=(0, 1, 1) if stage == len(C3D_STAGES) - 1 else 0))
        self.features = nn.Sequential(*layers)
        depth, side = frames // 16, image // 16 // 2 + 1     # four temporal halvings; pool5 pads 1 each side
        self.classifier = nn.Sequential(nn.Linear(cin * depth * side * side, fc), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(fc, fc), nn.ReLU(), nn.Dropout(0.5), nn.Linear(fc, classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(image), 1))


def _pooled(size: int, kernel: int, pad: int) -> int:
    """The size of an axis after a stride-2 convolution or pooling."""
    return (size + 2 * pad - kernel) // 2 + 1


class Unit3d(nn.Sequential):
    """Bias-free Conv3d, BatchNorm and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), padding: tuple[int, int, int] = (0, 0, 0)) -> None:
        super().__init__(nn.Conv3d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm3d(cout, eps=1e-3),
                         nn.ReLU())


class SepConv3d(nn.Sequential):
    """S3D's separable kxkxk convolution: a 1xkxk spatial Unit3d followed by a kx1x1 temporal Unit3d."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        pad = kernel // 2
        super().__init__(Unit3d(cin, cout, (1, kernel, kernel), (1, stride, stride), (0, pad, pad)),
                         Unit3d(cout, cout, (kernel, 1, 1), (stride, 1, 1), (pad, 0, 0)))


class SelfGating(nn.Module):
    """S3D-G feature gating: average over time and space, a channel-mixing 1x1x1 conv, sigmoid, rescale the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.transform = nn.Conv3d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.transform(self.pool(x)))


class Inception3d(nn.Module):
    """Inception block with separable 3x3x3 convolutions and self-gating on each of its four branches."""

    def __init__(self, cin: int, b0: int, b1_reduce: int, b1: int, b2_reduce: int, b2: int, b3: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(Unit3d(cin, b0), SelfGating(b0)),
            nn.Sequential(Unit3d(cin, b1_reduce), SepConv3d(b1_reduce, b1, 3), SelfGating(b1)),
            nn.Sequential(Unit3d(cin, b2_reduce), SepConv3d(b2_reduce, b2, 3), SelfGating(b2)),
            nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), Unit3d(cin, b3), SelfGating(b3))])
        self.channels = b0 + b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class S3DG(nn.Module):
    """S3D-G: separable 7x7x7 stem, 1x1x1 and gated separable 3x3x3 convs, nine gated inception blocks between
    max pools, then average pool, 1x1x1 conv to classes and a mean over the remaining time and space."""

    def __init__(self, width: float, classes: int, frames: int, image: int) -> None:
        super().__init__()

        def scaled(channels: int) -> int:
            return max(int(channels * width), S3D_MIN_CHANNELS)

        layers: list[nn.Module] = [SepConv3d(3, scaled(64), 7, stride=2),
                                   nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
                                   Unit3d(scaled(64), scaled(64)),
                                   SepConv3d(scaled(64), scaled(192), 3), SelfGating(scaled(192)),
                                   nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))]
        cin = scaled(192)
        for name, *sizes in S3D_BLOCKS:
            if name in S3D_POOLS_BEFORE:
                kernel, pad = S3D_POOLS_BEFORE[name]
                layers.append(nn.MaxPool3d(kernel, stride=2, padding=pad))
            block = Inception3d(cin, *map(scaled, sizes))
            layers.append(block)
            cin = block.channels
        self.features = nn.Sequential(*layers)
        # The 2x7x7 average pool, reduced (as in the reference implementation) when the clip is too small for it.
        depth = _pooled(_pooled(_pooled(frames, 7, 3), 3, 1), 2, 0)
        side = image
        for kernel, pad in ((7, 3), (3, 1), (3, 1), (3, 1), (2, 0)):
            side = _pooled(side, kernel, pad)
        self.pool = nn.AvgPool3d((min(2, depth), min(7, side), min(7, side)), stride=1)
        self.dropout = nn.Dropout(0.2)
        self.logits = nn.Conv3d(cin, classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits(self.dropout(self.pool(self.features(image)))).mean(dim=(2, 3, 4))


def c3d(config: Config) -> TorchModel:
    """C3D with `width` base channels and `fc` units in fc6/fc7; needs at least 16 frames."""
    if config["frames"] < 16:
        raise ZooError(f"c3d halves the clip's length four times and needs at least 16 frames, not {config['frames']}")
    return _clip_model(C3D(config["width"], config["fc"], config["classes"], config["frames"], config["image"]),
                       config)


def s3d(config: Config) -> TorchModel:
    """S3D-G (separable 3D inception network with feature gating), channels scaled by `width`."""
    return _clip_model(S3DG(config["width"], config["classes"], config["frames"], config["image"]), config)
