"""The zoo's catalogue: each model's name, task, architecture, default and `small` configurations, and the
paper's figures for it. Builders live in their own modules and are imported only when a model is built, so
listing the zoo needs neither torch nor transformers."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DnnfusionError

if TYPE_CHECKING:
    import torch

Config = dict[str, Any]


class ZooError(DnnfusionError):
    """An unknown zoo model, a bad configuration, or a missing optional dependency (torch, transformers)."""


@dataclass
class TorchModel:
    """What a builder returns: a module in eval mode and how to export it."""

    module: "torch.nn.Module"
    inputs: dict[str, "torch.Tensor"]            # example inputs, in forward() order; keys are the ONNX input names
    outputs: list[str]                            # ONNX output names
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PaperFigures:
    """The DNNFusion paper's Table 5 row for the model (DESIGN §2.7)."""

    ops_before: int
    ops_after: int
    best_other_after: int | None = None


@dataclass(frozen=True)
class ZooModel:
    name: str
    task: str
    architecture: str
    builder: str                                  # "module:function", relative to dnnfusion.zoo
    default: Config
    small: Config
    size_key: str                                 # the config key that --seq / --image sets
    paper: PaperFigures

    def config(self, small: bool = False, size: int | None = None, **overrides: Any) -> Config:
        """The default (or small) configuration with the size parameter and any overrides applied."""
        config = dict(self.small if small else self.default)
        if size is not None:
            overrides[self.size_key] = size
        for key, value in overrides.items():
            if key not in config:
                raise ZooError(f"zoo model '{self.name}' has no parameter '{key}' (it has: {', '.join(config)})")
            expected = type(config[key])
            if expected is float and isinstance(value, int):
                value = float(value)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ZooError(f"zoo model '{self.name}': parameter '{key}' must be {type(config[key]).__name__}")
            if isinstance(value, int) and value <= 0:
                raise ZooError(f"zoo model '{self.name}': parameter '{key}' must be positive, not {value}")
            config[key] = value
        return config

    def input_desc(self, config: Config) -> str:
        """The input's shape in words, without building the model (for `zoo list`)."""
        if self.size_key == "seq":
            return f"{config['batch']}x{config['seq']} tokens"
        frames = f"{config['frames']}x" if "frames" in config else ""
        return f"{config['batch']}x3x{frames}{config['image']}x{config['image']}"

    def build(self, config: Config) -> TorchModel:
        """Build the torch module with random weights for `config` (needs the `zoo` extra)."""
        module_name, function = self.builder.split(":")
        try:
            module = importlib.import_module(f"{__package__}.{module_name}")
        except ImportError as e:
            raise ZooError(f"building zoo model '{self.name}' needs {e.name or 'torch'}: "
                           "pip install 'dnnfusion[zoo]'") from e
        return getattr(module, function)(config)


