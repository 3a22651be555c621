"""Winograd convolutions (kernels/winograd.py, winograd_math.py): the matrices against a direct correlation,
every form (tile sizes 2, 4 and 6; three loops or fused per chunk of tile rows) against a float64 direct
convolution at random shapes and paddings with the error bound asserted, fused producers and epilogues,
the option that turns it off, and which method the estimate picks."""

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from dnnfusion.kernels import winograd
from dnnfusion.kernels.window import Window
from dnnfusion.kernels.winograd import Method
from dnnfusion.kernels.winograd_math import correlate, matrices, transform_filters
from dnnfusion.ops import conv as conv_op
from tests.helpers import FLOAT, make_model
from tests.kernels.conftest import needs_microkernels

BOUND = {2: 5e-6, 4: 3e-5, 6: 1e-4}     # max error / output range (measured up to 2048 channels: docs/WINOGRAD.md)


def direct64(x: np.ndarray, w: np.ndarray, b: np.ndarray, pads: list[int]) -> np.ndarray:
    """A float64 direct correlation of (N, C, H, W) with (M, C, 3, 3), padded [top, left, bottom, right]."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    return np.einsum("nchwij,mcij->nmhw", windows, w.astype(np.float64)) + b.reshape(1, -1, 1, 1)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_matrices_compute_a_correlation(m):
    rng = np.random.default_rng(m)
    at, g, bt = matrices(m)
    assert at.shape == (m, m + 2) and g.shape == (m + 2, 3) and bt.shape == (m + 2, m + 2)
    x, w = rng.standard_normal((2, 3, 11, 9)), rng.standard_normal((4, 3, 3, 3))
    expected = direct64(x, w, np.zeros(4), [0, 0, 0, 0])
    np.testing.assert_allclose(correlate(x, w, m), expected, rtol=1e-10, atol=1e-10)


def test_filters_transform_to_alpha_squared_matrices():
    w = np.random.default_rng(0).standard_normal((5, 7, 3, 3))
    u = transform_filters(w, 4)
    _, g, _ = matrices(4)
    assert u.shape == (36, 5, 7)
    np.testing.assert_allclose(u.reshape(6, 6, 5, 7)[:, :, 2, 3], g @ w[2, 3] @ g.T)


def conv_model(x_shape, filters, pads, seed, producer=False, residual=False):
    """[Relu ->] Conv 3x3 (bias) -> [Add residual ->] Relu, with its weights and feeds."""
    rng = np.random.default_rng(seed)
    channels = x_shape[1]
    w = (rng.standard_normal((filters, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    source = "x"
    nodes = []
    if producer:
        nodes.append(helper.make_node("Sigmoid", ["x"], ["p"]))
        source = "p"
    nodes.append(helper.make_node("Conv", [source, "w", "b"], ["c"], pads=pads, kernel_shape=[3, 3]))
    out_hw = (x_shape[2] + pads[0] + pads[2] - 2, x_shape[3] + pads[1] + pads[3] - 2)
    inputs = [("x", FLOAT, list(x_shape))]
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    last = "c"
    if residual:
        inputs.append(("r", FLOAT, [x_shape[0], filters, *out_hw]))
        feeds["r"] = rng.standard_normal((x_shape[0], filters, *out_hw)).astype(np.float32)
        nodes.append(helper.make_node("Add", ["c", "r"], ["s"]))
        last = "s"
    nodes.append(helper.make_node("Relu", [last], ["y"]))
    model = make_model(nodes, inputs, ["y"], {"w": w, "b": b}, 13)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT

    def expected() -> np.ndarray:
        x = feeds["x"].astype(np.float64)
        y = direct64(1 / (1 + np.exp(-x)) if producer else x, w, b, pads)
        return np.maximum(y + feeds["r"] if residual else y, 0)
    return model, feeds, expected()


FORMS = [Method(2, 1, False), Method(4, 1, False), Method(4, 1, True), Method(4, 2, True), Method(2, 3, True),
         Method(6, 1, False)]


@needs_microkernels
@pytest.mark.parametrize("how", FORMS, ids=str)
@pytest.mark.parametrize("seed", range(3))
def test_every_form_matches_a_float64_convolution(isa, monkeypatch, how, seed):
    rng = np.random.default_rng(100 + seed)
    x_shape = (int(rng.integers(1, 3)), int(rng.integers(16, 40)), int(rng.integers(5, 30)), int(rng.integers(5, 30)))
    pads = [int(p) for p in rng.integers(0, 3, 4)]
    filters = int(rng.integers(16, 48))
    model, feeds, expected = conv_model(x_shape, filters, pads, seed, producer=seed == 1, residual=seed == 2)
    monkeypatch.setattr(conv_op, "winograd_method_of", lambda node, window: how)
    compiled = dnnfusion.compile(model)
    assert compiled.stats["kernel_methods"] == {str(how): 1}
    assert compiled.stats["blocks"] == 1      # producer, epilogue and residual fused into the convolution
    got = compiled.run(feeds)["y"]
    error = np.abs(got - expected).max() / np.ptp(expected)
    assert error < BOUND[how.m], (error, x_shape, pads, filters)


@needs_microkernels
def test_the_option_turns_winograd_off(monkeypatch):
    model, feeds, expected = conv_model((1, 32, 20, 20), 32, [1, 1, 1, 1], 7)
    monkeypatch.setattr(conv_op, "winograd_method_of", lambda node, window: Method(4, 1, False))
    on = dnnfusion.compile(model)
    off = dnnfusion.compile(model, winograd=False)
    assert on.stats["kernel_methods"] == {"Winograd F(4x4, 3x3)": 1} and off.stats["kernel_methods"] == {}
    assert "Winograd" in on.source and "Winograd" not in off.source
    direct = np.abs(off.run(feeds)["y"] - expected).max() / np.ptp(expected)
    assert direct < 1e-6


def node_of(channels: int, filters: int):
    """A stand-in node with the input and weight shapes `method` looks at."""
    class Value:
        def __init__(self, shape):
            self.shape = shape

    class Node:
        inputs = [Value((1, channels)), Value((filters, channels, 3, 3))]

        def attr(self, key, default=None):
            return default
    return Node()


@needs_microkernels
@pytest.mark.parametrize("channels, filters, size, chosen", [
    (256, 256, 56, "Winograd F(4x4, 3x3)"),            # VGG-16
    (512, 512, 7, "Winograd F(2x2, 3x3)"),             # a 7 x 7 tail: 4 x 4 tiles would waste 23 %
    (64, 64, 256, "Winograd F(4x4, 3x3), fused per 1 tile rows"),   # U-Net: tiles of a row stay in cache
    (16, 16, 14, None),                                # too few channels to pay for the transforms
])
def test_the_estimate_picks_a_method(isa, channels, filters, size, chosen):
    if isa.name != "avx512":
        pytest.skip("fitted on AVX-512")
    window = Window((3, 3), (1, 1), (1, 1), (1, 1), (1, 1), (size, size))
    how = winograd.method(node_of(channels, filters), window)
    assert (None if how is None else str(how)) == chosen


def direct3d64(x: np.ndarray, w: np.ndarray, b: np.ndarray, pads: list[int]) -> np.ndarray:
    """A float64 direct correlation of (N, C, T, H, W) with (M, C, 3, 3, 3), pads [t, h, w begins, t, h, w ends]."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), *((pads[i], pads[i + 3]) for i in range(3))))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3, 3), axis=(2, 3, 4))
    return np.einsum("ncthwijk,mcijk->nmthw", windows, w.astype(np.float64)) + b.reshape(1, -1, 1, 1, 1)


