"""Rows picked before they are computed (passes/structural.py's `pick_rows_first`): a feature pyramid's
RoiAlign per level, stacked and gathered by each roi's level, becomes one RoiAlignLevels that pools each picked
(level, roi) once; randomized models against onnxruntime, the rewrite's reach, and the operator's own
reference."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import dnnfusion
from dnnfusion.fusion.onnx_blocks import fused_model
from dnnfusion.ir import from_onnx
from dnnfusion.oracle import compare, run_onnxruntime
from dnnfusion.passes import infer_shapes, pick_rows_first
from dnnfusion.pipeline import plan_model
from dnnfusion.runtime.reference import run_reference
from tests.helpers import FLOAT, make_model

INT64 = TensorProto.INT64


def pyramid(levels, channels, images, rois, size, mode="avg", ratio=2, opset=16, transform=None, picks=None):
    """RoiAlign over each of `levels` maps (size, size / 2, ...) for the same rois, a Concat along rows and a
    Gather of `picks` (graph input when None); returns the model and seeded feeds."""
    rng = np.random.default_rng(levels * 100 + channels + rois)
    nodes, inputs, pooled = [], [], []
    attrs = dict(mode=mode, output_height=3, output_width=4, sampling_ratio=ratio)
    if transform is not None:
        attrs["coordinate_transformation_mode"] = transform
    feeds = {}
    for k in range(levels):
        extent = max(size >> k, 2)
        inputs.append((f"x{k}", FLOAT, [images, channels, extent, extent]))
        feeds[f"x{k}"] = rng.standard_normal((images, channels, extent, extent)).astype(np.float32)
        nodes.append(helper.make_node("RoiAlign", [f"x{k}", "rois", "batch"], [f"p{k}"], spatial_scale=1.0 / (4 << k),
                                      **attrs))
        pooled.append(f"p{k}")
    corners = rng.uniform(-8, 4 * size, (rois, 2, 2)).astype(np.float32)
    feeds["rois"] = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    feeds["batch"] = rng.integers(0, images, rois).astype(np.int64)
    inputs += [("rois", FLOAT, [rois, 4]), ("batch", INT64, [rois])]
    initializers = {}
    if picks is None:
        level = rng.integers(0, levels, rois)
        chosen = level * rois + np.arange(rois)
        chosen[::3] -= levels * rois                     # negative picks count from the end
        feeds["picks"] = chosen.astype(np.int64)
        inputs.append(("picks", INT64, [rois]))
    else:
        initializers["picks"] = np.asarray(picks, np.int64)
    nodes.append(helper.make_node("Concat", pooled, ["stacked"], axis=0))
    nodes.append(helper.make_node("Gather", ["stacked", "picks"], ["y"], axis=0))
    return make_model(nodes, inputs, ["y"], initializers, opset, FLOAT), feeds


def op_types(compiled):
    return {o.node.op_type for b in compiled.plan.blocks for o in b.ops}


@pytest.mark.parametrize("seed", range(4))
def test_randomized_pyramids_match_onnxruntime(seed):
    rng = np.random.default_rng(seed)
    levels, channels = int(rng.integers(2, 5)), int(rng.choice([8, 16, 24]))
    images, rois, ratio = int(rng.integers(1, 3)), int(rng.integers(3, 40)), int(rng.integers(1, 5))
    model, feeds = pyramid(levels, channels, images, rois, 32, ratio=ratio,
                           transform=["half_pixel", "output_half_pixel"][seed % 2])
    compiled = dnnfusion.compile(model)
    assert "RoiAlignLevels" in op_types(compiled) and "RoiAlign" not in op_types(compiled)
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds))
    assert diffs and all(d.ok for d in diffs), diffs


def test_constant_picks_and_an_older_opset():
    model, feeds = pyramid(3, 16, 1, 6, 24, opset=13, picks=[0, 7, 14, 3, -1, 10, 10])
    compiled = dnnfusion.compile(model)
    assert "RoiAlignLevels" in op_types(compiled)
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds))
    assert diffs and all(d.ok for d in diffs), diffs


@pytest.mark.parametrize("change", ["max", "adaptive", "O1"])
def test_what_is_not_rewritten(change):
    """Max pooling and adaptive sampling have no channels-last kernel, and O1 keeps the exporter's graph: the
    RoiAligns stay (and still match)."""
    model, feeds = pyramid(2, 8, 1, 5, 16, mode="max" if change == "max" else "avg",
                           ratio=0 if change == "adaptive" else 2)
    compiled = dnnfusion.compile(model, opt_level="O1" if change == "O1" else "O3")
    assert "RoiAlignLevels" not in op_types(compiled) and "RoiAlign" in op_types(compiled)
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds))
    assert diffs and all(d.ok for d in diffs), diffs


def test_a_stack_read_elsewhere_is_kept():
    model, _ = pyramid(2, 8, 1, 5, 16)
    model.graph.output.append(helper.make_tensor_value_info("stacked", FLOAT, None))
    graph = infer_shapes(from_onnx(model), {})
    assert pick_rows_first(graph) == 0


def test_the_reference_equals_the_unrewritten_graph():
    """RoiAlignLevels' numpy reference (the fallback and constant-folding path) against onnxruntime on the
    original nodes."""
    model, feeds = pyramid(3, 8, 2, 9, 16)
    graph = infer_shapes(from_onnx(model), {})
    assert pick_rows_first(graph) == 1 and [n.op_type for n in graph.nodes] == ["RoiAlignLevels"]
    expected = run_onnxruntime(model, feeds)["y"]
    np.testing.assert_allclose(run_reference(graph, feeds)["y"], expected, rtol=1e-4, atol=1e-5)


def test_out_of_range_picks_are_named_by_the_reference():
    model, feeds = pyramid(2, 8, 1, 4, 16)
    graph = infer_shapes(from_onnx(model), {})
    pick_rows_first(graph)
    feeds["picks"][1] = 8
    with pytest.raises(Exception, match="out of range"):
        run_reference(graph, feeds)


def test_the_fused_model_spells_the_levels_out_for_onnxruntime():
    """A plan holding RoiAlignLevels written as ONNX (fusion/onnx_blocks.py) runs in onnxruntime: the operator
    becomes a function of RoiAligns, Concat and Gather (`onnx_body`)."""
    model, feeds = pyramid(3, 8, 1, 7, 16, opset=16, transform="half_pixel")
    plan = plan_model(model)
    assert "RoiAlignLevels" in {o.node.op_type for b in plan.blocks for o in b.ops}
    diffs = compare(run_onnxruntime(fused_model(plan), feeds), run_onnxruntime(model, feeds))
    assert diffs and all(d.ok for d in diffs), diffs
