"""Convolutions as implicit GEMMs on the segmented microkernels (kernels/conv.conv_implicit) and windows on
per-channel planes (kernels/planes.py: depthwise convolutions, max and Lp pools): every geometry the phased
input copy must get right (padding on either side, strides, dilations, groups, 1-D to 3-D, output grids that
end mid-tile), weights packed at compile time or read from a graph input, split depths, fused producers and
epilogues, on each ISA this CPU runs, against onnxruntime (Winograd off: tests/kernels/test_winograd.py has it)."""

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.kernels import conv, gemm, lanes, microkernel, planes
from dnnfusion.kernels.conv import BANDS_NOTE, DISJOINT_NOTE, PANELS_NOTE, PIXEL_ROWS_NOTE, SCALED_WEIGHTS_NOTE
from dnnfusion.oracle import compare, run_onnxruntime
from tests.helpers import FLOAT, make_model
from tests.kernels.conftest import needs_microkernels

rng = np.random.default_rng(13)
pytestmark = needs_microkernels


@pytest.fixture
def segmented(monkeypatch):
    """Implicit-GEMM convolutions read B in place with the segmented microkernels (no column-tile panels)."""
    monkeypatch.setattr(conv, "PANEL_MIN_ROW_TILES", 1 << 30)


def checked(model, feeds, **options):
    """`model` compiled with `options`, its outputs on `feeds` checked against onnxruntime's."""
    compiled = dnnfusion.compile(model, **options)
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    return compiled


def x_model(nodes, x_shape, consts):
    """A float32 model of `nodes` from input x (of `x_shape`) to output y, with `consts`, and random feeds."""
    model = make_model(nodes, [("x", FLOAT, list(x_shape))], ["y"], consts, 13)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    return model, {"x": rng.standard_normal(x_shape).astype(np.float32)}


def conv_model(x_shape, w_shape, weights_given=False, **attrs):
    """Relu -> Conv (bias) -> Sigmoid; W a weight unless `weights_given`."""
    w = rng.standard_normal(w_shape).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w", "b"], ["c"], **attrs),
             helper.make_node("Sigmoid", ["c"], ["y"])]
    inputs = [("x", FLOAT, list(x_shape))] + ([("w", FLOAT, list(w_shape))] if weights_given else [])
    consts = {"b": rng.standard_normal(w_shape[0]).astype(np.float32)} | ({} if weights_given else {"w": w})
    model = make_model(nodes, inputs, ["y"], consts, 13)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)} | ({"w": w} if weights_given else {})
    return model, feeds


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 16, 10, 12), (24, 16, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 8, 11, 9), (16, 8, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 2]}),
    ((1, 3, 23, 21), (13, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),
    ((1, 16, 13, 13), (32, 8, 3, 3), {"group": 2, "pads": [1, 1, 1, 1], "dilations": [2, 2]}),
    ((1, 12, 30), (20, 12, 5), {"dilations": [2], "pads": [3, 1]}),
    ((1, 6, 5, 9, 7), (12, 6, 3, 3, 3), {"pads": [1] * 6}),
    ((1, 4, 6, 8, 8), (9, 4, 3, 1, 1), {"strides": [1, 2, 2]}),
    ((1, 10, 9, 40), (8, 10, 1, 3), {"strides": [3, 1], "pads": [0, 2, 0, 0]}),
    ((1, 8, 6, 6), (16, 8, 1, 1), {"strides": [2, 2]}),
])
@pytest.mark.parametrize("panels", [False, True])
def test_implicit_gemm_geometries(isa, x_shape, w_shape, attrs, panels, monkeypatch):
    """Read in place by the segmented microkernels, or packed per column tile into panels (where two row tiles
    of output channels or more reuse them)."""
    monkeypatch.setattr(conv, "pixel_rows_pay", lambda *args: False)
    if not panels:
        monkeypatch.setattr(conv, "PANEL_MIN_ROW_TILES", 1 << 30)
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert f"df_ukr_{isa.name}_" in compiled.source
    if not panels:
        assert ("_seg(" in compiled.source) == (np.prod(w_shape[2:]) > 1)     # one segment per tap
    else:
        assert (PANELS_NOTE in compiled.source) <= ("_seg(" not in compiled.source)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 32, 60, 60), (64, 32, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),   # a YOLO downsampling
    ((2, 32, 17, 19), (96, 16, 5, 5), {"group": 2, "pads": [2, 1, 2, 3]}),
    ((1, 16, 4, 20, 20), (48, 16, 3, 3, 3), {"pads": [1] * 6, "strides": [1, 2, 2]}),
])
def test_column_tiles_packed_into_panels(isa, x_shape, w_shape, attrs, monkeypatch):
    """Each task copies its column tile's rows (tap by tap from the phased input) into one contiguous panel
    that all its row tiles then read with the plain microkernel; groups, 3-D, strides, uneven pads."""
    monkeypatch.setattr(conv, "pixel_rows_pay", lambda *args: False)
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert PANELS_NOTE in compiled.source and "_seg(" not in compiled.source


