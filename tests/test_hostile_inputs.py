"""Bad files, bad models and bad feeds get one-line errors of our own types (and the CLI exit status 2), never a
raw exception, a crash or a misleading message."""

import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import dnnfusion
from dnnfusion.cli import main
from dnnfusion.errors import InvalidModelError, ModelLoadError, ResourceError
from dnnfusion.runtime.limits import check_memory, size_text
from tests.helpers import FLOAT, make_model


def test_an_empty_file_a_folder_and_a_text_file_say_what_they_are(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "notes.onnx").write_text("hello\n")
    with pytest.raises(ModelLoadError, match="is empty"):
        dnnfusion.compile(tmp_path / "empty.onnx")
    with pytest.raises(ModelLoadError, match="is a folder"):
        dnnfusion.compile(tmp_path / "folder.onnx")
    with pytest.raises(ModelLoadError, match="not a readable ONNX model") as error:
        dnnfusion.compile(tmp_path / "notes.onnx")
    assert "external data" not in str(error.value)
    with pytest.raises(ModelLoadError, match="holds no ONNX model"):
        dnnfusion.compile(b"")


def external_weight_model(tmp_path, offset: str, length: str):
    (tmp_path / "w.bin").write_bytes(np.ones(4, np.float32).tobytes())
    tensor = numpy_helper.from_array(np.ones(4, np.float32), "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    model = make_model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", FLOAT, [4])], ["y"], output_type=FLOAT)
    model.graph.initializer.append(tensor)
    onnx.save(model, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("offset, length, field", [("-5", "16", "offset"), ("0", "abc", "length")])
def test_external_data_with_a_bad_offset_or_length_is_the_models_error(tmp_path, offset, length, field):
    with pytest.raises(InvalidModelError, match=f"tensor 'w' has {field}"):
        dnnfusion.compile(external_weight_model(tmp_path, offset, length))


def test_a_recursive_local_function_is_the_models_error():
    body = helper.make_node("F", ["a"], ["b"], domain="my")
    function = helper.make_function("my", "F", ["a"], ["b"], [body], [helper.make_opsetid("", 17),
                                                                        helper.make_opsetid("my", 1)])
    graph = helper.make_graph([helper.make_node("F", ["x"], ["y"], domain="my")], "g",
                              [helper.make_tensor_value_info("x", FLOAT, [4])],
                              [helper.make_tensor_value_info("y", FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my", 1)],
                              functions=[function])
    with pytest.raises(InvalidModelError, match="recursive"):
        dnnfusion.compile(model)


def test_a_model_larger_than_memory_is_refused_at_compile_time():
    constants = {"start": np.array(0, np.int64), "limit": np.array(2 ** 40, np.int64), "delta": np.array(1, np.int64)}
    model = make_model([helper.make_node("Range", ["start", "limit", "delta"], ["y"])], [], ["y"], constants,
                       output_type=TensorProto.INT64)
    with pytest.raises(ResourceError, match=r"8\.0 TiB .*'y' of Range node"):
        dnnfusion.compile(model)


def test_memory_check_names_every_part():
    check_memory({"arena": 10, "outputs": 20}, "x", available=30)
    with pytest.raises(ResourceError, match="needs 31 B of memory \\(arena 10 B, outputs 21 B; largest: x\\)"):
        check_memory({"arena": 10, "outputs": 21}, "x", available=30)
    assert (size_text(1023), size_text(1536), size_text(3 << 40)) == ("1023 B", "1.5 KiB", "3.0 TiB")


def test_a_big_endian_feed_is_read_as_the_same_numbers():
    model = dnnfusion.compile(make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [4])], ["y"],
                                         output_type=FLOAT))
    x = np.array([1, -2, 3, -4], ">f4")
    np.testing.assert_array_equal(model.run({"x": x})["y"], [1, 0, 3, 0])


