"""Every zoo model at its default (full-size) configuration compiled at O3 and O0: outputs equal onnxruntime's
(the R-CNNs' detections compared as sets and traced to ties, see dnnfusion.bench.detections and
dnnfusion.bench.decisions), no fallback operator, one native call per run, and an arena below the sum of all
intermediates. Slow (minutes per model on two cores): run with `pytest -m slow tests/zoo/test_zoo_default_compiled.py`;
tools/check_zoo_compiled.py writes the same as a table."""

import functools

import pytest

from dnnfusion.bench.zoo_check import Reference, check_model, onnxruntime_reference
from dnnfusion.zoo import export, registry

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow


@functools.cache
def reference(name: str) -> Reference:
    """onnxruntime's outputs, once per model for both levels."""
    result = export.export(name)
    return onnxruntime_reference(result.model_path, result.feeds())


@pytest.mark.parametrize("level", ["O3", "O0"])
@pytest.mark.parametrize("name", registry.names())
def test_default_zoo_model_compiled(name, level):
    row = check_model(name, level, reference=reference(name))
    assert row.error is None, row.error
    assert row.ok, ([o for o in row.outputs if not o.ok], row.decisions)     # detections: paired, tied or traced
    assert row.fallback_ops == []
    assert row.native_calls == 1
    assert 0 < row.arena_bytes < row.irs_bytes_before
