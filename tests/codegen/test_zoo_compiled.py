"""Every zoo model's small configuration compiled at O0 and O3: outputs equal onnxruntime's, the arena is smaller
than the sum of all intermediates, nothing runs as a fallback (the R-CNNs' NonMaxSuppression results are padded
to a static bound, passes/padded.py), and one native call runs the whole inference. The arena also holds the
kernel templates' scratch (packed operands, im2col columns), which is not an intermediate."""

import pytest

import dnnfusion
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.zoo import export, registry

pytest.importorskip("torch")

@pytest.mark.parametrize("level", ["O0", "O3"])
@pytest.mark.parametrize("name", registry.names())
def test_small_zoo_model_compiles_natively(name, level):
    result = export.export(name, small=True)
    compiled = dnnfusion.compile(result.model_path, result.input_shapes, opt_level=level)
    feeds = result.feeds()
    diffs = compare(compiled.run(feeds), run_onnxruntime(str(result.model_path), feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    stats = compiled.stats
    assert stats["fallback_ops"] == []
    assert stats["native_calls_per_run"] == 1
    assert 0 < stats["arena_bytes"] < stats["irs_bytes_before"] + stats["scratch_bytes"]
