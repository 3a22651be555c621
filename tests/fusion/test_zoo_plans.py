"""Every zoo model's small configuration planned at O0, O1 and O3: the plan covers each operator once, the
blocks run in a valid order (the fused ONNX graph, one function per block, gives onnxruntime's outputs), and
DNNFusion never needs more kernels than the fixed-pattern baseline."""

import onnx
import pytest

from dnnfusion.pipeline import plan_model
from dnnfusion.fusion.onnx_blocks import fused_model
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.zoo import export, registry

pytest.importorskip("torch")

STATS_KEYS = {"ops_before", "blocks", "fusion_rate", "irs_bytes_before", "irs_bytes_after", "blocks_by_type",
              "yellow_fused", "yellow_rejected"}


@pytest.mark.parametrize("name", registry.names())
def test_small_zoo_model_plans(name):
    result = export.export(name, small=True)
    plans = {level: plan_model(result.model_path, result.input_shapes, level) for level in ("O0", "O1", "O3")}
    for plan in plans.values():
        covered = sorted(o.index for b in plan.blocks for o in b.ops)
        assert covered == list(range(len(plan.ecg.ops)))
        stats = plan.stats()
        assert STATS_KEYS <= stats.keys() and stats["irs_bytes_after"] <= stats["irs_bytes_before"]
    assert len(plans["O3"].blocks) <= len(plans["O1"].blocks) <= len(plans["O0"].blocks)
    model = fused_model(plans["O3"])
    onnx.checker.check_model(model)
    feeds = result.feeds()
    diffs = compare(run_onnxruntime(model, feeds), run_onnxruntime(str(result.model_path), feeds))
    assert diffs and all(d.ok for d in diffs), diffs
