"""The shrinker: keeps the failure, removes what is not needed, and only ever produces valid models."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dnnfusion.fuzz.graphs import generate
from dnnfusion.fuzz.shrink import is_valid, remove_node, shrink, size


def _has(op):
    return lambda m: any(n.op_type == op for n in m.graph.node)


def test_shrinks_a_synthetic_failure_to_one_node():
    fg = next(fg for fg in (generate(s) for s in range(100)) if "MatMul" in fg.ops and len(fg.op_sequence) >= 6)
    seen = []

    def fails(m):
        assert is_valid(m)
        seen.append(m)
        return _has("MatMul")(m)

    small, checks = shrink(fg.model, fails)
    assert [n.op_type for n in small.graph.node] == ["MatMul"]
    assert len(small.graph.output) == 1 and checks == len(seen)
    assert size(small) < size(fg.model)


def test_shrinking_dims_keeps_the_model_consistent():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    small, _ = shrink(model, _has("Relu"))
    assert [d.dim_value for d in small.graph.input[0].type.tensor_type.shape.dim] == [1, 1]
    assert [d.dim_value for d in small.graph.output[0].type.tensor_type.shape.dim] == [1, 1]


def test_remove_node_rewires_bypasses_or_makes_an_input():
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("MatMul", ["a", "w"], ["b"]),
             helper.make_node("Tanh", ["b"], ["c"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    rewired = remove_node(model, 1, "rewire")
    assert [n.op_type for n in rewired.graph.node] == ["Relu", "Tanh"] and rewired.graph.node[1].input[0] == "a"
    as_input = remove_node(model, 1, "input")
    assert [n.op_type for n in as_input.graph.node] == ["Tanh"]
    assert [vi.name for vi in as_input.graph.input] == ["b"] and not as_input.graph.initializer
    bypassed = remove_node(model, 1, "bypass")
    assert [n.op_type for n in bypassed.graph.node] == ["Relu", "Tanh"] and bypassed.graph.node[1].input[0] == "a"
    assert is_valid(rewired) and is_valid(as_input) and is_valid(bypassed)


def test_a_failure_that_needs_two_ops_keeps_both():
    fg = next(fg for fg in (generate(s) for s in range(200)) if {"Add", "Relu"} <= fg.ops)

    def fails(m):
        ops = {n.op_type for n in m.graph.node}
        return {"Add", "Relu"} <= ops

    small, _ = shrink(fg.model, fails)
    assert sorted(n.op_type for n in small.graph.node) == ["Add", "Relu"]
    onnx.checker.check_model(small, full_check=True)