@needs_microkernels
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("seed", range(3))
def test_3d_convolutions_sum_their_temporal_taps_in_the_products(isa, monkeypatch, m, seed):
    rng = np.random.default_rng(200 + seed)
    frames = [1, 2, 5][seed]
    x_shape = (int(rng.integers(1, 3)), int(rng.integers(16, 40)), frames, int(rng.integers(5, 20)),
               int(rng.integers(5, 20)))
    pads = [int(rng.integers(0, 2)) if frames > 2 else 1] + [int(p) for p in rng.integers(0, 3, 2)]
    pads += [pads[0] if seed != 2 else 1 - pads[0]] + [int(p) for p in rng.integers(0, 3, 2)]
    filters = int(rng.integers(16, 40))
    w = (rng.standard_normal((filters, x_shape[1], 3, 3, 3)) / np.sqrt(27 * x_shape[1])).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=pads, kernel_shape=[3, 3, 3]),
             helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, list(x_shape))], ["y"], {"w": w, "b": b}, 13)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    how = Method(m, 1, False, temporal=True)
    monkeypatch.setattr(conv_op, "winograd_method_of", lambda node, window: how)
    compiled = dnnfusion.compile(model)
    assert compiled.stats["kernel_methods"] == {str(how): 1} and compiled.stats["blocks"] == 1
    expected = np.maximum(direct3d64(feeds["x"], w, b, pads), 0)
    got = compiled.run(feeds)["y"]
    assert got.shape == expected.shape
    error = np.abs(got - expected).max() / np.ptp(expected)
    assert error < BOUND[m], (error, x_shape, pads, filters)


