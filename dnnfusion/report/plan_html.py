"""Draw a fusion plan as one self-contained HTML page: the block DAG laid out top to bottom in inline SVG, the
plan statistics, the rejected merges, and a side panel with a block's operators and tensors.

Everything is inline (CSS and JS from plan.css/plan.js, SVG, the block data as JSON), so the page works offline;
the layout is computed in layout.py. Model text (node, op
and tensor names) is untrusted: it is HTML-escaped in the markup and `<`-escaped in the JSON blob, and the
script only ever writes it with `textContent`."""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from pathlib import Path
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

from ..fusion.ecg import OpInfo
from ..fusion.plan import Block, Plan, Reason, Rejection
from ..ir.graph import Value
from ..ops import MappingType
from .layout import BOX_W, HEAD_H, MAX_ROWS, PAD, ROW_H, PlanLayout, layout_plan

COLORS: dict[MappingType, tuple[str, str]] = {     # (strong: header/chip, light: box fill)
    MappingType.ONE_TO_ONE: ("#2e8b57", "#e7f5ec"),
    MappingType.REORGANIZE: ("#3a6fc4", "#e6eefa"),
    MappingType.SHUFFLE: ("#8656c2", "#f0e9f8"),
    MappingType.ONE_TO_MANY: ("#d07a12", "#fcf0de"),
    MappingType.MANY_TO_MANY: ("#c8423a", "#fbe7e5"),
}
CHIPS = {MappingType.ONE_TO_ONE: "1:1", MappingType.REORGANIZE: "Reorg", MappingType.SHUFFLE: "Shuf",
         MappingType.ONE_TO_MANY: "1:N", MappingType.MANY_TO_MANY: "M:N"}

MAX_REJECTIONS = 300  # listed per reason; the rest are counted
NAME_CHARS = 18       # operator-name characters that fit a row between its type and its chip
STAT_KEYS = ("ops_before", "ops_after_folding", "blocks", "fusion_rate", "largest_block", "irs_bytes_before",
             "irs_bytes_after", "irs_reduction", "yellow_fused", "yellow_rejected", "plan_seconds")


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """The page's stylesheet or script, shipped beside this module as package data."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def write_plan_html(plan: Plan, path: Path, title: str = "", methods: Mapping[int, str] | None = None,
                    model: str = "", compiled: bool = False) -> Path:
    """Write the page for `plan` to `path` (parents created) and return the path; `methods` names the kernel
    method of the blocks (by position) whose template chose one (e.g. a Winograd convolution). Without a
    `title`, the page is titled by `plan_title` from the model's file or zoo name and whether it was compiled."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_plan_html(plan, title or plan_title(plan, model, compiled), methods), encoding="utf-8")
    return path


def plan_title(plan: Plan, model: str = "", compiled: bool = False) -> str:
    """A readable page title: what was planned (the model's file or zoo name, then its graph's name, which
    exporters often leave generic, e.g. main_graph), at which level, and whether it was compiled; e.g.
    'Compiled fusion plan of bert.onnx (graph main_graph) at O3'."""
    graph = plan.ecg.graph.name
    what = f"{model} (graph {graph})" if model and model != graph else model or f"graph {graph}"
    return f"{'Compiled fusion plan' if compiled else 'Fusion plan'} of {what} at {plan.level}"


def render_plan_html(plan: Plan, title: str = "", methods: Mapping[int, str] | None = None) -> str:
    """The whole page as a string."""
    title = title or plan_title(plan)
    tensors = block_edges(plan)
    layout = layout_plan(plan, tensors)
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{_esc(title)}</title><style>{asset('plan.css')}</style></head>\n<body>\n",
        _header_html(plan, title),
        f"<main id=\"graph\">{_svg(plan, layout, tensors)}</main>\n",
        PANEL_HTML,
        f"<script type=\"application/json\" id=\"plan-data\">{_json_for_script(_block_data(plan, methods or {}))}"
        "</script>\n",
        f"<script>{asset('plan.js')}</script>\n</body></html>\n",
    ])


# --- graph and layout ---------------------------------------------------------------------------------------
def block_edges(plan: Plan) -> dict[tuple[int, int], list[str]]:
    """(producer block, consumer block) run positions -> names of the tensors that cross that edge."""
    owner = {o.index: i for i, b in enumerate(plan.blocks) for o in b.ops}
    edges: dict[tuple[int, int], list[str]] = {}
    for block in plan.blocks:
        for op in block.ops:
            for consumer in op.consumers:
                key = (owner[op.index], owner[consumer.index])
                if key[0] == key[1]:
                    continue
                names = edges.setdefault(key, [])
                for v in _shared_values(op, consumer):
                    if v.name not in names:
                        names.append(v.name)
    return edges


