"""The GEMM kernel benchmark: shapes, models, the measured peak, the worker and the command (no timing claims)."""

import json
import math
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dnnfusion.bench import kernel_worker, kernels
from dnnfusion.bench.kernels import SHAPES_BY_NAME, GemmShape
from dnnfusion.cli import main
from dnnfusion.errors import DnnfusionError

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")


def test_shape_table():
    assert len(kernels.SHAPES) == len(SHAPES_BY_NAME) == 12
    assert GemmShape("x", 2, 3, 4).flops == 48
    assert SHAPES_BY_NAME["bert_qkv"].flops == 2 * 128 * 768 * 768
    scores = SHAPES_BY_NAME["attn_scores"]
    assert scores.flops == 2 * 12 * 128 * 64 * 128 and not scores.constant_b
    assert scores.a_shape == (12, 128, 64) and scores.b_shape == (12, 64, 128) and scores.label == "12x 128x64x128"
    assert SHAPES_BY_NAME["odd"].label == "77x301x509"
    assert all(s.constant_b == (s.batch == 1) for s in kernels.SHAPES)


def test_select_shapes():
    assert "gpt2_head" in [s.name for s in kernels.select_shapes()]
    assert "gpt2_head" not in [s.name for s in kernels.select_shapes(quick=True)]
    assert [s.name for s in kernels.select_shapes("odd, bert_qkv")] == ["odd", "bert_qkv"]
    with pytest.raises(DnnfusionError, match="nope"):
        kernels.select_shapes("odd,nope")


@pytest.mark.parametrize("name", ["odd_small", "attn_context"])
def test_model_builder(name):
    shape = SHAPES_BY_NAME[name]
    model = kernels.build_model(shape)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    assert model.opset_import[0].version == 17
    inputs = [i.name for i in model.graph.input]
    initializers = [t.name for t in model.graph.initializer]
    if shape.constant_b:
        assert inputs == ["A"] and initializers == ["B"]
    else:
        assert inputs == ["A", "B"] and initializers == []
    a, b = kernels.arrays(shape)
    assert a.dtype == b.dtype == np.float32 and np.array_equal(b, kernels.arrays(shape)[1])


def test_check_output_rejects_a_wrong_product():
    shape = SHAPES_BY_NAME["odd_small"]
    a, b = kernels.arrays(shape)
    kernels.check_output(shape, "x", a @ b + 1e-5, a @ b)
    with pytest.raises(DnnfusionError, match="wrong product"):
        kernels.check_output(shape, "x", a @ b + 0.1, a @ b)


@needs_gcc
def test_peak_gflops_is_positive_and_finite():
    peak = kernels.peak_gflops()
    assert peak > 0 and math.isfinite(peak)
    assert kernels.measure_peak().lanes in (8, 16)


@pytest.mark.parametrize("runtime", kernels.RUNTIMES)
def test_worker_times_each_runtime(runtime, capsys):
    assert kernel_worker.main(["--runtime", runtime, "--threads", "1", "--rounds", "1", "--shapes", "odd_small"]) == 0
    samples = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(samples) == ["odd_small"] and len(samples["odd_small"]) == 1 and samples["odd_small"][0] > 0


def test_worker_in_its_own_process():
    samples = kernels.run_worker("numpy", 1, 2, [SHAPES_BY_NAME["attn_scores"]])
    assert len(samples["attn_scores"]) == 2 and min(samples["attn_scores"]) > 0


def test_failing_worker_raises_with_its_stderr(monkeypatch):
    monkeypatch.setattr(kernels.sys, "executable", "/bin/false")
    with pytest.raises(DnnfusionError, match="exited with status 1"):
        kernels.run_worker("numpy", 1, 1, [SHAPES_BY_NAME["odd_small"]])


def test_numpy_worker_gets_the_blas_thread_count():
    env = kernels.worker_env("numpy", 3)
    assert all(env[name] == "3" for name in kernels.BLAS_THREAD_VARIABLES)
    assert kernels.worker_env("dnnfusion", 2)["OPENBLAS_NUM_THREADS"] == "1"


@needs_gcc
def test_cli(tmp_path):
    json_path, md_path = tmp_path / "k.json", tmp_path / "k.md"
    result = CliRunner().invoke(main, ["bench-kernels", "--quick", "--threads", "1", "--shapes", "odd_small",
                                       "--rounds", "1", "--blocks", "1", "--json", str(json_path),
                                       "--markdown", str(md_path)])
    assert result.exit_code == 0, result.output
    assert "odd_small" in result.output and "% of peak" in result.output
    data = json.loads(json_path.read_text())
    assert data["peak_gflops_per_core"] > 0 and data["cpu"]
    [row] = data["results"]
    assert row["shape"] == "odd_small" and row["threads"] == 1
    assert set(row["runtimes"]) == set(kernels.RUNTIMES)
    assert all(len(r["samples_s"]) == 1 and r["best_gflops"] > 0 for r in row["runtimes"].values())
    assert "| odd_small | 13x45x37 | 1 |" in md_path.read_text()


def test_cli_rejects_unknown_shapes_and_threads():
    result = CliRunner().invoke(main, ["bench-kernels", "--shapes", "nope"])
    assert result.exit_code == 2 and "nope" in result.output
    result = CliRunner().invoke(main, ["bench-kernels", "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in result.output


def test_worker_fails_loudly_on_a_wrong_product(monkeypatch, capsys):
    monkeypatch.setattr(kernel_worker, "build_model", lambda shape, b: kernels.build_model(shape, b * 2))
    assert kernel_worker.main(["--runtime", "dnnfusion", "--rounds", "1", "--shapes", "odd_small"]) == 1
    assert "dnnfusion gives a wrong product on odd_small" in capsys.readouterr().err
