"""Decomposed activations recognised as one operator (passes/rewrite/decomposed.py): Mul(x, Tanh(Softplus(x))) becomes
Mish(x) in either operand order, the compiled result matches onnxruntime on the unrewritten model over edge
values, and the chain stays as it is where an intermediate has another reader or the Mul reads another x."""

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.ir import from_onnx
from dnnfusion.oracle import run_onnxruntime
from dnnfusion.passes import infer_shapes
from dnnfusion.passes.rewrite import rewrite, rule
from tests.helpers import FLOAT, make_model

SHAPE = [2, 3, 64]


def mish_model(swapped: bool = False, leak: str | None = None, other_x: bool = False):
    """x -> Softplus -> Tanh -> Mul(x or z, .) -> y, optionally with an intermediate also a graph output."""
    first = "z" if other_x else "x"
    nodes = [helper.make_node("Softplus", ["x"], ["s"]), helper.make_node("Tanh", ["s"], ["t"]),
             helper.make_node("Mul", ["t", first] if swapped else [first, "t"], ["y"])]
    inputs = [("x", FLOAT, SHAPE)] + ([("z", FLOAT, SHAPE)] if other_x else [])
    return make_model(nodes, inputs, ["y"] + ([leak] if leak else []), {}, output_type=FLOAT)


def rewritten(model) -> tuple[int, list[str]]:
    graph = infer_shapes(from_onnx(model))
    count = rewrite(graph, [rule("mish")]).fired["mish"]
    return count, [n.op_type for n in graph.nodes]


@pytest.mark.parametrize("swapped", [False, True])
def test_the_chain_becomes_one_mish(swapped):
    assert rewritten(mish_model(swapped)) == (1, ["Mish"])


@pytest.mark.parametrize("case", [{"leak": "s"}, {"leak": "t"}, {"other_x": True}])
def test_it_stays_where_it_is_not_mish_alone(case):
    count, ops = rewritten(mish_model(**case))
    assert count == 0 and ops == ["Softplus", "Tanh", "Mul"]


@pytest.mark.parametrize("seed", range(3))
def test_compiled_mish_matches_the_unrewritten_chain(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(SHAPE) * [1, 10, 40][seed]).astype(np.float32)
    x.flat[:8] = [0.0, -0.0, 20.0, -20.0, 88.0, -88.0, 1e-30, -1e-30]
    model = mish_model(swapped=seed == 1)
    compiled = dnnfusion.compile(model, opt_level="O3")
    assert compiled.stats["ops_after_folding"] == 1
    expected = run_onnxruntime(model, {"x": x})["y"]
    np.testing.assert_allclose(compiled.run({"x": x})["y"], expected, rtol=2e-6, atol=1e-6)


def test_the_fused_onnx_graph_spells_mish_out_below_opset_18():
    from dnnfusion.fusion.onnx_blocks import fused_model
    from dnnfusion.pipeline import plan_model

    model = mish_model()
    x = np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32)
    plan = plan_model(model, None, "O3")
    assert [o.node.op_type for b in plan.blocks for o in b.ops] == ["Mish"]
    exported = fused_model(plan)
    np.testing.assert_allclose(run_onnxruntime(exported, {"x": x})["y"], run_onnxruntime(model, {"x": x})["y"],
                               rtol=1e-6, atol=1e-7)