def _shared_values(producer: OpInfo, consumer: OpInfo) -> list[Value]:
    """Outputs of `producer` that `consumer` reads."""
    outs = {id(v) for v in producer.node.outputs if v is not None}
    return [v for v in consumer.node.inputs if v is not None and id(v) in outs]


# --- SVG ------------------------------------------------------------------------------------------------------
def _svg(plan: Plan, layout: PlanLayout, tensors: dict[tuple[int, int], list[str]]) -> str:
    """The drawing: edges first (under the boxes), then one group per block."""
    w, h = round(layout.width), round(layout.height)
    parts = [f"<svg id=\"plan-svg\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" "
             f"viewBox=\"0 0 {w} {h}\" data-width=\"{w}\" data-height=\"{h}\">",
             "<defs><marker id=\"arrow\" viewBox=\"0 0 8 8\" refX=\"8\" refY=\"4\" markerWidth=\"7\" "
             "markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\" fill=\"#7b8494\"/></marker></defs>",
             "<g class=\"edges\">"]
    ids = [b.id for b in plan.blocks]
    for (a, b), points in layout.edges.items():
        parts.append(_edge_svg(points, ids[a], ids[b], tensors[(a, b)]))
    parts.append("</g><g class=\"blocks\">")
    for i, block in enumerate(plan.blocks):
        parts.append(_block_svg(block, layout.x[i] - BOX_W / 2, layout.y[i], layout.heights[i]))
    parts.append("</g></svg>")
    return "".join(parts)


def _edge_svg(points: list[tuple[float, float]], a: int, b: int, tensors: list[str]) -> str:
    """One edge as a path: vertical-tangent curves between layers, straight lines through them."""
    d = [f"M{points[0][0]:.0f},{points[0][1]:.0f}"]
    for i, ((x0, y0), (x1, y1)) in enumerate(zip(points, points[1:])):
        if i % 2 == 0:
            mid = (y0 + y1) / 2
            d.append(f"C{x0:.0f},{mid:.0f} {x1:.0f},{mid:.0f} {x1:.0f},{y1:.0f}")
        else:
            d.append(f"L{x1:.0f},{y1:.0f}")
    shown = ", ".join(tensors[:4]) + (f" +{len(tensors) - 4} more" if len(tensors) > 4 else "")
    return (f"<path class=\"edge\" data-from=\"{a}\" data-to=\"{b}\" d=\"{' '.join(d)}\" "
            f"marker-end=\"url(#arrow)\"><title>#{a} \u2192 #{b}: {_esc(shown)}</title></path>")


def _block_svg(block: Block, x: float, y: float, height: float) -> str:
    """One block: a box tinted by its fused mapping type, a header, and its operators as rows."""
    strong, light = COLORS[block.mapping]
    count = len(block.ops)
    head = f"#{block.id} {block.mapping.value} \u00b7 {count} op{'s' if count != 1 else ''}"
    parts = [f"<g class=\"block\" data-block=\"{block.id}\" transform=\"translate({x:.0f},{y:.0f})\">",
             f"<rect class=\"box\" width=\"{BOX_W}\" height=\"{height:.0f}\" rx=\"5\" fill=\"{light}\" "
             f"stroke=\"{strong}\"/>",
             f"<path d=\"M0,5 a5,5 0 0 1 5,-5 h{BOX_W - 10} a5,5 0 0 1 5,5 v{HEAD_H - 5} h-{BOX_W} z\" "
             f"fill=\"{strong}\"/>",
             f"<text class=\"head\" x=\"8\" y=\"15\">{_esc(head)}</text>"]
    listed = block.ops if count <= MAX_ROWS else block.ops[:MAX_ROWS - 1]
    for row, op in enumerate(listed):
        parts.append(_op_row_svg(op, HEAD_H + PAD + row * ROW_H))
    if count > MAX_ROWS:
        more_y = HEAD_H + PAD + (MAX_ROWS - 1) * ROW_H + 12
        parts.append(f"<text class=\"more\" x=\"8\" y=\"{more_y}\">+{count - len(listed)} more "
                     f"(click for all)</text>")
    parts.append("</g>")
    return "".join(parts)


