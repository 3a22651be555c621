"""ONNX import and export: round trips, external data (incl. offsets past 2 GB), malformed files."""

import mmap
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dnnfusion.errors import InvalidModelError, ModelLoadError, UnsupportedOpsetError
from dnnfusion.ir import from_onnx, to_onnx
from dnnfusion.pipeline import load
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.zoo import demo_model
from tests.helpers import FLOAT, make_model

FEEDS = {"x": np.random.default_rng(0).standard_normal((2, 8, 64)).astype(np.float32),
         "mask": np.ones((2, 8), np.float32)}


def test_import_reads_nodes_initializers_and_symbolic_inputs():
    model = demo_model()
    g = from_onnx(model)
    assert len(g.nodes) == len(model.graph.node)
    assert len(g.initializers) == len(model.graph.initializer)
    assert g.inputs[0].shape == ("batch", "seq", 64)
    assert g.opsets[""] == 13


@pytest.mark.parametrize("fold", [False, True])
def test_round_trip_runs_the_same_in_onnxruntime(fold):
    model = demo_model()
    graph = load(model, {"x": (2, 8, 64), "mask": (2, 8)}, fold=fold)
    exported = to_onnx(graph)
    onnx.checker.check_model(exported)
    assert all(d.ok for d in compare(run_onnxruntime(exported, FEEDS), run_onnxruntime(model, FEEDS)))
    again = load(exported, fold=False)
    assert [n.op_type for n in again.nodes] == [n.op_type for n in graph.nodes]
    assert again.outputs[0].shape == (2, 8, 64)


def test_attributes_survive_round_trip():
    node = helper.make_node("Gemm", ["a", "b"], ["y"], alpha=0.5, transB=1, name="gemm")
    model = make_model([node], [("a", FLOAT, [2, 3]), ("b", FLOAT, [4, 3])], ["y"])
    back = to_onnx(from_onnx(model))
    attrs = {a.name: helper.get_attribute_value(a) for a in back.graph.node[0].attribute}
    assert attrs == {"alpha": 0.5, "transB": 1}


def _external_model(tmp_path, offset: int = 0):
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = numpy_helper.from_array(weight, "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(weight.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    with open(tmp_path / "weights.bin", "wb") as f:
        f.truncate(offset)            # sparse: offsets past 2 GB cost no disk
        f.seek(offset)
        f.write(weight.tobytes())
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", FLOAT, [2, 3])], ["y"])
    model.graph.initializer.append(tensor)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path, weight


def test_external_data_is_memory_mapped(tmp_path):
    path, weight = _external_model(tmp_path)
    array = from_onnx(path).values["w"].const
    owner = array
    while owner is not None and not isinstance(owner, (np.memmap, mmap.mmap)):
        owner = owner.base
    assert owner is not None, "external weights were copied instead of mapped"
    np.testing.assert_array_equal(array, weight)


def test_external_data_beyond_2gb(tmp_path):
    path, weight = _external_model(tmp_path, offset=(2 << 30) + 4096)
    np.testing.assert_array_equal(from_onnx(path).values["w"].const, weight)
    assert os.path.getsize(tmp_path / "weights.bin") > 2 << 30


def test_onnx_save_external_data_round_trip(tmp_path):
    model = demo_model()
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    g = load(tmp_path / "m.onnx", {"x": (2, 8, 64), "mask": (2, 8)})
    reference = load(demo_model(), {"x": (2, 8, 64), "mask": (2, 8)})   # onnx.save externalised `model`
    assert len(g.nodes) == len(reference.nodes)


def test_external_data_outside_model_folder_is_rejected(tmp_path):
    path, _ = _external_model(tmp_path)
    model = onnx.load(path, load_external_data=False)
    model.graph.initializer[0].external_data[0].value = "../../etc/passwd"
    onnx.save(model, path)
    with pytest.raises(InvalidModelError, match="outside the model's folder"):
        from_onnx(path)


def test_truncated_file(tmp_path):
    data = demo_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        from_onnx(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        from_onnx(tmp_path / "nope.onnx")


def test_opset_out_of_range():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", FLOAT, [2])], ["y"], opset=5)
    with pytest.raises(UnsupportedOpsetError, match="opset 5"):
        from_onnx(model)


def test_sequence_input_is_rejected_clearly():
    seq = helper.make_tensor_sequence_value_info("s", FLOAT, [2])
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["y"])], "g", [seq],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, [])])
    with pytest.raises(InvalidModelError, match="'s' is not a tensor"):
        from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_local_functions_are_inlined():
    fn = helper.make_function("custom", "Double", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    model = make_model([helper.make_node("Double", ["x"], ["y"], domain="custom")], [("x", FLOAT, [3])], ["y"])
    model.opset_import.append(helper.make_opsetid("custom", 1))
    model.functions.append(fn)
    assert [n.op_type for n in from_onnx(model).nodes] == ["Add"]
