"""Data movement inside fused blocks moves no data: Transpose, Reshape, Concat, Slice, Gather, Pad, Resize...
become index arithmetic in the consumer's loop, checked against onnxruntime (or the reference executor where
onnxruntime rejects the case) with no fallback and one block for these pointwise-only graphs."""

import re

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.backend import DnnfusionBackend
from dnnfusion.fusion import plan_graph
from dnnfusion.ir import from_onnx
from dnnfusion.passes import infer_shapes
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.passes import fold_constants
from dnnfusion.options import CompileOptions
from dnnfusion.pipeline import build_plan
from tests.helpers import FLOAT, INT64, make_model

RNG = np.random.default_rng(7)


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def floats(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def make_float_model(nodes, inputs, outputs, initializers=None, opset=17):
    """make_model with float outputs (onnxruntime needs the output types)."""
    model = make_model(nodes, inputs, outputs, initializers, opset)
    for output in model.graph.output:
        output.type.tensor_type.elem_type = FLOAT
    return model


def compiled_matches(model, feeds, blocks=1, oracle="onnxruntime"):
    """Compile; check there is no fallback and the block count; compare with the oracle. Returns the compiled."""
    compiled = dnnfusion.compile(model)
    assert compiled.stats["fallback_ops"] == []
    assert compiled.stats["blocks"] == blocks
    if oracle == "onnxruntime":
        expected = run_onnxruntime(model, feeds)
    else:
        rep = DnnfusionBackend.prepare(model, executor="reference")
        expected = dict(zip([o.name for o in model.graph.output], rep.run(feeds)))
    diffs = compare(compiled.run(feeds), expected)
    assert diffs and all(d.ok for d in diffs), diffs
    return compiled


def stores(source):
    """The stores to block buffers in the generated C (one per loop nest that writes a value)."""
    return re.findall(r"\bx_(?:out|a)\d+\[[^\n]*\] = ", source)


def test_transpose_and_reshape_between_elementwise_ops_are_index_maps():
    nodes = [node("Add", ["x", "b"], ["s"]), node("Transpose", ["s"], ["t"], perm=[0, 2, 1]),
             node("Reshape", ["t", "shape"], ["r"]), node("Mul", ["r", "w"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [2, 3, 4]), ("b", FLOAT, [4]), ("w", FLOAT, [3])], ["y"],
                       {"shape": np.array([8, 3], np.int64)})
    compiled = compiled_matches(model, {"x": floats(2, 3, 4), "b": floats(4), "w": floats(3)})
    assert compiled.source.count("for (int64_t i0") == 1             # one loop nest for the block's one output
    assert len(stores(compiled.source)) == 1                          # the transposed tensor is never written


def test_concat_of_two_relu_branches_is_a_select():
    nodes = [node("Neg", ["b"], ["t"]), node("Add", ["x", "t"], ["p"]), node("Relu", ["p"], ["a"]),
             node("Sub", ["z", "t"], ["q"]), node("Relu", ["q"], ["c"]), node("Concat", ["a", "c"], ["j"], axis=1),
             node("Mul", ["j", "j"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [2, 3, 4]), ("z", FLOAT, [2, 5, 4]), ("b", FLOAT, [4])], ["y"])
    compiled = compiled_matches(model, {"x": floats(2, 3, 4), "z": floats(2, 5, 4), "b": floats(4)})
    assert len(stores(compiled.source)) == 1


def test_concat_of_three_inputs_with_an_empty_one():
    nodes = [node("Relu", ["x"], ["a"]), node("Concat", ["a", "e", "z", "a"], ["j"], axis=-1),
             node("Neg", ["j"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [3, 2]), ("e", FLOAT, [3, 0]), ("z", FLOAT, [3, 5])], ["y"])
    compiled_matches(model, {"x": floats(3, 2), "e": floats(3, 0), "z": floats(3, 5)})


def test_slice_of_a_sigmoid_with_negative_steps():
    nodes = [node("Sigmoid", ["x"], ["s"]), node("Slice", ["s", "starts", "ends", "axes", "steps"], ["c"]),
             node("Add", ["c", "c"], ["y"])]
    consts = {"starts": np.array([1, -1], np.int64), "ends": np.array([100, -9], np.int64),
              "axes": np.array([0, 1], np.int64), "steps": np.array([2, -3], np.int64)}
    model = make_float_model(nodes, [("x", FLOAT, [6, 10])], ["y"], consts)
    compiled = compiled_matches(model, {"x": floats(6, 10)})
    assert len(stores(compiled.source)) == 1


def test_gather_with_constant_and_runtime_indices():
    nodes = [node("Relu", ["x"], ["r"]), node("Gather", ["r", "k"], ["g"], axis=1),
             node("Gather", ["r", "i"], ["h"], axis=0), node("Mul", ["g", "g"], ["y"]), node("Neg", ["h"], ["z"])]
    model = make_float_model(nodes, [("x", FLOAT, [5, 4]), ("i", INT64, [2, 3])], ["y", "z"],
                       {"k": np.array([[0, -1], [2, 3]], np.int64)})
    compiled_matches(model, {"x": floats(5, 4), "i": np.array([[0, 4, -1], [-5, 2, 3]], np.int64)})


def test_gather_elements_and_gather_nd():
    nodes = [node("Exp", ["x"], ["e"]), node("GatherElements", ["e", "i"], ["g"], axis=1),
             node("GatherND", ["e", "n"], ["h"]), node("Abs", ["g"], ["y"]), node("Abs", ["h"], ["z"])]
    model = make_float_model(nodes, [("x", FLOAT, [3, 4]), ("i", INT64, [3, 2])], ["y", "z"],
                       {"n": np.array([[0, -1], [2, 1]], np.int64)})
    compiled_matches(model, {"x": floats(3, 4), "i": np.array([[0, 3], [-1, 1], [2, -4]], np.int64)}, blocks=2)


def test_split_outputs_each_read_at_their_offset():
    nodes = [node("Tanh", ["x"], ["t"]), node("Split", ["t", "sizes"], ["a", "b", "c"], axis=1),
             node("Add", ["a", "c"], ["s"]), node("Mul", ["s", "b"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [2, 6])], ["y"], {"sizes": np.array([2, 2, 2], np.int64)})
    compiled_matches(model, {"x": floats(2, 6)})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_and_back(mode):
    nodes = [node("Relu", ["x"], ["r"]), node("DepthToSpace", ["r"], ["d"], blocksize=2, mode=mode),
             node("SpaceToDepth", ["d"], ["s"], blocksize=2), node("Add", ["d", "d"], ["y"]),
             node("Neg", ["s"], ["z"])]
    model = make_float_model(nodes, [("x", FLOAT, [2, 8, 3, 2])], ["y", "z"])
    compiled_matches(model, {"x": floats(2, 8, 3, 2)})


def test_expand_and_tile():
    nodes = [node("Sigmoid", ["x"], ["s"]), node("Expand", ["s", "shape"], ["e"]),
             node("Tile", ["s", "reps"], ["t"]), node("Add", ["e", "e"], ["y"]), node("Neg", ["t"], ["z"])]
    model = make_float_model(nodes, [("x", FLOAT, [3, 1])], ["y", "z"],
                       {"shape": np.array([2, 3, 4], np.int64), "reps": np.array([2, 3], np.int64)})
    compiled_matches(model, {"x": floats(3, 1)})


@pytest.mark.parametrize("mode,pads", [("constant", [1, -1, 2, 3]), ("reflect", [5, 0, 2, 7]),
                                       ("edge", [2, 3, -1, 4]), ("wrap", [7, -2, 1, 9])])
def test_pad_modes_with_crops_and_wide_borders(mode, pads):
    nodes = [node("Relu", ["x"], ["r"]), node("Pad", ["r", "pads", "value"], ["p"], mode=mode),
             node("Neg", ["p"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [3, 4])], ["y"],
                       {"pads": np.array(pads, np.int64), "value": np.array(2.5, np.float32)}, opset=19)
    compiled_matches(model, {"x": floats(3, 4)}, oracle="reference")


def test_center_crop_pad():
    nodes = [node("Relu", ["x"], ["r"]), node("CenterCropPad", ["r", "shape"], ["c"], axes=[0, 1]),
             node("Neg", ["c"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [5, 2, 3])], ["y"], {"shape": np.array([2, 5], np.int64)}, opset=18)
    compiled_matches(model, {"x": floats(5, 2, 3)})


@pytest.mark.parametrize("attrs,scales", [
    ({"mode": "nearest"}, [1, 1, 2, 3]),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [1, 1, 0.6, 2.5]),
    ({"mode": "linear"}, [1, 1, 2, 0.5]),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 2, 3]),
])
def test_resize_nearest_and_linear_read_in_place(attrs, scales):
    nodes = [node("Relu", ["x"], ["r"]), node("Resize", ["r", "", "scales"], ["s"], **attrs),
             node("Neg", ["s"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [1, 2, 5, 4])], ["y"], {"scales": np.array(scales, np.float32)},
                       opset=19)
    compiled = compiled_matches(model, {"x": floats(1, 2, 5, 4)})
    assert len(stores(compiled.source)) == 1