def per_frame64(x: np.ndarray, w: np.ndarray, b: np.ndarray, pads: list[int], group: int) -> np.ndarray:
    """A float64 1 x 3 x 3 correlation of (N, C, T, H, W), each frame on its own, pads [h, w begins, h, w ends]
    (none between frames), `group` groups."""
    n, c, t, h, width = x.shape
    frames = x.transpose(0, 2, 1, 3, 4).reshape(n * t, c, h, width)
    cg, fg = c // group, w.shape[0] // group
    y = np.concatenate([direct64(frames[:, k * cg:(k + 1) * cg], w[k * fg:(k + 1) * fg, :, 0],
                                 b[k * fg:(k + 1) * fg], pads) for k in range(group)], axis=1)
    return y.reshape(n, t, *y.shape[1:]).transpose(0, 2, 1, 3, 4)


@needs_microkernels
@pytest.mark.parametrize("how", [Method(2, 1, False, per_frame=True), Method(4, 1, False, per_frame=True),
                                 Method(4, 2, True, per_frame=True)])
@pytest.mark.parametrize("seed", range(3))
def test_frame_by_frame_convolutions_run_as_2d_winograd_over_every_frame(isa, monkeypatch, how, seed):
    """A 1 x 3 x 3 convolution (S3D's spatial half) is a 2-D one over each frame: the frames fold into the
    images, read and written at their (image, frame) place, through a fused producer and epilogue; groups,
    batches, uneven pads, three loops or fused per chunk of tile rows."""
    rng = np.random.default_rng(300 + seed)
    group = [1, 2, 1][seed]
    x_shape = (int(rng.integers(1, 3)), 16 * group * int(rng.integers(1, 3)), [1, 3, 5][seed],
               int(rng.integers(5, 20)), int(rng.integers(5, 20)))
    spatial_pads = [int(p) for p in rng.integers(0, 3, 4)]
    pads = [0, *spatial_pads[:2], 0, *spatial_pads[2:]]
    filters = 16 * group * int(rng.integers(1, 3))
    w = (rng.standard_normal((filters, x_shape[1] // group, 1, 3, 3)) / np.sqrt(9 * x_shape[1])).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]),
             helper.make_node("Conv", ["s", "w", "b"], ["c"], pads=pads, kernel_shape=[1, 3, 3], group=group),
             helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, list(x_shape))], ["y"], {"w": w, "b": b}, 13)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    monkeypatch.setattr(conv_op, "winograd_method_of", lambda node, window: how)
    compiled = dnnfusion.compile(model)
    assert compiled.stats["kernel_methods"] == {str(how): 1} and compiled.stats["blocks"] == 1
    assert "1x3x3 per frame" in str(how)
    sigmoid = 1 / (1 + np.exp(-feeds["x"].astype(np.float64)))
    expected = np.maximum(per_frame64(sigmoid, w, b, spatial_pads, group), 0)
    got = compiled.run(feeds)["y"]
    assert got.shape == expected.shape
    error = np.abs(got - expected).max() / np.ptp(expected)
    assert error < BOUND[how.m], (error, x_shape, pads, filters)