def test_implicit_gemm_with_weights_from_a_graph_input(isa):
    model, feeds = conv_model((1, 8, 12, 12), (20, 8, 3, 3), weights_given=True, pads=[1, 1, 1, 1])
    compiled = checked(model, feeds, winograd=False)
    assert "_seg(" in compiled.source or PANELS_NOTE in compiled.source


def test_implicit_gemm_keeps_weights_packed_only():
    """The weight blob holds the (tap, channel)-ordered packing, not a second, unpacked copy."""
    model, feeds = conv_model((1, 32, 14, 14), (64, 32, 3, 3), pads=[1, 1, 1, 1])
    compiled = checked(model, feeds, winograd=False)
    assert compiled.stats["weight_bytes"] < 2 * 64 * 32 * 9 * 4


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 16, 14, 12), (16, 1, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 8, 15, 13), (8, 1, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 24, 14, 14), (24, 1, 5, 5), {"strides": [2, 2], "pads": [2, 2, 2, 2]}),
    ((1, 24, 9, 11), (24, 1, 5, 5), {"pads": [2, 1, 2, 3]}),
    ((1, 6, 11, 9), (12, 1, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 0, 1]}),
    ((1, 12, 30), (12, 1, 7), {"pads": [3, 3]}),
    ((1, 6, 5, 9, 7), (6, 1, 3, 3, 3), {"pads": [1] * 6, "strides": [1, 2, 2]}),
])
def test_depthwise_planes(x_shape, w_shape, attrs, monkeypatch):
    """One input channel per group: the padded, phased plane on the stack and unrolled taps, with the
    producer (Relu) and epilogue (bias, Sigmoid) fused into one block (the lanes kernel kept out)."""
    monkeypatch.setattr(lanes, "lanes_pay", lambda window: False)
    model, feeds = conv_model(x_shape, w_shape, group=x_shape[1], **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert "plane[" in compiled.source
    assert compiled.stats["blocks"] == 1


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 600, 5, 9), (37, 600, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 600, 8, 8), (30, 600, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
])
def test_deep_convolutions_split_their_depth(isa, x_shape, w_shape, attrs, monkeypatch):
    """Depth (channels x taps) too deep for a column tile of B to stay in cache (a 128 KiB L2 here): chunks of
    the depth added into a block of tiles per task (the accumulating microkernels), edges on both axes."""
    monkeypatch.setattr(gemm, "l2_bytes", lambda: 128 << 10)
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert "_acc(" in compiled.source


