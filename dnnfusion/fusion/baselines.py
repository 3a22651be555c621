"""The baseline planners the paper compares against (its OurB and OurB+), with the same output as the DNNFusion
planner: O0 runs every operator as its own kernel; O1 fuses fixed patterns the way TVM and onnxruntime do."""

from __future__ import annotations

from .. import ops
from ..ops import MappingType
from .ecg import ECG, OpInfo, most_complex
from .plan import Block
from .planner import MAX_BLOCK_OPS, _Partition

CHAIN = (MappingType.ONE_TO_ONE, MappingType.REORGANIZE, MappingType.SHUFFLE)


def plan_o0(ecg: ECG) -> list[Block]:
    """One block per operator."""
    return [Block(i, [o], o.mapping) for i, o in enumerate(ecg.ops)]


def _kind(info: OpInfo) -> str:
    """O1's pattern vocabulary: 'chain' (elementwise or layout), 'reduce', 'anchor' (Conv/Gemm/MatMul/pool...)
    or 'opaque' (everything else)."""
    op = ops.lookup(info.node)
    if not info.fusible:
        return "opaque"
    if op.mapping in CHAIN or op.elementwise:
        return "chain"
    if op.mapping is MappingType.MANY_TO_MANY:
        return "reduce" if op.reduction else "anchor"
    return "opaque"


def plan_o1(ecg: ECG) -> list[Block]:
    """Fixed patterns, joined along single-consumer edges in topological order: an anchor (Conv, Gemm, MatMul...)
    with the elementwise chain after it (bias, BatchNorm, activation); chains of elementwise/layout operators;
    and a reduction with the elementwise chain that feeds it."""
    part = _Partition(ecg)
    kinds = {o.index: _kind(o) for o in ecg.ops}
    outputs = {id(v) for v in ecg.graph.outputs}

    def group_kinds(g: int) -> set[str]:
        return {kinds[i] for i in part.members[g]}

    for info in ecg.ops:
        if kinds[info.index] not in ("chain", "reduce"):
            continue
        for producer in info.producers:
            sole = producer.consumers == [info] and not any(id(v) in outputs for v in producer.node.outputs)
            gp, gc = part.group[producer.index], part.group[info.index]
            if not sole or gp == gc:
                continue
            pk, ck = group_kinds(gp), group_kinds(gc)
            if "reduce" in pk or "opaque" in pk or ("anchor" in pk and "anchor" in ck):
                continue
            if kinds[info.index] == "reduce" and pk != {"chain"}:
                continue
            if len(part.members[gp]) + len(part.members[gc]) > MAX_BLOCK_OPS:     # the planner's size bound
                continue
            if not part.would_cycle(gp, gc):
                part.merge(gc, gp)
    blocks = []
    for g in part.topological_groups():
        members = [ecg.ops[i] for i in part.members[g]]
        blocks.append(Block(len(blocks), members, most_complex([o.mapping for o in members], members[0].mapping)))
    return blocks
