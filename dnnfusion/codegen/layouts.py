"""Layouts chosen across blocks (the paper's inter-block optimisation): a value that passes between two blocks
whose kernels read and write channel-blocked arrays fast ([N][C / block][*spatial][block], NCHW16c on AVX-512,
NCHW8c on AVX2) is held that way, so a pointwise convolution's tile reads a few contiguous streams and its
stores are whole vectors, and a depthwise convolution finds a pixel's channels in one vector. Graph inputs and
outputs keep the model's own layout; a conversion is never a kernel of its own, only the layout a block reads
differing from the one it writes (counted by `conversions`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import ops
from ..fusion.plan import Block, Plan
from ..ir.graph import Node, Value
from ..kernels.blocked import block_size, holds_blocks

MODES = ("auto", "off", "all")


@dataclass(frozen=True)
class Conversion:
    """A block that reads a value in one layout and writes one in another (the change fused into its loads
    and stores): the block's position, its kernel's node name, and the layouts read and written."""

    block: int
    node: str
    reads: str
    writes: str
    op_type: str = ""

    def describe(self) -> dict[str, object]:
        """The conversion as JSON-ready fields (compile's stats.json, docs/LAYOUTS.md)."""
        return {"block": self.block, "node": self.node, "op_type": self.op_type, "reads": self.reads,
                "writes": self.writes}


def kernel_node(block: Block) -> Node | None:
    """The block's kernel-template operator, if it has one."""
    return next(iter(block.kernel_nodes), None)


def fast_on_blocks(block: Block, size: int) -> str:
    """How fast the block's kernel works on channel-blocked arrays (`Op.blocked_channels`: "any", "input", "")."""
    node = kernel_node(block)
    return ops.lookup(node).blocked_channels(node, size) if node is not None else ""


def keeps_shape(block: Block, value: Value) -> bool:
    """Whether `block` meets `value` only through elementwise ops of its shape (broadcasts of per-channel values
    aside) between it and the block's kernel, on either side: a Concat, Slice or Transpose on the way would read
    or write it at moved indices, where the kernels' blocked paths do not apply."""
    node = kernel_node(block)
    if node is None:
        return False
    inside = {id(o.node) for o in block.ops}
    shape = tuple(value.shape)

    def elementwise(n: Node) -> bool:
        return all(tuple(v.shape) == shape for v in n.outputs if v is not None) and all(
            v.const is not None or tuple(v.shape) == shape or v.numel == shape[0] * shape[1] or v.numel == 1
            for v in n.inputs if v is not None)

    stack, seen = [value.producer] if value.producer is not None and id(value.producer) in inside else [], set()
    while stack:                                 # up from the value to the kernel that produces it
        producer = stack.pop()
        if producer is node or id(producer) in seen:
            if producer is node and tuple(node.outputs[0].shape) != shape:
                return False
            continue
        seen.add(id(producer))
        if not elementwise(producer):
            return False
        stack.extend(v.producer for v in producer.inputs if v is not None and v.producer is not None
                     and id(v.producer) in inside and tuple(v.shape) == shape)
    stack = [c for c in value.consumers if id(c) in inside]
    while stack:                                 # down from the value to the kernel that reads it
        consumer = stack.pop()
        if consumer is node or id(consumer) in seen:
            continue
        seen.add(id(consumer))
        if not elementwise(consumer):
            return False
        stack.extend(c for out in consumer.outputs if out is not None for c in out.consumers if id(c) in inside)
    return True


def eligible(value: Value, size: int) -> bool:
    """Whether `value` can be held channel-blocked: a static float32 activation (N, C, *spatial) whose channels
    fill whole blocks, over more than one pixel (`holds_blocks`)."""
    shape = value.shape
    return value.const is None and value.is_static and value.dtype is not None and value.dtype.name == "float32" \
        and shape is not None and holds_blocks(shape, size)


def channel_blocks(plan: Plan, native: list[bool], values: dict[int, Value], mode: str) -> dict[int, int]:
    """The channel block of each value (by id) that crosses blocks and is held blocked; values not listed are
    row-major. `mode` "auto" blocks a value when its producing block and every block that reads it run kernels
    that are fast on blocked arrays, "all" wherever legal (every reader then takes its general path), "off"
    nowhere."""
    if mode not in MODES:
        raise ValueError(f"unknown layouts mode '{mode}' (use one of {', '.join(MODES)})")
    size = block_size()
    if mode == "off" or size == 0:
        return {}
    graph = plan.ecg.graph
    ends = {id(v) for v in list(graph.inputs) + list(graph.outputs)}
    home = {id(o.node): k for k, b in enumerate(plan.blocks) for o in b.ops}
    chosen: dict[int, int] = {}
    for key, value in values.items():
        if key in ends or value.producer is None or not eligible(value, size):
            continue
        blocks = {home[id(value.producer)]} | {home[id(c)] for c in value.consumers if id(c) in home}
        if len(blocks) < 2 or not all(native[k] for k in blocks):
            continue
        if mode == "all" or all(fast_on_blocks(plan.blocks[k], size) and keeps_shape(plan.blocks[k], value)
                                for k in blocks):
            chosen[key] = size
    if mode == "all":
        return chosen
    changed = True
    while changed:          # a result written fast only from a blocked input stays row-major where that is not
        changed = False
        for key in list(chosen):
            producer = plan.blocks[home[id(values[key].producer)]]
            node = kernel_node(producer)
            if fast_on_blocks(producer, size) == "input" and id(node.inputs[0]) not in chosen:
                del chosen[key]
                changed = True
    return chosen


def conversions(plan: Plan, blocks: dict[int, int]) -> list[Conversion]:
    """The blocks that read an activation (rank >= 3, not a weight) in one layout and write another. A value
    of one pixel per channel (a pooled squeeze-excitation scale) is the same array in either layout and is
    left out of both sides."""
    def name(block: int) -> str:
        return f"NC{block}c" if block else "plain"

    def spread(v: Value | None) -> bool:
        return v is not None and v.shape is not None and len(v.shape) >= 3 and \
            (not all(isinstance(d, int) for d in v.shape[2:]) or math.prod(v.shape[2:]) > 1)

    outputs = {id(v) for v in plan.ecg.graph.outputs}
    found = []
    for k, block in enumerate(plan.blocks):
        inside = {id(o.node) for o in block.ops}
        reads = {blocks.get(id(v), 0) for o in block.ops for v in o.node.inputs
                 if spread(v) and v.const is None and (v.producer is None or id(v.producer) not in inside)}
        writes = {blocks.get(id(v), 0) for o in block.ops for v in o.node.outputs
                  if spread(v) and (any(id(c) not in inside for c in v.consumers) or id(v) in outputs)}
        if reads and writes and reads != writes:
            node = kernel_node(block) or block.ops[0].node
            found.append(Conversion(k, node.name, "/".join(map(name, sorted(reads))),
                                    "/".join(map(name, sorted(writes))), node.op_type))
    return found
