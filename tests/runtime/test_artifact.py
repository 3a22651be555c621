"""A compiled model saved as a folder and loaded without the ONNX file, the compiler or onnxruntime: in a fresh
process, from C, for a portable target, and the clear errors for folders that are not whole or not for this CPU."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.errors import DnnfusionError
from dnnfusion.machine import cpu_flags
from dnnfusion.oracle import run_onnxruntime
from dnnfusion.runtime import artifact
from tests.helpers import FLOAT, INT64, make_model
from tests.passes.test_padded import random_boxes

EXAMPLE = Path(__file__).parents[2] / "examples" / "c" / "run_model.c"


def conv_model():
    """Conv + bias + Relu beside a second output (x * 2 + 1): two outputs, packed weights."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(8).astype(np.float32), "two": np.array(2, np.float32),
             "one": np.array(1, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"]),
             helper.make_node("Mul", ["x", "two"], ["m"]), helper.make_node("Add", ["m", "one"], ["z"])]
    return make_model(nodes, [("x", FLOAT, [1, 3, 20, 20])], ["y", "z"], inits, output_type=FLOAT)


def feeds():
    return {"x": np.random.default_rng(1).standard_normal((1, 3, 20, 20)).astype(np.float32)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The conv model compiled, its outputs for `feeds()`, and the folder it was saved to."""
    model = dnnfusion.compile(conv_model(), threads=2)
    folder = model.save(tmp_path_factory.mktemp("artifact") / "conv")
    return model, model.run(feeds()), folder


def test_saved_folder_holds_library_weights_header_and_manifest(saved):
    model, _, folder = saved
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"model.so", "weights.bin", "model.h", "model.c", manifest["library"]["pool"]} <= \
        {p.name for p in folder.iterdir()}
    assert manifest["inputs"] == [{"name": "x", "shape": [1, 3, 20, 20], "dtype": "float32"}]
    assert [o["name"] for o in manifest["outputs"]] == ["y", "z"]
    assert manifest["weights"]["bytes"] == (folder / "weights.bin").stat().st_size == model.program.weights.size
    assert manifest["target"]["name"] == "native" and manifest["stats"]["blocks"] == model.stats["blocks"]
    assert "-march=native" in manifest["toolchain"]["flags"]
    header = (folder / "model.h").read_text()
    assert "#define DF_MODEL_INPUT0_ELEMENTS 1200ULL" in header and "df_model_run" in header


def test_loaded_in_a_fresh_process_without_the_onnx_file_or_a_compiler(saved, tmp_path):
    """The folder is moved (nothing points back at the cache), and the child has no compiler on its PATH and a
    CC that does not exist: loading must not build anything, nor import onnxruntime."""
    _, expected, folder = saved
    moved = shutil.copytree(folder, tmp_path / "shipped")
    np.save(tmp_path / "x.npy", feeds()["x"])
    script = ("import sys, numpy as np, dnnfusion\n"
              f"m = dnnfusion.load({str(moved)!r}, threads=2)\n"
              f"out = m.run({{'x': np.load({str(tmp_path / 'x.npy')!r})}})\n"
              f"np.savez({str(tmp_path / 'out.npz')!r}, **out)\n"
              "assert 'onnxruntime' not in sys.modules\n")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "CC": "/nonexistent/cc",
           "DNNFUSION_CACHE_DIR": str(tmp_path / "empty-cache")}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=tmp_path)
    result = np.load(tmp_path / "out.npz")
    for name in ("y", "z"):
        np.testing.assert_array_equal(result[name], expected[name])


def test_loaded_model_checks_feeds_and_runs_concurrently_shaped_calls(saved):
    _, expected, folder = saved
    loaded = dnnfusion.load(folder)
    assert [s.name for s in loaded.inputs] == ["x"] and loaded.outputs[0].shape == (1, 8, 20, 20)
    for _ in range(2):                                 # the arena is reused
        np.testing.assert_array_equal(loaded.run(feeds())["y"], expected["y"])
    with pytest.raises(DnnfusionError, match="has shape"):
        loaded.run({"x": np.zeros((1, 3, 20, 21), np.float32)})


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")
def test_called_from_c_without_python(saved, tmp_path):
    _, expected, folder = saved
    binary = tmp_path / "run_model"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", f"-I{folder}", str(EXAMPLE), f"-L{folder}", "-l:model.so",
                    f"-Wl,-rpath,{folder}", "-o", str(binary)], check=True)
    feeds()["x"].tofile(tmp_path / "x.bin")
    subprocess.run([str(binary), str(folder / "weights.bin"), str(tmp_path / "x.bin"), str(tmp_path / "y.bin"),
                    str(tmp_path / "z.bin"), "2"], check=True)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "y.bin", np.float32).reshape(1, 8, 20, 20), expected["y"])
    np.testing.assert_array_equal(np.fromfile(tmp_path / "z.bin", np.float32).reshape(1, 3, 20, 20), expected["z"])


@pytest.mark.skipif(not {"avx2", "fma"} <= cpu_flags(), reason="needs an AVX2 CPU")
def test_portable_target_generates_no_wider_code_and_matches(tmp_path):
    model = dnnfusion.compile(conv_model(), target="x86-64-v3")
    assert "_mm512" not in model.source and "-march=x86-64-v3" in model.build.toolchain.flags
    folder = model.save(tmp_path / "v3")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "avx2" in manifest["target"]["cpu_features"] and "avx512f" not in manifest["target"]["cpu_features"]
    reference = dnnfusion.compile(conv_model(), target="native").run(feeds())
    got = dnnfusion.load(folder).run(feeds())
    np.testing.assert_allclose(got["y"], reference["y"], rtol=1e-5, atol=1e-5)


def test_a_cpu_without_the_targets_features_is_refused(saved, tmp_path, monkeypatch):
    _, _, folder = saved
    copy = shutil.copytree(folder, tmp_path / "copy")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["target"].update(name="x86-64-v4", cpu_features=["avx512f", "no_such_feature"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(artifact.ArtifactError, match="x86-64-v4.*no_such_feature.*--target"):
        dnnfusion.load(copy)


def test_a_model_built_for_features_this_cpu_lacks_saves_but_does_not_run(monkeypatch, tmp_path):
    from dnnfusion.runtime import compiled as compiled_module
    monkeypatch.setattr(compiled_module, "missing_features", lambda required: ["avx512f"])
    model = dnnfusion.compile(conv_model())
    with pytest.raises(DnnfusionError, match="lacks \\(avx512f\\)"):
        model.run(feeds())
    assert (model.save(tmp_path / "elsewhere") / "manifest.json").is_file()


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "manifest.json").unlink(), "no manifest.json"),
    (lambda f: (f / "weights.bin").write_bytes(b"short"), "not the size its manifest says"),
    (lambda f: (f / "model.so").unlink(), "lacks model.so"),
    (lambda f: (f / "model.so").write_bytes(b"\0" * 64), "does not match its manifest"),
    (lambda f: (f / "manifest.json").write_text("{"), "not a valid manifest"),
    (lambda f: (f / "manifest.json").write_text('{"format": 99}'), "format 99"),
    (lambda f: (f / "manifest.json").write_text('{"format": 1}'), "lacks inputs"),
])
def test_damaged_folders_get_a_clear_error(saved, tmp_path, damage, message):
    copy = shutil.copytree(saved[2], tmp_path / "copy")
    damage(copy)
    with pytest.raises(artifact.ArtifactError, match=message):
        dnnfusion.load(copy)


def test_padded_detection_outputs_are_trimmed_after_loading(tmp_path):
    inits = {"limit": np.array([4], np.int64), "iou": np.array([0.4], np.float32), "col": np.array([2], np.int64)}
    nodes = [helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou"], ["sel"]),
             helper.make_node("Gather", ["sel", "col"], ["picked"], axis=1)]
    model = make_model(nodes, [("boxes", FLOAT, [2, 16, 4]), ("scores", FLOAT, [2, 3, 16])], ["sel", "picked"],
                       inits, opset=18, output_type=INT64)
    boxes = random_boxes(np.random.default_rng(3), 2, 3, 16)
    loaded = dnnfusion.load(dnnfusion.compile(model).save(tmp_path / "nms"))
    got, expected = loaded.run(boxes), run_onnxruntime(model.SerializeToString(), boxes)
    assert list(got) == ["sel", "picked"]
    for name in ("sel", "picked"):
        np.testing.assert_array_equal(got[name], expected[name])


def test_a_model_with_fallback_operators_is_refused(tmp_path):
    inits = {"limit": np.array([3], np.int64), "iou": np.array([0.5], np.float32), "axes": np.array([0], np.int64)}
    nms = helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou"], ["sel"])
    summed = make_model([nms, helper.make_node("ReduceSum", ["sel", "axes"], ["total"], keepdims=0)],
                        [("boxes", FLOAT, [1, 10, 4]), ("scores", FLOAT, [1, 2, 10])], ["total"], inits,
                        opset=18, output_type=INT64)
    with pytest.raises(artifact.ArtifactError, match="NonMaxSuppression.*numpy fallbacks"):
        dnnfusion.compile(summed).save(tmp_path / "no")
    assert not (tmp_path / "no").exists()


def test_an_unknown_target_lists_the_known_ones():
    with pytest.raises(DnnfusionError, match="x86-64-v3"):
        dnnfusion.CompileOptions(target="pentium")
