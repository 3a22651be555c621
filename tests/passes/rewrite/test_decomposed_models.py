"""Decomposed operators recognised in whole models (passes/rewrite/decomposed.py): on the small zoo exports of
GPT-2 and BERT (TorchScript, opset 13) every LayerNorm and GELU becomes one operator at O3, O3 needs fewer
blocks than O2, and the compiled O3 model matches onnxruntime on the original; on every rule's proof case, the
compiled model matches onnxruntime, and the fused ONNX graph (which spells a recognised operator out again
below the opset that introduced it) passes the checker and gives onnxruntime's outputs."""

from collections import Counter

import numpy as np
import onnx
import pytest

import dnnfusion
from dnnfusion.fusion.onnx_blocks import fused_model
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.pipeline import plan_model
from tests.passes.rewrite.cases.decomposed import CASES

RTOL, ATOL = 1e-4, 1e-5


def exported_ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def planned_ops(plan) -> Counter:
    return Counter(o.node.op_type for b in plan.blocks for o in b.ops)


def assert_matches(ours: dict, reference: dict) -> None:
    diffs = compare(ours, reference, rtol=RTOL, atol=ATOL)
    assert diffs and all(d.ok for d in diffs), diffs


@pytest.mark.parametrize("name, gelu", [("gpt2", "Tanh"), ("bert_base", "Erf")])
def test_every_layer_norm_and_gelu_of_a_zoo_transformer_is_recognised(name, gelu):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from dnnfusion.zoo import export

    result = export.export(name, small=True)
    exported = exported_ops(result.model_path)
    o2, o3 = (plan_model(result.model_path, result.input_shapes, level) for level in ("O2", "O3"))
    ops = planned_ops(o3)
    assert ops["LayerNormalization"] == exported["Sqrt"] > 0     # one Sqrt per exported LayerNorm
    assert ops["Gelu"] == exported[gelu] > 0
    assert not {"ReduceMean", "Sqrt", "Erf", "Tanh", "Pow"} & set(ops)
    assert o3.stats()["rules_fired"]["layernorm"] == exported["Sqrt"]
    assert len(o3.blocks) < len(o2.blocks)
    feeds = result.feeds()
    compiled = dnnfusion.compile(str(result.model_path), result.input_shapes, opt_level="O3")
    assert_matches(compiled.run(feeds), run_onnxruntime(str(result.model_path), feeds))


def case_feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {i.name: (rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]) * 2).astype(np.float32)
            for i in model.graph.input}


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.rule for c in CASES])
def test_a_recognised_chain_compiles_and_exports_as_the_original(case):
    feeds = case_feeds(case.model)
    expected = run_onnxruntime(case.model, feeds)
    plan = plan_model(case.model, None, "O3")
    assert len(plan.blocks) == 1 or case.rule == "groupnorm"
    exported = fused_model(plan)
    onnx.checker.check_model(exported)
    assert_matches(run_onnxruntime(exported, feeds), expected)
    assert_matches(dnnfusion.compile(case.model, opt_level="O3").run(feeds), expected)
