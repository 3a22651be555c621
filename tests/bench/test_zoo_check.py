"""Checking a model's outputs against onnxruntime's: ranked detections as sets, every other output strictly."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from dnnfusion.bench.zoo_check import CheckRow, judge
from tests.bench.synthetic_detections import ROWS, detections, rows
from tests.helpers import make_model


def test_judge_compares_detections_as_sets_and_everything_else_strictly(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.FLOAT, [2])], ["y"])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    ref = {**detections(), "features": np.arange(6, dtype=np.float32)}
    permuted = {**rows(detections(), np.arange(ROWS)[::-1]), "features": ref["features"]}
    row = CheckRow("m", "O3", False)
    judge(row, permuted, ref, path)
    assert row.ok and row.method == "detections" and row.unexplained_rows == 0
    assert [o.name for o in row.outputs] == ["boxes", "scores", "labels", "masks", "features"]
    row = CheckRow("m", "O3", False)
    judge(row, {**permuted, "features": ref["features"] + 1}, ref, path)
    assert not row.ok and [o.name for o in row.outputs if not o.ok] == ["features"]
    row = CheckRow("m", "O3", False)
    judge(row, {"features": ref["features"][::-1].copy()}, {"features": ref["features"]}, path)
    assert not row.ok and row.method == "strict" and row.max_abs == 5.0
