"""Shape rules of the data-movement operators (shape_ops, layout, indexing, generators, expand): static shapes
from constant inputs, opset-dependent attributes/inputs, data-dependent extents, and error messages."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dnnfusion import ops
from dnnfusion.errors import InvalidModelError, ShapeError, UnsupportedOperatorError
from dnnfusion.pipeline import load
from dnnfusion.ops import MappingType
from dnnfusion.runtime import run_reference

RNG = np.random.default_rng(0)
FLOAT = TensorProto.FLOAT


def make(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, tuple]], outputs: dict[str, int],
         consts: dict[str, np.ndarray] | None = None, opset: int = 18) -> onnx.ModelProto:
    """A model of `nodes`: inputs name -> (elem type, shape), outputs name -> elem type, consts as initializers."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in (consts or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def run_both(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outputs of our reference executor and of onnxruntime, in graph output order."""
    graph = load(model)
    ours = run_reference(graph, feeds)
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    return [ours[o.name] for o in model.graph.output], theirs


def assert_matches_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    ours, theirs = run_both(model, feeds)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_shape_gather_concat_reshape_chain_folds_to_a_static_reshape():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
             helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
             helper.make_node("Concat", ["batch1", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    model = make(nodes, {"x": (FLOAT, ("N", 3, 4))}, {"y": FLOAT},
                 {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64),
                  "minus_one": np.array([-1], np.int64)})
    graph = load(model, {"x": (2, 3, 4)})
    assert [n.op_type for n in graph.nodes] == ["Reshape"]
    assert graph.outputs[0].shape == (2, 12)
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run_reference(graph, {"x": x})["y"], x.reshape(2, 12))


def test_shape_start_end_give_a_constant_slice_of_the_shape():
    model = make([helper.make_node("Shape", ["x"], ["s"], start=1, end=-1)], {"x": (FLOAT, (2, 3, 4, 5))},
                 {"s": TensorProto.INT64}, opset=15)
    np.testing.assert_array_equal(load(model).outputs[0].const, [3, 4])


def test_reshape_needs_a_constant_target_shape():
    model = make([helper.make_node("Reshape", ["x", "shape"], ["y"])],
                 {"x": (FLOAT, (2, 3)), "shape": (TensorProto.INT64, (2,))}, {"y": FLOAT})
    with pytest.raises(ShapeError, match="Reshape node .*target shape .* must be known at compile time"):
        load(model)


@pytest.mark.parametrize("target, allowzero, expected", [
    ([0, -1], 0, (2, 12)), ([-1, 4], 0, (6, 4)), ([0, 4, 6], 1, (0, 4, 6)), ([4, 0, 6], 0, None)])
def test_reshape_zero_and_minus_one(target, allowzero, expected):
    x_shape = (0, 4, 6) if allowzero else (2, 3, 4)
    model = make([helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=allowzero)],
                 {"x": (FLOAT, x_shape)}, {"y": FLOAT}, {"shape": np.array(target, np.int64)})
    if expected is None:
        with pytest.raises(InvalidModelError, match="cannot reshape"):
            load(model)
    else:
        assert load(model).outputs[0].shape == expected


def test_split_uneven_num_outputs_from_opset_18_only():
    node = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=0, num_outputs=3)
    model = make([node], {"x": (FLOAT, (7,))}, dict.fromkeys("abc", FLOAT), opset=18)
    assert [v.shape for v in load(model).outputs] == [(3,), (3,), (1,)]
    old = make([helper.make_node("Split", ["x"], ["a", "b", "c"], axis=0)], {"x": (FLOAT, (7,))},
               dict.fromkeys("abc", FLOAT), opset=13)
    with pytest.raises(InvalidModelError, match="does not split into 3 equal parts"):
        load(old)


