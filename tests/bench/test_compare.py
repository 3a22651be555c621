"""The bench's output check before timing: ranked detections compared as sets, like the zoo check, and rows
that differ beyond output-level ties traced to the model's selections only for our own builds."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dnnfusion.bench import decisions
from dnnfusion.bench.compare import check_against_reference
from dnnfusion.bench.decisions import DecisionCheck
from tests.bench.synthetic_detections import ROWS, detections, rows, with_row
from tests.helpers import make_model


@pytest.fixture
def model_path(tmp_path):
    """A model file without NonMaxSuppression (the check reads its thresholds from the file)."""
    path = tmp_path / "m.onnx"
    onnx.save(make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.FLOAT, [1])], ["y"]), path)
    return path


def traced(monkeypatch, ok: bool) -> list[int]:
    """Replace check_decisions with one that answers `ok`; the list counts its calls."""
    calls: list[int] = []

    def fake(path, feeds, outputs, run):
        calls.append(1)
        return DecisionCheck([], [], ok)
    monkeypatch.setattr(decisions, "check_decisions", fake)
    return calls


def test_permuted_detections_pass_without_tracing(model_path, monkeypatch):
    calls = traced(monkeypatch, ok=False)
    ref = detections()
    ours = rows(ref, np.random.default_rng(0).permutation(ROWS))
    checks = check_against_reference(model_path, {}, ours, ref, "O3", lambda m: None)
    assert checks and all(c.ok for c in checks) and not calls


def test_unexplained_rows_pass_only_when_traced_to_ties(model_path, monkeypatch):
    ref = detections()
    ours = with_row(ref, ROWS - 1, [10.0, 1000.0, 60.0, 1070.0], 0.87, 1)
    calls = traced(monkeypatch, ok=True)
    assert not all(c.ok for c in check_against_reference(model_path, {}, ours, ref, None, lambda m: None))
    assert not calls                                   # a peer's differences are reported, never traced
    assert all(c.ok for c in check_against_reference(model_path, {}, ours, ref, "O3", lambda m: None))
    assert calls == [1]
    traced(monkeypatch, ok=False)
    assert not all(c.ok for c in check_against_reference(model_path, {}, ours, ref, "O3", lambda m: None))


def test_other_outputs_stay_strict(model_path):
    ref = {"y": np.arange(4, dtype=np.float32)}
    assert all(c.ok for c in check_against_reference(model_path, {}, dict(ref), ref, "O3", lambda m: None))
    bad = check_against_reference(model_path, {}, {"y": ref["y"] + 0.1}, ref, "O3", lambda m: None)
    assert [(c.name, c.ok) for c in bad] == [("y", False)]


def test_an_openvino_output_is_named_after_the_graph_output_it_carries():
    from dnnfusion.bench.model_worker import output_name

    merged = {"/encoder/LayerNorm/Div_output_0", "last_hidden_state", "/encoder/LayerNorm/Mul_output_0"}
    assert output_name(merged, ["last_hidden_state"]) == "last_hidden_state"
    assert output_name({"b", "a"}, ["y"]) == "a"                # none is a graph output: a stable choice
