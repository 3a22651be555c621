"""Static shapes: binding dynamic dims, folding shape subgraphs, and the errors when that is impossible."""

import numpy as np
import pytest
from onnx import helper

from dnnfusion.errors import ShapeError, UnboundDimensionError
from dnnfusion.pipeline import load
from dnnfusion.zoo import demo_model
from tests.helpers import FLOAT, INT64, make_model


def test_demo_model_is_fully_static_after_folding():
    g = load(demo_model(), {"x": (3, 10, 64), "mask": (3, 10)})
    assert all(v.is_static for v in g.live_values())
    assert g.outputs[0].shape == (3, 10, 64)
    ops = g.op_counts()
    assert "Shape" not in ops and "Gather" not in ops and "Concat" not in ops   # the shape subgraph folded
    assert ops["Reshape"] == 4


def test_unbound_dimension_names_input_and_axis():
    with pytest.raises(UnboundDimensionError, match="input 'x' has a dynamic dimension 0 \\('batch'\\)"):
        load(demo_model())


def test_binding_with_wrong_rank_or_fixed_dim():
    with pytest.raises(ShapeError, match="rank 3"):
        load(demo_model(), {"x": (3, 10), "mask": (3, 10)})
    with pytest.raises(ShapeError, match="fixed to 64"):
        load(demo_model(), {"x": (3, 10, 32), "mask": (3, 10)})
    with pytest.raises(ShapeError, match="does not have"):
        load(demo_model(), {"x": (3, 10, 64), "mask": (3, 10), "nope": (1,)})


def test_expand_from_constant_of_shape_and_range():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["ones"], value=helper.make_tensor("v", 1, [1], [1.0])),
        helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "step"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=1),
        helper.make_node("Expand", ["rf", "s"], ["e"]),
        helper.make_node("Mul", ["e", "ones"], ["y"]),
    ]
    inits = {"one": np.array(1, np.int64), "zero": np.array(0, np.int64), "step": np.array(1, np.int64)}
    g = load(make_model(nodes, [("x", FLOAT, ["b", "n"])], ["y"], inits), {"x": (2, 5)})
    assert g.outputs[0].shape == (2, 5)
    assert all(v.is_static for v in g.live_values())
    assert [n.op_type for n in g.nodes] == ["Mul"] or g.outputs[0].const is not None


def test_slice_with_computed_bounds():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "last"], ["n"], axis=0),
        helper.make_node("Div", ["n", "two"], ["half"]),
        helper.make_node("Unsqueeze", ["half", "axis0"], ["end"]),
        helper.make_node("Slice", ["x", "start", "end", "axis1"], ["y"]),
    ]
    inits = {"last": np.array(-1, np.int64), "two": np.array(2, np.int64), "axis0": np.array([0], np.int64),
             "start": np.array([0], np.int64), "axis1": np.array([1], np.int64)}
    g = load(make_model(nodes, [("x", FLOAT, ["b", "n"])], ["y"], inits), {"x": (3, 8)})
    assert g.outputs[0].shape == (3, 4)
    assert [n.op_type for n in g.nodes] == ["Slice"]


def test_reshape_of_runtime_shape_is_a_clear_error():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, [2, 3]), ("shape", INT64, [2])], ["y"])
    with pytest.raises(ShapeError, match="Reshape node .* must be known at compile time"):
        load(model)
