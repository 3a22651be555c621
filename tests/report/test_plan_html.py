"""The plan page: one SVG group per block, legend, stats, rejected merges, escaping of model text, a layout
without overlaps, and (when Chromium is installed) the script running in a headless browser."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from dnnfusion.fusion import Plan
from dnnfusion.pipeline import plan_model
from dnnfusion.ops import MappingType
from dnnfusion.report import write_plan_html
from dnnfusion.report.layout import BOX_W, MAX_ROWS, layout_plan
from dnnfusion.report.plan_html import block_edges, plan_title, short_name
from tests.helpers import FLOAT, make_model

EVIL = "<script>alert(1)</script>"
EVIL_TENSOR = "</script><!--t"


def mlp_model():
    """MatMul -> Relu (named EVIL) -> MatMul -> MatMul -> Add (skip from Relu) -> Softmax -> Transpose."""
    weights = {f"w{i}": np.full((8, 8), 0.1, np.float32) for i in range(3)}
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["m1"], name="mm1"),
        helper.make_node("Relu", ["m1"], ["r"], name=EVIL),
        helper.make_node("MatMul", ["r", "w1"], ["m2"], name="mm2"),
        helper.make_node("MatMul", ["m2", "w2"], ["m3"], name="mm3"),
        helper.make_node("Add", ["m3", "r"], ["a"], name="add"),
        helper.make_node("Softmax", ["a"], ["s"], name="softmax", axis=-1),
        helper.make_node("Transpose", ["s"], [EVIL_TENSOR], name="transpose", perm=[1, 0]),
    ]
    return make_model(nodes, [("x", FLOAT, [4, 8])], [EVIL_TENSOR], weights)


def fan_model(width: int = 5):
    """x feeds `width` parallel MatMul branches that a Sum joins: a wide layer for the layout."""
    weights = {f"w{i}": np.full((8, 8), 0.1, np.float32) for i in range(width)}
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"b{i}"], name=f"branch{i}") for i in range(width)]
    nodes.append(helper.make_node("Sum", [f"b{i}" for i in range(width)], ["y"], name="sum"))
    return make_model(nodes, [("x", FLOAT, [4, 8])], ["y"], weights)


def chain_model(length: int):
    """`length` element-wise operators in a row (one fused block at O3)."""
    names = ["x"] + [f"t{i}" for i in range(length)]
    nodes = [helper.make_node("Relu" if i % 2 else "Neg", [names[i]], [names[i + 1]], name=f"op{i}")
             for i in range(length)]
    return make_model(nodes, [("x", FLOAT, [4, 8])], [names[-1]])


def page(plan: Plan, tmp_path: Path, title: str = "") -> str:
    """Write the page for `plan` and read it back."""
    out = write_plan_html(plan, tmp_path / "sub" / "plan.html", title)
    assert out == tmp_path / "sub" / "plan.html"
    return out.read_text(encoding="utf-8")


def json_blob(text: str) -> str:
    """The raw text of the plan-data script element."""
    match = re.search(r'<script type="application/json" id="plan-data">(.*?)</script>', text, re.S)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("level", ["O0", "O1", "O3"])
def test_one_svg_group_per_block(tmp_path, level):
    plan = plan_model(mlp_model(), None, level)
    text = page(plan, tmp_path)
    assert text.count('class="block"') == len(plan.blocks)
    assert re.findall(r'class="block" data-block="(\d+)"', text) == [str(b.id) for b in plan.blocks]
    assert text.count('class="edge"') == len(block_edges(plan))


def test_legend_names_every_mapping_type(tmp_path):
    text = page(plan_model(mlp_model(), None, "O3"), tmp_path)
    legend = re.search(r'<div class="legend">(.*?)</div>', text, re.S)
    assert legend is not None
    for mapping in MappingType:
        assert mapping.value in legend.group(1)


def test_header_shows_title_level_stats_and_notes(tmp_path):
    plan = plan_model(mlp_model(), None, "O3")
    text = page(plan, tmp_path, title="my <model>")
    stats = plan.stats()
    assert "<h1>my &lt;model&gt;</h1>" in text
    assert "level <b>O3</b>" in text
    for key in ("ops_before", "blocks", "fusion_rate", "yellow_fused", "yellow_rejected"):
        assert f'data-stat="{key}">{stats[key]}<' in text
    for key in ("irs_bytes_before", "irs_bytes_after"):
        assert f'data-stat="{key}">{stats[key]:,} (' in text
    assert plan.notes
    for note in plan.notes:
        assert html.escape(note) in text
    assert "DESIGN" not in text and "\u00a7" not in text


def test_title_names_the_model_file_graph_level_and_compilation(tmp_path):
    plan = plan_model(mlp_model(), None, "O3")
    assert plan_title(plan) == "Fusion plan of graph test at O3"
    assert plan_title(plan, "mlp.onnx") == "Fusion plan of mlp.onnx (graph test) at O3"
    assert plan_title(plan, "test") == "Fusion plan of test at O3"
    text = write_plan_html(plan, tmp_path / "plan.html", model="mlp.onnx", compiled=True).read_text()
    assert "<title>Compiled fusion plan of mlp.onnx (graph test) at O3</title>" in text
    assert "<h1>Compiled fusion plan of mlp.onnx (graph test) at O3</h1>" in text
    assert "<h1>Fusion plan of graph test at O3</h1>" in page(plan, tmp_path)


@pytest.mark.parametrize("name, shown", [
    ("/encoder/layer.3/attention/self/MatMul", "layer.3/\u2026/MatMul"),
    ("/model/layers.11/self_attn/q_proj/MatMul", "layers.11/\u2026/MatMul"),
    ("/bert/encoder/layer.10/output/LayerNorm/ReduceMean", "layer.10/\u2026duceMean"),
    ("model.layers.3.mlp.down_proj.MatMul", "layers.3.\u2026.MatMul"),
    ("StatefulPartitionedCall/model/conv2d_12/Conv2D", "conv2d_12/\u2026/Conv2D"),
    ("/encoder/attention/self/MatMul", "/encoder\u2026lf/MatMul"),
    ("Relu_7", "Relu_7"),
])
def test_operator_names_keep_their_layer_number(name, shown):
    assert short_name(name) == shown and len(shown) <= 18


def test_operator_rows_show_the_shortened_name(tmp_path):
    names = ["/encoder/layer.3/attention/self/MatMul", "/encoder/layer.3/attention/self/Softmax"]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name=names[0]),
             helper.make_node("Softmax", ["m"], ["y"], name=names[1], axis=-1)]
    model = make_model(nodes, [("x", FLOAT, [4, 8])], ["y"], {"w": np.full((8, 8), 0.1, np.float32)})
    text = page(plan_model(model, None, "O0"), tmp_path)
    assert '>layer.3/\u2026/MatMul</text>' in text and '>layer.3/\u2026/Softmax</text>' in text
    assert all(name in text for name in names)                           # the tooltip keeps the whole name


def test_rejected_merges_are_grouped_by_reason(tmp_path):
    plan = plan_model(mlp_model(), None, "O3")
    assert plan.rejections
    text = page(plan, tmp_path)
    assert f"Rejected merges ({len(plan.rejections)})" in text
    for reason in {r.reason for r in plan.rejections}:
        count = sum(r.reason is reason for r in plan.rejections)
        assert f"{reason.name.lower()}: " in text and f"({count})</summary>" in text


def test_model_text_is_escaped_everywhere(tmp_path):
    text = page(plan_model(mlp_model(), None, "O3"), tmp_path)
    assert EVIL not in text and EVIL_TENSOR not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<script") == 2 and text.count("</script>") == 2
    blob = json_blob(text)
    assert "<" not in blob
    data = json.loads(blob)
    names = {op["name"] for b in data["blocks"].values() for op in b["ops"]}
    outputs = {t["name"] for b in data["blocks"].values() for t in b["outputs"]}
    assert EVIL in names and EVIL_TENSOR in outputs


def test_side_panel_data_lists_ops_and_boundary_tensors(tmp_path):
    plan = plan_model(mlp_model(), None, "O0")
    data = json.loads(json_blob(page(plan, tmp_path)))
    assert list(data["blocks"]) == [str(b.id) for b in plan.blocks]
    first = data["blocks"][str(plan.blocks[0].id)]
    assert [op["type"] for op in first["ops"]] == ["MatMul"]
    assert {t["name"]: t["const"] for t in first["inputs"]} == {"x": False, "w0": True}
    assert [(t["name"], t["shape"]) for t in first["outputs"]] == [("m1", "[4, 8]")]


def test_page_is_self_contained(tmp_path):
    text = page(plan_model(mlp_model(), None, "O3"), tmp_path)
    assert not re.search(r"\b(?:src|href)\s*=", text)
    assert "https://" not in text
    assert set(re.findall(r"http://\S+?\"", text)) == {'http://www.w3.org/2000/svg"'}
    assert "@import" not in text and "url(http" not in text


def test_long_blocks_list_capped_rows(tmp_path):
    plan = plan_model(chain_model(20), None, "O3")
    assert [len(b.ops) for b in plan.blocks] == [20]
    text = page(plan, tmp_path)
    assert text.count('class="op"') == MAX_ROWS - 1
    assert f"+{20 - (MAX_ROWS - 1)} more" in text


@pytest.mark.parametrize("model", [mlp_model, fan_model], ids=["mlp", "fan"])
def test_layout_puts_edges_downwards_without_overlaps(model):
    plan = plan_model(model(), None, "O0")
    edges = block_edges(plan)
    layout = layout_plan(plan, edges)
    for a, b in edges:
        assert layout.y[b] >= layout.y[a] + layout.heights[a]
        points = layout.edges[(a, b)]
        assert all(p[1] <= q[1] for p, q in zip(points, points[1:]))
    boxes = sorted(zip(layout.y, layout.x))
    for (y0, x0), (y1, x1) in zip(boxes, boxes[1:]):
        assert y0 != y1 or x1 - x0 >= BOX_W
    assert all(x >= BOX_W / 2 for x in layout.x) and max(layout.x) + BOX_W / 2 <= layout.width


def chromium() -> str | None:
    """The Chromium binary, if installed."""
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed")
def test_script_runs_in_headless_chromium(tmp_path):
    plan = plan_model(mlp_model(), None, "O3")
    path = write_plan_html(plan, tmp_path / "plan.html")
    target = next(b for b in plan.blocks if any(o.node.name == EVIL for o in b.ops))
    run = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", f"{path.as_uri()}#block-{target.id}"],
        capture_output=True, text=True, timeout=120)
    dom = run.stdout
    assert 'data-ready="1"' in dom, run.stderr[-2000:]
    assert f'<span id="block-count">{len(plan.blocks)}</span>' in dom
    panel = re.search(r'<aside id="panel"([^>]*)>(.*?)</aside>', dom, re.S)
    assert panel is not None and "hidden" not in panel.group(1)
    assert f'data-block="{target.id}"' in panel.group(1)
    assert f"Block #{target.id}" in panel.group(2)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in panel.group(2)
    assert EVIL not in dom
    assert f'class="block selected" data-block="{target.id}"' in dom
