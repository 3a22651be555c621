"""Exports from other toolchains (tests/data/interop, made by tools/make_interop_fixtures.py with PaddlePaddle,
Keras/tf2onnx, ultralytics and the PyTorch exporters on speech models) compile at O0 and O3 with no fallback
operator, run in one native call, and match onnxruntime on seeded feeds of the manifest's shapes and ranges.
The C is built at gcc -O1 to keep the detection models' cases short; the same cases pass at the default flags."""

import json
from pathlib import Path

import numpy as np
import pytest

import dnnfusion
from dnnfusion.oracle import ATOL, compare, run_onnxruntime

INTEROP = Path(__file__).resolve().parents[1] / "data" / "interop"
MANIFEST = json.loads((INTEROP / "MANIFEST.json").read_text())
LEVELS = ("O0", "O3")
@pytest.fixture(autouse=True, scope="module")
def quick_builds():
    """gcc -O1 instead of -O3: the detection models' C builds in a third of the time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DNNFUSION_CFLAGS", "-O1 -march=native")
        yield


def feeds_for(inputs: dict[str, dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded values in each input's [low, high): integers for token ids, uniform floats for images and audio."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, spec in sorted(inputs.items()):
        dtype = np.dtype(spec["dtype"])
        if dtype.kind in "iu":
            feeds[name] = rng.integers(spec["low"], spec["high"], spec["shape"]).astype(dtype)
        else:
            feeds[name] = rng.uniform(spec["low"], spec["high"], spec["shape"]).astype(dtype)
    return feeds


def matches(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> list:
    """The oracle's comparison, with the absolute tolerance scaled by each output's magnitude: detection boxes are
    in pixels (up to ~200), where float32 cancellation near zero costs more than 1e-4 (onnxruntime's own optimized
    and unoptimized runs differ by 2e-3 there)."""
    return [d for name, ref in reference.items()
            for d in compare({name: ours[name]}, {name: ref}, atol=ATOL * max(1.0, float(np.abs(ref).max())))]


def cases() -> list:
    """One case per fixture and level. (ultralytics_yolo11t_det at O0 is the model that exposed the gcc 12
    miscompile that build.REQUIRED_FLAGS works around.)"""
    return [pytest.param(name, level, id=f"{name}-{level}") for name in sorted(MANIFEST) for level in LEVELS]


def test_manifest_lists_exactly_the_files_present():
    files = {p.name for p in INTEROP.glob("*.onnx")}
    assert sorted(e["file"] for e in MANIFEST.values()) == sorted(files)
    assert {e["file"] for e in MANIFEST.values()} == {f"{name}.onnx" for name in MANIFEST}
    for entry in MANIFEST.values():
        assert entry["toolchain"] and entry["exporter"] and entry["architecture"] and entry["builder"]
        assert set(entry["inputs"]) == set(entry["exported_shapes"])


def test_manifest_covers_every_toolchain():
    toolchains = {package for entry in MANIFEST.values() for package in entry["toolchain"]}
    assert {"paddlepaddle", "tf2onnx", "ultralytics", "transformers"} <= toolchains


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_outputs_depend_on_the_input(name):
    """Random weights must not leave a model input-blind, or matching onnxruntime would prove little."""
    path = str(INTEROP / MANIFEST[name]["file"])
    first, second = (run_onnxruntime(path, feeds_for(MANIFEST[name]["inputs"], seed)) for seed in (0, 1))
    assert max(float(np.abs(first[k].astype(np.float64) - second[k]).max()) for k in first) > 1e-2


@pytest.mark.parametrize(("name", "level"), cases())
def test_compiles_natively_and_matches_onnxruntime(name, level):
    entry = MANIFEST[name]
    path = INTEROP / entry["file"]
    shapes = {k: tuple(v["shape"]) for k, v in entry["inputs"].items()}
    compiled = dnnfusion.compile(path, input_shapes=shapes, opt_level=level)
    feeds = feeds_for(entry["inputs"])
    diffs = matches(compiled.run(feeds), run_onnxruntime(str(path), feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    assert compiled.stats["fallback_ops"] == []
    assert compiled.stats["native_calls_per_run"] == 1