@pytest.mark.parametrize("op, x_shape, attrs", [
    ("MaxPool", (1, 6, 13, 11), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1]}),
    ("MaxPool", (1, 5, 14, 15), {"kernel_shape": [3, 3], "pads": [0, 1, 1, 0], "strides": [2, 2]}),
    ("MaxPool", (1, 4, 6, 9, 8), {"kernel_shape": [3, 3, 3], "pads": [1] * 6, "strides": [2, 2, 2]}),
    ("MaxPool", (1, 3, 12, 12), {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2], "dilations": [2, 2]}),
    ("LpPool", (1, 4, 10, 10), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "p": 2}),
])
def test_pools_on_planes(op, x_shape, attrs):
    """Max and Lp pools on padded planes (the padding read as the fold's start value), a fused producer
    (Relu) and consumer (Sigmoid) in the block, negative inputs where the padding must not win."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sub", ["r", "one"], ["s"]),
             helper.make_node(op, ["s"], ["p"], **attrs), helper.make_node("Sigmoid", ["p"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, list(x_shape))], ["y"], {"one": np.array(1, np.float32)}, 18)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    compiled = checked(model, feeds, winograd=False)
    assert "plane[" in compiled.source


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 16, 9, 8, 8), (24, 16, 3, 1, 1), {"pads": [1, 0, 0, 1, 0, 0]}),
    ((2, 8, 11, 4, 8), (20, 8, 7, 1, 1), {"pads": [3, 0, 0, 3, 0, 0], "strides": [2, 1, 1]}),
    ((1, 8, 6, 4, 4), (16, 4, 3, 1, 1), {"pads": [2, 0, 0, 0, 0, 0], "dilations": [2, 1, 1], "group": 2}),
    ((1, 8, 2, 4, 4), (16, 8, 5, 1, 1), {"pads": [2, 0, 0, 2, 0, 0]}),
    ((1, 12, 5, 5, 13), (40, 12, 3, 1, 1), {"pads": [1, 0, 0, 1, 0, 0]}),
])
@pytest.mark.parametrize("producer", [False, True])
def test_depth_only_windows_pack_tap_panels_without_copying_the_input(isa, x_shape, w_shape, attrs, producer):
    """k x 1 x 1 (temporal) convolutions: no phased copy of the input; per output depth and column tile, the
    taps that land inside the input are packed into a panel (through a fused Relu), each output depth summing
    only those (none at all for some depths of the fourth case; planes of 16 and 65 pixels end in a partial
    column tile)."""
    nodes = [helper.make_node("Conv", ["r" if producer else "x", "w", "b"], ["c"], **attrs),
             helper.make_node("Sigmoid", ["c"], ["y"])]
    if producer:
        nodes.insert(0, helper.make_node("Relu", ["x"], ["r"]))
    consts = {"w": rng.standard_normal(w_shape).astype(np.float32),
              "b": rng.standard_normal(w_shape[0]).astype(np.float32)}
    model, feeds = x_model(nodes, x_shape, consts)
    compiled = checked(model, feeds, winograd=False)
    assert "span_first" in compiled.source and "panel[" in compiled.source and "plane[" not in compiled.source
    assert compiled.stats["blocks"] == 1


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 48, 7, 7), (64, 48, 1, 1), {}),
    ((2, 32, 5, 5), (96, 16, 1, 1), {"group": 2}),
])
def test_pointwise_convolution_on_few_pixels_takes_them_as_rows(isa, x_shape, w_shape, attrs):
    """7 x 7 and 5 x 5 pixels under-fill a tile's columns: the pixels become the product's rows (the input,
    A(pixel, channel) one plane apart, packed per tile of rows as its fused producer, a Relu, is applied), the
    output channels its columns, each tile stored down the channel planes; a fused epilogue (bias, Sigmoid)."""
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    pixels, filters = int(np.prod(x_shape[2:])), w_shape[0] // attrs.get("group", 1)
    rows, vectors, _ = isa.tile_shape(pixels, filters, gemm.column_step(isa, pixels))
    assert f"_{rows}x{vectors * isa.lanes}_a1x{rows}(" in compiled.source and compiled.stats["blocks"] == 1


@pytest.mark.parametrize("x_shape, attrs", [
    ((1, 8, 9, 37), {"pads": [1, 1, 1, 1]}),
    ((1, 8, 10, 70), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
])
def test_depthwise_rows_end_in_overlapping_vectors(x_shape, attrs):
    """Rows of 35 to 37 outputs: the phased copy (through the producer) and the epilogue's stores run whole
    vectors, the last one overlapping the one before instead of a scalar remainder."""
    channels = x_shape[1]
    model, feeds = conv_model(x_shape, (channels, 1, 3, 3), group=channels, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert "_g0 = " in compiled.source


@pytest.mark.parametrize("x_shape, w_shape, attrs, l2_kib", [
    ((1, 64, 7, 7), (96, 64, 3, 3), {"pads": [1, 1, 1, 1]}, None),
    ((2, 64, 7, 7), (128, 32, 3, 3), {"pads": [1, 1, 1, 1], "group": 2}, None),
    ((1, 64, 13, 14), (96, 64, 3, 3), {"pads": [1, 0, 1, 2], "strides": [2, 2]}, None),
    ((1, 32, 4, 6, 6), (48, 32, 3, 3, 3), {"pads": [1] * 6}, None),
    ((1, 300, 5, 9), (64, 300, 3, 3), {"pads": [1, 1, 1, 1]}, 128),
])
def test_short_output_rows_take_pixels_as_rows(isa, segmented, x_shape, w_shape, attrs, l2_kib, monkeypatch):
    """Output rows too short to fill column tiles over the padded grid: per output row, its pixels as the
    product's rows (each tap's segment shifting A, the weights as B), tiles stored down the channel planes;
    groups, strides, 3-D, and a depth split into chunks (a small L2)."""
    if l2_kib:
        monkeypatch.setattr(gemm, "l2_bytes", lambda: l2_kib << 10)
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert PIXEL_ROWS_NOTE in compiled.source and ("_acc(" in compiled.source) == bool(l2_kib)
    assert ("_sega(" in compiled.source) != bool(l2_kib)      # the split depth's chunks shift A on their own


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 32, 60, 60), (64, 32, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),   # a YOLO downsampling
    ((2, 32, 17, 19), (96, 16, 5, 5), {"group": 2, "pads": [2, 1, 2, 3], "strides": [2, 1]}),
    ((1, 16, 4, 20, 20), (48, 16, 3, 3, 3), {"pads": [1] * 6, "strides": [1, 2, 2]}),
])
def test_strided_convolutions_take_pixels_as_rows_over_channel_interleaved_rows(isa, x_shape, w_shape, attrs):
    """Where panels would be packed, pixel rows cost less: A is read in place from a phased copy whose channels
    are interleaved by rows (a tap's depth steps one phased row, not one channel's whole block, apart), and
    each tile column is stored as one contiguous run of pixels; groups, 3-D, mixed strides, uneven pads."""
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert PIXEL_ROWS_NOTE in compiled.source and PANELS_NOTE not in compiled.source


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 3, 64, 64), (32, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),       # EfficientNet's stem
    ((1, 3, 64, 64), (64, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),       # ResNet's
    ((1, 3, 4, 32, 32), (16, 3, 3, 3, 3), {"pads": [1] * 6}),                        # C3D's
])
def test_three_channel_stems_take_pixels_as_rows(isa, x_shape, w_shape, attrs):
    """A stem's tiles cost less with pixels as rows (its few channels make every tile shallow, and both ways
    finish on whole vectors)."""
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert PIXEL_ROWS_NOTE in compiled.source


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 8, 70, 70), (32, 8, 3, 3), {"pads": [1, 1, 1, 1]}),                           # 70 pixels: 8-row tiles
    ((2, 16, 23, 45), (48, 16, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),       # 23: any height
])
def test_pixel_row_tiles_finish_by_transposed_columns_into_an_epilogue(isa, x_shape, w_shape, attrs, monkeypatch):
    """Pixel-row tiles are transposed by register blocks, then each output channel's run of pixels goes through
    the epilogue (a residual Add of another input, then Tanh) as whole or overlapping vectors."""
    monkeypatch.setattr(conv, "pixel_rows_pay", lambda *args: True)
    w = rng.standard_normal(w_shape).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    out = [x_shape[0], w_shape[0], *((n + 2 - 3) // s + 1 for n, s in zip(x_shape[2:], attrs.get("strides", [1, 1])))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], **attrs), helper.make_node("Add", ["c", "skip"], ["s"]),
             helper.make_node("Tanh", ["s"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, list(x_shape)), ("skip", FLOAT, out)], ["y"], {"w": w}, 13)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    compiled = checked(model, {"x": x, "skip": rng.standard_normal(out).astype(np.float32)}, winograd=False)
    assert PIXEL_ROWS_NOTE in compiled.source and f"df_transpose{isa.lanes}x" in compiled.source
    assert compiled.stats["blocks"] == 1


@pytest.mark.parametrize("x_shape, w_shape, attrs, l2_kib, band", [
    ((1, 32, 46, 36), (48, 32, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 128, 2),        # 23 rows
    ((2, 16, 23, 30), (32, 8, 3, 3), {"group": 2, "pads": [1, 0, 2, 1], "strides": [2, 1]}, 64, 3),
    ((1, 8, 17, 40), (24, 8, 5, 5), {"pads": [2, 2, 2, 2], "dilations": [1, 2]}, 48, 2),           # 17 rows
])
def test_pixel_rows_copy_and_compute_a_band_of_rows_per_task(isa, x_shape, w_shape, attrs, l2_kib, band,
                                                             monkeypatch):
    """Where the whole phased copy outgrows L2 (here a small one), each task copies its band of output rows'
    input rows (the fused Relu applied) into a stack array and runs their tiles: bands that end early, groups,
    images, uneven pads, dilation."""
    monkeypatch.setattr(conv, "pixel_rows_pay", lambda *args: True)
    monkeypatch.setattr(gemm, "l2_bytes", lambda: l2_kib << 10)
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert BANDS_NOTE in compiled.source and compiled.stats["blocks"] == 1
    assert f"% {-(-model_rows(x_shape, w_shape, attrs) // band)} * {band};" in compiled.source


def model_rows(x_shape, w_shape, attrs):
    """Output rows of a 2-D convolution."""
    pads, stride = attrs.get("pads", [0] * 4), attrs.get("strides", [1, 1])[0]
    extent = (w_shape[2] - 1) * attrs.get("dilations", [1, 1])[0] + 1
    return (x_shape[2] + pads[0] + pads[2] - extent) // stride + 1


@pytest.mark.parametrize("x_shape, w_shape, attrs, spans", [
    ((1, 64, 1, 1), (80, 64, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    ((1, 64, 2, 2), (80, 64, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    ((2, 32, 5, 6), (48, 32, 3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, True),
    ((1, 32, 9, 9), (48, 32, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, True),
    ((1, 32, 7, 9), (48, 32, 3, 3), {}, False),
])
def test_pixel_rows_leave_out_kernel_rows_in_the_padding(isa, segmented, x_shape, w_shape, attrs, spans):
    """Each output row sums only the taps whose kernel row reads the input (SSD's heads on 1 x 1 and 2 x 2
    maps, dilated and strided rows); an unpadded convolution has nothing to leave out."""
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert PIXEL_ROWS_NOTE in compiled.source and ("span_first" in compiled.source) == spans


@pytest.mark.parametrize("x_shape", [(1, 24, 7, 7), (2, 16, 14, 14)])
def test_depthwise_on_small_planes_runs_producers_and_epilogue_flat(x_shape, monkeypatch):
    """Planes of 7 x 7 and 14 x 14 on the plane kernel: the fused producer (Relu) runs over each channel's
    plane in one flat pass before the phased copy, and the epilogue (bias, Sigmoid) over whole output rows."""
    monkeypatch.setattr(lanes, "lanes_pay", lambda window: False)
    channels = x_shape[1]
    model, feeds = conv_model(x_shape, (channels, 1, 5, 5), group=channels, pads=[2, 2, 2, 2])
    compiled = checked(model, feeds, winograd=False)
    assert "src[" in compiled.source and "flat[" in compiled.source


def test_plane_rows_fit_the_vector_registers():
    """Output rows a plane kernel shares its loads over: as many as keep loads and weights in AVX-512's 32
    registers (3x3: 4 rows, 5x5: 1), one on AVX2's 16."""
    def offsets(k: int, wq: int) -> list[int]:
        return [a * wq + b for a in range(k) for b in range(k)]
    avx512, avx2 = (microkernel.ISAS[name].registers for name in ("avx512", "avx2"))
    assert planes.plane_rows(offsets(3, 60), 60, avx512) == 4 and planes.plane_rows(offsets(5, 60), 60, avx512) == 1
    assert planes.plane_rows(offsets(3, 60), 60, avx2) == 1


