"""Export small models with other toolchains' own ONNX exporters into tests/data/interop (run by hand, per toolchain).

Each builder makes a tiny configuration of a real architecture from code with random weights (nothing is
downloaded), exports it the way that toolchain's users do (dynamic batch and sequence/time axes where the exporter
offers them) and records it in tests/data/interop/MANIFEST.json: file, toolchain and exporter versions, architecture,
opset, the input shapes/dtypes/value ranges the tests feed, and how it was built. Freshly initialized deep CNNs have
vanishing activations (their outputs hardly depend on the input, which would make the comparison with onnxruntime
vacuous), so every BatchNorm is calibrated as training would leave it: running mean and variance those of its input
on a batch of random images, scale and shift drawn at random. The tests (tests/interop) need only onnx, onnxruntime
and dnnfusion, never the toolchains.

Run inside a virtual environment that has the toolchain, e.g.
  python tools/make_interop_fixtures.py paddle        # paddlepaddle + paddle2onnx
  python tools/make_interop_fixtures.py keras         # tensorflow-cpu (Keras 3) + tf2onnx, via Model.export
  python tools/make_interop_fixtures.py ultralytics   # ultralytics + torch==2.13.0 (+ onnx, onnxslim)
  python tools/make_interop_fixtures.py speech        # torch==2.13.0 + transformers (+ onnxscript)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "interop"
MANIFEST = OUT / "MANIFEST.json"
MAX_BYTES = 1_500_000


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of the named distributions (those that are installed)."""
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def spec(shape: list[int], dtype: str, low: float, high: float) -> dict:
    """One test input: the bound shape, the element type and the half-open range the tests draw values from."""
    return {"shape": shape, "dtype": dtype, "low": low, "high": high}


def exported_shapes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Graph input shapes as exported: ints for static dimensions, names for dynamic ones."""
    inits = {i.name for i in model.graph.initializer}
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input if i.name not in inits}


def record(path: Path, toolchain: dict[str, str], exporter: str, architecture: str,
           inputs: dict[str, dict], builder: str) -> dict:
    """Check the exported file (size, inputs) and return its manifest entry."""
    model = onnx.load(str(path))
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path.name} is {size} bytes, over the {MAX_BYTES} limit: make the model smaller")
    shapes = exported_shapes(model)
    if set(shapes) != set(inputs):
        raise SystemExit(f"{path.name}: graph inputs {sorted(shapes)} differ from the test inputs {sorted(inputs)}")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    print(f"wrote {path} ({size // 1024} KiB, {len(model.graph.node)} nodes, opset {opset})")
    return {"file": path.name, "toolchain": toolchain, "exporter": exporter, "architecture": architecture,
            "opset": opset, "exported_shapes": shapes, "inputs": inputs, "builder": builder}


def affine(channels: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random BatchNorm scale in [0.5, 1.5) and shift in [-0.25, 0.25), as a trained model's would vary."""
    return (rng.uniform(0.5, 1.5, channels).astype(np.float32), rng.uniform(-0.25, 0.25, channels).astype(np.float32))


# --- PaddlePaddle: paddle.onnx.export (paddle2onnx) ---------------------------------------------------------------

