"""The Extended Computational Graph (DESIGN §2.3): the graph plus, per operator, its mapping type (per input
edge, broadcasting taken into account), its algebraic properties, its intermediate-result size, and whether it
may share a block at all. The planners read this; nothing here decides fusion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .. import ops
from ..ir.graph import Graph, Node, Value
from ..ops import Algebra, MappingType

COMPLEXITY = {m: i for i, m in enumerate(MappingType)}   # One-to-One < Reorganize < Shuffle < One-to-Many < M-M


def most_complex(types: list[MappingType], default: MappingType) -> MappingType:
    return max(types, key=COMPLEXITY.__getitem__) if types else default


def clip(text: str, limit: int = 80) -> str:
    """`text`, cut to `limit` characters with '...' when longer (keeps reprs bounded)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def brief(items: Iterable[str], limit: int = 8) -> str:
    """'[a, b, c]' of the first `limit` items, then '... N more' for the rest."""
    items = list(items)
    shown = items[:limit] + ([f"... {len(items) - limit} more"] if len(items) > limit else [])
    return "[" + ", ".join(shown) + "]"


@dataclass(eq=False, repr=False)
class OpInfo:
    """One operator of the ECG."""

    node: Node
    index: int                                   # position in topological order
    mapping: MappingType                         # the most complex over its non-constant inputs
    input_mappings: list[MappingType | None]     # per input; None for absent or constant inputs
    algebra: Algebra
    irs_bytes: int                               # bytes of its outputs
    flops: int
    fusible: bool                                # False: always a block of its own
    lowering: str | None                         # 'pointwise', 'kernel', or None: runs as a fallback
    intrinsic: MappingType = MappingType.ONE_TO_ONE  # the operator's own type (registry), broadcasting aside
    input_producers: list["OpInfo | None"] = field(default_factory=list)   # per input; None: graph input/constant
    input_reuse: list[float] = field(default_factory=list)   # per input: evaluations per element (Op.input_reuse)
    producers: list["OpInfo"] = field(default_factory=list)
    consumers: list["OpInfo"] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.node.name or f"{self.node.op_type}_{self.index}"

    @property
    def label(self) -> str:
        """Its op type and name, e.g. "Add 'a1'" (what the plan's reprs print instead of the whole node)."""
        return f"{self.node.op_type} {clip(self.name)!r}"

    def __repr__(self) -> str:
        return (f"OpInfo({self.index}: {self.label}, {self.mapping.value}, "
                f"from={brief(p.label for p in self.producers)}, to={brief(c.label for c in self.consumers)})")

    def mapping_within(self, block: set[int]) -> MappingType:
        """Its mapping type inside a block (op indices): only inputs produced in the block count; an input from
        outside is read through an index map like a weight, so broadcasting it adds no One-to-Many edge."""
        inside = [m for m, p in zip(self.input_mappings, self.input_producers)
                  if m is not None and p is not None and p.index in block]
        return most_complex(inside, self.intrinsic)

    def edge_mapping(self, producer: "OpInfo") -> MappingType:
        """This operator's mapping type with respect to the inputs it reads from `producer`."""
        outs = {id(v) for v in producer.node.outputs if v is not None}
        return most_complex([m for v, m in zip(self.node.inputs, self.input_mappings)
                             if m is not None and v is not None and id(v) in outs], self.mapping)


@dataclass(repr=False)
class ECG:
    graph: Graph
    ops: list[OpInfo]                            # topological order

    def __repr__(self) -> str:
        return f"ECG({clip(self.graph.name)!r}, {len(self.ops)} ops: {brief(o.label for o in self.ops)})"

    def info(self, node: Node) -> OpInfo:
        return self._by_node[id(node)]

    def __post_init__(self) -> None:
        self._by_node = {id(i.node): i for i in self.ops}

    def is_boundary_value(self, value: Value) -> bool:
        """A graph output always crosses the block boundary (it is written for the caller)."""
        return any(value is out for out in self.graph.outputs)


def build_ecg(graph: Graph) -> ECG:
    """Annotate `graph` (shaped and usually folded): every node but `Constant` becomes an OpInfo."""
    infos: list[OpInfo] = []
    by_value: dict[int, OpInfo] = {}
    graph.toposort()
    for node in graph.nodes:
        if node.op_type == "Constant":
            continue
        op = ops.lookup(node)
        per_input = [None if v is None or v.const is not None else op.input_mapping(node, i)
                     for i, v in enumerate(node.inputs)]
        lowering = op.lowering(node)
        info = OpInfo(node, len(infos), most_complex([m for m in per_input if m is not None], op.mapping),
                      per_input, op.algebra, sum(v.nbytes for v in node.outputs if v is not None and v.is_static),
                      op.flops(node), op.can_fuse(node) and lowering is not None, lowering, op.mapping)
        for i, v in enumerate(node.inputs):
            producer = by_value.get(id(v)) if v is not None else None
            info.input_producers.append(producer)
            info.input_reuse.append(op.input_reuse(node, i) if producer is not None else 1.0)
            if producer is not None and producer not in info.producers:
                info.producers.append(producer)
                producer.consumers.append(info)
        for v in node.outputs:
            if v is not None:
                by_value[id(v)] = info
        infos.append(info)
    return ECG(graph, infos)
