"""The kernel benchmark (GEMM and convolution cases): shapes, models, the measured peak, the worker, the tables and the
command (no timing claims)."""

import json
import math
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dnnfusion.bench import kernel_worker, kernels
from dnnfusion.bench.kernels import SHAPES_BY_NAME, ConvShape, ConvTransposeShape, GemmShape, KernelReport, KernelResult, \
    Peak
from dnnfusion.bench.timing import onnxruntime_session
from dnnfusion.cli import main
from dnnfusion.errors import DnnfusionError

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
TINY_CONVS = (ConvShape("tiny_s2", 5, 7, (9, 8), (3, 3), stride=2), ConvShape("tiny_dw5", 6, 6, (10, 10), (5, 5), 2, 6),
              ConvShape("tiny_3d", 4, 6, (4, 6, 5), (3, 3, 3)),
              ConvShape("tiny_pads", 8, 4, (7, 7), (3, 1), group=2, pads=(1, 0, 0, 0)),
              ConvTransposeShape("tiny_up", 6, 4, (5, 7), (2, 2), 2),
              ConvTransposeShape("tiny_up_pads", 4, 6, (6, 5), (4, 3), 2, group=2, pads=(1, 1, 1, 0)))


def test_shape_table():
    assert len(kernels.SHAPES) == 12 and len(kernels.CONV_SHAPES) == 24
    assert len(SHAPES_BY_NAME) == len(kernels.ALL_SHAPES) == 36 and kernels.HEAVY <= set(SHAPES_BY_NAME)
    assert GemmShape("x", 2, 3, 4).flops == 48
    assert SHAPES_BY_NAME["bert_qkv"].flops == 2 * 128 * 768 * 768
    scores = SHAPES_BY_NAME["attn_scores"]
    assert scores.flops == 2 * 12 * 128 * 64 * 128 and not scores.constant_b
    assert scores.a_shape == (12, 128, 64) and scores.b_shape == (12, 64, 128) and scores.label == "12x 128x64x128"
    assert SHAPES_BY_NAME["odd"].label == "77x301x509"
    assert all(s.constant_b == (s.batch == 1) for s in kernels.SHAPES)


def test_conv_flops_labels_and_shapes():
    dw = SHAPES_BY_NAME["dw5_s2_28"]
    assert dw.label == "dw240 5x5 s2 28x28" and dw.depthwise and dw.group == 240
    assert dw.w_shape == (240, 1, 5, 5) and dw.y_shape == (1, 240, 14, 14)
    assert dw.flops == 2 * 240 * 14 * 14 * 25
    c3d = SHAPES_BY_NAME["c3d"]
    assert c3d.label == "64->128 3x3x3 s1 8x28x28" and c3d.onnx_pads == (1,) * 6
    assert c3d.y_shape == (1, 128, 8, 28, 28) and c3d.flops == 2 * 128 * 8 * 28 * 28 * 64 * 27
    assert SHAPES_BY_NAME["conv3x3_56"].label == "64->64 3x3 s1 56x56"
    stem = SHAPES_BY_NAME["yolo_stem_s2"]
    assert stem.label == "32->64 3x3 s2 208x208" and stem.y_shape == (1, 64, 104, 104)
    assert TINY_CONVS[3].label == "8->4 g2 3x1 s1 7x7" and TINY_CONVS[3].y_shape == (1, 4, 6, 7)
    assert all(s.runtimes == ("dnnfusion", "onnxruntime") for s in kernels.CONV_SHAPES)
    up = SHAPES_BY_NAME["unet_up_128"]
    assert up.label == "up 128->64 2x2 s2 128x128" and up.kind == "conv_transpose" and up.onnx_pads == (0,) * 4
    assert up.w_shape == (128, 64, 2, 2) and up.y_shape == (1, 64, 256, 256) and up.depth == 128
    assert up.flops == 2 * 128 * 128 * 128 * 64 * 4
    deconv = SHAPES_BY_NAME["deconv4_s2"]
    assert deconv.y_shape == (1, 64, 64, 64) and deconv.depth == 128 * 4
    assert TINY_CONVS[5].w_shape == (4, 3, 4, 3) and TINY_CONVS[5].y_shape == (1, 6, 12, 10)
    with pytest.raises(ValueError, match="no convolution"):
        ConvShape("bad", 6, 4, (8, 8), (3, 3), group=4)


def test_select_shapes():
    assert "gpt2_head" in [s.name for s in kernels.select_shapes()]
    assert "gpt2_head" not in [s.name for s in kernels.select_shapes(quick=True)]
    assert [s.name for s in kernels.select_shapes("odd, bert_qkv")] == ["odd", "bert_qkv"]
    quick = {s.name for s in kernels.select_shapes(quick=True)}
    assert "dw3_s1_14" in quick and not quick & {"unet_3x3", "vgg_3x3_28", "c3d"}
    assert [s.name for s in kernels.select_shapes("c3d,odd_small", quick=True)] == ["c3d", "odd_small"]
    with pytest.raises(DnnfusionError, match="nope"):
        kernels.select_shapes("odd,nope")


