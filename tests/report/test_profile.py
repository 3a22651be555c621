"""Per-kernel profile rows and table: fused kernels named after their members, times per run that add up to the
total, GFLOP/s from the plan's FLOPs, slowest first."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from onnx import helper
from rich.console import Console

import dnnfusion
from dnnfusion.report.profile import fused_label, profile_rows, profile_table
from dnnfusion.runtime import random_feeds
from tests.helpers import FLOAT, make_model


def two_kernel_model():
    """MatMul -> Add -> Relu -> Softmax: two Many-to-Many operators, so two kernels."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Softmax", ["r"], ["y"], axis=-1)]
    return make_model(nodes, [("x", FLOAT, [8, 32])], ["y"],
                      {"w": np.full((32, 16), 0.1, np.float32), "b": np.ones(16, np.float32)}, output_type=FLOAT)


@pytest.fixture(scope="module")
def profiled():
    model = dnnfusion.compile(two_kernel_model(), profile=True, threads=1)
    return model, random_feeds(model.graph)


def test_rows_name_fused_kernels_and_sum_to_the_total(profiled):
    model, feeds = profiled
    rows = profile_rows(model, feeds, runs=3)
    assert sorted(row["operators"] for row in rows) == sorted("+".join(b.op_types) for b in model.plan.blocks)
    assert len(rows) == 2 and [row["ms"] for row in rows] == sorted((row["ms"] for row in rows), reverse=True)
    assert sum(row["percent"] for row in rows) == pytest.approx(100.0)
    fused = next(row for row in rows if len(row["op_types"]) > 1)
    assert fused["kernel"].startswith("fused_" + "_".join(t.lower() for t in fused["op_types"]))
    assert fused["operators"] == "+".join(fused["op_types"]) and fused["gflops"] > 0
    assert sum(row["flops"] for row in rows) >= 2 * 8 * 32 * 16
    assert fused["gflops"] == pytest.approx(fused["flops"] / (fused["ms"] * 1e-3) / 1e9)


def test_table_has_a_total_row(profiled):
    model, feeds = profiled
    console = Console(record=True, width=160)
    console.print(profile_table(profile_rows(model, feeds, runs=2), 2, top=1))
    text = console.export_text()
    assert "time per kernel (mean of 2 run(s))" in text and "1 more" in text
    assert "total" in text and "2 kernels" in text and "100.0" in text


def test_unprofiled_model_is_refused():
    model = dnnfusion.compile(two_kernel_model())
    with pytest.raises(ValueError, match="profile=True"):
        profile_rows(model, random_feeds(model.graph), runs=1)


@pytest.mark.parametrize("op_types, label", [
    (["Conv", "Relu"], "Conv+Relu"),
    (["MatMul", "Add", "Gelu"], "MatMul+Add+Gelu"),
    (["Mul", "Mul"], "Mul (2 ops)"),
    (["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div"], "ReduceMean+Sub+Pow+ReduceMean+... (7 ops)"),
])
def test_fused_label(op_types, label):
    assert fused_label(SimpleNamespace(op_types=op_types, ops=op_types)) == label
