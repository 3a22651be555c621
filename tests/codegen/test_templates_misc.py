"""Kernel templates of the detection, recurrent and sampling operators (RoiAlign, LSTM/GRU/RNN, GridSample,
AffineGrid) compiled with their neighbours fused, against onnxruntime."""

import numpy as np
import pytest
from onnx import helper, numpy_helper

import dnnfusion
from dnnfusion.kernels import microkernel
from dnnfusion.oracle import compare, run_onnxruntime
from tests.helpers import FLOAT, INT64, make_model

RNG = np.random.default_rng(7)


def floats(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def typed(model):
    """The graph outputs declared float (make_model leaves them undefined)."""
    for output in model.graph.output:
        output.type.tensor_type.elem_type = FLOAT
    return model


def compiled_matches_onnxruntime(model, feeds, blocks):
    """Compile, check every output against onnxruntime (rtol 1e-3, atol 1e-4), no fallback, `blocks` blocks."""
    compiled = dnnfusion.compile(model)
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds), rtol=1e-3, atol=1e-4)
    assert diffs and all(d.ok for d in diffs), diffs
    assert compiled.stats["fallback_ops"] == []
    assert compiled.stats["blocks"] == blocks
    return compiled


# --- RoiAlign ------------------------------------------------------------------------------------------

ROIS = np.array([[0, 0, 20, 18], [3, 2, 9, 7], [-4, -3, 30, 25], [5, 5, 5.5, 6], [1, 10, 22, 12]], np.float32)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("ratio", [0, 2])
@pytest.mark.parametrize("transform", ["half_pixel", "output_half_pixel"])
def test_roi_align_with_fused_relu_and_add(mode, ratio, transform):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("RoiAlign", ["r", "rois", "idx"], ["pooled"], mode=mode, output_height=3,
                              output_width=4, sampling_ratio=ratio, spatial_scale=0.5,
                              coordinate_transformation_mode=transform),
             helper.make_node("Add", ["pooled", "b"], ["y"])]
    model = typed(make_model(nodes, [("x", FLOAT, [2, 3, 10, 12]), ("rois", FLOAT, [5, 4]), ("idx", INT64, [5]),
                                     ("b", FLOAT, [4])], ["y"], opset=16))
    feeds = {"x": floats(2, 3, 10, 12), "rois": ROIS, "idx": np.array([0, 1, 1, 0, 1]), "b": floats(4)}
    compiled = compiled_matches_onnxruntime(model, feeds, blocks=1)
    assert "ry_count" in compiled.source                       # sample counts are computed per roi at run time


@pytest.mark.parametrize("ratio, channels, transform", [(1, 40, "half_pixel"), (2, 17, "output_half_pixel"),
                                                         (3, 64, "half_pixel")])
