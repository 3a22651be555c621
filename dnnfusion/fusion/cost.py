"""The cost-model estimate that decides a yellow cell where the profile database has no measured time for it.
Roofline-style: time = FLOPs / FLOP_RATE + bytes moved / BANDWIDTH, where a value that stays inside the fused
block moves no bytes, and a broadcast read of an inlined producer recomputes that producer once per read unless
it is an epilogue of a Many-to-Many in the block (computed once, kept). Every kernel also pays a fixed launch
cost (loop setup, waking the thread pool), which fusing saves."""

from __future__ import annotations

from ..ops import MappingType
from .ecg import OpInfo
from .profile_db import Profile

BANDWIDTH = 10e9      # bytes/s: one core streaming beyond the L2 cache on this class of machine
FLOP_RATE = 16e9      # FLOP/s: one core running simple vectorized elementwise code
KERNEL_SECONDS = 2e-6  # fixed cost of one kernel: loop setup and an OpenMP parallel region
PROLOGUE_FLOP_RATE = 2e9  # FLOP/s of a producer evaluated inside a template's gather loops (scalar, strided)


def _seconds(ops: list[OpInfo]) -> float:
    """Time of running `ops` as one kernel: their FLOPs, plus reading what comes from outside and writing what
    leaves (read by an operator outside, or a graph output)."""
    inside = {o.index for o in ops}
    produced = {id(v) for o in ops for v in o.node.outputs if v is not None}
    read = {id(v): v for o in ops for v in o.node.inputs if v is not None and id(v) not in produced}
    written = {id(v): v for o in ops for c in o.consumers if c.index not in inside
               for v in c.node.inputs if v is not None and id(v) in produced}
    written |= {id(v): v for o in ops for v in o.node.outputs if v is not None and not v.consumers}
    moved = sum(v.nbytes for v in read.values() if v.is_static) + sum(v.nbytes for v in written.values())
    return KERNEL_SECONDS + sum(o.flops for o in ops) / FLOP_RATE + moved / BANDWIDTH


def _after_many_to_many(ops: list[OpInfo]) -> set[int]:
    """Operators of the block that a Many-to-Many of the block feeds (itself included): its epilogue."""
    inside = {o.index for o in ops}
    marked: set[int] = set()
    for o in sorted(ops, key=lambda o: o.index):
        if o.mapping is MappingType.MANY_TO_MANY or any(p.index in marked for p in o.producers if p.index in inside):
            marked.add(o.index)
    return marked


def _recompute_seconds(producer: OpInfo, consumer: OpInfo, epilogue: set[int]) -> float:
    """An inlined producer read One-to-Many is evaluated once per read; a Many-to-Many producer and its
    epilogue are computed once by the kernel template and kept, so they cost nothing extra."""
    if producer.index in epilogue or consumer.edge_mapping(producer) is not MappingType.ONE_TO_MANY:
        return 0.0
    reads = max(v.numel for v in consumer.node.outputs if v is not None and v.is_static)
    made = max(producer.irs_bytes // max(producer.node.outputs[0].dtype.itemsize, 1), 1)
    return producer.flops * max(reads / made - 1.0, 0.0) / FLOP_RATE


def prologue_recompute(ops: list[OpInfo]) -> float:
    """Seconds spent re-evaluating producers fused into a Many-to-Many's prologue: a template that reads each
    element of an input `reuse` times (im2col, pooling windows) evaluates the producer chain that often."""
    if not any(o.mapping is MappingType.MANY_TO_MANY and max(o.input_reuse, default=1.0) > 1.0 for o in ops):
        return 0.0                                          # the common case, asked on every merge: no re-reading
    inside = {o.index: o for o in ops}
    epilogue = _after_many_to_many(ops)
    extra = 0.0
    for o in ops:
        if o.mapping is not MappingType.MANY_TO_MANY:
            continue
        for producer, reuse in zip(o.input_producers, o.input_reuse):
            if producer is None or producer.index not in inside or producer.index in epilogue or reuse <= 1.0:
                continue
            chain, stack = set(), [producer]
            while stack:
                p = stack.pop()
                if p.index in inside and p.index not in epilogue and p.index not in chain:
                    chain.add(p.index)
                    stack.extend(p.producers)
            extra += sum(inside[i].flops for i in chain) * (reuse - 1.0) / PROLOGUE_FLOP_RATE
    return extra


def broadcast_recompute(ops: list[OpInfo]) -> float:
    """Seconds spent re-evaluating producers of the block that a member reads One-to-Many (once per read)."""
    inside = {o.index for o in ops}
    epilogue = _after_many_to_many(ops)
    return sum(_recompute_seconds(p, c, epilogue) for c in ops for p in c.producers if p.index in inside and p is not c)


def estimate(block: list[OpInfo], candidate: OpInfo) -> Profile:
    """Fused versus unfused time of adding `candidate` to `block`, by the cost model."""
    fused_ops = block + [candidate]
    recompute = broadcast_recompute(fused_ops)
    recompute += prologue_recompute(fused_ops)
    return Profile(_seconds(fused_ops) + recompute, _seconds(block) + _seconds([candidate]), "estimate")
