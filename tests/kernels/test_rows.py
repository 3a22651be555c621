"""Row statistics of the normalisations (ops/normalization.moments over kernels/rows.folds): the mean and the
variance come from one sweep over each row (a shifted sum and sum of squares, in double), then one more sweep
writes the normalised row; checked against numpy in float64 on rows far from zero whose first element (the
shift) lies far from their mean."""

import numpy as np
import pytest
from onnx import helper

import dnnfusion
from tests.helpers import FLOAT, make_model

SHAPE = (3, 4, 5, 24)
OFFSET, OUTLIER = 300.0, 60.0          # rows centred far from zero; the first element many deviations away


def rows(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE) * rng.uniform(0.5, 2.0, SHAPE[:-1] + (1,)) + OFFSET
    x[..., 0] += OUTLIER
    x[0, 0] = 1.0                                        # a constant row: variance 0, epsilon alone
    return x.astype(np.float32)


def standardized(x: np.ndarray, axes: tuple[int, ...], eps: float, inside: bool = True) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) over `axes` in float64, or / (sqrt(var) + eps) when not `inside`."""
    w = x.astype(np.float64)
    centered = w - w.mean(axis=axes, keepdims=True)
    var = (centered ** 2).mean(axis=axes, keepdims=True)
    return centered / (np.sqrt(var + eps) if inside else np.sqrt(var) + eps)


def grouped(x: np.ndarray, groups: int) -> np.ndarray:
    return standardized(x.reshape(x.shape[0], groups, -1), (2,), 1e-5).reshape(x.shape)


CASES = {
    "LayerNormalization": (dict(axis=-2, epsilon=1e-5), 17, lambda x: standardized(x, (2, 3), 1e-5)),
    "InstanceNormalization": (dict(epsilon=1e-5), 17, lambda x: standardized(x, (2, 3), 1e-5)),
    "GroupNormalization": (dict(num_groups=2, epsilon=1e-5), 21, lambda x: grouped(x, 2)),
    "MeanVarianceNormalization": (dict(axes=[2, 3]), 17, lambda x: standardized(x, (2, 3), 1e-9, inside=False)),
}


def one_node(op: str, attrs: dict, opset: int):
    params = {"LayerNormalization": {"s": np.ones((5, 24), np.float32)},
              "InstanceNormalization": {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)},
              "GroupNormalization": {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)}}.get(op, {})
    nodes = [helper.make_node(op, ["x", *params], ["y"], **attrs)]
    return make_model(nodes, [("x", FLOAT, list(SHAPE))], ["y"], params, opset=opset, output_type=FLOAT)


@pytest.mark.parametrize("op", CASES)
def test_one_sweep_statistics_match_float64_far_from_zero(op):
    attrs, opset, reference = CASES[op]
    compiled = dnnfusion.compile(one_node(op, attrs, opset), opt_level="O0")
    assert compiled.source.count("reduction(+:") == 1           # mean and variance from one sweep
    for seed in range(2):
        x = rows(seed)
        np.testing.assert_allclose(compiled.run({"x": x})["y"], reference(x), rtol=1e-4, atol=2e-4)


def test_row_reduction_over_concatenated_sources_is_unswitched_per_source():
    """Softmax over rows that come from three transposed heads concatenated along the rows (SSD's class scores):
    each row reads one head, chosen once per row (an if per source) instead of a select per element that a
    vectorised row would compute for every head; the result matches onnxruntime."""
    from dnnfusion.oracle import compare, run_onnxruntime
    rng = np.random.default_rng(3)
    shapes = [(1, 12, 5, 5), (1, 12, 3, 3), (1, 12, 2, 2)]
    nodes, parts = [], []
    for k, shape in enumerate(shapes):
        nodes += [helper.make_node("Transpose", [f"x{k}"], [f"t{k}"], perm=[0, 2, 3, 1]),
                  helper.make_node("Reshape", [f"t{k}", "shape"], [f"r{k}"])]
        parts.append(f"r{k}")
    nodes += [helper.make_node("Concat", parts, ["c"], axis=1), helper.make_node("Softmax", ["c"], ["y"], axis=-1)]
    model = make_model(nodes, [(f"x{k}", FLOAT, list(s)) for k, s in enumerate(shapes)], ["y"],
                       {"shape": np.array([1, -1, 4], np.int64)}, opset=13, output_type=FLOAT)
    feeds = {f"x{k}": rng.standard_normal(s).astype(np.float32) for k, s in enumerate(shapes)}
    compiled = dnnfusion.compile(model)
    diffs = compare(compiled.run(feeds), run_onnxruntime(model, feeds))
    assert diffs and all(d.ok for d in diffs), diffs
    assert compiled.stats["blocks"] == 1 and compiled.source.count("} else {") >= 2
