"""Real exports (tests/data/exports, made by tools/make_export_fixtures.py with the PyTorch exporters):
dynamic dimensions bound by input_shapes, every value static after folding, outputs equal onnxruntime's."""

from pathlib import Path

import numpy as np
import pytest

from dnnfusion.pipeline import load
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.runtime import ReferenceExecutor

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "exports"
TEXT = {"input_ids": (3, 11), "attention_mask": (3, 11)}
CASES = {
    "cnn_torchscript_op13": {"image": (2, 3, 48, 40)},
    "cnn_dynamo_op18": {"image": (3, 3, 32, 32)},
    "rnn_torchscript_op13": {"x": (3, 7, 8)},
    "bert_torchscript_op13": TEXT,
    "bert_dynamo_op18": TEXT,
    "gpt2_torchscript_op13": TEXT,
    "gpt2_torchscript_op17": TEXT,
}


def feeds_for(graph, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph.inputs:
        if v.name == "attention_mask":
            mask = np.ones(v.shape, v.dtype)
            mask[0, -3:] = 0                     # padding on one row exercises the mask arithmetic
            feeds[v.name] = mask
        elif np.dtype(v.dtype).kind == "i":
            feeds[v.name] = rng.integers(0, 100, v.shape).astype(v.dtype)
        else:
            feeds[v.name] = rng.standard_normal(v.shape).astype(v.dtype)
    return feeds


@pytest.mark.parametrize("name", sorted(CASES))
def test_static_after_folding_and_matches_onnxruntime(name):
    path = EXPORTS / f"{name}.onnx"
    graph = load(path, CASES[name])
    dynamic = [v.name for v in graph.live_values() if not v.is_static]
    assert not dynamic, f"values without a static shape: {dynamic[:5]}"
    assert not any(n.op_type in ("Shape", "ConstantOfShape") for n in graph.nodes)
    feeds = feeds_for(graph)
    diffs = compare(ReferenceExecutor(graph).run(feeds), run_onnxruntime(str(path), feeds))
    assert diffs and all(d.ok for d in diffs), diffs
