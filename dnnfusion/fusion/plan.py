"""A fusion plan: the blocks (each becomes one kernel), in an order they can run, plus the record of how the
planner got there (rejected merges with reasons, yellow-cell decisions, profile-DB traffic) and its statistics."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..ir.graph import Node, Value
from .. import ops
from ..kir.kernel import KernelOptions
from ..ops import MappingType
from .ecg import ECG, OpInfo, brief, clip


class Reason(enum.Enum):
    """Why two operators were not fused."""

    RED = "red cell of the pair table"
    CONVEXITY = "a path would leave the block and come back (cycle between blocks)"
    CONSTRAINT = "constraint bound (inputs per block / one Many-to-Many per block / operators per block)"
    PROFILE = "the fused block is slower, by a measured timing or the cost-model estimate (see the detail)"
    UNSUPPORTED = "operator cannot share a block (data-dependent shape, random, or no generated code)"
    EPILOGUE = "left to the Many-to-Many operator that produces it, as that operator's epilogue"


@dataclass(frozen=True, repr=False)
class Rejection:
    reason: Reason
    first: OpInfo                     # producer side
    second: OpInfo                    # consumer side
    detail: str = ""

    def __repr__(self) -> str:
        detail = f", {clip(self.detail)}" if self.detail else ""
        return f"Rejection({self.reason.name}: {self.first.label} -> {self.second.label}{detail})"


@dataclass(frozen=True, repr=False)
class YellowDecision:
    first: OpInfo
    second: OpInfo
    fused: bool
    source: str                       # "profile-db" (a measured entry of the profile DB) or "estimate" (cost model)
    fused_seconds: float
    unfused_seconds: float

    @property
    def measured(self) -> bool:
        """Decided by a measured timing (the profile DB answers only with measured entries)."""
        return self.source in ("profile-db", "measured")

    def __repr__(self) -> str:
        return (f"YellowDecision({self.first.label} -> {self.second.label}: {'fused' if self.fused else 'apart'}, "
                f"{self.fused_seconds:.3g}s fused vs {self.unfused_seconds:.3g}s apart ({clip(self.source)}))")


@dataclass(eq=False, repr=False)
class Block:
    id: int
    ops: list[OpInfo]                 # topological order
    mapping: MappingType              # the fused block's mapping type

    @property
    def op_types(self) -> list[str]:
        return [o.node.op_type for o in self.ops]

    @property
    def kernel_nodes(self) -> list[Node]:
        """Its operators lowered through a kernel template (codegen allows at most one per block)."""
        return [o.node for o in self.ops if o.lowering == "kernel"]

    def __repr__(self) -> str:
        return f"Block({self.id}, ops={brief(o.label for o in self.ops)}, type={self.mapping.value})"


@dataclass(repr=False)
class Plan:
    ecg: ECG
    blocks: list[Block]               # an order in which the blocks can run
    level: str                        # O0..O3
    ops_before: int                   # nodes of the model as loaded, Constant excluded (DESIGN §5)
    irs_bytes_before: int             # bytes of all intermediates of the model as loaded
    rejections: list[Rejection] = field(default_factory=list)
    yellow: list[YellowDecision] = field(default_factory=list)
    db_hits: int = 0                  # yellow cells the profile DB answered with a measured timing
    db_misses: int = 0                # yellow cells it had no measurement for (decided by the estimate)
    estimated: bool = False           # yellow cells were decided by the cost model, not by measurement
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0              # planning time (ECG and plan, after loading)
    rewrites: dict[str, Any] = field(default_factory=dict)   # flops_before, flops_after, rules_fired (rewriting)

    def __repr__(self) -> str:
        largest = max((len(b.ops) for b in self.blocks), default=0)
        return (f"Plan({self.level}, {clip(self.ecg.graph.name)!r}: {self.ops_before} ops loaded, "
                f"{len(self.ecg.ops)} planned into {len(self.blocks)} blocks (largest {largest} ops), "
                f"{len(self.rejections)} rejections, {len(self.yellow)} yellow decisions)")

    def block_of(self) -> dict[int, Block]:
        """Op index -> its block."""
        return {o.index: b for b in self.blocks for o in b.ops}

    def crossing_values(self) -> list[Value]:
        """Intermediate values that cross a block boundary: produced in one block, read in another."""
        owner = self.block_of()
        crossing: dict[int, Value] = {}
        for info in self.ecg.ops:
            for producer in info.producers:
                if owner[producer.index] is owner[info.index]:
                    continue
                for v in info.node.inputs:
                    if v is not None and any(v is out for out in producer.node.outputs):
                        crossing[id(v)] = v
        outputs = {id(v) for v in self.ecg.graph.outputs}
        return [v for k, v in crossing.items() if k not in outputs]

    def removable(self, value: Value) -> bool:
        """The ECG's removability of an intermediate: every consumer sits in its producer's block, so the fused
        kernel never writes it out (DESIGN §2.3)."""
        crossing = {id(v) for v in self.crossing_values()} | {id(v) for v in self.ecg.graph.outputs}
        return id(value) not in crossing

    def kernel_choices(self, options: KernelOptions | None = None) -> dict[int, list[tuple[str, float]]]:
        """Per block position, the methods its kernel chooses between and their estimated cycles, the chosen
        one first (`Op.kernel_choices`), for the blocks whose template has a choice."""
        return {position: found for position, (_, found) in self.choosing_nodes(options).items()}

    def choosing_nodes(self, options: KernelOptions | None = None) -> dict[int, tuple[Node, list[tuple[str, float]]]]:
        """Per block position, the node whose template chooses a method, and its choices (`kernel_choices`)."""
        options = options or KernelOptions()
        choosing = {}
        for position, block in enumerate(self.blocks):
            for op in block.ops:
                spec = ops.get(op.node.op_type, op.node.domain)
                found = spec.kernel_choices(op.node, options) if spec is not None else []
                if found:
                    choosing[position] = (op.node, found)
        return choosing

    def stats(self) -> dict[str, Any]:
        """The plan statistics scripts rely on (DESIGN §5 counting)."""
        blocks = len(self.blocks)
        irs_after = sum(v.nbytes for v in self.crossing_values())
        by_type = Counter(b.mapping.value for b in self.blocks)
        return {
            "level": self.level,
            "ops_before": self.ops_before,
            "ops_after_folding": len(self.ecg.ops),
            "blocks": blocks,
            "fusion_rate": round(self.ops_before / blocks, 3) if blocks else 0.0,
            "irs_bytes_before": self.irs_bytes_before,
            "irs_bytes_after": irs_after,
            "irs_reduction": round(self.irs_bytes_before / irs_after, 3) if irs_after else None,
            "blocks_by_type": {m.value: by_type.get(m.value, 0) for m in MappingType},
            "many_to_many_ops": sum(o.intrinsic is MappingType.MANY_TO_MANY for o in self.ecg.ops),
            "largest_block": max((len(b.ops) for b in self.blocks), default=0),
            "yellow_fused": sum(d.fused for d in self.yellow),
            "yellow_rejected": sum(not d.fused for d in self.yellow),
            "yellow_estimated": self.estimated,
            "yellow_by_source": {"measured": sum(d.measured for d in self.yellow),
                                 "estimate": sum(not d.measured for d in self.yellow)},
            "profile_db_hits": self.db_hits,
            "profile_db_misses": self.db_misses,
            "plan_seconds": round(self.seconds, 3),
            "rejections": dict(Counter(r.reason.name.lower() for r in self.rejections)),
            "flops_before": self.rewrites.get("flops_before"),
            "flops_after": self.rewrites.get("flops_after"),
            "rules_fired": dict(self.rewrites.get("rules_fired", {})),
        }
