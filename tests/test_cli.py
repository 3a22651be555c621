"""The command line: help everywhere, info/ops/run/demo, and one-line errors with exit status 2."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from dnnfusion.cli import main
from dnnfusion.zoo import demo_model
from tests.helpers import FLOAT, make_model


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "demo.onnx"
    onnx.save(demo_model(), path)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", [[], ["info"], ["ops"], ["run"], ["demo"]])
def test_help_on_every_command(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_info_with_shapes(demo_path):
    result = invoke("info", demo_path, "--shape", "x=2,16,64", "--shape", "mask=2,16")
    assert result.exit_code == 0, result.output
    assert "[2, 16, 64]" in result.output and "Many-to-Many" in result.output
    assert "every value has a static shape" in result.output


def test_ops_lists_registry():
    result = invoke("ops")
    assert result.exit_code == 0
    assert "MatMul" in result.output and "Reorganize" in result.output


def test_run_check_against_onnxruntime(demo_path, tmp_path):
    out = tmp_path / "out.npz"
    result = invoke("run", demo_path, "--shape", "x=1,8,64", "--shape", "mask=1,8", "--check", "--save", out)
    assert result.exit_code == 0, result.output
    assert "match" in result.output and np.load(out)["y"].shape == (1, 8, 64)


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
    _one_line_error(invoke("info", demo_path), "input 'x'", "dimension 0", "--shape")


def test_bad_shape_syntax_is_a_usage_error(demo_path):
    result = invoke("info", demo_path, "--shape", "x:1,2")
    assert result.exit_code == 2 and "NAME=D0,D1" in result.output
