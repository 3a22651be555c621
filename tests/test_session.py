"""dnnfusion.InferenceSession as a drop-in for onnxruntime's: the same constructor order, SessionOptions and
providers accepted, run_options ignored, and dynamic dimensions compiled per shape signature at run time."""

from __future__ import annotations

import types
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper

import dnnfusion
from dnnfusion import session as session_module
from dnnfusion.errors import InputShapeError, MissingInputError
from dnnfusion.machine import available_cores
from dnnfusion.session import GraphOptimizationLevel, session_compile_options
from tests.helpers import FLOAT, make_model

RNG_SEED = 0


def dense_relu(batch: int | str = "batch") -> onnx.ModelProto:
    """y = Relu(x @ W + b) with x of shape (batch, 4); the output declared (batch, 3) as onnxruntime reports it."""
    rng = np.random.default_rng(RNG_SEED)
    inits = {"W": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
             helper.make_node("Relu", ["z"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, [batch, 4])], ["y"], inits)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("y", FLOAT, [batch, 3]))
    model.producer_name, model.model_version, model.doc_string = "tests", 7, "a dense layer"
    onnx.helper.set_model_props(model, {"author": "dnnfusion"})
    return model


def expected(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return np.maximum(x @ weights["W"] + weights["b"], 0)


def batch_of(rows: int) -> np.ndarray:
    return np.random.default_rng(RNG_SEED + rows).standard_normal((rows, 4)).astype(np.float32)


def user_code(runtime, model_path: str, model_bytes: bytes) -> dict:
    """Code written for onnxruntime; only the module it is given changes."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    by_options = runtime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    by_path = runtime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = by_path.get_modelmeta()
    return {
        "inputs": [(a.name, a.shape, a.type) for a in by_options.get_inputs()],
        "outputs": [(a.name, a.shape, a.type) for a in by_options.get_outputs()],
        "providers": by_path.get_providers(),
        "threads": by_options.get_session_options().intra_op_num_threads,
        "meta": (meta.producer_name, meta.graph_name, meta.description, meta.version, meta.custom_metadata_map),
        "y2": by_options.run(None, {"x": batch_of(2)}, ort.RunOptions())[0],
        "y5": by_options.run(["y"], {"x": batch_of(5)})[0],
        "y3": by_path.run(None, {"x": batch_of(3)})[0],
    }


def test_the_same_user_code_runs_on_onnxruntime_and_dnnfusion(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = dense_relu()
    onnx.save(model, tmp_path / "dense.onnx")
    theirs = user_code(ort, str(tmp_path / "dense.onnx"), model.SerializeToString())
    ours = user_code(dnnfusion, str(tmp_path / "dense.onnx"), model.SerializeToString())
    for key in ("y2", "y5", "y3"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5)
    np.testing.assert_allclose(ours["y5"], expected(model, batch_of(5)), rtol=1e-5)
    for key in ("inputs", "outputs", "providers", "threads", "meta"):
        assert ours[key] == theirs[key], key
    assert ours["inputs"] == [("x", ["batch", 4], "tensor(float)")]


def test_session_options_reach_the_compiled_model():
    ort_like = types.SimpleNamespace(intra_op_num_threads=3, graph_optimization_level="ORT_DISABLE_ALL")
    session = dnnfusion.InferenceSession(dense_relu(batch=2), ort_like)
    assert session.compiled is not None                          # static shapes: compiled at construction
    assert session.compiled.threads == 3 and session.compiled.stats["threads"] == 3
    assert session.compiled.plan.level == "O0"
    assert session.get_session_options() is ort_like
    (y,) = session.run(None, {"x": batch_of(2)})
    np.testing.assert_allclose(y, expected(dense_relu(batch=2), batch_of(2)), rtol=1e-5)
    default_threads = dnnfusion.InferenceSession(dense_relu(batch=2), types.SimpleNamespace(
        intra_op_num_threads=0, graph_optimization_level=1))
    assert default_threads.compiled.threads == available_cores() and default_threads.compiled.plan.level == "O1"


@pytest.mark.parametrize("level, ours", [("ORT_DISABLE_ALL", "O0"), (GraphOptimizationLevel.ORT_ENABLE_BASIC, "O1"),
                                         (2, "O2"), ("ORT_ENABLE_LAYOUT", "O3"), (99, "O3")])
def test_optimization_levels_map_by_name_or_value(level, ours):
    chosen = session_compile_options(types.SimpleNamespace(intra_op_num_threads=0, graph_optimization_level=level),
                                     None, {})
    assert chosen.opt_level == ours and chosen.threads is None
    assert session_compile_options(None, None, {"opt_level": ours}).opt_level == ours


def test_fields_win_over_session_options_and_compile_options_are_accepted_in_its_place():
    ort_like = types.SimpleNamespace(intra_op_num_threads=4, graph_optimization_level="ORT_ENABLE_ALL")
    assert session_compile_options(ort_like, None, {"opt_level": "O1"}).opt_level == "O1"
    assert session_compile_options(ort_like, None, {}).threads == 4
    options = dnnfusion.CompileOptions(opt_level="O2", threads=1)
    session = dnnfusion.InferenceSession(dense_relu(), options)
    assert session.options.opt_level == "O2" and session.options.threads == 1
    reported = session.get_session_options()
    assert reported.intra_op_num_threads == 1
    assert reported.graph_optimization_level == GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with pytest.raises(dnnfusion.DnnfusionError, match="give them once"):
        dnnfusion.InferenceSession(dense_relu(), options, options=options)


def test_a_new_shape_signature_compiles_once_and_the_first_is_reused(monkeypatch):
    compiles = []

    def counted(*args, **kwargs):
        compiles.append(dict(args[1]))
        return real(*args, **kwargs)

    real = session_module.compile_model
    monkeypatch.setattr(session_module, "compile_model", counted)
    model = dense_relu()
    session = dnnfusion.InferenceSession(model.SerializeToString())
    assert compiles == [] and session.compiled is None
    assert [(a.name, a.shape) for a in session.get_inputs()] == [("x", ["batch", 4])]
    for rows in (2, 5, 2, 5, 2):
        (y,) = session.run(None, {"x": batch_of(rows)})
        np.testing.assert_allclose(y, expected(model, batch_of(rows)), rtol=1e-5)
    assert compiles == [{"x": (2, 4)}, {"x": (5, 4)}]
    assert list(session.compiled_models) == [((2, 4),), ((5, 4),)]
    assert session.compiled is session.compiled_models[((2, 4),)]
    assert [(a.name, a.shape) for a in session.get_inputs()] == [("x", ["batch", 4])]


def test_feeds_that_do_not_fit_the_declared_shapes_fail_before_compiling(monkeypatch):
    monkeypatch.setattr(session_module, "compile_model", lambda *a, **k: pytest.fail("compiled"))
    session = dnnfusion.InferenceSession(dense_relu())
    with pytest.raises(InputShapeError, match=r"input 'x' has shape \(2, 5\) but the model declares \(batch, 4\)"):
        session.run(None, {"x": np.zeros((2, 5), np.float32)})
    with pytest.raises(MissingInputError, match="input 'x' is missing"):
        session.run(None, {})
    with pytest.raises(MissingInputError, match="unknown input 'w'"):
        session.run(None, {"x": batch_of(2), "w": batch_of(2)})


def test_input_shapes_compile_at_construction_and_fix_the_shapes():
    session = dnnfusion.InferenceSession(dense_relu(), input_shapes={"x": (3, 4)})
    assert session.compiled is not None
    assert [(a.name, a.shape, a.type) for a in session.get_inputs()] == [("x", [3, 4], "tensor(float)")]
    assert [(a.name, a.shape) for a in session.get_outputs()] == [("y", [3, 3])]
    with pytest.raises(InputShapeError, match="compiled for"):
        session.run(None, {"x": batch_of(2)})
    with pytest.raises(dnnfusion.InputError, match="unknown output 'z'"):
        session.run(["z"], {"x": batch_of(3)})


@pytest.mark.parametrize("given, says", [
    ({"x": (1, 4)}, r"not dict; pass shapes as input_shapes=\{\.\.\.\}"),
    ("O3", "sess_options, an onnxruntime.SessionOptions or a dnnfusion.CompileOptions, not str")])
def test_a_bad_sess_options_says_what_is_accepted(given, says):
    with pytest.raises(dnnfusion.DnnfusionError, match=says):
        dnnfusion.InferenceSession(dense_relu(), given)


def test_an_unknown_optimization_level_is_named():
    with pytest.raises(dnnfusion.DnnfusionError, match="graph_optimization_level 'fast' is not one of"):
        dnnfusion.InferenceSession(dense_relu(), types.SimpleNamespace(intra_op_num_threads=0,
                                                                      graph_optimization_level="fast"))


def test_other_providers_are_ignored_with_one_warning():
    with pytest.warns(UserWarning, match=r"own generated CPU code; providers \['CUDAExecutionProvider'\]") as caught:
        providers = [("CUDAExecutionProvider", {}), "CPUExecutionProvider"]
        session = dnnfusion.InferenceSession(dense_relu(), None, providers, [{}, {}])
    assert len(caught) == 1
    assert session.get_providers() == ["CPUExecutionProvider"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dnnfusion.InferenceSession(dense_relu(), providers=["CPUExecutionProvider"])


def test_model_metadata_and_outputs_without_a_compile():
    model = dense_relu()
    model.graph.doc_string = "the graph"
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("y", onnx.TensorProto.UNDEFINED, None))
    session = dnnfusion.InferenceSession(model)
    meta = session.get_modelmeta()
    assert (meta.producer_name, meta.graph_name, meta.description, meta.graph_description, meta.version) == \
        ("tests", "test", "a dense layer", "the graph", 7)
    assert meta.custom_metadata_map == {"author": "dnnfusion"}
    assert [(a.name, a.shape, a.type) for a in session.get_outputs()] == [("y", ["batch", 3], "tensor(float)")]
    assert session.get_overridable_initializers() == []
    reported = session.get_session_options()
    assert reported.graph_optimization_level == GraphOptimizationLevel.ORT_ENABLE_ALL
    assert reported.intra_op_num_threads == (session.options.threads or available_cores())


def test_a_sequence_input_is_an_error_at_construction():
    model = dense_relu()
    model.graph.input[0].CopyFrom(helper.make_tensor_sequence_value_info("x", FLOAT, ["batch", 4]))
    with pytest.raises(dnnfusion.InvalidModelError, match="'x' is not a tensor"):
        dnnfusion.InferenceSession(model)


def test_unnamed_and_unknown_dimensions_show_as_onnxruntime_shows_them():
    ort = pytest.importorskip("onnxruntime")
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["z"], ["w"])]
    model = make_model(nodes, [("x", FLOAT, [None, 4]), ("z", FLOAT, None)], ["y", "w"], output_type=FLOAT)
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ours = dnnfusion.InferenceSession(model.SerializeToString())
    for method in ("get_inputs", "get_outputs"):
        assert [(a.name, a.shape, a.type) for a in getattr(ours, method)()] == \
            [(a.name, a.shape, a.type) for a in getattr(theirs, method)()]
    rng = np.random.default_rng(RNG_SEED)
    feeds = {"x": rng.standard_normal((2, 4)).astype(np.float32), "z": rng.standard_normal(3).astype(np.float32)}
    for mine, reference in zip(ours.run(None, feeds), theirs.run(None, feeds)):
        np.testing.assert_allclose(mine, reference, rtol=1e-5)
