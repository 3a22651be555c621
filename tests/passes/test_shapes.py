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
    with pytest.raises(UnboundDimensionError, match="input 'x' dimension 0 \\('batch'\\)"):
        load(demo_model())


def test_binding_with_wrong_rank_or_fixed_dim():
    with pytest.raises(ShapeError, match="rank 3"):
        load(demo_model(), {"x": (3, 10), "mask": (3, 10)})
    with pytest.raises(ShapeError, match="fixed to 64"):
        load(demo_model(), {"x": (3, 10, 32), "mask": (3, 10)})
    with pytest.raises(ShapeError, match="does not have"):
        load(demo_model(), {"x": (3, 10, 64), "mask": (3, 10), "nope": (1,)})


def masked_model():
    """x (batch, seq, 4) times mask (batch, seq) unsqueezed; z (?, 4), an unnamed dynamic axis, through Relu."""
    nodes = [helper.make_node("Unsqueeze", ["mask", "last"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"]),
             helper.make_node("Relu", ["z"], ["w"])]
    inputs = [("x", FLOAT, ["batch", "seq", 4]), ("mask", FLOAT, ["batch", "seq"]), ("z", FLOAT, [None, 4])]
    return make_model(nodes, inputs, ["y", "w"], {"last": np.array([-1], np.int64)})


def input_shapes_of(graph) -> dict:
    return {v.name: v.shape for v in graph.inputs}


def test_dimension_names_bind_every_input_that_uses_them():
    g = load(masked_model(), {"batch": 2, "seq": 5, "z": (3, 4)})
    assert input_shapes_of(g) == {"x": (2, 5, 4), "mask": (2, 5), "z": (3, 4)}
    assert [v.shape for v in g.outputs] == [(2, 5, 4), (3, 4)]


def test_names_and_whole_shapes_mix_when_they_agree():
    g = load(masked_model(), {"batch": 2, "x": (2, 7, 4), "mask": (2, 7), "z": (1, 4)})
    assert input_shapes_of(g) == {"x": (2, 7, 4), "mask": (2, 7), "z": (1, 4)}
    g = load(masked_model(), {"batch": np.int64(3), "seq": 1, "z": [2, 4]})
    assert input_shapes_of(g) == {"x": (3, 1, 4), "mask": (3, 1), "z": (2, 4)}


def test_input_names_win_over_dimension_names():
    nodes = [helper.make_node("Add", ["n", "v"], ["y"])]
    model = make_model(nodes, [("n", FLOAT, ["n"]), ("v", FLOAT, ["n"])], ["y"])
    assert input_shapes_of(load(model, {"n": (3,), "v": (3,)})) == {"n": (3,), "v": (3,)}
    with pytest.raises(ShapeError, match=r"input_shapes\['n'\] is 3, but 'n' is an input, which takes a shape: "
                                         r"give an int per axis, e\.g\. \{'n': \(3, \.\.\.\)\}"):
        load(model, {"n": 3})


def test_unknown_key_lists_inputs_and_dimension_names():
    with pytest.raises(ShapeError, match="input_shapes names 'nope', which the model does not have as an input or a "
                                         "dimension name; its inputs are 'mask', 'x', 'z' and its dimension names "
                                         "are 'batch', 'seq'"):
        load(masked_model(), {"batch": 2, "seq": 5, "z": (3, 4), "nope": 1})


def test_dimension_name_takes_one_int():
    with pytest.raises(ShapeError, match=r"input_shapes\['batch'\] is \(2,\), but 'batch' is a dimension name, "
                                         r"which takes one int"):
        load(masked_model(), {"batch": (2,), "seq": 5, "z": (3, 4)})
    with pytest.raises(ShapeError, match="dimension 'seq': -1 is not a valid size; give 0 or more"):
        load(masked_model(), {"batch": 2, "seq": -1, "z": (3, 4)})


def test_inputs_that_disagree_on_a_shared_name_are_named():
    with pytest.raises(ShapeError, match="inputs disagree on dimension 'batch': input 'x' has 2 at dimension 0 but "
                                         "input 'mask' has 3 at dimension 0; give every input the same 'batch'"):
        load(masked_model(), {"x": (2, 5, 4), "mask": (3, 5), "z": (1, 4)})
    with pytest.raises(ShapeError, match="inputs disagree on dimension 'seq': input_shapes binds 'seq' to 5 but "
                                         "input 'mask' has 6 at dimension 1"):
        load(masked_model(), {"batch": 2, "seq": 5, "mask": (2, 6), "z": (1, 4)})


def test_shape_against_a_static_dim_of_the_model():
    with pytest.raises(ShapeError, match="input 'x' dimension 2 is fixed to 4 by the model, not 8; give 4 there"):
        load(masked_model(), {"x": (2, 5, 8), "mask": (2, 5), "z": (1, 4)})


@pytest.mark.parametrize("given, expected", [
    ({"x": (None, 5, 4)}, r"input_shapes\['x'\] = \(None, 5, 4\): axis 0 is None; give an int per axis, or leave "
                          r"'x' out of input_shapes to keep its declared static shape"),
    ({"x": None}, r"input_shapes\['x'\] is None: give an int per axis, or leave 'x' out"),
    ({"x": (2, "5", 4)}, r"axis 1 is '5'; give an int per axis"),
    ({"batch": None}, r"input_shapes\['batch'\] is None, but 'batch' is a dimension name, which takes one int"),
])
def test_none_or_non_int_extents_are_clear_errors(given, expected):
    with pytest.raises(ShapeError, match=expected):
        load(masked_model(), {"seq": 5, "z": (1, 4), **given})


def test_every_unbound_dimension_is_reported_with_a_binding_by_name():
    with pytest.raises(UnboundDimensionError) as caught:
        load(masked_model())
    assert caught.value.unbound == [("x", 0, "batch"), ("x", 1, "seq"), ("mask", 0, "batch"), ("mask", 1, "seq"),
                                    ("z", 0, None)]
    assert str(caught.value) == (
        "unbound dynamic dimensions: input 'x' dimension 0 ('batch'), dimension 1 ('seq'); input 'mask' dimension 0 "
        "('batch'), dimension 1 ('seq'); input 'z' dimension 0 (unnamed); bind them by name with "
        "input_shapes={'batch': 1, 'seq': 1} (--dim batch=1 --dim seq=1), or give an input's whole shape with "
        "input_shapes={'z': (...)} (--shape z=D0,D1,...)")


def test_unbound_suggestion_takes_extents_other_inputs_give():
    with pytest.raises(UnboundDimensionError, match=r"input 'mask' dimension 0 \('batch'\), dimension 1 \('seq'\); "
                                                    r"bind them by name with input_shapes=\{'batch': 2, 'seq': 5\} "
                                                    r"\(--dim batch=2 --dim seq=5\)"):
        load(masked_model(), {"x": (2, 5, 4), "z": (1, 4)})


def test_only_unnamed_dimensions_suggest_whole_shapes():
    with pytest.raises(UnboundDimensionError) as caught:
        load(masked_model(), {"batch": 1, "seq": 1})
    assert str(caught.value) == ("unbound dynamic dimensions: input 'z' dimension 0 (unnamed); give each input's "
                                 "whole shape with input_shapes={'z': (...)} (--shape z=D0,D1,...)")


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