def compile_unfolded(model):
    """Compile as dnnfusion.compile does, but folding no node outputs (so generators get code of their own)."""
    graph = from_onnx(model)
    infer_shapes(graph, fold_limit=0)
    fold_constants(graph)
    return build_plan(plan_graph(graph, "O3"), CompileOptions())


def test_generators_fused_with_elementwise_ops():
    nodes = [node("Range", ["start", "limit", "delta"], ["g"]), node("Add", ["x", "g"], ["s"]),
             node("ConstantOfShape", ["shape"], ["c"], value=helper.make_tensor("v", FLOAT, [1], [0.5])),
             node("Mul", ["s", "c"], ["m"]), node("Trilu", ["m", "k"], ["t"], upper=0),
             node("EyeLike", ["t"], ["e"], k=1), node("Add", ["t", "e"], ["y"]),
             node("OneHot", ["i", "depth", "values"], ["o"], axis=0), node("Neg", ["o"], ["z"])]
    model = make_float_model(nodes, [("x", FLOAT, [3, 5]), ("i", INT64, [3])], ["y", "z"],
                             {"start": np.array(1.5, np.float32), "limit": np.array(4.0, np.float32),
                              "delta": np.array(0.5, np.float32), "shape": np.array([3, 5], np.int64),
                              "k": np.array(1, np.int64), "depth": np.array(4, np.int64),
                              "values": np.array([-1.0, 3.0], np.float32)})
    feeds = {"x": floats(3, 5), "i": np.array([1, -1, 7], np.int64)}
    compiled = compile_unfolded(model)
    assert compiled.stats["fallback_ops"] == []
    assert {o.node.op_type for b in compiled.plan.blocks for o in b.ops} >= {"Range", "ConstantOfShape", "EyeLike"}
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds))
    assert diffs and all(d.ok for d in diffs), diffs


def test_reverse_sequence_with_runtime_lengths():
    nodes = [node("Relu", ["x"], ["r"]), node("ReverseSequence", ["r", "lens"], ["v"], batch_axis=1, time_axis=0),
             node("Neg", ["v"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [4, 3, 2]), ("lens", INT64, [3])], ["y"])
    compiled_matches(model, {"x": floats(4, 3, 2), "lens": np.array([4, 1, 2], np.int64)})


def test_squeeze_unsqueeze_flatten_chain_keeps_plain_indices():
    nodes = [node("Relu", ["x"], ["r"]), node("Unsqueeze", ["r", "axes"], ["u"]),
             node("Flatten", ["u"], ["f"], axis=2), node("Squeeze", ["f"], ["q"]), node("Neg", ["q"], ["y"])]
    model = make_float_model(nodes, [("x", FLOAT, [1, 6])], ["y"], {"axes": np.array([0, 3], np.int64)})
    compiled = compiled_matches(model, {"x": floats(1, 6)})
    first_kernel = re.split(r"static BLOCK void \w+\(", compiled.source)[1]
    assert "/" not in first_kernel.split("\n}\n")[0]    # size-1 axes need no division
