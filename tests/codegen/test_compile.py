"""The compile pipeline end to end: dnnfusion.compile / CompiledModel / InferenceSession, the statistics, the arena
plan, the build cache, input checking, and that nothing from the model file reaches the generated C."""

import re

import numpy as np
import pytest
from onnx import helper, numpy_helper

import dnnfusion
from dnnfusion.codegen import build as build_module
from dnnfusion.kir.emit import Emitter, literal
from dnnfusion.kir.expr import Lit, Var, call, lit
from dnnfusion.errors import InputDtypeError, InputShapeError
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.codegen.memory import Interval, plan_arena
from dnnfusion.zoo import demo_model
from tests.helpers import FLOAT, make_model

STATS_KEYS = {"ops_before", "blocks", "fusion_rate", "irs_bytes_before", "irs_bytes_after", "blocks_by_type",
              "yellow_fused", "yellow_rejected", "arena_bytes", "compile_seconds", "fallback_ops",
              "native_calls_per_run"}


def elementwise_model(names=("add", "relu", "sig", "mul")):
    nodes = [helper.make_node("Add", ["x", "b"], ["s"], name=names[0]), helper.make_node("Relu", ["s"], ["r"], name=names[1]),
             helper.make_node("Sigmoid", ["r"], ["g"], name=names[2]), helper.make_node("Mul", ["g", "x"], ["y"], name=names[3])]
    model = make_model(nodes, [("x", FLOAT, [4, 6]), ("b", FLOAT, [6])], ["y"])
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    return model


def feeds(seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((4, 6)).astype(np.float32), "b": rng.standard_normal(6).astype(np.float32)}


def test_one_block_one_native_call():
    compiled = dnnfusion.compile(elementwise_model())
    stats = compiled.stats
    assert STATS_KEYS <= stats.keys()
    assert (stats["blocks"], stats["native_calls_per_run"], stats["fallback_ops"]) == (1, 1, [])
    diffs = compare(compiled.run(feeds()), run_onnxruntime(elementwise_model(), feeds()))
    assert all(d.ok for d in diffs)
    assert compiled.source.count("for (int64_t i0") == 1          # one loop nest: the chain is one kernel


@pytest.mark.parametrize("level", ["O0", "O1", "O2", "O3"])
def test_every_level_matches_onnxruntime(level):
    model = demo_model()
    shapes = {"x": (2, 8, 64), "mask": (2, 8)}
    compiled = dnnfusion.compile(model, shapes, opt_level=level)
    rng = np.random.default_rng(1)
    data = {"x": rng.standard_normal((2, 8, 64)).astype(np.float32), "mask": np.ones((2, 8), np.float32)}
    diffs = compare(compiled.run(data), run_onnxruntime(model, data))
    assert diffs and all(d.ok for d in diffs), diffs
    stats = compiled.stats
    assert 0 < stats["arena_bytes"] < stats["irs_bytes_before"]
    if level == "O0":
        assert stats["blocks"] == stats["ops_after_folding"]


def test_inference_session_interface():
    session = dnnfusion.InferenceSession(elementwise_model())
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [("x", [4, 6], "tensor(float)"),
                                                                        ("b", [6], "tensor(float)")]
    assert [o.name for o in session.get_outputs()] == ["y"]
    (y,) = session.run(None, feeds())
    assert y.shape == (4, 6)
    with pytest.raises(dnnfusion.InputError, match="unknown output 'z'"):
        session.run(["z"], feeds())


def test_feeds_are_checked():
    compiled = dnnfusion.compile(elementwise_model())
    with pytest.raises(InputShapeError, match=r"input 'x' has shape \(4, 5\).*compiled for \(4, 6\)"):
        compiled.run({"x": np.zeros((4, 5), np.float32), "b": np.zeros(6, np.float32)})
    with pytest.raises(InputDtypeError, match="input 'b' is float64"):
        compiled.run({"x": np.zeros((4, 6), np.float32), "b": np.zeros(6)})