def _entries() -> list[ZooModel]:
    vision_small = {"batch": 1}
    return [
        ZooModel("efficientnet_b0", "classification", "EfficientNet-B0: MBConv, squeeze-excitation, SiLU",
                 "classification:efficientnet_b0", {"batch": 1, "image": 224, "width": 1.0, "depth": 1.0, "classes": 1000},
                 {**vision_small, "image": 64, "width": 0.25, "depth": 0.34, "classes": 10}, "image",
                 PaperFigures(309, 97, 195)),
        ZooModel("vgg16", "classification", "VGG-16: 13 3x3 convolutions in 5 stages, 3 fully connected",
                 "classification:vgg16", {"batch": 1, "image": 224, "width": 64, "fc": 4096, "classes": 1000},
                 {**vision_small, "image": 32, "width": 4, "fc": 32, "classes": 10}, "image",
                 PaperFigures(51, 17, 22)),
        ZooModel("mobilenetv1_ssd", "detection", "MobileNetV1 backbone + SSD heads, anchors decoded",
                 "detection:mobilenetv1_ssd", {"batch": 1, "image": 300, "width": 1.0, "classes": 91},
                 {**vision_small, "image": 96, "width": 0.125, "classes": 5}, "image",
                 PaperFigures(202, 71, 124)),
        ZooModel("yolov4", "detection", "CSPDarknet53 + SPP + PANet + three YOLO heads, Mish",
                 "detection:yolov4", {"batch": 1, "image": 416, "width": 1.0, "depth": 1.0, "classes": 80},
                 {**vision_small, "image": 64, "width": 0.0625, "depth": 0.125, "classes": 3}, "image",
                 PaperFigures(398, 135, 192)),
        ZooModel("c3d", "video", "C3D: 8 3x3x3 convolutions, 5 3D poolings, 3 fully connected",
                 "video:c3d", {"batch": 1, "frames": 16, "image": 112, "width": 64, "fc": 4096, "classes": 487},
                 {**vision_small, "frames": 16, "image": 32, "width": 4, "fc": 32, "classes": 10}, "image",
                 PaperFigures(27, 16, 27)),
        ZooModel("s3d", "video", "S3D: separable 3D convolutions, inception blocks, feature gating",
                 "video:s3d", {"batch": 1, "frames": 16, "image": 224, "width": 1.0, "classes": 400},
                 {**vision_small, "frames": 8, "image": 32, "width": 0.125, "classes": 10}, "image",
                 PaperFigures(272, 98, 272)),
        ZooModel("unet", "segmentation", "U-Net: 4 down and 4 up levels, transposed convolutions, skip concats",
                 "segmentation:unet", {"batch": 1, "image": 256, "width": 64, "classes": 2},
                 {**vision_small, "image": 32, "width": 4, "classes": 2}, "image",
                 PaperFigures(292, 82, 232)),
        ZooModel("faster_rcnn", "detection", "ResNet-50-FPN + RPN + RoIAlign + box head, NMS and TopK in graph",
                 "rcnn:faster_rcnn", {"batch": 1, "image": 512, "width": 64, "depth": 1.0, "classes": 91,
                                      "proposals": 1000, "detections": 100},
                 {**vision_small, "image": 128, "width": 8, "depth": 0.34, "classes": 5, "proposals": 32,
                  "detections": 8}, "image",
                 PaperFigures(3640, 942)),
        ZooModel("mask_rcnn", "segmentation", "Faster R-CNN + mask head (RoIAlign 14x14, 4 convs, deconv)",
                 "rcnn:mask_rcnn", {"batch": 1, "image": 512, "width": 64, "depth": 1.0, "classes": 91,
                                    "proposals": 1000, "detections": 100},
                 {**vision_small, "image": 128, "width": 8, "depth": 0.34, "classes": 5, "proposals": 32,
                  "detections": 8}, "image",
                 PaperFigures(3999, 981)),
        ZooModel("tinybert", "language", "BERT, 4 layers, hidden 312, intermediate 1200, 12 heads",
                 "language:bert", {"batch": 1, "seq": 128, "layers": 4, "hidden": 312, "heads": 12,
                                   "intermediate": 1200, "vocab": 30522},
                 {"batch": 1, "seq": 16, "layers": 2, "hidden": 48, "heads": 4, "intermediate": 96, "vocab": 100},
                 "seq", PaperFigures(366, 74, 304)),
        ZooModel("distilbert", "language", "DistilBERT-base: 6 layers, hidden 768, 12 heads",
                 "language:distilbert", {"batch": 1, "seq": 128, "layers": 6, "hidden": 768, "heads": 12,
                                         "intermediate": 3072, "vocab": 30522},
                 {"batch": 1, "seq": 16, "layers": 2, "hidden": 48, "heads": 4, "intermediate": 96, "vocab": 100},
                 "seq", PaperFigures(457, 109, 416)),
        ZooModel("albert", "language", "ALBERT-base: 12 layers sharing one set of weights, "
                 "embedding 128 factorized to hidden 768", "language:albert",
                 {"batch": 1, "seq": 128, "layers": 12, "hidden": 768, "heads": 12, "intermediate": 3072,
                  "embedding": 128, "vocab": 30000},
                 {"batch": 1, "seq": 16, "layers": 2, "hidden": 48, "heads": 4, "intermediate": 96,
                  "embedding": 16, "vocab": 100}, "seq", PaperFigures(936, 225, 746)),
        ZooModel("bert_base", "language", "BERT-base: 12 layers, hidden 768, 12 heads",
                 "language:bert", {"batch": 1, "seq": 128, "layers": 12, "hidden": 768, "heads": 12,
                                   "intermediate": 3072, "vocab": 30522},
                 {"batch": 1, "seq": 16, "layers": 2, "hidden": 48, "heads": 4, "intermediate": 96, "vocab": 100},
                 "seq", PaperFigures(976, 216, 760)),
        ZooModel("mobilebert", "language", "MobileBERT: 24 bottleneck layers, 4 stacked FFNs, NoNorm",
                 "language:mobilebert", {"batch": 1, "seq": 128, "layers": 24, "hidden": 512, "heads": 4,
                                         "intermediate": 512, "bottleneck": 128, "vocab": 30522},
                 {"batch": 1, "seq": 16, "layers": 2, "hidden": 32, "heads": 2, "intermediate": 32,
                  "bottleneck": 16, "vocab": 100}, "seq", PaperFigures(2387, 510, 1678)),
        ZooModel("gpt2", "language", "GPT-2 small: 12 decoder layers, hidden 768, causal mask",
                 "language:gpt2", {"batch": 1, "seq": 128, "layers": 12, "hidden": 768, "heads": 12, "vocab": 50257},
                 {"batch": 1, "seq": 16, "layers": 2, "hidden": 48, "heads": 4, "vocab": 100},
                 "seq", PaperFigures(2533, 254, 2047)),
    ]


MODELS: dict[str, ZooModel] = {m.name: m for m in _entries()}


def get(name: str) -> ZooModel:
    """The zoo model called `name`; a ZooError lists the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ZooError(f"no zoo model '{name}'; the zoo has: {', '.join(MODELS)}") from None


def names() -> list[str]:
    return list(MODELS)