def paddle_fixtures() -> dict[str, dict]:
    """MobileNetV3-Small and ShuffleNetV2 from paddle.vision, and an Embedding + LSTM + Transformer text model."""
    import paddle  # noqa: PLC0415
    from paddle import nn  # noqa: PLC0415

    paddle.seed(0)
    tool = versions("paddlepaddle", "paddle2onnx")
    exporter = f"paddle.onnx.export (paddle2onnx {tool.get('paddle2onnx')})"
    entries = {}

    def calibrate(layer: nn.Layer, images: paddle.Tensor) -> None:
        """Every BatchNorm's statistics from its input on `images` (set just before it runs), scale/shift random."""
        rng = np.random.default_rng(0)

        def hook(bn: nn.Layer, inputs: tuple) -> None:
            x = inputs[0]
            bn._mean.set_value(x.mean(axis=[0, 2, 3]))
            bn._variance.set_value(x.var(axis=[0, 2, 3], unbiased=False))
            scale, shift = affine(x.shape[1], rng)
            bn.weight.set_value(scale)
            bn.bias.set_value(shift)

        handles = [m.register_forward_pre_hook(hook) for m in layer.sublayers()
                   if isinstance(m, nn.layer.norm._BatchNormBase)]
        layer.eval()
        with paddle.no_grad():
            layer(images)
        for handle in handles:
            handle.remove()

    def export(name: str, layer: nn.Layer, input_specs: list, opset: int) -> Path:
        layer.eval()
        with tempfile.TemporaryDirectory() as tmp:
            prefix = os.path.join(tmp, name)
            paddle.onnx.export(layer, prefix, input_spec=input_specs, opset_version=opset)
            path = OUT / f"{name}.onnx"
            path.write_bytes(Path(prefix + ".onnx").read_bytes())
        return path

    image = [paddle.static.InputSpec([None, 3, 64, 64], "float32", "image")]
    calibration = paddle.rand([16, 3, 64, 64])
    mobilenet = paddle.vision.models.mobilenet_v3_small(pretrained=False, scale=0.35, num_classes=10)
    calibrate(mobilenet, calibration)
    path = export("paddle_mobilenet_v3_small", mobilenet, image, opset=14)
    entries[path.stem] = record(
        path, tool, exporter, "MobileNetV3-Small (hardswish, squeeze-excitation, depthwise conv)",
        {"image": spec([2, 3, 64, 64], "float32", 0.0, 1.0)},
        "paddle.vision.models.mobilenet_v3_small(pretrained=False, scale=0.35, num_classes=10), BatchNorms calibrated "
        "on paddle.rand([16, 3, 64, 64]), eval; InputSpec([None, 3, 64, 64]), opset 14")

    shufflenet = paddle.vision.models.shufflenet_v2_x0_25(pretrained=False, num_classes=10)
    calibrate(shufflenet, calibration)
    path = export("paddle_shufflenet_v2", shufflenet, image, opset=14)
    entries[path.stem] = record(
        path, tool, exporter, "ShuffleNetV2 x0.25 (channel shuffle, split, concat)",
        {"image": spec([2, 3, 64, 64], "float32", 0.0, 1.0)},
        "paddle.vision.models.shufflenet_v2_x0_25(pretrained=False, num_classes=10), BatchNorms calibrated "
        "on paddle.rand([16, 3, 64, 64]), eval; InputSpec([None, 3, 64, 64]), opset 14")

    class TextClassifier(nn.Layer):
        """Token embedding, a bidirectional LSTM, one Transformer encoder layer, mean pooling, a linear head."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 32)
            self.lstm = nn.LSTM(32, 16, direction="bidirect")
            self.encoder = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0)
            self.head = nn.Linear(32, 5)

        def forward(self, input_ids):
            x, _ = self.lstm(self.embed(input_ids))
            return nn.functional.softmax(self.head(self.encoder(x).mean(axis=1)), axis=-1)

    ids = [paddle.static.InputSpec([None, None], "int64", "input_ids")]
    path = export("paddle_lstm_transformer_text", TextClassifier(), ids, opset=17)
    entries[path.stem] = record(
        path, tool, exporter, "text classifier: Embedding + bidirectional LSTM + TransformerEncoderLayer",
        {"input_ids": spec([2, 12], "int64", 0, 100)},
        "paddle.nn: Embedding(100, 32), LSTM(32, 16, direction='bidirect'), TransformerEncoderLayer(32, 4, 64, "
        "dropout=0), mean over time, Linear(32, 5), softmax; InputSpec([None, None] int64), opset 17")
    return entries


# --- Keras 3 on TensorFlow: Model.export(format="onnx"), which converts with tf2onnx ------------------------------

def keras_fixtures() -> dict[str, dict]:
    """MobileNetV2, a small U-Net (NHWC, so tf2onnx inserts Transposes) and an LSTM + MultiHeadAttention text model."""
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    tool = versions("keras", "tensorflow-cpu", "tensorflow", "tf2onnx")
    exporter = f"keras Model.export(format='onnx') (tf2onnx {tool.get('tf2onnx')})"
    entries = {}

    def calibrate(model, images: np.ndarray) -> None:
        """Every BatchNorm's moving statistics from its input on `images`, in graph order; scale/shift random."""
        rng = np.random.default_rng(0)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                x = np.asarray(keras.Model(model.input, layer.input)(images, training=False))
                layer.set_weights([*affine(x.shape[-1], rng), x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))])

    def export(name: str, model, signature: list, opset: int) -> Path:
        path = OUT / f"{name}.onnx"
        model.export(str(path), format="onnx", input_signature=signature, opset_version=opset, verbose=False)
        return path

    backbone = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3), include_top=False)
    features = keras.layers.GlobalAveragePooling2D()(backbone.get_layer("block_16_project_BN").output)
    mobilenet = keras.Model(backbone.input, keras.layers.Dense(10, activation="softmax")(features))
    calibrate(mobilenet, np.random.default_rng(0).uniform(0, 1, (16, 96, 96, 3)).astype(np.float32))
    path = export("keras_mobilenet_v2", mobilenet, [tf.TensorSpec([None, 96, 96, 3], tf.float32, name="image")], 13)
    entries[path.stem] = record(
        path, tool, exporter, "MobileNetV2 alpha 0.35 backbone, NHWC input (inverted residuals, ReLU6)",
        {"image": spec([2, 96, 96, 3], "float32", 0.0, 1.0)},
        "keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3), include_top=False) up to "
        "block_16_project_BN (the 1280-channel Conv_1 left out for size), GlobalAveragePooling2D, Dense(10, softmax); "
        "BatchNorms calibrated on 16 uniform [0, 1) images; TensorSpec([None, 96, 96, 3]), opset 13")

    def block(x, filters: int):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        return keras.layers.SeparableConv2D(filters, 3, padding="same", activation="swish")(x)

    image = keras.Input((32, 48, 3), name="image")   # bilinear UpSampling2D needs static height/width
    skip1 = block(image, 8)
    skip2 = block(keras.layers.MaxPooling2D(2)(skip1), 16)
    x = block(keras.layers.AveragePooling2D(2)(skip2), 32)
    x = keras.layers.Concatenate()([keras.layers.UpSampling2D(interpolation="bilinear")(x), skip2])
    x = keras.layers.Conv2DTranspose(8, 2, strides=2)(block(x, 16))
    x = block(keras.layers.Concatenate()([x, skip1]), 8)
    unet = keras.Model(image, keras.layers.Conv2D(2, 1, activation="sigmoid")(x))
    calibrate(unet, np.random.default_rng(1).uniform(0, 1, (16, 32, 48, 3)).astype(np.float32))
    path = export("keras_unet", unet, [tf.TensorSpec([None, 32, 48, 3], tf.float32, name="image")], 17)
    entries[path.stem] = record(
        path, tool, exporter, "small U-Net, NHWC (Conv-BN-ReLU, separable conv + swish, max/avg pool, "
        "bilinear upsampling, transposed conv, channel-last concat skips)",
        {"image": spec([2, 32, 48, 3], "float32", 0.0, 1.0)},
        "keras functional U-Net: blocks of Conv2D(no bias)-BatchNormalization-ReLU + SeparableConv2D(swish) at 8/16/32 "
        "filters, MaxPooling2D and AveragePooling2D down, UpSampling2D(bilinear) and Conv2DTranspose(8, 2, strides=2) "
        "up with Concatenate skips, Conv2D(2, 1, sigmoid); BatchNorms calibrated on 16 uniform [0, 1) images; "
        "TensorSpec([None, 32, 48, 3]), opset 17")

    def tanh_gelu(x):
        return keras.activations.gelu(x, approximate=True)   # tf2onnx cannot convert the exact GELU's Erfc

    tokens = keras.Input((None,), dtype="int32", name="input_ids")
    x = keras.layers.Embedding(100, 32)(tokens)
    x = keras.layers.LSTM(32, return_sequences=True)(x)
    attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(x, x)
    x = keras.layers.LayerNormalization()(x + attended)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(64, activation=tanh_gelu)(x))
    text = keras.Model(tokens, keras.layers.Dense(5, activation="softmax")(x))
    path = export("keras_lstm_attention_text", text, [tf.TensorSpec([None, None], tf.int32, name="input_ids")], 17)
    entries[path.stem] = record(
        path, tool, exporter, "text classifier: Embedding + LSTM + MultiHeadAttention + LayerNorm",
        {"input_ids": spec([2, 12], "int32", 0, 100)},
        "keras functional: Embedding(100, 32), LSTM(32, return_sequences=True), MultiHeadAttention(4 heads, key_dim 8) "
        "residual + LayerNormalization, Dense(64, tanh-approximated gelu), GlobalAveragePooling1D, Dense(5, softmax); "
        "TensorSpec([None, None] int32), opset 17")
    return entries


