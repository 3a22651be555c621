"""Draw a fusion plan as one self-contained HTML page: the block DAG laid out top to bottom in inline SVG, the
plan statistics, the rejected merges, and a side panel with a block's operators and tensors.

Everything is inline (CSS, JS, SVG, the block data as JSON), so the page works offline. Model text (node, op
and tensor names) is untrusted: it is HTML-escaped in the markup and `<`-escaped in the JSON blob, and the
script only ever writes it with `textContent`."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection

from ..fusion.ecg import OpInfo
from ..fusion.plan import Block, Plan, Reason, Rejection
from ..ir.graph import Value
from ..ops import MappingType

COLORS: dict[MappingType, tuple[str, str]] = {     # (strong: header/chip, light: box fill)
    MappingType.ONE_TO_ONE: ("#2e8b57", "#e7f5ec"),
    MappingType.REORGANIZE: ("#3a6fc4", "#e6eefa"),
    MappingType.SHUFFLE: ("#8656c2", "#f0e9f8"),
    MappingType.ONE_TO_MANY: ("#d07a12", "#fcf0de"),
    MappingType.MANY_TO_MANY: ("#c8423a", "#fbe7e5"),
}
CHIPS = {MappingType.ONE_TO_ONE: "1:1", MappingType.REORGANIZE: "Reorg", MappingType.SHUFFLE: "Shuf",
         MappingType.ONE_TO_MANY: "1:N", MappingType.MANY_TO_MANY: "M:N"}

BOX_W = 280          # block box width (px)
HEAD_H = 22          # block header height
ROW_H = 16           # one operator row
PAD = 5              # padding below the header and at the bottom of a box
MAX_ROWS = 12        # operator rows listed per box; longer blocks end with "+N more"
DUMMY_W = 6          # width reserved for an edge passing through a layer
GAP_X = 30           # horizontal space between neighbours in a layer
GAP_Y = 48           # vertical space between layers
MARGIN = 20
MAX_REJECTIONS = 300  # listed per reason; the rest are counted
STAT_KEYS = ("ops_before", "ops_after_folding", "blocks", "fusion_rate", "largest_block", "irs_bytes_before",
             "irs_bytes_after", "irs_reduction", "yellow_fused", "yellow_rejected", "plan_seconds")


@dataclass
class PlanLayout:
    """Where the blocks go: centre x and top y per block (by run position), and one polyline per block edge."""

    x: list[float]
    y: list[float]
    heights: list[float]
    edges: dict[tuple[int, int], list[tuple[float, float]]]   # (from, to) positions -> points, bottom-to-top
    width: float
    height: float


def write_plan_html(plan: Plan, path: Path, title: str = "") -> Path:
    """Write the page for `plan` to `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_plan_html(plan, title), encoding="utf-8")
    return path


def render_plan_html(plan: Plan, title: str = "") -> str:
    """The whole page as a string."""
    title = title or f"Fusion plan: {plan.ecg.graph.name}"
    tensors = block_edges(plan)
    layout = layout_plan(plan, tensors)
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{_esc(title)}</title><style>{CSS}</style></head>\n<body>\n",
        _header_html(plan, title),
        f"<main id=\"graph\">{_svg(plan, layout, tensors)}</main>\n",
        PANEL_HTML,
        f"<script type=\"application/json\" id=\"plan-data\">{_json_for_script(_block_data(plan))}</script>\n",
        f"<script>{JS}</script>\n</body></html>\n",
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


def box_height(block: Block) -> float:
    """A block box's height: header plus one row per listed operator (capped, with a "+N more" row)."""
    return HEAD_H + PAD * 2 + min(len(block.ops), MAX_ROWS) * ROW_H


def layout_plan(plan: Plan, edges: Collection[tuple[int, int]]) -> PlanLayout:
    """A layered top-to-bottom layout: longest-path layers, dummy nodes on long edges, barycenter ordering,
    then x positions pulled towards neighbours without overlaps."""
    n = len(plan.blocks)
    layer = longest_path_layers(n, edges)
    widths = [float(BOX_W)] * n
    heights = [box_height(b) for b in plan.blocks]
    chains = _add_dummies(edges, layer, widths)
    up: list[list[int]] = [[] for _ in layer]
    down: list[list[int]] = [[] for _ in layer]
    for chain in chains.values():
        for u, v in zip(chain, chain[1:]):
            down[u].append(v)
            up[v].append(u)
    layers: list[list[int]] = [[] for _ in range(max(layer, default=-1) + 1)]
    for node, rank in enumerate(layer):
        layers[rank].append(node)
    order_layers(layers, up, down)
    x = place_x(layers, widths, up, down)
    tops, bottoms = _layer_bands(layers, heights, n)
    points = {key: _route(chain, x, layer, tops, bottoms, heights) for key, chain in chains.items()}
    return PlanLayout(x[:n], [tops[layer[i]] for i in range(n)], heights, points,
                      max((x[i] + widths[i] / 2 for i in range(len(x))), default=0.0) + MARGIN,
                      (bottoms[-1] if bottoms else 0.0) + MARGIN)


def _add_dummies(edges: Collection[tuple[int, int]], layer: list[int], widths: list[float]
                 ) -> dict[tuple[int, int], list[int]]:
    """Split every edge longer than one layer with a dummy node per layer it crosses (appended to `layer`
    and `widths`), so long edges take part in ordering and spacing; returns each edge's node chain."""
    chains: dict[tuple[int, int], list[int]] = {}
    for a, b in sorted(edges):
        chain = [a]
        for rank in range(layer[a] + 1, layer[b]):
            layer.append(rank)
            widths.append(float(DUMMY_W))
            chain.append(len(layer) - 1)
        chains[(a, b)] = chain + [b]
    return chains


def longest_path_layers(n: int, edges: Collection[tuple[int, int]]) -> list[int]:
    """Layer of each node = longest path from a source; nodes must be numbered in a topological order."""
    preds: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        preds[b].append(a)
    layer = [0] * n
    for node in range(n):
        layer[node] = max((layer[p] + 1 for p in preds[node]), default=0)
    return layer


def order_layers(layers: list[list[int]], up: list[list[int]], down: list[list[int]], sweeps: int = 2) -> None:
    """Reorder each layer in place by the barycenter of its neighbours, down then up, to cut edge crossings."""
    pos = _normalised_positions(layers)
    for _ in range(sweeps):
        for rank in range(1, len(layers)):
            _sort_by_barycenter(layers[rank], up, pos)
        for rank in range(len(layers) - 2, -1, -1):
            _sort_by_barycenter(layers[rank], down, pos)


def _normalised_positions(layers: list[list[int]]) -> dict[int, float]:
    """Position of each node within its layer, scaled to 0..1 so layers of different sizes compare."""
    return {v: (i + 0.5) / len(layer) for layer in layers for i, v in enumerate(layer)}


def _sort_by_barycenter(layer: list[int], neighbours: list[list[int]], pos: dict[int, float]) -> None:
    """Sort one layer by the mean position of each node's neighbours (nodes without any keep their place)."""
    def key(v: int) -> tuple[float, float]:
        near = neighbours[v]
        return (sum(pos[u] for u in near) / len(near) if near else pos[v], pos[v])
    layer.sort(key=key)
    for i, v in enumerate(layer):
        pos[v] = (i + 0.5) / len(layer)


def place_x(layers: list[list[int]], widths: list[float], up: list[list[int]], down: list[list[int]],
            rounds: int = 4) -> list[float]:
    """Centre x of every node: packed per layer, then repeatedly pulled towards its neighbours' mean."""
    x = [0.0] * len(widths)
    for layer in layers:
        left = 0.0
        for v in layer:
            x[v] = left + widths[v] / 2
            left += widths[v] + GAP_X
    for _ in range(rounds):
        for layer in layers[1:]:
            _align(layer, up, x, widths)
        for layer in reversed(layers[:-1]):
            _align(layer, down, x, widths)
    shift = MARGIN - min((x[v] - widths[v] / 2 for v in range(len(x))), default=0.0)
    return [c + shift for c in x]


def _align(layer: list[int], neighbours: list[list[int]], x: list[float], widths: list[float]) -> None:
    """Move one layer's nodes towards their neighbours' mean x, keeping order and spacing: the mean of a
    left-to-right and a right-to-left greedy placement (both keep the spacing, so their mean does too)."""
    want = [sum(x[u] for u in neighbours[v]) / len(neighbours[v]) if neighbours[v] else x[v] for v in layer]
    gap = [(widths[a] + widths[b]) / 2 + GAP_X for a, b in zip(layer, layer[1:])]
    left = want[:]
    for i in range(1, len(layer)):
        left[i] = max(want[i], left[i - 1] + gap[i - 1])
    right = want[:]
    for i in range(len(layer) - 2, -1, -1):
        right[i] = min(want[i], right[i + 1] - gap[i])
    for v, a, b in zip(layer, left, right):
        x[v] = (a + b) / 2


def _layer_bands(layers: list[list[int]], heights: list[float], n: int) -> tuple[list[float], list[float]]:
    """Top and bottom y of each layer (the tallest block sets a layer's height)."""
    tops, bottoms, y = [], [], float(MARGIN)
    for layer in layers:
        tops.append(y)
        y += max((heights[v] for v in layer if v < n), default=0.0)
        bottoms.append(y)
        y += GAP_Y
    return tops, bottoms


def _route(chain: list[int], x: list[float], layer: list[int], tops: list[float], bottoms: list[float],
           heights: list[float]) -> list[tuple[float, float]]:
    """Points of one edge: the source box's bottom, then the top and bottom of each layer it passes through,
    then the target box's top."""
    first, last = chain[0], chain[-1]
    points = [(x[first], tops[layer[first]] + heights[first])]
    for dummy in chain[1:-1]:
        points += [(x[dummy], tops[layer[dummy]]), (x[dummy], bottoms[layer[dummy]])]
    points.append((x[last], tops[layer[last]]))
    return points


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
    """One operator row: op type, the tail of its name, and a chip coloured by its own mapping type; the
    tooltip gives the full name, mapping type, output shapes and intermediate-result bytes."""
    strong, _ = COLORS[op.mapping]
    outputs = "; ".join(_tensor_text(v) for v in op.node.outputs if v is not None) or "-"
    tip = f"{op.name}\n{op.node.op_type} \u00b7 {op.mapping.value}\noutput: {outputs}\nIRS: {op.irs_bytes:,} B"
    chip_x = BOX_W - 44
    return (f"<g class=\"op\" transform=\"translate(0,{y:.0f})\"><title>{_esc(tip)}</title>"
            f"<rect class=\"row\" x=\"2\" width=\"{BOX_W - 4}\" height=\"{ROW_H}\"/>"
            f"<text class=\"ty\" x=\"8\" y=\"12\">{_esc(_clip(op.node.op_type, 16))}</text>"
            f"<text class=\"nm\" x=\"122\" y=\"12\">{_esc(_tail(op.name, 14))}</text>"
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
def _block_data(plan: Plan) -> dict[str, Any]:
    """Per block id: fused type, operators with their outputs, and the tensors entering and leaving it."""
    graph_outputs = {id(v) for v in plan.ecg.graph.outputs}
    blocks = {}
    for block in plan.blocks:
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


def _tail(text: str, limit: int) -> str:
    """The tail of `text` (the informative end of a scoped node name), ellipsised past `limit` characters."""
    return text if len(text) <= limit else "\u2026" + text[-(limit - 1):]


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


CSS = """
*{box-sizing:border-box}
body{margin:0;font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2430;background:#f6f7f9}
header{padding:12px 18px;background:#fff;border-bottom:1px solid #dde1e7}
h1{font-size:18px;margin:0 0 4px}
.meta{margin:2px 0 8px;color:#566070}
table.stats{border-collapse:collapse;margin:6px 0;font-size:12px}
table.stats th,table.stats td{border:1px solid #dde1e7;padding:3px 8px;text-align:center}
table.stats th{background:#f0f2f5;font-weight:600;color:#3a4150}
ul.notes{margin:6px 0;padding-left:20px;color:#6b5200}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;align-items:center;margin:8px 0;font-size:12px}
.legend .item{display:inline-flex;align-items:center;gap:5px}
.swatch{display:inline-block;width:18px;height:12px;border:1.5px solid;border-radius:3px}
.chip{display:inline-block;color:#fff;border-radius:7px;padding:0 6px;font-size:10px;font-weight:600}
details.rejections{margin:6px 0;font-size:12px}
details.rejections details{margin:2px 0 2px 14px}
details.rejections ol{margin:2px 0;max-height:260px;overflow:auto}
details.rejections .detail{color:#7a8291}
details.rejections code{font-weight:600}
summary{cursor:pointer}
.toolbar{display:flex;gap:4px;margin-top:6px}
.toolbar button{font:inherit;min-width:34px;padding:1px 8px;border:1px solid #c3c9d3;background:#fff;border-radius:4px;
cursor:pointer}
#graph{overflow:auto;padding:8px}
#plan-svg{display:block;background:#fff;border:1px solid #e3e6eb;border-radius:4px}
#plan-svg text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
.edge{fill:none;stroke:#9aa2b1;stroke-width:1.3}
.edge:hover,.edge.hl{stroke:#1f2430;stroke-width:2.4}
.block{cursor:pointer}
.block .box{stroke-width:1.5}
.block:hover .box{stroke-width:3}
.block.selected .box{stroke:#111;stroke-width:3.5}
.block .head{font-size:11.5px;font-weight:700;fill:#fff}
.op .row{fill:transparent}
.op:hover .row{fill:rgba(0,0,0,.07)}
.op .ty{font-size:11px;font-weight:600;fill:#1f2430}
.op .nm{font-size:10px;fill:#6b7383}
.op .chip{font-size:9px;font-weight:700;fill:#fff;text-anchor:middle}
.block .more{font-size:10.5px;font-style:italic;fill:#566070}
#panel{position:fixed;top:0;right:0;bottom:0;width:min(460px,92vw);overflow:auto;background:#fff;
border-left:1px solid #c9ced6;box-shadow:-4px 0 16px rgba(0,0,0,.12);padding:12px 14px;font-size:12px}
#panel[hidden]{display:none}
#panel h2{font-size:16px;margin:0 0 6px}
#panel h3{font-size:13px;margin:12px 0 4px}
#panel-close{position:absolute;top:8px;right:10px;font:inherit;font-size:16px;border:0;background:none;cursor:pointer}
#panel table{border-collapse:collapse;width:100%}
#panel td,#panel th{border-bottom:1px solid #eceef2;padding:2px 4px;text-align:left;vertical-align:top}
#panel .name{overflow-wrap:anywhere}
#panel .out{color:#6b7383;font-size:11px}
#panel .chip{white-space:nowrap}
#panel .const{color:#8a93a3}
"""

PANEL_HTML = ("<aside id=\"panel\" hidden><button id=\"panel-close\" type=\"button\" title=\"close (Esc)\">"
              "\u2715</button><div id=\"panel-body\"></div></aside>\n")

JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("plan-data").textContent);
  var panel = document.getElementById("panel");
  var body = document.getElementById("panel-body");
  var svg = document.getElementById("plan-svg");
  var scale = 1;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function chip(label, color) {
    var c = el("span", label, "chip");
    c.style.background = color;
    return c;
  }

  function row(table, cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (cell) {
      var td = document.createElement("td");
      if (typeof cell === "object") td.appendChild(cell); else td.textContent = String(cell);
      tr.appendChild(td);
    });
    table.appendChild(tr);
  }

  function tensorTable(title, tensors) {
    body.appendChild(el("h3", title + " (" + tensors.length + ")"));
    var table = document.createElement("table");
    tensors.forEach(function (t) {
      row(table, [el("span", t.name, t.const ? "name const" : "name"), t.shape, t.dtype + (t.const ? " const" : "")]);
    });
    body.appendChild(table);
  }

  function outputsText(op) {
    return op.outputs.map(function (t) { return t.name + " " + t.shape + " " + t.dtype; }).join("; ") +
      " \u00b7 IRS " + op.irs.toLocaleString("en-US") + " B";
  }

  function highlight(id) {
    Array.prototype.forEach.call(svg.querySelectorAll(".block.selected"), function (g) { g.classList.remove("selected"); });
    Array.prototype.forEach.call(svg.querySelectorAll(".edge.hl"), function (p) { p.classList.remove("hl"); });
    if (id === null) return null;
    Array.prototype.forEach.call(svg.querySelectorAll(".edge"), function (p) {
      if (p.getAttribute("data-from") === id || p.getAttribute("data-to") === id) p.classList.add("hl");
    });
    var group = svg.querySelector('.block[data-block="' + id + '"]');
    if (group) group.classList.add("selected");
    return group;
  }

  function show(id) {
    var block = data.blocks[id];
    if (!block) return;
    body.textContent = "";
    var h = el("h2", "Block #" + block.id + " ");
    h.appendChild(chip(block.mapping, block.color));
    body.appendChild(h);
    body.appendChild(el("div", block.ops.length + " operator(s), fused type " + block.mapping));
    body.appendChild(el("h3", "Operators"));
    var ops = document.createElement("table");
    row(ops, [el("b", "type"), el("b", "map"), el("b", "name / outputs")]);
    block.ops.forEach(function (op) {
      var c = chip(op.chip, op.color), cell = document.createElement("div");
      c.title = op.mapping;
      cell.appendChild(el("div", op.name, "name"));
      cell.appendChild(el("div", outputsText(op), "name out"));
      row(ops, [op.type, c, cell]);
    });
    body.appendChild(ops);
    tensorTable("Inputs", block.inputs);
    tensorTable("Outputs", block.outputs);
    panel.hidden = false;
    panel.setAttribute("data-block", String(block.id));
    return highlight(String(block.id));
  }

  function hide() {
    panel.hidden = true;
    panel.removeAttribute("data-block");
    highlight(null);
  }

  function zoom(how) {
    var w = Number(svg.getAttribute("data-width")), hgt = Number(svg.getAttribute("data-height"));
    if (how === "fit") scale = Math.min(1, (document.getElementById("graph").clientWidth - 24) / w);
    else if (Number(how) === 0) scale = 1;
    else scale = Math.max(0.1, Math.min(4, scale * Number(how)));
    svg.setAttribute("width", String(Math.round(w * scale)));
    svg.setAttribute("height", String(Math.round(hgt * scale)));
  }

  svg.addEventListener("click", function (ev) {
    var g = ev.target.closest ? ev.target.closest(".block") : null;
    if (g) show(g.getAttribute("data-block"));
  });
  document.getElementById("panel-close").addEventListener("click", hide);
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") hide(); });
  Array.prototype.forEach.call(document.querySelectorAll(".toolbar button"), function (b) {
    b.addEventListener("click", function () { zoom(b.getAttribute("data-zoom")); });
  });

  var wanted = /^#block-(\\d+)$/.exec(window.location.hash);
  if (wanted) {
    var group = show(wanted[1]);
    if (group && group.scrollIntoView) group.scrollIntoView({block: "center"});
  }
  document.getElementById("block-count").textContent = String(Object.keys(data.blocks).length);
  document.body.setAttribute("data-ready", "1");
})();
"""