@pytest.mark.parametrize("x_shape, kernel, attrs", [
    ((1, 32, 7, 7), 5, {"pads": [2, 2, 2, 2]}),
    ((2, 20, 14, 13), 3, {"pads": [1, 0, 1, 2], "strides": [2, 2]}),
    ((1, 24, 7, 7), 3, {"pads": [2, 2, 2, 2], "dilations": [2, 2]}),
    ((1, 16, 9, 12), 5, {"pads": [1, 2, 3, 0], "strides": [1, 2]}),
])
def test_depthwise_with_channels_in_the_lanes(isa, x_shape, kernel, attrs):
    """Small planes: a block of channels per task in the vector lanes (the last block partly used when the
    channels do not fill it), any padding, stride and dilation, the producer (Relu) and epilogue (bias,
    Sigmoid) fused; the epilogue runs across the lanes per pixel where every block is whole, else per lane."""
    channels = x_shape[1]
    model, feeds = conv_model(x_shape, (channels, 1, kernel, kernel), group=channels, **attrs)
    compiled = checked(model, feeds, winograd=False)
    assert "lanes_in" in compiled.source and compiled.stats["blocks"] == 1
    assert ("const float* const lane_out = " in compiled.source) == bool(channels % isa.lanes)


@pytest.mark.parametrize("x_shape, kernel, attrs, producer", [
    ((1, 32, 28, 20), 5, {"pads": [2, 2, 2, 2]}, True),           # rows of 20: two groups, the last overlapping
    ((2, 48, 31, 17), 3, {"pads": [1, 0, 1, 2], "strides": [2, 2]}, False),
    ((1, 32, 14, 14), 5, {"pads": [2, 2, 2, 2]}, False),    # rows of 14: a square per group on AVX-512 only
    ((1, 16, 5, 9), 7, {"pads": [3, 3, 3, 3]}, False),      # a plane of 45: flat groups
])
def test_depthwise_lanes_transpose_whole_blocks(isa, x_shape, kernel, attrs, producer):
    """Whole blocks of channels go into the lanes and back by register transposes: straight along each row
    where rows hold a vector (else through a square per group of the flat plane), from the input in place or
    through the fused producer; windows of 5 x 5 and more and strided ones take the lanes kernel at any width,
    and the last pixels of a row accumulate in one step of fewer pixels."""
    channels = x_shape[1]
    model, feeds = conv_model(x_shape, (channels, 1, kernel, kernel), group=channels, **attrs)
    if not producer:
        model.graph.node[1].input[0] = "x"
        del model.graph.node[0]
    compiled = checked(model, feeds, winograd=False)
    source = compiled.source
    assert f"df_transpose{isa.lanes}(" in source and "memset(lanes_in" not in source
    assert ("planes_src" in source) == producer
    assert ("square" in source) == (x_shape[3] < isa.lanes)