def test_split_sizes_attribute_before_opset_13_and_input_since():
    x = RNG.standard_normal((2, 6)).astype(np.float32)
    old = make([helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[2, 4])], {"x": (FLOAT, (2, 6))},
               {"a": FLOAT, "b": FLOAT}, opset=11)
    new = make([helper.make_node("Split", ["x", "split"], ["a", "b"], axis=1)], {"x": (FLOAT, (2, 6))},
               {"a": FLOAT, "b": FLOAT}, {"split": np.array([2, 4], np.int64)}, opset=13)
    for model in (old, new):
        assert [v.shape for v in load(model).outputs] == [(2, 2), (2, 4)]
        assert_matches_ort(model, {"x": x})


@pytest.mark.parametrize("starts, ends, axes, steps", [
    ([-1], [-1000], [1], [-1]), ([20, 0], [1000, -1], [0, 1], [1, 2]), ([-1000], [1000], [-1], [-3]),
    ([1, 5], [-1, -9], [1, 0], [1, -2])])
def test_slice_clamping_and_negative_steps_match_onnxruntime(starts, ends, axes, steps):
    names = ("starts", "ends", "axes", "steps")
    consts = {name: np.array(v, np.int64) for name, v in zip(names, (starts, ends, axes, steps))}
    model = make([helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])],
                 {"x": (FLOAT, (10, 7))}, {"y": FLOAT}, consts, opset=13)
    assert_matches_ort(model, {"x": RNG.standard_normal((10, 7)).astype(np.float32)})


def test_slice_attributes_before_opset_10():
    model = make([helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[100, -1], axes=[0, 1])],
                 {"x": (FLOAT, (4, 5))}, {"y": FLOAT}, opset=9)
    assert load(model).outputs[0].shape == (3, 2)


def test_squeeze_and_unsqueeze_axes_attribute_then_input():
    old = make([helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, -1]),
                helper.make_node("Squeeze", ["u"], ["y"], axes=[0])], {"x": (FLOAT, (3, 4))}, {"y": FLOAT}, opset=11)
    new = make([helper.make_node("Unsqueeze", ["x", "uaxes"], ["u"]),
                helper.make_node("Squeeze", ["u", "saxes"], ["y"])], {"x": (FLOAT, (3, 4))}, {"y": FLOAT},
               {"uaxes": np.array([0, -1], np.int64), "saxes": np.array([0], np.int64)}, opset=13)
    assert load(old).outputs[0].shape == load(new).outputs[0].shape == (3, 4, 1)


def test_squeeze_of_a_non_unit_axis_is_an_invalid_model():
    model = make([helper.make_node("Squeeze", ["x", "axes"], ["y"])], {"x": (FLOAT, (3, 4))}, {"y": FLOAT},
                 {"axes": np.array([1], np.int64)}, opset=13)
    with pytest.raises(InvalidModelError, match="cannot squeeze axis 1 of extent 4"):
        load(model)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_inverts_space_to_depth(mode):
    nodes = [helper.make_node("SpaceToDepth", ["x"], ["d"], blocksize=2, mode=mode),
             helper.make_node("DepthToSpace", ["d"], ["y"], blocksize=2, mode=mode)]
    graph = load(make(nodes, {"x": (FLOAT, (1, 3, 4, 6))}, {"y": FLOAT}, opset=28))
    assert graph.nodes[0].outputs[0].shape == (1, 12, 2, 3)
    x = RNG.standard_normal((1, 3, 4, 6)).astype(np.float32)
    np.testing.assert_array_equal(run_reference(graph, {"x": x})["y"], x)