def test_3d_winograd_applies_only_within_a_frame_of_padding():
    class Value:
        def __init__(self, shape, const=None):
            self.shape, self.const = shape, const

    class Node:
        inputs = [Value((1, 32, 8, 14, 14)), Value((32, 32, 3, 3, 3), np.zeros(1))]
    if winograd.microkernel.target_isa() is None:
        pytest.skip("no microkernels")
    one = Window((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), (8, 14, 14))
    two = Window((3, 3, 3), (1, 1, 1), (1, 1, 1), (2, 1, 1), (2, 1, 1), (10, 14, 14))
    strided = Window((3, 3, 3), (2, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), (4, 14, 14))
    assert winograd.applies(Node(), one, 1, "float")
    assert not winograd.applies(Node(), two, 1, "float") and not winograd.applies(Node(), strided, 1, "float")
    Node.inputs = [Value((1, 32, 8, 14, 14)), Value((32, 32, 1, 3, 3), np.zeros(1))]
    frame = Window((1, 3, 3), (1, 1, 1), (1, 1, 1), (0, 1, 1), (0, 1, 1), (8, 14, 14))
    between = Window((1, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), (1, 1, 1), (10, 14, 14))
    assert winograd.applies(Node(), frame, 1, "float") and winograd.per_frame(frame)
    assert not winograd.applies(Node(), between, 1, "float")      # padding frames: not each frame on its own


@needs_microkernels
def test_the_plan_lists_each_convolutions_methods_cheapest_first(tmp_path):
    from click.testing import CliRunner

    from dnnfusion.cli import main
    from dnnfusion.fusion import ProfileDB
    from dnnfusion.kir.kernel import KernelOptions
    from dnnfusion.pipeline import plan_model
    from dnnfusion.report.plan_html import render_plan_html

    model, _, _ = conv_model((1, 32, 20, 20), 32, [1, 1, 1, 1], 7)
    plan = plan_model(model, None, "O3", ProfileDB(tmp_path / "db.json"))
    choices = plan.kernel_choices()
    assert list(choices) == [0]
    names = [name for name, _ in choices[0]]
    costs = [cycles for _, cycles in choices[0]]
    assert costs == sorted(costs) and conv_op.DIRECT in names and "Winograd F(2x2, 3x3)" in names
    conv = plan.blocks[0].ops[0].node
    chosen = winograd.method(conv, conv_op.Conv().window(conv, conv.inputs[0].shape, conv.inputs[1].shape))
    assert names[0] == (conv_op.DIRECT if chosen is None else str(chosen))
    assert plan.kernel_choices(KernelOptions(winograd=False)) == {}
    assert f'"method":"{names[0]}"' in render_plan_html(plan, methods={0: names[0]})
    path = tmp_path / "conv.onnx"
    path.write_bytes(model.SerializeToString())
    result = CliRunner().invoke(main, ["plan", str(path), "--why"])
    assert result.exit_code == 0, result.output
    assert "kernel methods chosen by estimate (1 blocks)" in result.output and names[0][:20] in result.output


@needs_microkernels
def test_tuning_times_the_candidates_records_them_and_takes_the_fastest(monkeypatch, tmp_path):
    from dnnfusion import pipeline
    from dnnfusion.fusion import ProfileDB

    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(tmp_path))
    model, feeds, expected = conv_model((1, 32, 24, 24), 32, [1, 1, 1, 1], 11)
    plan = pipeline.plan_model(model)
    db = ProfileDB(threads=1)
    options = pipeline.resolve(None, threads=1)
    (node, found), = plan.choosing_nodes().values()
    chosen = pipeline.tune_methods(plan, options, db)
    timed = db.method_seconds(pipeline.block_key(plan.blocks[0]))
    assert set(timed) == {name for name, _ in found[:pipeline.TUNE_CANDIDATES]}
    assert all(seconds > 0 for seconds in timed.values())
    assert chosen == ((node.name, min(timed, key=timed.get)),)
    assert db.stats()["kernel_method_blocks"] == 1 and db.stats()["kernel_method_timings"] == len(timed)
    # measured times decide, not the estimate: make the estimate's last candidate the fastest on record
    slowest = found[pipeline.TUNE_CANDIDATES - 1][0]
    db.record_method(pipeline.block_key(plan.blocks[0]), slowest, 1e-9)
    for tune in (True, False):           # later compiles take the measured choice without tuning
        compiled = dnnfusion.compile(model, threads=1, tune=tune)
        named = compiled.stats["kernel_methods"]
        assert (named == {slowest: 1}) if slowest != conv_op.DIRECT else (named == {})
        error = np.abs(compiled.run(feeds)["y"] - expected).max() / np.ptp(expected)
        assert error < BOUND[4]
    estimated = {} if found[0][0] == conv_op.DIRECT else {found[0][0]: 1}
    assert dnnfusion.compile(model, threads=2).stats["kernel_methods"] == estimated   # timed at 1 thread