def calibrate_torch(model, images) -> None:
    """Every BatchNorm's running statistics from its input on `images` (set just before it runs), scale/shift random."""
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(0)

    def hook(bn: torch.nn.Module, inputs: tuple) -> None:
        x = inputs[0]
        dims = [0, *range(2, x.dim())]
        bn.running_mean.copy_(x.mean(dims))
        bn.running_var.copy_(x.var(dims, unbiased=False))
        scale, shift = affine(x.shape[1], rng)
        bn.weight.copy_(torch.from_numpy(scale))
        bn.bias.copy_(torch.from_numpy(shift))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        model.eval()(images)
    for handle in handles:
        handle.remove()


# --- ultralytics: YOLO detection models from yaml, exported with ultralytics' own exporter ------------------------

def ultralytics_fixtures() -> dict[str, dict]:
    """YOLOv8 and YOLO11 detection models at the n scale capped to 64 channels (4 classes), random init from yaml."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch  # noqa: PLC0415
    import yaml  # noqa: PLC0415
    from ultralytics import YOLO  # noqa: PLC0415
    from ultralytics.utils import ROOT  # noqa: PLC0415

    tool = versions("ultralytics", "torch", "onnx", "onnxslim")
    exporter = f"ultralytics YOLO.export(format='onnx', dynamic=True, simplify=True) {tool.get('ultralytics')}"
    entries = {}
    for family, yaml_name, scale, arch in (
            ("yolov8", "v8/yolov8.yaml", [0.33, 0.25, 64],
             "YOLOv8 detection (C2f, SPPF, decoupled DFL head, box decoding)"),
            ("yolo11", "11/yolo11.yaml", [0.50, 0.25, 64],
             "YOLO11 detection (C3k2, SPPF, C2PSA attention, DFL head with depthwise class branch, box decoding)")):
        cfg = yaml.safe_load((ROOT / "cfg" / "models" / yaml_name).read_text())
        cfg["nc"], cfg["scales"] = 4, {"t": scale}
        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):   # the exporter writes to the working dir
            cfg_path = Path(tmp) / f"{family}t.yaml"
            cfg_path.write_text(yaml.safe_dump(cfg))
            torch.manual_seed(0)
            model = YOLO(str(cfg_path), task="detect")
            for branch in model.model.model[-1].cv3:
                branch[-1].bias.data.zero_()   # class scores around 0.5 rather than the prior init's ~3e-4
            calibrate_torch(model.model, torch.rand(16, 3, 128, 128))
            model.model.names = {i: f"class{i}" for i in range(4)}
            exported = Path(model.export(format="onnx", imgsz=128, dynamic=True, simplify=True, opset=17,
                                         batch=1, device="cpu"))
            path = OUT / f"ultralytics_{family}t_det.onnx"
            path.write_bytes(exported.read_bytes())
        entries[path.stem] = record(
        path, tool, exporter, arch,
            {"images": spec([2, 3, 128, 160], "float32", 0.0, 1.0)},
            f"ultralytics/cfg/models/{yaml_name} with nc=4 and scales={{'t': {scale}}} (the n scale's depth and width, "
            "max channels 64), random init (no weights), class-logit biases zeroed, BatchNorms calibrated on "
            "torch.rand(16, 3, 128, 128), YOLO(...).export(format='onnx', imgsz=128, dynamic=True, "
            "simplify=True, opset=17) with YOLO_OFFLINE=1")
    return entries


# --- speech: transformers Wav2Vec2ForCTC and the Whisper encoder, torch.onnx.export --------------------------------

def speech_fixtures() -> dict[str, dict]:
    """Wav2Vec2ForCTC and the Whisper encoder, each through the TorchScript and the dynamo exporter."""
    import torch  # noqa: PLC0415
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC, WhisperConfig, WhisperModel  # noqa: PLC0415

    torch.manual_seed(0)
    tool = versions("torch", "transformers", "onnxscript")
    bounds = {"batch": (1, 16), "samples": (400, 64000)}
    entries = {}

    class Field(torch.nn.Module):
        """Calls a transformers model positionally and returns one named field of its output."""

        def __init__(self, model: torch.nn.Module, field: str) -> None:
            super().__init__()
            self.model, self.field = model, field

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return getattr(self.model(x), self.field)

    def export(stem: str, model: torch.nn.Module, example: torch.Tensor, input_name: str, axes: dict[int, str],
               test_input: dict, architecture: str, builder: str) -> None:
        for dynamo, opset in ((False, 17), (True, 18)):
            path = OUT / f"{stem}_{'dynamo' if dynamo else 'torchscript'}.onnx"
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                if dynamo:
                    dims = {i: torch.export.Dim(d, min=bounds[d][0], max=bounds[d][1]) for i, d in axes.items()}
                    program = torch.onnx.export(model, (example,), dynamo=True, input_names=[input_name],
                                                output_names=["output"], dynamic_shapes=(dims,), opset_version=opset)
                    program.save(str(path))
                else:
                    torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[input_name],
                                      output_names=["output"], dynamic_axes={input_name: axes, "output": {0: "batch"}},
                                      opset_version=opset)
            used = tool if dynamo else {k: v for k, v in tool.items() if k != "onnxscript"}
            entries[path.stem] = record(path, used, f"torch.onnx.export(dynamo={dynamo})", architecture,
                                        {input_name: test_input}, f"{builder}; opset {opset}")

    w2v_config = Wav2Vec2Config(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2),
                                conv_kernel=(10, 3, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    w2v_config._attn_implementation = "eager"
    export("speech_wav2vec2_ctc", Field(Wav2Vec2ForCTC(w2v_config).eval(), "logits").eval(), torch.randn(2, 1600),
           "input_values", {0: "batch", 1: "samples"}, spec([2, 2000], "float32", -1.0, 1.0),
           "Wav2Vec2ForCTC (conv feature encoder with GroupNorm, grouped positional conv, post-LN transformer, "
           "CTC head)",
           "transformers Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32, hidden_size=32, num_hidden_layers=2, "
           "num_attention_heads=4, intermediate_size=64, conv_dim=(16,16,16), conv_stride=(5,2,2), "
           "conv_kernel=(10,3,3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4), eager attention), "
           "logits; traced on (2, 1600), dynamic batch and samples")

    whisper_config = WhisperConfig(vocab_size=64, d_model=32, encoder_layers=2, encoder_attention_heads=4,
                                   decoder_layers=1, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                   num_mel_bins=16, max_source_positions=32, max_target_positions=32,
                                   pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                                   init_std=0.2)   # at the default 0.02 the positional embedding drowns the audio
    whisper_config._attn_implementation = "eager"
    encoder = Field(WhisperModel(whisper_config).get_encoder().eval(), "last_hidden_state").eval()
    export("speech_whisper_encoder", encoder, torch.randn(2, 16, 64), "input_features", {0: "batch"},
           spec([3, 16, 64], "float32", -1.0, 1.0),
           "Whisper encoder (two GELU convs, sinusoidal positions, pre-LN transformer)",
           "transformers WhisperModel(WhisperConfig(vocab_size=64, d_model=32, encoder_layers=2, "
           "encoder_attention_heads=4, decoder_layers=1, decoder_attention_heads=4, encoder_ffn_dim=64, "
           "decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=32, pad/bos/eos ids 0/1/2, init_std=0.2), eager "
           "attention).get_encoder(), last_hidden_state; traced on (2, 16, 64), dynamic batch (the encoder requires "
           "2 * max_source_positions frames)")
    return entries


TOOLCHAINS: dict[str, Callable[[], dict[str, dict]]] = {
    "paddle": paddle_fixtures, "keras": keras_fixtures, "ultralytics": ultralytics_fixtures, "speech": speech_fixtures}


def main(argv: list[str]) -> None:
    """Build the named toolchains' fixtures and merge their entries into the manifest."""
    if not argv or any(a not in TOOLCHAINS for a in argv):
        raise SystemExit(f"usage: make_interop_fixtures.py {{{','.join(TOOLCHAINS)}}} ...")
    np.random.seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    for name in argv:
        manifest.update(TOOLCHAINS[name]())
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    total = sum((OUT / e["file"]).stat().st_size for e in manifest.values())
    print(f"manifest: {len(manifest)} fixtures, {total // 1024} KiB in all")


if __name__ == "__main__":
    main(sys.argv[1:])