def _op_row_svg(op: OpInfo, y: float) -> str:
    """One operator row: op type, its name shortened (`short_name`), and a chip coloured by its own mapping type;
    the tooltip gives the full name, mapping type, output shapes and intermediate-result bytes."""
    strong, _ = COLORS[op.mapping]
    outputs = "; ".join(_tensor_text(v) for v in op.node.outputs if v is not None) or "-"
    tip = f"{op.name}\n{op.node.op_type} \u00b7 {op.mapping.value}\noutput: {outputs}\nIRS: {op.irs_bytes:,} B"
    chip_x = BOX_W - 44
    return (f"<g class=\"op\" transform=\"translate(0,{y:.0f})\"><title>{_esc(tip)}</title>"
            f"<rect class=\"row\" x=\"2\" width=\"{BOX_W - 4}\" height=\"{ROW_H}\"/>"
            f"<text class=\"ty\" x=\"8\" y=\"12\">{_esc(_clip(op.node.op_type, 16))}</text>"
            f"<text class=\"nm\" x=\"122\" y=\"12\">{_esc(short_name(op.name))}</text>"
            f"<rect x=\"{chip_x}\" y=\"2\" width=\"38\" height=\"12\" rx=\"6\" fill=\"{strong}\"/>"
            f"<text class=\"chip\" x=\"{chip_x + 19}\" y=\"11\">{CHIPS[op.mapping]}</text></g>")


# --- header -----------------------------------------------------------------------------------------------------
def _header_html(plan: Plan, title: str) -> str:
    """Title, level, stats table, notes, legend, rejected merges, and the zoom toolbar."""
    stats = plan.stats()
    notes = "".join(f"<li>{_esc(n)}</li>" for n in plan.notes)
    return "".join([
        f"<header><h1>{_esc(title)}</h1>",
        f"<p class=\"meta\">level <b>{_esc(plan.level)}</b> \u00b7 <span id=\"block-count\">?</span> blocks drawn "
        f"\u00b7 click a block for its operators and tensors; hover an operator or an edge for details</p>",
        _stats_html(stats),
        f"<ul class=\"notes\">{notes}</ul>" if notes else "",
        _legend_html(stats["blocks_by_type"]),
        _rejections_html(plan.rejections),
        "<div class=\"toolbar\"><button type=\"button\" data-zoom=\"0.8\">\u2212</button>"
        "<button type=\"button\" data-zoom=\"1.25\">+</button><button type=\"button\" data-zoom=\"0\">100%"
        "</button><button type=\"button\" data-zoom=\"fit\">fit width</button></div></header>\n",
    ])


def _stats_html(stats: dict[str, Any]) -> str:
    """The key statistics as a two-row table (names over values)."""
    heads = "".join(f"<th>{_esc(k.replace('_', ' '))}</th>" for k in STAT_KEYS)
    cells = "".join(f"<td data-stat=\"{k}\">{_esc(_stat_text(k, stats.get(k)))}</td>" for k in STAT_KEYS)
    return f"<table class=\"stats\"><tr>{heads}</tr><tr>{cells}</tr></table>"


def _stat_text(key: str, value: Any) -> str:
    """A statistic for display: byte counts with separators and a readable unit."""
    if value is None:
        return "-"
    if key.startswith("irs_bytes"):
        return f"{value:,} ({_human_bytes(value)})"
    return str(value)


def _legend_html(by_type: dict[str, int]) -> str:
    """One swatch per mapping type with its chip label and the number of blocks of that fused type."""
    items = "".join(
        f"<span class=\"item\"><span class=\"swatch\" style=\"background:{light};border-color:{strong}\"></span>"
        f"<span class=\"chip\" style=\"background:{strong}\">{CHIPS[m]}</span>{m.value} "
        f"<small>({by_type.get(m.value, 0)} blocks)</small></span>"
        for m, (strong, light) in COLORS.items())
    return f"<div class=\"legend\"><b>block colour = fused mapping type; chip = the operator's own</b>{items}</div>"


def _rejections_html(rejections: list[Rejection]) -> str:
    """Rejected merges grouped by reason, each group collapsible, the whole list collapsed by default."""
    if not rejections:
        return "<p class=\"meta\">no rejected merges</p>"
    by_reason: dict[Reason, list[Rejection]] = defaultdict(list)
    for r in rejections:
        by_reason[r.reason].append(r)
    groups = []
    for reason in Reason:
        found = by_reason.get(reason)
        if not found:
            continue
        rows = "".join(_rejection_li(r) for r in found[:MAX_REJECTIONS])
        more = f"<li>\u2026 {len(found) - MAX_REJECTIONS} more</li>" if len(found) > MAX_REJECTIONS else ""
        groups.append(f"<details><summary>{_esc(reason.name.lower())}: {_esc(reason.value)} "
                      f"({len(found)})</summary><ol>{rows}{more}</ol></details>")
    return (f"<details class=\"rejections\"><summary>Rejected merges ({len(rejections)})</summary>"
            f"{''.join(groups)}</details>")


