"""Export the small real-world fixtures in tests/data/exports with the PyTorch exporters (needs the `zoo` extra).

Each is a tiny configuration of a real architecture, exported the way users export models: dynamic batch and
sequence/image dimensions, TorchScript exporter at opset 13 and the dynamo exporter at opset 18. The tests bind
the dynamic dimensions, check every value becomes static, and compare the reference executor with onnxruntime.
Run: `python tools/make_export_fixtures.py` (rewrites the .onnx files; commit them)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "exports"


class TinyCNN(nn.Module):
    """Conv-BN-SiLU, depthwise conv, squeeze-excitation, upsample + concat skip, pooling head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.BatchNorm2d(8), nn.ReLU6())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 1), nn.Hardsigmoid())
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.LeakyReLU(0.1))
        self.head = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.dw(x) * self.se(x)
        up = nn.functional.interpolate(self.down(x), scale_factor=2.0, mode="nearest")
        y = torch.cat([x, up], dim=1)
        return torch.softmax(self.head(y.mean(dim=(2, 3))), dim=-1)


class TinyRNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(32, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(self.lstm(x)[0])[0]


class HiddenStates(nn.Module):
    """Calls a transformers model with positional tensors and returns its last hidden state."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        feeds = {"input_ids": input_ids} if attention_mask is None else {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.model(**feeds, use_cache=False).last_hidden_state


def bert() -> tuple[nn.Module, tuple, list[str], dict]:
    from transformers import BertConfig, BertModel  # noqa: PLC0415

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    config._attn_implementation = "eager"   # plain MatMul/Softmax attention, as the paper's graphs have it
    model = HiddenStates(BertModel(config).eval(), ["input_ids", "attention_mask"])
    ids = torch.randint(0, 100, (2, 16))
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    return model, (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], axes


def gpt2() -> tuple[nn.Module, tuple, list[str], dict]:
    from transformers import GPT2Config, GPT2Model  # noqa: PLC0415

    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64, use_cache=False)
    config._attn_implementation = "eager"
    model = HiddenStates(GPT2Model(config).eval(), ["input_ids", "attention_mask"])
    ids = torch.randint(0, 100, (2, 16))
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    return model, (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], axes


def export(name: str, model: nn.Module, args: tuple, inputs: list[str], axes: dict, dynamo: bool, opset: int) -> None:
    path = OUT / f"{name}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {d: torch.export.Dim(d, min=2, max=64) for a in axes.values() for d in a.values()}
            shapes = tuple({k: dims[v] for k, v in axes.get(n, {}).items()} for n in inputs)
            program = torch.onnx.export(model, args, dynamo=True, input_names=inputs, dynamic_shapes=shapes,
                                        opset_version=opset, optimize=False)
            program.save(str(path))
        else:
            torch.onnx.export(model, args, str(path), dynamo=False, input_names=inputs, output_names=["output"],
                              dynamic_axes={**axes, "output": {0: "batch"}}, opset_version=opset)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def main() -> None:
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    cnn = TinyCNN().eval()
    image = torch.randn(2, 3, 32, 32)
    cnn_axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    export("cnn_torchscript_op13", cnn, (image,), ["image"], cnn_axes, dynamo=False, opset=13)
    export("cnn_dynamo_op18", cnn, (image,), ["image"], {"image": {0: "batch"}}, dynamo=True, opset=18)
    export("rnn_torchscript_op13", TinyRNN().eval(), (torch.randn(2, 5, 8),), ["x"], {"x": {0: "batch", 1: "seq"}},
           dynamo=False, opset=13)
    export("bert_torchscript_op13", *bert(), dynamo=False, opset=13)
    export("bert_dynamo_op18", *bert(), dynamo=True, opset=18)
    export("gpt2_torchscript_op13", *gpt2(), dynamo=False, opset=13)
    export("gpt2_torchscript_op17", *gpt2(), dynamo=False, opset=17)


if __name__ == "__main__":
    main()