@pytest.mark.parametrize("x_shape, w_shape, order", [
    ((1, 16, 7, 7), (96, 16, 3, 3), "b_reused"),         # pixels as rows: one weight B for all 7 output rows
    ((1, 16, 14, 14), (128, 16, 3, 3), "a_streams"),     # channels as rows: weights as A, two column tiles
])
def test_tiles_go_in_the_order_that_reads_large_weights_once(isa, segmented, x_shape, w_shape, order, monkeypatch):
    """Weights beyond three quarters of L2 (64 KiB here) are read once: each column tile of a weight B under
    every output row's tiles in turn, or each row tile of a weight A over every column tile in turn."""
    monkeypatch.setattr(gemm, "l2_bytes", lambda: 64 << 10)
    monkeypatch.setattr(conv, "pixel_rows_pay", lambda *args: order == "b_reused")
    taken, original = [], getattr(gemm.Tiling, order)
    monkeypatch.setattr(gemm.Tiling, order, lambda self: taken.append(original(self)) or taken[-1])
    model, feeds = conv_model(x_shape, w_shape, pads=[1, 1, 1, 1])
    compiled = checked(model, feeds, winograd=False)
    assert True in taken and "_acc(" not in compiled.source


@pytest.mark.parametrize("x_shape, w_shape, attrs, disjoint", [
    ((1, 16, 12, 32), (16, 8, 2, 2), {"strides": [2, 2]}, True),            # U-Net's upsampling, whole tiles
    ((2, 12, 9, 7), (12, 5, 2, 3), {"strides": [2, 3], "group": 2}, True),   # tiles crossing input rows
    ((1, 8, 4, 5, 6), (8, 4, 2, 2, 2), {"strides": [2, 2, 2]}, True),
    ((1, 16, 12, 32), (16, 8, 2, 2), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, False),
    ((1, 16, 12, 32), (16, 8, 2, 2), {"strides": [2, 2], "output_padding": [1, 0]}, False),
    ((1, 16, 12, 12), (16, 8, 3, 3), {"strides": [2, 2]}, False),
])
def test_transposed_convolution_with_disjoint_taps_stores_products_in_place(x_shape, w_shape, attrs, disjoint):
    """Stride equal to the kernel without pads: the product's epilogue (bias, the fused Relu) writes every
    output itself; any overlap or crop keeps the scratch-and-gather path. Both match onnxruntime."""
    w = rng.standard_normal(w_shape).astype(np.float32)
    channels = w_shape[1] * attrs.get("group", 1)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    model, feeds = x_model(nodes, x_shape, {"w": w, "b": rng.standard_normal(channels).astype(np.float32)})
    compiled = checked(model, feeds)
    assert (DISJOINT_NOTE in compiled.source) == disjoint
    assert compiled.stats["blocks"] == 1