def test_model_strings_never_reach_the_c_source():
    hostile = ['*/ #include "/etc/passwd" /*', 'a"; system("rm -rf /"); //', "\\\n#define x", "??=pragma"]
    model = elementwise_model(tuple(hostile))
    for value, name in zip(list(model.graph.input) + list(model.graph.output), ["in*/x", "b\"", "y;evil"]):
        value.name = name
    model.graph.node[0].input[:] = ["in*/x", "b\""]
    model.graph.node[3].input[1] = "in*/x"
    model.graph.node[3].output[0] = "y;evil"
    compiled = dnnfusion.compile(model)
    for text in hostile + ["in*/x", "b\"", "y;evil", "passwd", "system"]:
        assert text not in compiled.source
    out = compiled.run({"in*/x": np.ones((4, 6), np.float32), "b\"": np.zeros(6, np.float32)})
    assert set(out) == {"y;evil"}


def test_build_cache_reuses_the_library(monkeypatch):
    first = dnnfusion.compile(elementwise_model())

    def no_compiler(*args, **kwargs):
        raise AssertionError("the C compiler ran for a cached source")
    monkeypatch.setattr(build_module.subprocess, "run", no_compiler)
    again = dnnfusion.compile(elementwise_model())
    assert again.library_path == first.library_path and again.source == first.source


def test_arena_plan_reuses_dead_buffers():
    offsets, size = plan_arena([Interval(1, 1000, 0, 1), Interval(2, 1000, 1, 2), Interval(3, 1000, 2, 3)])
    assert offsets[1] != offsets[2] and offsets[2] != offsets[3]
    assert offsets[1] == offsets[3] and size == 2 * 1024
    offsets, size = plan_arena([Interval(1, 64, 0, 5), Interval(2, 64, 1, 2)])
    assert offsets[1] != offsets[2] and size == 128


def test_emitter_shares_common_subtrees_and_spells_literals():
    x = Var("x", "float")
    shared = call("exp", x)
    emitter = Emitter()
    root = shared * shared + shared
    emitter.share([root])
    assert emitter.lines == ["const float t0 = df_expf(x);"] and emitter.c(root) == "((t0 * t0) + t0)"
    assert literal(lit(float("nan"), "float")) == "NAN" and literal(lit(-float("inf"), "double")) == "(-INFINITY)"
    assert literal(Lit(-5, "int64_t")) == "INT64_C(-5)" and literal(lit(0.1, "float")) == "0.1f"


@pytest.mark.parametrize("case_name", ["test_reduce_sum_keepdims_example", "test_top_k", "test_cumsum_1d_exclusive",
                                       "test_resize_upsample_scales_nearest"])
def test_backend_specializes_parameter_feeds_into_native_code(case_name):
    """Node tests feed axes, K and scales as graph inputs; the backend makes them compile-time constants so
    those operators still run as generated code."""
    from dnnfusion import conformance

    case = next(c for c in conformance.node_cases() if c.name == case_name)
    failure, fallbacks = conformance.run_case_natively(case)
    assert failure is None and not fallbacks


def test_an_unravelled_offset_folds_back_into_itself():
    """linear(unravel(s)) over the same shape is s, and over a shape that splits one axis in two it is a single
    mod: a Reshape between views of one buffer leaves no division in the inner loop."""
    from dnnfusion.kir.expr import Var, linear, unravel

    s = Var("s")
    for shape in [(112, 112), (32, 112, 112), (4, 1, 5, 6)]:
        assert linear(unravel(s, shape), shape) == s
    inner = unravel(s, (7, 6, 5))[1:]                       # (s / 5 % 6, s % 5): the trailing 30 elements
    assert Emitter().c(linear(inner, (6, 5))) == "(s % 30)"


def test_kernels_are_named_after_what_they_fuse_and_model_text_never_reaches_the_names():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="*/ evil"), helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("Relu", ["c"], ["d"]), helper.make_node("Softmax", ["d"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, [4, 8])], ["y"])
    model.graph.initializer.extend([numpy_helper.from_array(np.ones((8, 8), np.float32), "w"),
                                    numpy_helper.from_array(np.ones(8, np.float32), "b")])
    source = dnnfusion.compile(model).source
    assert re.findall(r"static BLOCK void (\w+)", source) == ["fused_matmul_add_relu_0", "softmax_1"]
    assert re.findall(r"^  (\w+)\(arena", source, re.M) == ["fused_matmul_add_relu_0", "softmax_1"]
    assert "evil" not in source
