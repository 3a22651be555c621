"""The command line: help everywhere, info/ops/run/compile/plan/bench on a user's file, consistent options, and
one-line errors with exit status 2."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

import dnnfusion.oracle
from dnnfusion.bench import compare
from dnnfusion.bench.timing import Timing
from dnnfusion import CompileOptions
from dnnfusion.cli import compile_fields, main
from dnnfusion.passes import RewriteOptions
from dnnfusion.machine import available_cores
from dnnfusion.zoo import demo_model
from tests.helpers import FLOAT, make_model


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "demo.onnx"
    onnx.save(demo_model(), path)
    return path


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory):
    """x[batch, 16] -> MatMul -> Add -> Relu: one fused kernel."""
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["a"]),
                        helper.make_node("Relu", ["a"], ["y"])], [("x", FLOAT, ["batch", 16])], ["y"],
                       {"w": np.full((16, 8), 0.5, np.float32), "b": np.ones(8, np.float32)}, output_type=FLOAT)
    path = tmp_path_factory.mktemp("cli") / "mlp.onnx"
    onnx.save(model, path)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", [[], ["info"], ["ops"], ["run"], ["demo"], ["compile"], ["plan"], ["bench"],
                                     ["zoo", "export"], ["profile-db", "stats"]])
def test_help_on_every_command(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("command", ["info", "plan", "run", "compile", "bench"])
def test_binding_and_level_options_are_documented(command):
    text = " ".join(invoke(command, "--help").output.split())
    assert "--dim NAME=N" in text and "NAME=D0,D1,...|NAME=D0xD1x..." in text
    if command != "info":
        assert "--opt" in text and "O0" in text
    if command in ("run", "compile", "bench"):
        assert "--threads" in text and "all available cores" in text


def test_deprecated_spellings_are_hidden():
    assert "--levels" not in invoke("bench", "--help").output
    assert "--path" not in invoke("profile-db", "stats", "--help").output


def test_info_with_shapes(demo_path):
    result = invoke("info", demo_path, "--shape", "x=2,16,64", "--shape", "mask=2x16")
    assert result.exit_code == 0, result.output
    assert "[2, 16, 64]" in result.output and "Many-to-Many" in result.output
    assert "every value has a static shape" in result.output


def test_info_without_bindings_shows_dimension_names(demo_path):
    result = invoke("info", demo_path)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "batch x seq x 64" in text and "batch x seq" in text
    assert "dynamic dimensions not bound: batch, seq" in text and "--dim NAME=N" in text
    assert "FLOPs per run" not in text


def test_info_names_an_unnamed_dimension_by_input_and_axis(tmp_path):
    path = tmp_path / "relu.onnx"
    onnx.save(make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [None, 4])], ["y"]), path)
    summary = json.loads(invoke("info", path, "--json").stdout)
    assert summary["unbound"] == ["x[0]"] and summary["inputs"][0]["shape"] == [None, 4]
    assert "? x 4" in invoke("info", path).output


def test_info_json_symbolic_and_bound_by_dim(demo_path):
    # --dim goes to input_shapes as {dimension name: int}, which passes.infer_shapes binds by name.
    symbolic = json.loads(invoke("info", demo_path, "--json").stdout)
    assert symbolic["unbound"] == ["batch", "seq"] and symbolic["flops"] is None and not symbolic["folded"]
    assert symbolic["inputs"][0] == {"name": "x", "dtype": "float32", "shape": ["batch", "seq", 64]}
    assert symbolic["ops_total"] == symbolic["ops_loaded"] > 0
    half = json.loads(invoke("info", demo_path, "--json", "--dim", "seq=16").stdout)
    assert half["unbound"] == ["batch"] and half["inputs"][1]["shape"] == ["batch", 16]
    bound = json.loads(invoke("info", demo_path, "--json", "--dim", "batch=2", "--dim", "seq=16").stdout)
    assert bound["folded"] and bound["unbound"] == [] and bound["flops"] > 0
    assert bound["inputs"][0]["shape"] == [2, 16, 64] and bound["outputs"][0]["shape"] == [2, 16, 64]
    assert bound["ops_total"] < bound["ops_loaded"] == symbolic["ops_loaded"]


def test_shape_given_twice_is_an_error(demo_path):
    result = invoke("info", demo_path, "--shape", "x=2,16,64", "--shape", "x=1,16,64")
    assert result.exit_code == 2 and "input 'x' is given twice" in result.output
    result = invoke("info", demo_path, "--shape", "x=2,16,64", "--dim", "x=2")
    assert result.exit_code == 2 and "named by both --shape and --dim" in result.output
    result = invoke("info", demo_path, "--dim", "batch=two")
    assert result.exit_code == 2 and "NAME=N" in result.output


def test_ops_json():
    result = invoke("ops", "--json", "--mapping", "Many-to-Many")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    matmul = next(op for op in listed if op["op_type"] == "MatMul")
    assert matmul["domain"] == "ai.onnx" and "associative" in matmul["algebra"]
    assert all(op["mapping"] == "Many-to-Many" for op in listed)


def test_ops_lists_registry():
    result = invoke("ops")
    assert result.exit_code == 0
    assert "MatMul" in result.output and "Reorganize" in result.output


def test_run_check_against_onnxruntime(demo_path, tmp_path):
    out = tmp_path / "out.npz"
    result = invoke("run", demo_path, "--shape", "x=1,8,64", "--shape", "mask=1,8", "--check", "--save", out)
    assert result.exit_code == 0, result.output
    assert "(rtol 0.001, atol 0.0001): match" in result.output and np.load(out)["y"].shape == (1, 8, 64)


def test_run_check_mismatch_exits_1_and_tolerances_apply(mlp_path, monkeypatch):
    real = dnnfusion.oracle.run_onnxruntime
    monkeypatch.setattr(dnnfusion.oracle, "run_onnxruntime",
                        lambda model, feeds: {k: v + 0.01 for k, v in real(model, feeds).items()})
    result = invoke("run", mlp_path, "--dim", "batch=2", "--check")
    assert result.exit_code == 1, result.output
    assert "(rtol 0.001, atol 0.0001): MISMATCH" in result.output and "Traceback" not in result.output
    assert "1 output(s) differ from onnxruntime beyond rtol 0.001, atol 0.0001: y" in " ".join(result.output.split())
    result = invoke("run", mlp_path, "--dim", "batch=2", "--check", "--rtol", "0", "--atol", "0.02")
    assert result.exit_code == 0 and "(rtol 0, atol 0.02): match" in result.output, result.output


def test_run_threads_and_profile(mlp_path):
    result = invoke("run", mlp_path, "--shape", "x=4x16", "--threads", "1", "--profile")
    assert result.exit_code == 0, result.output
    assert "1 thread(s)" in result.output
    assert "MatMul+Add+Relu" in result.output and "fused_matmul_add_relu_0" in result.output
    assert "time per kernel" in result.output and "total" in result.output and "100.0" in result.output
    default = invoke("run", mlp_path, "--shape", "x=4x16")
    assert f"{available_cores()} thread(s)" in default.output, default.output
    assert invoke("run", mlp_path, "--shape", "x=4x16", "--reference", "--profile").exit_code == 2


def test_compile_profile_writes_and_prints_kernels(mlp_path, tmp_path):
    out = tmp_path / "out"
    result = invoke("compile", mlp_path, "-o", out, "--dim", "batch=2", "--threads", "1", "--profile")
    assert result.exit_code == 0, result.output
    assert all((out / name).exists() for name in ("model.c", "model.so", "plan.html", "stats.json"))
    assert "MatMul+Add+Relu" in result.output and "total" in result.output and "1 kernels" in result.output
    stats = json.loads(invoke("compile", mlp_path, "-o", out, "--dim", "batch=2", "--profile", "--json").stdout)
    (row,) = stats["profile"]
    assert row["operators"] == "MatMul+Add+Relu" and row["percent"] == pytest.approx(100.0)


def test_compile_lists_the_layout_conversions(tmp_path):
    """Pointwise -> depthwise -> pointwise convolutions hold their middle values channel-blocked on a CPU with
    vector microkernels: compile says how many and lists the blocks where the layout changes."""
    from dnnfusion.kernels.blocked import block_size

    rng = np.random.default_rng(0)
    weights = {"w1": (64, 32, 1, 1), "w2": (64, 1, 3, 3), "w3": (32, 64, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["d"], group=64, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["d", "w3"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, [1, 32, 12, 12])], ["y"],
                       {k: rng.standard_normal(v).astype(np.float32) for k, v in weights.items()}, output_type=FLOAT)
    path = tmp_path / "convs.onnx"
    onnx.save(model, path)
    result = invoke("compile", path, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    if block_size() == 0:
        assert "0 value(s) between blocks held channel-blocked, 0 layout conversion(s)" in result.output
        return
    assert stats["blocked_values"] == 2 and stats["layout_conversions"] == 2, result.output
    assert "2 value(s) between blocks held channel-blocked, 2 layout conversion(s)" in result.output
    blocked = f"NC{block_size()}c"
    assert [(c["reads"], c["writes"]) for c in stats["layout_conversions_at"]] == [("plain", blocked),
                                                                                    (blocked, "plain")]
    assert all(c["op_type"] == "Conv" and c["node"] in result.output for c in stats["layout_conversions_at"])


def test_compile_fields_reach_compile_options():
    fields = compile_fields("O1", 2, True, False, "x86-64-v3", profile=True,
                            rewriting=RewriteOptions(approximate=True))
    assert fields == {"opt_level": "O1", "threads": 2, "winograd": False, "tune": False, "profile": True,
                      "target": "x86-64-v3", "rewriting": RewriteOptions(approximate=True)}
    assert CompileOptions(**fields).build_toolchain.flags.count("-march=x86-64-v3") == 1


def test_rewrite_rules_are_chosen_from_the_command_line(demo_path):
    result = invoke("plan", demo_path, "--dim", "batch=1", "--dim", "seq=8", "--no-rule", "nonsense")
    assert result.exit_code == 2 and "no rewrite rule 'nonsense'" in result.output
    result = invoke("plan", demo_path, "--dim", "batch=1", "--dim", "seq=8", "--json", "--approximate-rewrites",
                    "--no-rule", "mish")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["flops_before"] >= stats["flops_after"] > 0 and "mish" not in stats["rules_fired"]


def test_plan_why_explains_its_legend_and_blocks(demo_path):
    result = invoke("plan", demo_path, "--dim", "batch=1", "--dim", "seq=8", "--why")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "IRS = intermediate result size" in text and "yellow = fuse only if" in text and "red = never" in text
    assert "MatMul -> Add" in text and "ended in" in text and "#" in text


def test_profile_db_takes_both_spellings(tmp_path):
    db = tmp_path / "db.sqlite"
    for option in ("--profile-db", "--path"):
        result = invoke("profile-db", "stats", option, db)
        assert result.exit_code == 0 and "0 entries" in result.output, result.output


def test_zoo_export_output_must_be_onnx_or_a_folder(tmp_path):
    result = invoke("zoo", "export", "tinybert", "-o", tmp_path / "foo.bin")
    assert result.exit_code == 2 and "give a path ending in .onnx" in " ".join(result.output.split())
    assert not (tmp_path / "foo.bin").exists()
    existing = tmp_path / "notes"
    existing.write_text("keep")
    result = invoke("zoo", "export", "tinybert", "-o", existing)
    assert result.exit_code == 2 and "an existing file" in " ".join(result.output.split())
    assert existing.read_text() == "keep"


def test_bench_onnx_file_in_worker_processes(mlp_path):
    result = invoke("bench", mlp_path, "--dim", "batch=2", "--opt", "O3", "--threads", "1", "--blocks", "1",
                    "--runs", "1", "--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["threads"] == 1 and len(report["models"]) == 1
    (model,) = report["models"]
    assert model["model"] == "mlp.onnx" and model["max_abs_error"] < 1e-4
    assert set(model["runtimes"]) == {"dnnfusion O3", "ORT_ENABLE_ALL", "ORT_DISABLE_ALL"}
    assert model["runtimes"]["dnnfusion O3"]["runs"] == 1 and model["stats"]["O3"]["blocks"] == 1


def test_bench_options_reach_the_workers(mlp_path, tmp_path, monkeypatch):
    calls = []

    def fake(path, input_shapes, levels, threads, blocks, runs, *rest, **kwargs):
        calls.append((path.name, input_shapes, levels, threads, blocks, runs))
        timing = Timing(1e-3, 1e-3, blocks * runs, 1e-3)
        return compare.ModelResult(path.name, {"ORT_ENABLE_ALL": timing, "dnnfusion O1": timing},
                                   {"O1": {"blocks": 1, "fallback_ops": []}}, 0.0)

    monkeypatch.setattr(compare, "bench_file", fake)
    out = tmp_path / "bench.json"
    result = invoke("bench", mlp_path, "--levels", "O1", "--shape", "x=2x16", "--rounds", "7", "--runs", "5",
                    "--json", out)
    assert result.exit_code == 0, result.output
    assert calls == [("mlp.onnx", {"x": (2, 16)}, ("O1",), available_cores(), 2, 5)]
    assert "dnnfusion O1" in result.output and json.loads(out.read_text())["models"][0]["model"] == "mlp.onnx"
    invoke("bench", mlp_path, "--opt", "O0,O3", "--dim", "batch=3", "--threads", "2")
    assert calls[1][1:4] == ({"batch": 3}, ("O0", "O3"), 2)
    monkeypatch.undo()
    _one_line_error(invoke("bench", tmp_path / "missing.onnx"), "missing.onnx", "no such model file")
    _one_line_error(invoke("bench", "not_a_model"), "neither a file nor a zoo model")


def test_demo_passes():
    result = invoke("demo", "--batch", "1", "--seq", "8")
    assert result.exit_code == 0, result.output
    assert "match" in result.output and "MISMATCH" not in result.output


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    message = " ".join(lines)
    assert message.startswith("error:")
    for fragment in fragments:
        assert fragment in message, message


def test_truncated_file_exit_2(tmp_path):
    data = demo_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:1000])
    _one_line_error(invoke("info", path), "cut.onnx", "truncated")


def test_unknown_operator_exit_2(tmp_path):
    model = make_model([helper.make_node("FancyOp", ["x"], ["y"], name="fancy_1", domain="acme")],
                       [("x", FLOAT, [2])], ["y"])
    model.opset_import.append(helper.make_opsetid("acme", 3))
    path = tmp_path / "fancy.onnx"
    onnx.save(model, path)
    _one_line_error(invoke("info", path), "FancyOp", "fancy_1", "acme", "opset 3")


def test_wrong_feed_shape_exit_2(demo_path, tmp_path):
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=np.zeros((1, 4, 64), np.float32), mask=np.ones((1, 8), np.float32))
    _one_line_error(invoke("run", demo_path, "--shape", "x=1,8,64", "--shape", "mask=1,8", "--inputs", feeds),
                    "input 'x'", "(1, 4, 64)", "(1, 8, 64)")


def test_unbound_dimension_exit_2(demo_path):
    _one_line_error(invoke("plan", demo_path), "input 'x'", "dimension 0", "--shape")


def test_bad_shape_syntax_is_a_usage_error(demo_path):
    result = invoke("info", demo_path, "--shape", "x:1,2")
    assert result.exit_code == 2 and "NAME=D0,D1" in result.output


def test_run_check_compares_ranked_detections_as_sets(tmp_path, capsys):
    """Detections that two runtimes rank in another order (ties) match as sets; a changed box does not."""
    from onnx import TensorProto, helper

    from dnnfusion.cli import _check

    nodes = [helper.make_node("Identity", [f"{k}_in"], [k]) for k in ("boxes", "scores", "labels")]
    graph = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("boxes_in", TensorProto.FLOAT, [5, 4]),
                                             helper.make_tensor_value_info("scores_in", TensorProto.FLOAT, [5]),
                                             helper.make_tensor_value_info("labels_in", TensorProto.INT64, [5])],
                              [helper.make_tensor_value_info(k, t, None) for k, t in
                               (("boxes", TensorProto.FLOAT), ("scores", TensorProto.FLOAT),
                                ("labels", TensorProto.INT64))])
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    rng = np.random.default_rng(0)
    feeds = {"boxes_in": rng.uniform(0, 50, (5, 4)).astype(np.float32),
             "scores_in": np.array([0.9, 0.8, 0.8, 0.5, 0.4], np.float32), "labels_in": np.array([1, 2, 3, 1, 2])}
    swapped = [0, 2, 1, 3, 4]                               # the two rows tied at 0.8 in the other order
    ours = {k: feeds[f"{k}_in"][swapped] for k in ("boxes", "scores", "labels")}
    _check(path, feeds, ours, 1e-3, 1e-4)
    assert "as a set of detections" in capsys.readouterr().out
    ours["boxes"] = ours["boxes"] + np.float32(5)
    with pytest.raises(SystemExit):
        _check(path, feeds, ours, 1e-3, 1e-4)
