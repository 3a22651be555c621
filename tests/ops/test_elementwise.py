"""Elementwise operators: opset-dependent inputs (Clip, Dropout), Cast's conversions and its rules for float8,
float8e8m0 and strings, BitShift at the edges, Where's shape rule, and the errors for malformed nodes."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from dnnfusion import ops
from dnnfusion.errors import InvalidModelError, ShapeError, UnsupportedOperatorError
from dnnfusion.pipeline import load
from dnnfusion.runtime import run_reference

RNG = np.random.default_rng(0)


def model(op_type: str, inputs: dict[str, tuple[int, tuple]], out_type: int, opset: int = 18,
          initializers: dict[str, np.ndarray] | None = None, outputs: tuple[str, ...] = ("y",), **attrs):
    """A one-node model: `inputs` maps graph-input names to (element type, shape); initializers are
    further inputs of the node, after the graph inputs."""
    initializers = initializers or {}
    node = helper.make_node(op_type, [*inputs, *initializers], list(outputs), **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(name, t, shape) for name, (t, shape) in inputs.items()],
        [helper.make_tensor_value_info(name, out_type if i == 0 else TensorProto.UNDEFINED, None)
         for i, name in enumerate(outputs)],
        [helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape, a.ravel().tolist())
         for name, a in initializers.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def run(m, **feeds: np.ndarray) -> dict[str, np.ndarray]:
    return run_reference(load(m), feeds)


def onnxruntime(m, **feeds: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


# --- Clip: bounds as attributes before opset 11, optional inputs since -------------------------------------

def test_clip_bounds_are_attributes_before_opset_11():
    m = model("Clip", {"x": (TensorProto.FLOAT, (4,))}, TensorProto.FLOAT, opset=7, min=-1.0, max=2.0)
    x = np.array([-3, 0.5, 1.5, 9], np.float32)
    np.testing.assert_array_equal(run(m, x=x)["y"], [-1, 0.5, 1.5, 2])


def test_clip_bounds_are_optional_inputs_since_opset_11():
    x = np.array([-3, 5, 120], np.int8)
    only_max = helper.make_node("Clip", ["x", "", "hi"], ["y"])
    graph = helper.make_graph([only_max], "g", [helper.make_tensor_value_info("x", TensorProto.INT8, (3,))],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, None)],
                              [helper.make_tensor("hi", TensorProto.INT8, (), [10])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    np.testing.assert_array_equal(run(m, x=x)["y"], [-3, 5, 10])


def test_clip_min_above_max_gives_max():
    bounds = {"lo": np.array(2, np.float32), "hi": np.array(1, np.float32)}
    m = model("Clip", {"x": (TensorProto.FLOAT, (3,))}, TensorProto.FLOAT, initializers=bounds)
    np.testing.assert_array_equal(run(m, x=np.array([0, 1.5, 3], np.float32))["y"], [1, 1, 1])


# --- Dropout: inference only ---------------------------------------------------------------------------------

def test_dropout_is_identity_with_an_all_true_mask():
    m = model("Dropout", {"x": (TensorProto.FLOAT, (2, 3))}, TensorProto.FLOAT, opset=13, outputs=("y", "mask"),
              initializers={"ratio": np.array(0.3, np.float32)})
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    out = run(m, x=x)
    np.testing.assert_array_equal(out["y"], x)
    assert out["mask"].dtype == np.bool_ and out["mask"].all()


def test_dropout_mask_has_the_input_type_before_opset_10():
    m = model("Dropout", {"x": (TensorProto.FLOAT, (2,))}, TensorProto.FLOAT, opset=7, outputs=("y", "mask"))
    graph = load(m)
    assert graph.values["mask"].dtype == np.float32


def test_dropout_in_training_mode_is_rejected_at_compile_time():
    m = model("Dropout", {"x": (TensorProto.FLOAT, (2,))}, TensorProto.FLOAT, opset=13,
              initializers={"ratio": np.array(0.5, np.float32), "training": np.array(True)})
    with pytest.raises(UnsupportedOperatorError, match="training mode with ratio 0.5"):
        load(m)


def test_dropout_training_flag_from_a_graph_input_is_checked_at_run_time():
    m = model("Dropout", {"x": (TensorProto.FLOAT, (2,)), "ratio": (TensorProto.FLOAT, ()),
                          "training": (TensorProto.BOOL, ())}, TensorProto.FLOAT, opset=13)
    x = np.array([1, 2], np.float32)
    np.testing.assert_array_equal(run(m, x=x, ratio=np.array(0, np.float32), training=np.array(True))["y"], x)
    with pytest.raises(UnsupportedOperatorError, match="random dropout"):
        run(m, x=x, ratio=np.array(0.5, np.float32), training=np.array(True))


# --- Cast ----------------------------------------------------------------------------------------------------

SPECIAL = np.array([0, -0.0, 1.7, -2.5, 500, 1e6, np.inf, -np.inf, np.nan], np.float32)


@pytest.mark.parametrize("saturate", [0, 1])
@pytest.mark.parametrize("to", [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
                                TensorProto.FLOAT8E5M2FNUZ])
def test_cast_to_float8_and_back_matches_onnxruntime(to, saturate):
    nodes = [helper.make_node("Cast", ["x"], ["f8"], to=to, saturate=saturate),
             helper.make_node("Cast", ["f8"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SPECIAL.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    np.testing.assert_array_equal(run(m, x=SPECIAL)["y"], onnxruntime(m, x=SPECIAL)[0])


def test_cast_saturates_float8_to_its_largest_finite_value():
    m = model("Cast", {"x": (TensorProto.FLOAT, (3,))}, TensorProto.FLOAT8E4M3FN, to=TensorProto.FLOAT8E4M3FN)
    y = run(m, x=np.array([1e6, -np.inf, np.nan], np.float32))["y"].astype(np.float32)
    assert y[0] == 448 and y[1] == -448 and np.isnan(y[2])


@pytest.mark.parametrize("round_mode, expected", [("up", [1, 2, 2, 4, 2 ** 127]), ("down", [1, 1, 1, 2, 2 ** 127]),
                                                   ("nearest", [1, 1, 2, 4, 2 ** 127])])
def test_cast_to_float8e8m0_rounds_per_round_mode(round_mode, expected):
    x = np.array([1, 1.25, 1.5, 3, np.inf], np.float32)
    m = model("Cast", {"x": (TensorProto.FLOAT, x.shape)}, TensorProto.FLOAT8E8M0, opset=24,
              to=TensorProto.FLOAT8E8M0, round_mode=round_mode)
    np.testing.assert_array_equal(run(m, x=x)["y"].astype(np.float32), np.array(expected, np.float32))


def test_cast_to_int4_wraps_and_between_sub_byte_types():
    x = np.array([-9, 7, 8, 15], np.float32)
    m = model("Cast", {"x": (TensorProto.FLOAT, x.shape)}, TensorProto.INT4, opset=21, to=TensorProto.INT4)
    y = run(m, x=x)["y"]
    assert y.dtype == ml_dtypes.int4 and y.astype(np.int8).tolist() == [7, 7, -8, -1]
    m = model("Cast", {"x": (TensorProto.INT4, x.shape)}, TensorProto.UINT4, opset=21, to=TensorProto.UINT4)
    assert run(m, x=y)["y"].astype(np.uint8).tolist() == [7, 7, 8, 15]


def test_cast_to_sub_byte_integers_rounds_and_wraps_like_onnxruntime():
    """onnxruntime rounds to nearest then wraps; read back through a Cast to float, as it cannot return int4."""
    x = np.array([-9, -3, 2.5, 3.5, 2.7, -2.7, 15, 16], np.float32)
    for to in (TensorProto.INT4, TensorProto.UINT4, TensorProto.INT2, TensorProto.UINT2):
        nodes = [helper.make_node("Cast", ["x"], ["q"], to=to), helper.make_node("Cast", ["q"], ["y"], to=TensorProto.FLOAT)]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
        np.testing.assert_array_equal(run(m, x=x)["y"], onnxruntime(m, x=x)[0])


def test_cast_numbers_to_strings_and_back_matches_onnxruntime():
    x = np.array([0.1, -0.0, 3, 1e20, 1 / 3, np.inf, -np.inf, np.nan], np.float32)
    to_text = model("Cast", {"x": (TensorProto.FLOAT, x.shape)}, TensorProto.STRING, to=TensorProto.STRING)
    text = run(to_text, x=x)["y"]
    assert text.dtype == object and text.tolist() == onnxruntime(to_text, x=x)[0].tolist()
    back = model("Cast", {"x": (TensorProto.STRING, x.shape)}, TensorProto.FLOAT, to=TensorProto.FLOAT)
    np.testing.assert_array_equal(run(back, x=text)["y"], onnxruntime(back, x=text)[0])


def test_cast_strings_to_integers_keeps_int64_precision():
    x = np.array(["9007199254740993", "-7", " 42 "], object)
    m = model("Cast", {"x": (TensorProto.STRING, x.shape)}, TensorProto.INT64, to=TensorProto.INT64)
    assert run(m, x=x)["y"].tolist() == [9007199254740993, -7, 42]


def test_cast_of_a_non_number_string_names_the_node():
    m = model("Cast", {"x": (TensorProto.STRING, (1,))}, TensorProto.FLOAT, to=TensorProto.FLOAT)
    with pytest.raises(InvalidModelError, match="Cast node .*cannot convert a string"):
        run(m, x=np.array(["hello"], object))


def test_cast_rejects_an_unknown_round_mode():
    m = model("Cast", {"x": (TensorProto.FLOAT, (1,))}, TensorProto.FLOAT8E8M0, opset=24,
              to=TensorProto.FLOAT8E8M0, round_mode="sideways")
    with pytest.raises(InvalidModelError, match="round_mode"):
        load(m)


def test_castlike_takes_the_type_of_its_second_input():
    m = model("CastLike", {"x": (TensorProto.FLOAT, (2,)), "like": (TensorProto.FLOAT16, (1,))},
              TensorProto.FLOAT16)
    y = run(m, x=np.array([1.5, 70000], np.float32), like=np.zeros(1, np.float16))["y"]
    assert y.dtype == np.float16 and y.tolist() == [1.5, math.inf]


# --- logic ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_bitshift_by_the_width_or_more_gives_zero(direction):
    x = np.array([200, 200, 5, 5, 3], np.uint8)
    s = np.array([8, 200, 9, 0, 1], np.uint8)
    m = model("BitShift", {"x": (TensorProto.UINT8, (5,)), "s": (TensorProto.UINT8, (5,))}, TensorProto.UINT8,
              direction=direction)
    expected = [0, 0, 0, 5, 6] if direction == "LEFT" else [0, 0, 0, 5, 1]
    assert run(m, x=x, s=s)["y"].tolist() == expected


def test_bitshift_of_signed_integers_is_refused_as_the_schema_says():
    m = model("BitShift", {"x": (TensorProto.INT8, (2,)), "s": (TensorProto.INT8, (2,))}, TensorProto.INT8,
              direction="LEFT")
    with pytest.raises(InvalidModelError, match="BitShift node .*is int8.* it takes uint16"):
        load(m)


def test_where_broadcasts_all_three_inputs():
    m = model("Where", {"c": (TensorProto.BOOL, (3, 1)), "x": (TensorProto.FLOAT, (1, 4)),
                        "y_": (TensorProto.FLOAT, (4,))}, TensorProto.FLOAT)
    graph = load(m)
    assert graph.values["y"].shape == (3, 4)
    c = np.array([[True], [False], [True]])
    x, y = np.ones((1, 4), np.float32), np.zeros(4, np.float32)
    np.testing.assert_array_equal(run_reference(graph, {"c": c, "x": x, "y_": y})["y"], np.where(c, x, y))


def test_where_rejects_mismatched_branch_types():
    m = model("Where", {"c": (TensorProto.BOOL, (2,)), "x": (TensorProto.FLOAT, (2,)),
                        "y_": (TensorProto.DOUBLE, (2,))}, TensorProto.FLOAT)
    with pytest.raises(InvalidModelError, match="same type"):
        load(m)


def test_comparison_shapes_must_broadcast():
    m = model("Less", {"a": (TensorProto.FLOAT, (2, 3)), "b": (TensorProto.FLOAT, (4,))}, TensorProto.BOOL)
    with pytest.raises(ShapeError, match="do not broadcast"):
        load(m)


def test_logical_algebra():
    assert ops.get("And").algebra.distributes_over == {"Or", "Xor"}
    assert ops.get("Xor").algebra.associative and ops.get("Equal").algebra.commutative
    assert not ops.get("Equal").algebra.associative and not ops.get("Less").algebra.commutative


# --- math and activations ------------------------------------------------------------------------------------

def test_mod_with_fmod_0_takes_the_sign_of_the_divisor_like_onnxruntime():
    a = np.array([-4.5, 7.25, 5, 4.5, -0.0, 3], np.float32)
    b = np.array([2, -3.5, 8, -2, 2, np.inf], np.float32)
    m = model("Mod", {"a": (TensorProto.FLOAT, (6,)), "b": (TensorProto.FLOAT, (6,))}, TensorProto.FLOAT)
    np.testing.assert_array_equal(run(m, a=a, b=b)["y"], [1.5, -3.25, 5, -1.5, 0, 3])


def test_erf_and_gelu_are_exact_in_double():
    x = np.linspace(-6, 6, 101)
    m = model("Erf", {"x": (TensorProto.DOUBLE, x.shape)}, TensorProto.DOUBLE)
    np.testing.assert_array_equal(run(m, x=x)["y"], [math.erf(v) for v in x])
    m = model("Gelu", {"x": (TensorProto.DOUBLE, x.shape)}, TensorProto.DOUBLE, opset=20)
    np.testing.assert_allclose(run(m, x=x)["y"], [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x], rtol=1e-15)


def test_gelu_rejects_an_unknown_approximation():
    m = model("Gelu", {"x": (TensorProto.FLOAT, (2,))}, TensorProto.FLOAT, opset=20, approximate="cubic")
    with pytest.raises(InvalidModelError, match="approximate"):
        load(m)


@pytest.mark.parametrize("op_type", ["Sigmoid", "Softplus", "Mish", "Swish"])
def test_activations_do_not_overflow(op_type):
    x = np.array([-1000, -30, 0, 30, 1000], np.float32)
    m = model(op_type, {"x": (TensorProto.FLOAT, x.shape)}, TensorProto.FLOAT, opset=24)
    with np.errstate(all="raise"):
        np.testing.assert_allclose(run(m, x=x)["y"], onnxruntime(m, x=x)[0], rtol=1e-6, atol=1e-7)


def test_half_precision_is_evaluated_in_float32():
    x = RNG.standard_normal(64).astype(np.float16)
    m = model("Mish", {"x": (TensorProto.FLOAT16, x.shape)}, TensorProto.FLOAT16, opset=22)
    exact = (x.astype(np.float64) * np.tanh(np.log1p(np.exp(x.astype(np.float64))))).astype(np.float16)
    y = run(m, x=x)["y"]
    assert y.dtype == np.float16 and np.abs(y.astype(np.float64) - exact).max() <= 2e-3


def test_prelu_slope_must_broadcast_to_the_input():
    m = model("PRelu", {"x": (TensorProto.FLOAT, (3,)), "s": (TensorProto.FLOAT, (2, 3))}, TensorProto.FLOAT)
    with pytest.raises(InvalidModelError, match="does not broadcast to the input"):
        load(m)


def test_isinf_detects_one_sign_only_when_asked():
    x = np.array([np.inf, -np.inf, 1, np.nan], np.float32)
    m = model("IsInf", {"x": (TensorProto.FLOAT, x.shape)}, TensorProto.BOOL, detect_positive=0)
    assert run(m, x=x)["y"].tolist() == [False, True, False, False]
