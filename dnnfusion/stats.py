"""Model statistics that the CLI, docs and later benchmarks read: op counts by mapping type, FLOPs, bytes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from . import ops
from .ir.graph import Graph
from .passes.shapes import dynamic_values


@dataclass
class GraphStats:
    """Counts for one (imported, shaped and usually folded) graph."""

    ops_total: int
    ops_by_type: dict[str, int]
    ops_by_mapping: dict[str, int]
    flops: int
    param_bytes: int
    param_count: int
    irs_bytes: int                      # bytes of all intermediate values (graph outputs excluded)
    dynamic_values: list[str] = field(default_factory=list)


def graph_stats(graph: Graph) -> GraphStats:
    """Statistics of `graph`; `Constant` nodes are not counted as operators (DESIGN §5)."""
    nodes = graph.operators()
    mapping = Counter(ops.lookup(n).mapping.value for n in nodes)
    used = {id(v) for n in graph.nodes for v in n.inputs if v is not None} | {id(v) for v in graph.outputs}
    params = [v for v in graph.initializers if id(v) in used]
    return GraphStats(
        ops_total=len(nodes),
        ops_by_type=dict(Counter(n.op_type for n in nodes).most_common()),
        ops_by_mapping={m.value: mapping.get(m.value, 0) for m in ops.MappingType},
        flops=sum(ops.lookup(n).flops(n) for n in nodes),
        param_bytes=sum(v.nbytes for v in params),
        param_count=sum(v.numel for v in params),
        irs_bytes=sum(v.nbytes for v in graph.intermediates()),
        dynamic_values=dynamic_values(graph),
    )
