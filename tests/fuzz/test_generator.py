"""The random-graph generator: valid models, deterministic per seed, data-driven, and feeds that fit."""

import numpy as np
import onnx
import pytest

from dnnfusion.fuzz.graphs import OPS, generate, input_shapes, make_feeds


@pytest.mark.parametrize("seed", range(12))
def test_graphs_pass_the_full_onnx_check(seed):
    fg = generate(seed)
    onnx.checker.check_model(fg.model, full_check=True)
    assert fg.op_sequence and fg.input_shapes == input_shapes(fg.model)
    assert all(all(d >= 1 for d in shape) for shape in fg.input_shapes.values())


def test_a_seed_always_gives_the_same_bytes_and_feeds():
    a, b = generate(1234), generate(1234)
    assert a.model.SerializeToString() == b.model.SerializeToString()
    fa, fb = make_feeds(a.model, 7), make_feeds(b.model, 7)
    assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert generate(1235).model.SerializeToString() != a.model.SerializeToString()


def test_feeds_match_the_declared_inputs():
    fg = generate(3)
    feeds = make_feeds(fg.model, 3)
    assert {k: v.shape for k, v in feeds.items()} == fg.input_shapes
    assert all(np.abs(v).max(initial=0) <= 5 for v in feeds.values() if v.dtype != np.bool_)


def test_the_op_table_drives_generation():
    only = generate(5, ops=["Conv"], min_nodes=2, max_nodes=3)
    assert set(only.op_sequence) <= {"Conv", "Tanh", "Sigmoid", "Clip", "Erf", "Softsign", "Mul"}
    assert "Conv" in only.op_sequence
    assert len(OPS) >= 50


def test_many_seeds_cover_the_listed_op_families():
    used = set()
    for seed in range(60):
        used |= generate(seed).ops
    for op in ("Add", "Div", "Relu", "Exp", "Sqrt", "Where", "Reshape", "Transpose", "Concat", "Slice", "Split",
               "Gather", "MatMul", "Gemm", "Conv", "Softmax", "LayerNormalization", "ReduceSum"):
        assert op in used, op


def test_graphs_have_multiple_outputs_and_shared_values():
    multi = shared = 0
    for seed in range(30):
        g = generate(seed).model.graph
        multi += len(g.output) > 1
        uses = {}
        for node in g.node:
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
        shared += any(n > 1 for name, n in uses.items() if name not in {t.name for t in g.initializer})
    assert multi >= 10 and shared >= 10
