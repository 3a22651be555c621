"""Image segmentation: U-Net written with plain torch.nn and random weights."""

from __future__ import annotations

import torch
from torch import nn

from .layers import init_weights
from .registry import Config, TorchModel, ZooError

LEVELS = 4   # down- and up-sampling levels of the original U-Net (Ronneberger et al. 2015)


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions (padding 1, so sizes match across the skips), each with BatchNorm and ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    """U-Net: four max-pooled double-conv levels, a bottleneck, four levels of 2x2 transposed convolution +
    skip concatenation + double conv, and a 1x1 convolution to per-pixel class logits."""

    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        channels = [width * 2 ** level for level in range(LEVELS + 1)]
        self.encoders = nn.ModuleList(DoubleConv(cin, cout) for cin, cout in zip([3] + channels, channels[:LEVELS]))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(channels[LEVELS - 1], channels[LEVELS])
        self.upsamplers = nn.ModuleList(nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2)
                                        for level in reversed(range(LEVELS)))
        self.decoders = nn.ModuleList(DoubleConv(2 * channels[level], channels[level])
                                      for level in reversed(range(LEVELS)))
        self.head = nn.Conv2d(channels[0], classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([skip, upsample(x)], dim=1))
        return self.head(x)


def unet(config: Config) -> TorchModel:
    """U-Net with `width` base channels; the image side must be a multiple of 16."""
    if config["image"] % 2 ** LEVELS:
        raise ZooError(f"unet needs an image side that is a multiple of {2 ** LEVELS}, not {config['image']}")
    image = torch.randn(config["batch"], 3, config["image"], config["image"])
    return TorchModel(init_weights(UNet(config["width"], config["classes"])), {"image": image}, ["mask_logits"],
                      {"image": {0: "batch"}, "mask_logits": {0: "batch"}})