def _rejection_li(r: Rejection) -> str:
    """One rejected merge: producer -> consumer (op type and name), plus the planner's detail."""
    detail = f" <span class=\"detail\">{_esc(r.detail)}</span>" if r.detail else ""
    return (f"<li><code>{_esc(r.first.node.op_type)}</code> {_esc(r.first.name)} \u2192 "
            f"<code>{_esc(r.second.node.op_type)}</code> {_esc(r.second.name)}{detail}</li>")


# --- block data for the side panel ----------------------------------------------------------------------------
def _block_data(plan: Plan, methods: Mapping[int, str]) -> dict[str, Any]:
    """Per block id: fused type, kernel method (where its template chose one), operators with their outputs,
    and the tensors entering and leaving it."""
    graph_outputs = {id(v) for v in plan.ecg.graph.outputs}
    blocks = {}
    for position, block in enumerate(plan.blocks):
        nodes = {id(o.node) for o in block.ops}
        inputs: dict[int, Value] = {}
        outputs: dict[int, Value] = {}
        for op in block.ops:
            for v in op.node.inputs:
                if v is not None and (v.producer is None or id(v.producer) not in nodes):
                    inputs.setdefault(id(v), v)
            for v in op.node.outputs:
                if v is not None and (id(v) in graph_outputs or any(id(c) not in nodes for c in v.consumers)):
                    outputs.setdefault(id(v), v)
        blocks[str(block.id)] = {
            "id": block.id, "mapping": block.mapping.value, "color": COLORS[block.mapping][0],
            "method": methods.get(position, ""),
            "ops": [{"name": o.name, "type": o.node.op_type, "mapping": o.mapping.value,
                     "color": COLORS[o.mapping][0], "chip": CHIPS[o.mapping], "irs": o.irs_bytes,
                     "outputs": [_tensor_data(v) for v in o.node.outputs if v is not None]} for o in block.ops],
            "inputs": [_tensor_data(v) for v in inputs.values()],
            "outputs": [_tensor_data(v) for v in outputs.values()],
        }
    return {"level": plan.level, "blocks": blocks}


def _tensor_data(v: Value) -> dict[str, Any]:
    """A tensor for the side panel."""
    return {"name": v.name, "shape": _shape_text(v), "dtype": str(v.dtype) if v.dtype is not None else "?",
            "const": v.const is not None}


def _json_for_script(data: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: every `<` becomes `\\u003c`, so no `</script>` or `<!--` survives."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


# --- small text helpers -------------------------------------------------------------------------------------------
def _esc(text: str) -> str:
    """HTML-escape model text (quotes too, so it is safe in attributes)."""
    return html.escape(str(text), quote=True)


def _clip(text: str, limit: int) -> str:
    """The head of `text`, ellipsised past `limit` characters."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def short_name(name: str, limit: int = NAME_CHARS) -> str:
    """A node name within `limit` characters that still tells nodes apart: the token around the last number
    of its scope (the layer) and the end of the name (the operator), as in 'layer.3/\u2026/MatMul'; a name
    whose scope has no number keeps its head and tail around an ellipsis in the middle."""
    if len(name) <= limit:
        return name
    sep = "/" if "/" in name else "."
    scope, _, last = name.rpartition(sep)
    mark = _layer_mark(scope)
    if mark is not None and len(mark) + 6 <= limit:
        joined = f"{mark}{sep}\u2026{sep}{last}"
        if len(joined) <= limit:
            return joined
        return f"{mark}{sep}\u2026" + name[len(name) - (limit - len(mark) - 2):]
    head = (limit - 1) // 2
    return name[:head] + "\u2026" + name[len(name) - (limit - 1 - head):]


def _layer_mark(scope: str) -> str | None:
    """The token that ends with the last number of a scope ('layer.3', 'layers.11', 'conv2d_12'), or None."""
    numbers = list(re.finditer(r"\d+", scope))
    if not numbers:
        return None
    end = numbers[-1].end()
    start = scope.rfind("/", 0, numbers[-1].start()) + 1
    dot = scope.rfind(".", start, numbers[-1].start())
    if dot >= 0:
        start = scope.rfind(".", start, dot) + 1 or start
    return scope[start:end]


def _shape_text(v: Value) -> str:
    """A shape like [1, 128, 768], or ? when unknown."""
    return "?" if v.shape is None else "[" + ", ".join(str(d) for d in v.shape) + "]"


def _tensor_text(v: Value) -> str:
    """name shape dtype, for tooltips."""
    return f"{v.name} {_shape_text(v)} {v.dtype if v.dtype is not None else '?'}"


def _human_bytes(n: int) -> str:
    """Bytes in the largest unit that keeps the number >= 1."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} GiB"



PANEL_HTML = ("<aside id=\"panel\" hidden><button id=\"panel-close\" type=\"button\" title=\"close (Esc)\">"
              "\u2715</button><div id=\"panel-body\"></div></aside>\n")