@pytest.mark.parametrize("x_shape, w_shape, attrs, moved", [
    ((1, 24, 56, 56), (8, 24, 1, 1), {}, True),                   # EfficientNet's projections after an SE block
    ((2, 24, 56, 56), (16, 12, 1, 1), {"group": 2}, True),         # the scale per image and per group's channel
])
def test_squeeze_excitation_scale_moves_onto_the_weights(x_shape, w_shape, attrs, moved):
    """Mul(x, sigmoid(fc(GAP(x)))) feeding a pointwise Conv: where the input can be read in place and the weights
    are the smaller operand, the per-channel scale multiplies the weights per call instead of every input
    element; the result matches onnxruntime either way."""
    channels = x_shape[1]
    consts = {"w": rng.standard_normal(w_shape).astype(np.float32), "b": rng.standard_normal(w_shape[0]).astype(np.float32),
              "f": rng.standard_normal((channels, channels, 1, 1)).astype(np.float32) * 0.2}
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Conv", ["g", "f"], ["fc"]), helper.make_node("Sigmoid", ["fc"], ["s"]),
             helper.make_node("Mul", ["r", "s"], ["m"]), helper.make_node("Conv", ["m", "w", "b"], ["y"], **attrs)]
    model, feeds = x_model(nodes, x_shape, consts)
    compiled = checked(model, feeds)
    assert (SCALED_WEIGHTS_NOTE in compiled.source) == moved


