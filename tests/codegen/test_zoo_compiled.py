"""Every zoo model's small configuration compiled at O0 and O3: outputs equal onnxruntime's, the arena is smaller
than the sum of all intermediates, and nothing runs as a fallback but NonMaxSuppression and the few operators
that read its data-dependent result (before the R-CNNs' keep mask makes shapes static again)."""

import pytest

import dnnfusion
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.zoo import export, registry

pytest.importorskip("torch")

DATA_DEPENDENT = {"NonMaxSuppression"}


@pytest.mark.parametrize("level", ["O0", "O3"])
@pytest.mark.parametrize("name", registry.names())
def test_small_zoo_model_compiles_natively(name, level):
    result = export.export(name, small=True)
    compiled = dnnfusion.compile(result.model_path, result.input_shapes, opt_level=level)
    feeds = result.feeds()
    diffs = compare(compiled.run(feeds), run_onnxruntime(str(result.model_path), feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    stats = compiled.stats
    fallbacks = [o.node for b in compiled.plan.blocks for o in b.ops if o.lowering is None]
    assert len(fallbacks) == len(stats["fallback_ops"])
    for node in fallbacks:
        assert node.op_type in DATA_DEPENDENT or any(not v.is_static for v in node.inputs if v is not None), node
    assert stats["arena_bytes"] < stats["irs_bytes_before"]
    assert stats["native_calls_per_run"] <= 1 + len(stats["fallback_ops"])      # one per native segment