@pytest.mark.parametrize("name", ["odd_small", "attn_context"])
def test_model_builder(name):
    shape = SHAPES_BY_NAME[name]
    a, b = shape.arrays()
    model = shape.model((a, b))
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    assert model.opset_import[0].version == 17
    inputs = [i.name for i in model.graph.input]
    initializers = [t.name for t in model.graph.initializer]
    if shape.constant_b:
        assert inputs == ["A"] and initializers == ["B"]
    else:
        assert inputs == ["A", "B"] and initializers == []
    assert set(shape.feeds((a, b))) == set(shape.input_shapes()) == set(inputs)
    assert a.dtype == b.dtype == np.float32 and np.array_equal(b, shape.arrays()[1])


@pytest.mark.parametrize("shape", TINY_CONVS, ids=lambda s: s.name)
def test_conv_model_and_reference_agree_with_onnxruntime(shape):
    data = shape.arrays()
    model = shape.model(data)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == [shape.node().op_type] and model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == ["X"] and [t.name for t in model.graph.initializer] == ["W", "B"]
    assert shape.input_shapes() == {"X": shape.x_shape} and data[1].shape == shape.w_shape
    expected = shape.reference(data)
    assert expected.shape == shape.y_shape
    shape.check("onnxruntime", onnxruntime_session(model, 1).run(None, shape.feeds(data))[0], expected)


def test_check_rejects_a_wrong_output():
    shape = SHAPES_BY_NAME["odd_small"]
    a, b = shape.arrays()
    shape.check("x", a @ b + 1e-5, a @ b)
    with pytest.raises(DnnfusionError, match="x gives a wrong output on odd_small"):
        shape.check("x", a @ b + 0.1, a @ b)
    conv = TINY_CONVS[0]
    expected = conv.reference(conv.arrays())
    with pytest.raises(DnnfusionError, match="wrong output on tiny_s2"):
        conv.check("x", expected[..., :-1], expected)


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


def test_numpy_worker_skips_convolutions(monkeypatch):
    samples = kernel_worker.time_shapes("numpy", 1, 1, [TINY_CONVS[0], SHAPES_BY_NAME["odd_small"]])
    assert list(samples) == ["odd_small"]
    monkeypatch.setattr(kernels.sys, "executable", "/bin/false")       # no process is started for no case at all
    assert kernels.run_worker("numpy", 1, 1, [SHAPES_BY_NAME["dw3_s1_14"]]) == {}


@pytest.mark.parametrize("shape", TINY_CONVS[:2], ids=lambda s: s.name)
def test_dnnfusion_worker_times_a_convolution(shape):
    samples = kernel_worker.time_shapes("dnnfusion", 1, 2, [shape])
    assert list(samples) == [shape.name] and len(samples[shape.name]) == 2 and min(samples[shape.name]) > 0


def test_tables_leave_numpy_out_of_convolution_rows():
    gemm, conv = SHAPES_BY_NAME["odd_small"], SHAPES_BY_NAME["dw3_s1_14"]
    results = [KernelResult(gemm, 1, {"dnnfusion": [1e-5], "onnxruntime": [2e-5], "numpy": [4e-5]}),
               KernelResult(conv, 2, {"dnnfusion": [1e-4, 2e-4], "onnxruntime": [3e-4]})]
    report = KernelReport(Peak(100.0, 12, 8, "gcc"), "cpu | threads=1", 1, 1, results)
    assert results[1].gflops("numpy") is None and results[1].speedup("numpy") is None
    assert results[1].speedup("onnxruntime") == pytest.approx(3.0)
    gemm_row, conv_row = kernels.table_rows(report)
    assert gemm_row[:2] == ["odd_small", "13x45x37"] and gemm_row[8] == "4.00x"
    assert conv_row[:3] == ["dw3_s1_14", "dw480 3x3 s1 14x14", "2"] and conv_row[9] == "0.150"
    assert conv_row[6] == conv_row[8] == "\u2014" and conv_row[7] == "3.00x" and conv_row[4] == "8%"
    text = kernels.markdown(report)
    assert text.startswith("# GEMM and convolution kernels\n") and "| case | shape | threads |" in text
    assert "| dw3_s1_14 | dw480 3x3 s1 14x14 | 2 | 16.9 | 8% | 5.6 | \u2014 | 3.00x | \u2014 | 0.150 |" in text
    gemm_json, conv_json = report.to_dict()["results"]
    assert set(conv_json["runtimes"]) == {"dnnfusion", "onnxruntime"} and "vs_numpy" not in conv_json
    assert conv_json["kind"] == "conv" and conv_json["group"] == 480 and conv_json["kernel"] == (3, 3)
    assert gemm_json["kind"] == "gemm" and gemm_json["m"] == 13 and gemm_json["vs_numpy"] == pytest.approx(4.0)
    json.dumps(report.to_dict())


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
    model = GemmShape.model
    monkeypatch.setattr(GemmShape, "model", lambda shape, data: model(shape, (data[0], data[1] * 2)))
    assert kernel_worker.main(["--runtime", "dnnfusion", "--rounds", "1", "--shapes", "odd_small"]) == 1
    assert "dnnfusion gives a wrong output on odd_small" in capsys.readouterr().err