def test_gather_family_matches_onnxruntime():
    data = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["x", "i"], ["g"], axis=1),
             helper.make_node("GatherElements", ["x", "e"], ["ge"], axis=2),
             helper.make_node("GatherND", ["x", "nd"], ["gnd"], batch_dims=1)]
    consts = {"i": np.array([[0, -1], [2, 1]], np.int64), "e": RNG.integers(-5, 5, (3, 4, 2)),
              "nd": np.array([[[1, -1]], [[0, 2]], [[3, 4]]], np.int64)}
    model = make(nodes, {"x": (FLOAT, data.shape)}, {"g": FLOAT, "ge": FLOAT, "gnd": FLOAT}, consts, opset=13)
    assert [v.shape for v in load(model).outputs] == [(3, 2, 2, 5), (3, 4, 2), (3, 1)]
    assert_matches_ort(model, {"x": data})


def test_gather_index_out_of_range_names_the_node():
    model = make([helper.make_node("Gather", ["x", "i"], ["y"], name="pick")],
                 {"x": (FLOAT, (3,)), "i": (TensorProto.INT64, (1,))}, {"y": FLOAT})
    with pytest.raises(InvalidModelError, match="node 'pick'.*index 3 is out of range for extent 3"):
        run_reference(load(model), {"x": np.zeros(3, np.float32), "i": np.array([3], np.int64)})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_reductions_match_onnxruntime(reduction):
    data = RNG.standard_normal((4, 3)).astype(np.float32)
    nodes = [helper.make_node("ScatterElements", ["x", "i", "u"], ["se"], axis=0, reduction=reduction),
             helper.make_node("ScatterND", ["x", "nd", "v"], ["snd"], reduction=reduction)]
    consts = {"i": np.array([[1, 0, 3], [2, -1, 0]], np.int64), "u": RNG.standard_normal((2, 3)).astype(np.float32),
              "nd": np.array([[1], [3]], np.int64), "v": RNG.standard_normal((2, 3)).astype(np.float32)}
    assert_matches_ort(make(nodes, {"x": (FLOAT, (4, 3))}, {"se": FLOAT, "snd": FLOAT}, consts), {"x": data})


def test_constant_shape_generators_fold_to_constants():
    seven = numpy_helper.from_array(np.array([7], np.int32))
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"], value=seven),
             helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
             helper.make_node("Add", ["x", "r"], ["y"])]
    consts = {"shape": np.array([2, 3], np.int64), "start": np.array(10, np.int64), "limit": np.array(4, np.int64),
              "delta": np.array(-2, np.int64)}
    outputs = {"c": TensorProto.INT32, "y": TensorProto.INT64}
    graph = load(make(nodes, {"x": (TensorProto.INT64, (3,))}, outputs, consts))
    constant = graph.outputs[0].const
    assert constant.dtype == np.int32 and constant.shape == (2, 3) and (constant == 7).all()
    assert [n.op_type for n in graph.nodes] == ["Add"]
    np.testing.assert_array_equal(run_reference(graph, {"x": np.zeros(3, np.int64)})["y"], [10, 8, 6])


def test_range_with_bounds_from_a_graph_input_is_a_shape_error():
    model = make([helper.make_node("Range", ["start", "limit", "delta"], ["r"])],
                 {"limit": (FLOAT, ())}, {"r": FLOAT},
                 {"start": np.array(0, np.float32), "delta": np.array(1, np.float32)})
    with pytest.raises(ShapeError, match="Range node .* limit .* must be known at compile time"):
        load(model)


def test_onehot_depth_sets_the_new_axis():
    model = make([helper.make_node("OneHot", ["i", "depth", "values"], ["y"], axis=0)],
                 {"i": (TensorProto.INT64, (2, 3))}, {"y": FLOAT},
                 {"depth": np.array(4.0, np.float32), "values": np.array([0, 5], np.float32)}, opset=11)
    assert load(model).outputs[0].shape == (4, 2, 3)
    assert_matches_ort(model, {"i": np.array([[0, 3, -1], [4, -5, 2]], np.int64)})