@needs_microkernels
def test_a_candidate_the_template_cannot_generate_is_never_chosen(monkeypatch, tmp_path):
    from dnnfusion import pipeline
    from dnnfusion.fusion import ProfileDB

    monkeypatch.setenv("DNNFUSION_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(conv_op, "conv_winograd", lambda *args: None)     # every Winograd form declines
    model, _, _ = conv_model((1, 32, 24, 24), 32, [1, 1, 1, 1], 12)
    plan = pipeline.plan_model(model)
    db = ProfileDB(threads=1)
    (node, found), = plan.choosing_nodes().values()
    chosen = pipeline.tune_methods(plan, pipeline.resolve(None, threads=1), db)
    timed = db.method_seconds(pipeline.block_key(plan.blocks[0]))
    names = [name for name, _ in found[:pipeline.TUNE_CANDIDATES]]
    assert all((timed[name] == float("inf")) == (name != conv_op.DIRECT) for name in names)
    assert chosen == (((node.name, conv_op.DIRECT),) if conv_op.DIRECT in names else ())


@needs_microkernels
@pytest.mark.parametrize("how", [Method(4, 1, False), Method(2, 1, False), Method(4, 2, True)], ids=str)
@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_convolutions_run_one_product_per_group(isa, monkeypatch, how, groups):
    rng = np.random.default_rng(300 + groups)
    cg, fg = int(rng.integers(16, 24)), int(rng.integers(16, 24))
    x_shape = (2, cg * groups, int(rng.integers(6, 20)), int(rng.integers(6, 20)))
    pads = [int(p) for p in rng.integers(0, 3, 4)]
    w = (rng.standard_normal((fg * groups, cg, 3, 3)) / np.sqrt(9 * cg)).astype(np.float32)
    b = rng.standard_normal(fg * groups).astype(np.float32)
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=pads, kernel_shape=[3, 3], group=groups)]
    model = make_model(nodes, [("x", FLOAT, list(x_shape))], ["y"], {"w": w, "b": b}, 13)
    model.graph.output[0].type.tensor_type.elem_type = FLOAT
    monkeypatch.setattr(conv_op, "winograd_method_of", lambda node, window: how)
    compiled = dnnfusion.compile(model)
    assert compiled.stats["kernel_methods"] == {str(how): 1}
    expected = np.concatenate([direct64(feeds["x"][:, k * cg:(k + 1) * cg], w[k * fg:(k + 1) * fg],
                                        b[k * fg:(k + 1) * fg], pads) for k in range(groups)], axis=1)
    error = np.abs(compiled.run(feeds)["y"] - expected).max() / np.ptp(expected)
    assert error < BOUND[how.m], (error, x_shape, pads)


def test_winograd_applies_to_few_wide_groups_only():
    class Value:
        def __init__(self, shape, const=None):
            self.shape, self.const = shape, const

    def node(channels, filters, groups):
        class Node:
            inputs = [Value((1, channels, 14, 14)), Value((filters, channels // groups, 3, 3), np.zeros(1))]
        return Node()
    if winograd.microkernel.target_isa() is None:
        pytest.skip("no microkernels")
    window = Window((3, 3), (1, 1), (1, 1), (1, 1), (1, 1), (14, 14))
    assert winograd.applies(node(64, 64, 2), window, 2, "float")
    assert not winograd.applies(node(64, 64, 8), window, 8, "float")        # 8 channels a group
    assert not winograd.applies(node(512, 512, 16), window, 16, "float")    # too many groups
