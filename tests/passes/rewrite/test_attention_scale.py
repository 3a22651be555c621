"""An attention's 1/sqrt(d) after Q·Kᵀ, as BERT and GPT-2 exports write it (Div by sqrt(d), or Mul by its inverse),
moves onto Q (matmul_scale_to_operand: Q is smaller than the scores) and then folds into the Q projection's weights
and bias through the head split (matmul_scale_into_weights), in one rewrite pass: no scale is left, the FLOPs drop
by the scores' size, and the result is the original's. Where Q is not smaller than the scores, or the scale would
not fold into its projection, the scale stays on the scores (fused there as an epilogue)."""

import math

import numpy as np
import pytest
from onnx import helper, numpy_helper

from dnnfusion.passes.rewrite import RULES, rewrite, rule
from dnnfusion.runtime import ReferenceExecutor
from tests.helpers import FLOAT
from tests.passes.rewrite.harness import graph_of, model

HIDDEN, HEADS = 12, 2
D = HIDDEN // HEADS
PAIR = [rule("matmul_scale_to_operand"), rule("matmul_scale_into_weights")]


def attention_scores(seq: int = 8, op: str = "Div", leak_q: bool = False):
    """Softmax of the scaled scores of one attention layer's heads: x [1, seq, HIDDEN] projected to Q and K (MatMul
    + bias, Reshape to heads, Transpose), scores Q·Kᵀ scaled by 1/sqrt(D)."""
    rng = np.random.default_rng(1)
    shapes = {"Wq": (HIDDEN, HIDDEN), "bq": (HIDDEN,), "Wk": (HIDDEN, HIDDEN), "bk": (HIDDEN,)}
    init = {name: rng.standard_normal(shape).astype(np.float32) * 0.3 for name, shape in shapes.items()}
    init["heads"] = np.array([1, seq, HEADS, D], np.int64)
    init["c"] = np.array(math.sqrt(D) if op == "Div" else 1 / math.sqrt(D), np.float32)
    nodes = []
    for name, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1])):
        w, bias = "W" + name, "b" + name
        nodes += [helper.make_node("MatMul", ["x", w], [name + "_p"]),
                  helper.make_node("Add", [name + "_p", bias], [name + "_a"]),
                  helper.make_node("Reshape", [name + "_a", "heads"], [name + "_r"]),
                  helper.make_node("Transpose", [name + "_r"], [name], perm=perm)]
    nodes += [helper.make_node("MatMul", ["q", "k"], ["scores"]),
              helper.make_node(op, ["scores", "c"], ["scaled"]),
              helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1)]
    return model(nodes, [("x", FLOAT, [1, seq, HIDDEN])], ["probs"] + (["q"] if leak_q else []), init)


def rewritten(m, rules=PAIR):
    graph = graph_of(m)
    return graph, rewrite(graph, rules)


def initializer(m, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in m.graph.initializer if t.name == name)


def constants_read_by(graph, op_type: str) -> list[np.ndarray]:
    return [v.const for n in graph.nodes if n.op_type == op_type for v in n.inputs if v is not None and
            v.const is not None and v.const.ndim > 0 and v.const.dtype == np.float32]


def same_results(m, graph, seq: int = 8) -> None:
    x = np.random.default_rng(2).standard_normal((1, seq, HIDDEN)).astype(np.float32) * 2
    expected = ReferenceExecutor(graph_of(m)).run({"x": x})
    got = ReferenceExecutor(graph).run({"x": x})
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Div", "Mul"])
def test_the_scale_moves_onto_q_then_into_its_projection(op):
    m = attention_scores(op=op)
    graph, report = rewritten(m)
    assert report.fired == {"matmul_scale_to_operand": 1, "matmul_scale_into_weights": 1}
    assert [n.op_type for n in graph.nodes] == ["MatMul", "Add", "Reshape", "Transpose"] * 2 + ["MatMul", "Softmax"]
    assert report.flops_before - report.flops_after == HEADS * 8 * 8     # the scores' scaling, gone
    weights, biases = constants_read_by(graph, "MatMul"), constants_read_by(graph, "Add")
    for name, found in (("Wq", weights), ("bq", biases)):
        assert any(np.allclose(a, initializer(m, name) / math.sqrt(D), rtol=1e-6, atol=0) for a in found)
    assert any(np.array_equal(a, initializer(m, "Wk")) for a in weights)
    same_results(m, graph)


def test_every_default_algebraic_rule_together_does_the_same():
    rules = [r for r in RULES if r.family in ("associative", "distributive") and r.default]
    graph, report = rewritten(attention_scores(), rules)
    assert report.fired == {"matmul_scale_to_operand": 1, "matmul_scale_into_weights": 1}
    same_results(attention_scores(), graph)


def test_the_scale_stays_on_the_scores_where_q_is_not_smaller():
    graph, report = rewritten(attention_scores(seq=4))               # scores [1, 2, 4, 4] smaller than Q [1, 2, 4, 6]
    assert not report.fired and "Div" in [n.op_type for n in graph.nodes]


def test_the_scale_stays_on_the_scores_where_it_would_not_fold_into_the_projection():
    """Q also a graph output: the scale would survive on Q, so it stays where fusion takes it for free (as the
    scores' epilogue) instead of costing a kernel of its own."""
    graph, report = rewritten(attention_scores(leak_q=True))
    assert not report.fired and "Div" in [n.op_type for n in graph.nodes]