def test_pad_modes_axes_and_negative_pads_match_onnxruntime():
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    for mode in ("constant", "reflect", "edge", "wrap"):
        model = make([helper.make_node("Pad", ["x", "pads", "value", "axes"], ["y"], mode=mode)],
                     {"x": (FLOAT, (3, 5))}, {"y": FLOAT},
                     {"pads": np.array([2, -1], np.int64), "value": np.array(1.5, np.float32),
                      "axes": np.array([-1], np.int64)}, opset=19)
        assert load(model).outputs[0].shape == (3, 6)
        assert_matches_ort(model, {"x": x})


def test_pad_attributes_before_opset_11_and_unknown_mode():
    model = make([helper.make_node("Pad", ["x"], ["y"], pads=[1, 0, 0, 2], value=3.0)], {"x": (FLOAT, (2, 2))},
                 {"y": FLOAT}, opset=10)
    y = run_reference(load(model), {"x": np.zeros((2, 2), np.float32)})["y"]
    assert y.shape == (3, 4) and y[0, 0] == 3.0 and y[1, 3] == 3.0 and y[1, 0] == 0.0
    wrap = make([helper.make_node("Pad", ["x"], ["y"], pads=[1, 0, 0, 2], mode="wrap")], {"x": (FLOAT, (2, 2))},
                {"y": FLOAT}, opset=10)
    with pytest.raises(UnsupportedOperatorError, match="mode='wrap' is not supported"):
        load(wrap)


def test_nonzero_and_unique_have_data_dependent_extents():
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]),
             helper.make_node("Unique", ["x"], ["u", "first", "inverse", "counts"], sorted=0)]
    outputs = {"nz": TensorProto.INT64, "u": FLOAT, "first": TensorProto.INT64, "inverse": TensorProto.INT64,
               "counts": TensorProto.INT64}
    model = make(nodes, {"x": (FLOAT, (2, 3))}, outputs, opset=13)
    assert [v.shape for v in load(model).outputs] == [(2, None), (None,), (None,), (6,), (None,)]
    assert_matches_ort(model, {"x": np.array([[2, 0, 1], [1, 3, 0]], np.float32)})


def test_compress_extent_is_static_only_for_a_constant_condition():
    node = helper.make_node("Compress", ["x", "c"], ["y"], axis=1)
    static = make([node], {"x": (FLOAT, (2, 4))}, {"y": FLOAT}, {"c": np.array([1, 0, 1], bool)})
    dynamic = make([node], {"x": (FLOAT, (2, 4)), "c": (TensorProto.BOOL, (4,))}, {"y": FLOAT})
    assert load(static).outputs[0].shape == (2, 2)
    assert load(dynamic).outputs[0].shape == (2, None)
    assert_matches_ort(dynamic, {"x": RNG.standard_normal((2, 4)).astype(np.float32),
                                 "c": np.array([0, 1, 1, 1], bool)})


def test_mapping_types_and_zero_flops_for_data_movement():
    expected = {"Reshape": MappingType.REORGANIZE, "Unsqueeze": MappingType.REORGANIZE,
                "Transpose": MappingType.SHUFFLE, "DepthToSpace": MappingType.SHUFFLE,
                "Concat": MappingType.ONE_TO_ONE, "Slice": MappingType.ONE_TO_ONE, "Split": MappingType.ONE_TO_ONE,
                "Gather": MappingType.ONE_TO_MANY, "Expand": MappingType.ONE_TO_MANY, "Pad": MappingType.ONE_TO_MANY,
                "NonZero": MappingType.MANY_TO_MANY, "Unique": MappingType.MANY_TO_MANY}
    assert {name: ops.get(name).mapping for name in expected} == expected
    graph = load(make([helper.make_node("Transpose", ["x"], ["t"]), helper.make_node("Tile", ["t", "r"], ["y"])],
                      {"x": (FLOAT, (2, 3))}, {"y": FLOAT}, {"r": np.array([2, 2], np.int64)}))
    assert graph.outputs[0].shape == (6, 4)
    assert [ops.lookup(n).flops(n) for n in graph.nodes] == [0, 0]
