"""Long operator chains: planning, inlining and C emission walk them with explicit stacks, so a chain far longer
than Python's recursion limit compiles (under a lowered limit here, to prove no step recurses per operator), and
the planner caps a block's operator count so one kernel stays a size gcc compiles quickly."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import onnx
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.kir.emit import MAX_INLINE_DEPTH, Emitter
from dnnfusion.kir.expr import Expr, Unary, Var
from dnnfusion.fusion import Reason
from dnnfusion.pipeline import plan_model
from dnnfusion.fusion.planner import MAX_BLOCK_OPS
from tests.helpers import FLOAT, make_model

LENGTH = 1500
LOW_LIMIT = 400          # well below the chain length: any per-operator recursion fails


def relu_neg_chain(length: int) -> onnx.ModelProto:
    """x -> Relu -> Neg -> Relu -> ... -> y (`length` nodes), float32 (4, 8)."""
    nodes, previous = [], "x"
    for k in range(length):
        out = "y" if k == length - 1 else f"v{k}"
        nodes.append(helper.make_node("Relu" if k % 2 == 0 else "Neg", [previous], [out], name=f"n{k}"))
        previous = out
    return make_model(nodes, [("x", FLOAT, [4, 8])], ["y"])


def relu_neg_reference(x: np.ndarray, length: int) -> np.ndarray:
    """What the chain computes, with numpy."""
    for k in range(length):
        x = np.maximum(x, np.float32(0)) if k % 2 == 0 else -x
    return x


@contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    """Run the body under a lowered recursion limit, restoring the old one afterwards."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


@pytest.fixture(scope="module")
def chain_model() -> onnx.ModelProto:
    return relu_neg_chain(LENGTH)


@pytest.mark.parametrize("level", ["O1", "O3"])
def test_long_chain_compiles_without_recursion(chain_model: onnx.ModelProto, level: str) -> None:
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    with recursion_limit(LOW_LIMIT):
        compiled = dnnfusion.compile(chain_model, input_shapes={"x": [4, 8]}, opt_level=level)
        result = compiled.run({"x": x})
    np.testing.assert_array_equal(result["y"], relu_neg_reference(x, LENGTH))


def test_o3_blocks_are_capped_with_a_recorded_reason(chain_model: onnx.ModelProto) -> None:
    with recursion_limit(LOW_LIMIT):
        plan = plan_model(chain_model, {"x": [4, 8]}, "O3")
    sizes = [len(b.ops) for b in plan.blocks]
    assert sum(sizes) == LENGTH and max(sizes) == MAX_BLOCK_OPS
    assert len(plan.blocks) == -(-LENGTH // MAX_BLOCK_OPS)
    capped = [r for r in plan.rejections if r.reason is Reason.CONSTRAINT]
    assert len(capped) == len(plan.blocks) - 1
    assert all(f"operators > {MAX_BLOCK_OPS}" in r.detail for r in capped)


def test_deep_expression_is_emitted_as_a_sequence_of_locals() -> None:
    expr: Expr = Var("a", "float")
    for _ in range(5000):
        expr = Unary("-", expr, "float")
    with recursion_limit(LOW_LIMIT):
        emitter = Emitter("t")
        emitter.share([expr])
        text = emitter.c(expr)
        assert hash(expr) == hash(expr) and expr == _rebuild_chain(5000)
    assert len(emitter.lines) == 5000 // MAX_INLINE_DEPTH
    assert text.count("(") <= MAX_INLINE_DEPTH
    assert max(line.count("(") for line in emitter.lines) <= MAX_INLINE_DEPTH


def _rebuild_chain(length: int) -> Expr:
    """An equal but distinct copy of the test's Unary chain (structural equality must not recurse either)."""
    expr: Expr = Var("a", "float")
    for _ in range(length):
        expr = Unary("-", expr, "float")
    return expr


def test_o1_blocks_are_capped_too(chain_model: onnx.ModelProto) -> None:
    sizes = [len(b.ops) for b in plan_model(chain_model, {"x": [4, 8]}, "O1").blocks]
    assert sum(sizes) == LENGTH and max(sizes) <= MAX_BLOCK_OPS
    assert len(sizes) == -(-LENGTH // MAX_BLOCK_OPS)