def test_cli_keeps_square_brackets_in_install_hints(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 2
    assert "pip install 'dnnfusion[oracle]'" in result.output


def test_cli_zoo_name_without_torch_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", None)
    for command in (["run", "tinybert"], ["info", "tinybert"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert "pip install 'dnnfusion[zoo]'" in result.output
        assert "Traceback" not in result.output


def test_a_node_with_too_few_inputs_is_the_models_error():
    model = make_model([helper.make_node("LayerNormalization", ["x"], ["y"])], [("x", FLOAT, [2, 3])], ["y"],
                       output_type=FLOAT)
    with pytest.raises(InvalidModelError, match="LayerNormalization node .* has 1 inputs; opset 17 allows 2 to 3"):
        dnnfusion.compile(model)


def test_erf_of_a_scalar_constant_folds():
    model = make_model([helper.make_node("Erf", ["c"], ["y"])], [], ["y"], {"c": np.array(0.5, np.float32)},
                       output_type=FLOAT)
    np.testing.assert_allclose(dnnfusion.compile(model).run({})["y"], 0.5204999, rtol=1e-6)


def test_a_model_that_is_not_a_path_bytes_or_proto_is_refused():
    with pytest.raises(ModelLoadError, match="not int"):
        dnnfusion.compile(42)


def test_element_counts_past_int64_do_not_wrap_around():
    model = make_model([helper.make_node("Tile", ["x", "r"], ["y"])], [("x", FLOAT, [3])], ["y"],
                       {"r": np.array([2 ** 62], np.int64)}, output_type=FLOAT)
    with pytest.raises(ResourceError):
        dnnfusion.compile(model)


@pytest.mark.parametrize("op, elem, attrs", [
    ("MaxPool", TensorProto.BOOL, {"kernel_shape": [2]}), ("MaxPool", TensorProto.INT4, {"kernel_shape": [2]}),
    ("MaxPool", TensorProto.FLOAT8E4M3FN, {"kernel_shape": [2]}), ("Softmax", TensorProto.BOOL, {}),
    ("Softmax", TensorProto.INT64, {}), ("Exp", TensorProto.INT32, {})])
def test_an_input_type_the_schema_does_not_allow_is_named(op, elem, attrs):
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], [("x", elem, [1, 1, 4])], ["y"], opset=21)
    with pytest.raises(InvalidModelError, match=f"{op} node .*input 0 \\('x'\\) is .* it takes"):
        dnnfusion.compile(model)


@pytest.mark.parametrize("value, kind", [(None, "has no type"), ("zz", "must be a float"), ([1, 2], "must be a float")])
def test_an_attribute_of_the_wrong_kind_is_named(value, kind):
    node = helper.make_node("LeakyRelu", ["x"], ["y"])
    if value is None:
        attribute = onnx.AttributeProto()
        attribute.name, attribute.f = "alpha", 0.1     # a value but no type, as a hand-built proto can have
        node.attribute.append(attribute)
    else:
        node.attribute.append(helper.make_attribute("alpha", value))
    model = make_model([node], [("x", FLOAT, [4])], ["y"])
    with pytest.raises(InvalidModelError, match=f"LeakyRelu node .*attribute 'alpha' {kind}"):
        dnnfusion.compile(model)


def pool_model(length: int, **attrs) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
    return make_model([node], [("x", FLOAT, [2, 1, length])], ["y"], opset=18, output_type=FLOAT)


def test_a_dilated_1d_max_pool_with_pads_runs_at_every_level():
    """gcc 12 -O3 -march=native stored a small row buffer with aligned moves at an unaligned stack address and
    crashed; stack arrays in kernels are declared 64-byte aligned."""
    model = pool_model(20, kernel_shape=[2], dilations=[2], pads=[1, 1])
    x = np.random.default_rng(0).standard_normal((2, 1, 20)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)), constant_values=-np.inf)
    expected = np.maximum(padded[..., 0:20], padded[..., 2:22])
    for level in ("O0", "O3"):
        np.testing.assert_array_equal(dnnfusion.compile(model, opt_level=level).run({"x": x})["y"], expected)


def test_a_pool_row_too_long_for_a_thread_stack_runs_as_a_fallback():
    length = 300_000
    compiled = dnnfusion.compile(pool_model(length, kernel_shape=[2], strides=[2]))
    x = np.random.default_rng(1).standard_normal((2, 1, length)).astype(np.float32)
    np.testing.assert_array_equal(compiled.run({"x": x})["y"], x.reshape(2, 1, -1, 2).max(axis=-1))
