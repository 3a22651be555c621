"""Hand-built graphs for the fusion tests: a chain of two operators of chosen mapping types, and the small
patterns (residual, LayerNorm, attention) the kernel-count tests assert exactly."""

from __future__ import annotations

import numpy as np
from onnx import helper

from dnnfusion.pipeline import plan_model
from dnnfusion.ops import MappingType
from tests.helpers import FLOAT, make_model

# One operator per mapping type that keeps a 2-D tensor 2-D, so any two chain: (op_type, extra inputs, attrs).
REPRESENTATIVE = {
    MappingType.ONE_TO_ONE: ("Relu", {}, {}),
    MappingType.REORGANIZE: ("Flatten", {}, {"axis": 1}),
    MappingType.SHUFFLE: ("Transpose", {}, {"perm": [1, 0]}),
    MappingType.ONE_TO_MANY: ("Tile", {"repeats": np.array([1, 2], np.int64)}, {}),
    MappingType.MANY_TO_MANY: ("Softmax", {}, {"axis": -1}),
}


def chain(first: MappingType, second: MappingType, shape=(4, 6)):
    """x -> op(first) -> op(second) -> y, built from the representative operators."""
    nodes, inits, prev = [], {}, "x"
    for k, mapping in enumerate((first, second)):
        op, extra, attrs = REPRESENTATIVE[mapping]
        names = [prev]
        for name, array in extra.items():
            inits[f"{name}{k}"] = array
            names.append(f"{name}{k}")
        out = "y" if k == 1 else f"t{k}"
        nodes.append(helper.make_node(op, names, [out], name=f"{op.lower()}{k}", **attrs))
        prev = out
    return make_model(nodes, [("x", FLOAT, list(shape))], ["y"], inits)


def blocks_of(plan) -> list[list[str]]:
    """Each block as the list of its node names, in run order."""
    return [[o.node.name for o in b.ops] for b in plan.blocks]


def plan_of(model, level="O2", db=None):
    """The plan of `model` at O2 by default: the planner's own decisions, before any O3 rewriting."""
    return plan_model(model, None, level, db)
