"""What the vision builders share: random weights at a sane scale and channel scaling."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def init_weights(module: nn.Module, he_normal: bool = True) -> nn.Module:
    """He-normal convolution and linear weights (unless `he_normal` is False: torch's defaults stay), and
    BatchNorms with non-trivial eval statistics, so activations keep a sane scale through deep stacks and
    folding BN into Conv really changes the weights. Returns the module in eval mode."""
    with torch.no_grad():
        for m in module.modules():
            if he_normal and isinstance(m, WEIGHTED):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return module.eval()


def scaled(channels: int, width: float) -> int:
    """A channel count times a width multiplier, at least one."""
    return max(1, round(channels * width))
