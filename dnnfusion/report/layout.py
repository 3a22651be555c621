"""Where a plan's blocks go on the page: a layered drawing of the block DAG (longest-path layers, dummy nodes
for long edges, barycenter ordering to cut crossings, x pulled towards neighbours), in pixels."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Collection

from ..fusion.plan import Block, Plan

BOX_W = 280          # block box width (px)
HEAD_H = 22          # block header height
ROW_H = 16           # one operator row
PAD = 5              # padding below the header and at the bottom of a box
MAX_ROWS = 12        # operator rows listed per box; longer blocks end with "+N more"
DUMMY_W = 6          # width reserved for an edge passing through a layer
GAP_X = 30           # horizontal space between neighbours in a layer
GAP_Y = 48           # vertical space between layers
MARGIN = 20


@dataclass
class PlanLayout:
    """Where the blocks go: centre x and top y per block (by run position), and one polyline per block edge."""

    x: list[float]
    y: list[float]
    heights: list[float]
    edges: dict[tuple[int, int], list[tuple[float, float]]]   # (from, to) positions -> points, bottom-to-top
    width: float
    height: float


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