def test_scale_moves_onto_weights_only_where_they_are_few_and_the_input_is_read_in_place(isa):
    """EfficientNet-B0's projections: at 56 x 56 the weights are a sliver of the input; at 14 x 14 (480 -> 112)
    scaling them per call costs more than scaling the input as it is copied; a deep input whose rows alias in
    the cache is copied anyway."""
    assert conv.scale_on_weights("x", "float", 24, 96, 56 * 56)
    assert conv.scale_on_weights("x", "float", 40, 240, 28 * 28)              # the partial last tile apart
    assert not conv.scale_on_weights("x", "float", 112, 480, 14 * 14)
    assert not conv.scale_on_weights("x", "float", 24, 96, 64 * 64)           # rows 16 KiB apart: aliasing


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 16, 20, 32), (24, 16, 3, 3), {"pads": [1, 1, 1, 1], "strides": [1, 2]}),     # 16 outputs per row
    ((1, 3, 64, 64), (32, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),       # a stem: 32 per row
])
def test_output_rows_of_whole_vectors_get_grid_rows_of_whole_vectors(isa, x_shape, w_shape, attrs):
    """Output rows a whole number of vectors long: the phased grid's rows are padded to whole vectors too, so
    the epilogue (bias, Sigmoid) stores every run of columns without a scalar remainder; results unchanged."""
    model, feeds = conv_model(x_shape, w_shape, **attrs)
    checked(model, feeds, winograd=False)
    window = conv.Window((3, 3), tuple(attrs["strides"]), (1, 1), (1, 1), (1, 1),
                         tuple((s + 2 - 3) // st + 1 for s, st in zip(x_shape[2:], attrs["strides"])))
    assert window.out[-1] % isa.lanes == 0
    assert conv.Phases(window, x_shape[2:], isa.lanes).extent[-1] % isa.lanes == 0
    assert conv.Phases(window, x_shape[2:]).extent[-1] % isa.lanes != 0          # what the padding changed