def test_roi_align_averages_take_every_channel_in_the_lanes(ratio, channels, transform):
    """Averages over a fixed sampling ratio read a channels-last copy of the (Relu'd) input, each bin's taps
    summed for all channels at once: rois partly or wholly outside the map, a tiny one, several images."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("RoiAlign", ["r", "rois", "idx"], ["pooled"], output_height=5, output_width=3,
                              sampling_ratio=ratio, spatial_scale=0.5, coordinate_transformation_mode=transform),
             helper.make_node("Sigmoid", ["pooled"], ["y"])]
    rois = np.concatenate([ROIS, [[40, 40, 60, 70], [-30, -30, -5, -2]]]).astype(np.float32)
    model = typed(make_model(nodes, [("x", FLOAT, [2, channels, 10, 12]), ("rois", FLOAT, [7, 4]),
                                     ("idx", INT64, [7])], ["y"], opset=16))
    feeds = {"x": floats(2, channels, 10, 12), "rois": rois, "idx": np.array([0, 1, 1, 0, 1, 0, 1])}
    compiled = compiled_matches_onnxruntime(model, feeds, blocks=1)
    assert "channels-last" in compiled.source
    other = make_model([helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], mode="max", sampling_ratio=ratio)],
                       [("x", FLOAT, [2, channels, 10, 12]), ("rois", FLOAT, [7, 4]), ("idx", INT64, [7])], ["y"],
                       opset=16)
    assert "channels-last" not in compiled_matches_onnxruntime(typed(other), feeds, blocks=1).source


# --- recurrent layers ----------------------------------------------------------------------------------

SEQ, BATCH, INPUT, HIDDEN = 5, 3, 4, 6


def recurrent_model(op, direction, gates, outputs, **attrs):
    """Relu -> op (initial states as graph inputs, constant weights and bias) -> Y and the final states."""
    dirs = 2 if direction == "bidirectional" else 1
    weights = {"W": floats(dirs, gates * HIDDEN, INPUT, scale=0.5),
               "R": floats(dirs, gates * HIDDEN, HIDDEN, scale=0.5), "B": floats(dirs, 2 * gates * HIDDEN)}
    states = ["h0", "c0"][:len(outputs) - 1]
    nodes = [helper.make_node("Relu", ["x"], ["xr"]),
             helper.make_node(op, ["xr", "W", "R", "B", "", *states], outputs, hidden_size=HIDDEN,
                              direction=direction, **attrs)]
    inputs = [("x", FLOAT, [SEQ, BATCH, INPUT])] + [(s, FLOAT, [dirs, BATCH, HIDDEN]) for s in states]
    feeds = {"x": floats(SEQ, BATCH, INPUT), **{s: floats(dirs, BATCH, HIDDEN) for s in states}}
    return typed(make_model(nodes, inputs, outputs, weights, opset=14)), feeds


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lstm_with_fused_relu(direction):
    model, feeds = recurrent_model("LSTM", direction, 4, ["y", "y_h", "y_c"])
    compiled_matches_onnxruntime(model, feeds, blocks=1)


def test_lstm_peepholes_clip_and_activations():
    model, feeds = recurrent_model("LSTM", "forward", 4, ["y", "y_h", "y_c"], clip=0.8,
                                   activations=["HardSigmoid", "Softsign", "Tanh"], activation_alpha=[0.3],
                                   activation_beta=[0.4])
    model.graph.node[1].input.append("P")
    model.graph.initializer.append(numpy_helper.from_array(floats(1, 3 * HIDDEN), "P"))
    compiled_matches_onnxruntime(model, feeds, blocks=1)


@pytest.mark.parametrize("op, gates, attrs", [("GRU", 3, {}), ("GRU", 3, {"linear_before_reset": 1}),
                                              ("RNN", 1, {"activations": ["Relu", "Tanh"]})])
def test_gru_and_rnn_bidirectional(op, gates, attrs):
    model, feeds = recurrent_model(op, "bidirectional", gates, ["y", "y_h"], **attrs)
    compiled_matches_onnxruntime(model, feeds, blocks=1)


@pytest.mark.parametrize("weights_given", [False, True])
@pytest.mark.parametrize("producer", [None, "Sigmoid"])
def test_lstm_input_projection_is_a_matrix_product(weights_given, producer):
    """X W^T for the whole sequence runs on the GEMM template (the microkernels where the CPU has them), with
    W a weight packed at compile time or a graph input read in place, X read in place or through a fused
    producer."""
    seq, batch, size, hidden = 9, 2, 40, 12
    shape = [seq, batch, size]
    w, r = floats(2, 4 * hidden, size, scale=0.3), floats(2, 4 * hidden, hidden, scale=0.3)
    nodes = [helper.make_node(producer, ["x"], ["xp"])] if producer else []
    nodes += [helper.make_node("LSTM", ["xp" if producer else "x", "W", "R", "B"], ["y", "y_h"],
                               hidden_size=hidden, direction="bidirectional")]
    inputs = [("x", FLOAT, shape)] + ([("W", FLOAT, list(w.shape))] if weights_given else [])
    consts = {"R": r, "B": floats(2, 8 * hidden)} | ({} if weights_given else {"W": w})
    model = typed(make_model(nodes, inputs, ["y", "y_h"], consts, opset=14))
    feeds = {"x": floats(*shape)} | ({"W": w} if weights_given else {})
    compiled = compiled_matches_onnxruntime(model, feeds, blocks=1)
    if microkernel.target_isa() is not None:
        assert "df_ukr_" in compiled.source


# --- GridSample / AffineGrid ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_grid_sample_with_fused_relu(mode, padding):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("GridSample", ["r", "grid"], ["y"], mode=mode, padding_mode=padding, align_corners=0)]
    model = typed(make_model(nodes, [("x", FLOAT, [2, 3, 5, 6]), ("grid", FLOAT, [2, 4, 3, 2])], ["y"], opset=20))
    feeds = {"x": floats(2, 3, 5, 6), "grid": RNG.uniform(-1.6, 1.6, (2, 4, 3, 2)).astype(np.float32)}
    compiled_matches_onnxruntime(model, feeds, blocks=1)


@pytest.mark.parametrize("size", [[2, 1, 3, 4], [2, 1, 3, 4, 5]])
def test_affine_grid_with_constant_size(size):
    rank = len(size) - 2
    nodes = [helper.make_node("AffineGrid", ["theta", "size"], ["g"], align_corners=1),
             helper.make_node("Sigmoid", ["g"], ["y"])]
    model = typed(make_model(nodes, [("theta", FLOAT, [2, rank, rank + 1])], ["y"],
                             {"size": np.array(size, np.int64)}, opset=20))
    compiled_matches_onnxruntime(model, {"theta": floats(2, rank, rank + 1)}, blocks=1)
