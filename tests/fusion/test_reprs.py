"""Printing a plan stays short: the reprs of the plan, its blocks, rejections, yellow decisions, the ECG and its
operators, and the graph's nodes and values name operators and tensors instead of recursing into them (the
generated dataclass reprs walked every producer/consumer path: 938 MB for one block of the demo model)."""

import time

import pytest
from onnx import helper

from dnnfusion.pipeline import plan_model
from dnnfusion.zoo import demo_model
from tests.helpers import FLOAT, make_model

LIMIT = 2_000


def diamonds(depth: int = 12):
    """x -> depth times (Relu, Sigmoid, Add of both) -> y: every operator reaches the next through two paths."""
    nodes, prev = [], "x"
    for k in range(depth):
        out = "y" if k == depth - 1 else f"s{k}"
        nodes += [helper.make_node("Relu", [prev], [f"r{k}"], name=f"r{k}"),
                  helper.make_node("Sigmoid", [prev], [f"g{k}"], name=f"g{k}"),
                  helper.make_node("Add", [f"r{k}", f"g{k}"], [out], name=f"a{k}")]
        prev = out
    return make_model(nodes, [("x", FLOAT, [4, 6])], ["y"])


def wide_concat(width: int = 300):
    """y = Concat of `width` Relus of x: one node with many inputs, and a block of many operators."""
    nodes = [helper.make_node("Relu", ["x"], [f"r{k}"], name=f"relu_with_a_rather_long_name_{k}")
             for k in range(width)]
    nodes.append(helper.make_node("Concat", [f"r{k}" for k in range(width)], ["y"], name="cat", axis=0))
    return make_model(nodes, [("x", FLOAT, [2, 3])], ["y"])


def everything_printed(plan) -> list[object]:
    """The plan and every object of it a user would print in a REPL."""
    graph = plan.ecg.graph
    return [plan, plan.ecg, graph, *plan.blocks, *plan.rejections, *plan.yellow, *plan.ecg.ops, *graph.nodes,
            *graph.live_values()]


CASES = {"demo": (demo_model, {"x": (2, 8, 64), "mask": (2, 8)}), "diamonds": (diamonds, None),
         "wide-concat": (wide_concat, None)}


@pytest.mark.parametrize("level", ["O0", "O1", "O3"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_repr_is_short_and_fast(case, level):
    build, shapes = CASES[case]
    plan = plan_model(build(), shapes, level)
    objects = everything_printed(plan)
    start = time.perf_counter()
    texts = [repr(o) for o in objects]
    assert time.perf_counter() - start < 0.5
    longest = max(texts, key=len)
    assert len(longest) < LIMIT, longest[:300]


def test_reprs_name_the_operators():
    plan = plan_model(demo_model(), {"x": (2, 8, 64), "mask": (2, 8)}, "O2")
    block = max(plan.blocks, key=lambda b: len(b.ops))
    first = block.ops[0]
    assert repr(block).startswith(f"Block({block.id}, ops=[{first.node.op_type} '{first.node.name}', ")
    assert repr(block).endswith(f", type={block.mapping.value})")
    rejection = plan.rejections[0]
    assert repr(rejection) == (f"Rejection({rejection.reason.name}: {rejection.first.node.op_type} "
                               f"'{rejection.first.node.name}' -> {rejection.second.node.op_type} "
                               f"'{rejection.second.node.name}')")
    assert repr(plan).startswith("Plan(O2, 'demo_encoder_layer': 71 ops loaded, ")
    assert repr(plan.ecg.graph) == "Graph('demo_encoder_layer', 53 nodes, 2 inputs, 1 outputs)"


def test_long_lists_are_cut_with_a_count():
    plan = plan_model(wide_concat(), None, "O3")
    concat = next(n for n in plan.ecg.graph.nodes if n.op_type == "Concat")
    assert repr(concat) == "Node(Concat 'cat': r0, r1, r2, r3, r4, r5, r6, r7, ... 292 more -> y)"
    assert repr(plan.ecg.info(concat)).endswith(", ... 292 more], to=[])")
    assert repr(plan.ecg).endswith(", ... 293 more])")
    block = max(plan_model(diamonds(), None, "O3").blocks, key=lambda b: len(b.ops))
    labels = ", ".join(f"{o.node.op_type} '{o.node.name}'" for o in block.ops[:8])
    assert len(block.ops) > 30
    assert repr(block) == f"Block({block.id}, ops=[{labels}, ... {len(block.ops) - 8} more], type=One-to-One)"
