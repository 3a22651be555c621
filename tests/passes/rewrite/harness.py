"""The proof every rewrite rule gets: the smallest graph it matches is rewritten by that rule alone (it must
fire), and the rewritten graph is compared with the original on seeded random inputs that include edge values
(zeros of both signs, negatives, large magnitudes and, where the rule's case allows, NaN and infinities), within
the tolerance the rule states; graphs where its preconditions fail must come out untouched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import onnx

from dnnfusion.ir.graph import Graph
from dnnfusion.pipeline import load
from dnnfusion.passes.rewrite import rewrite, rule
from dnnfusion.runtime import ReferenceExecutor
from tests.helpers import FLOAT, make_model

EDGES = {"zero": [0.0, -0.0], "negative": [-1.0, -3.5], "large": [1e30, -1e30, 3e38], "small": [1e-30, -1e-38],
         "special": [np.nan, np.inf, -np.inf]}


@dataclass
class Case:
    """One rule's proof: `model` (it fires there), `negatives` (it must not), input values drawn from
    `low`..`high` (a normal scaled by `scale` when both are None) with `edges` mixed in, and how many times it
    must fire."""

    rule: str
    model: onnx.ModelProto
    negatives: Sequence[onnx.ModelProto] = ()
    edges: tuple[str, ...] = ("zero", "negative", "large", "small", "special")
    low: float | None = None
    high: float | None = None
    scale: float = 3.0
    fires: int = 1
    seeds: int = 3
    id: str = ""
    extra: dict = field(default_factory=dict)


def model(nodes, inputs, outputs: Sequence[str], initializers=None, opset: int = 17) -> onnx.ModelProto:
    """A float model of `nodes` (tests.helpers.make_model with float outputs)."""
    return make_model(nodes, inputs, outputs, initializers or {}, opset=opset, output_type=FLOAT)


def graph_of(m: onnx.ModelProto) -> Graph:
    return load(m)


def feeds(graph: Graph, case: Case, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs: floats from the case's range with its edge values written over the first elements."""
    rng = np.random.default_rng(seed)
    edges = [x for name in case.edges for x in EDGES[name]]
    result = {}
    for v in graph.inputs:
        if np.dtype(v.dtype).kind != "f":
            result[v.name] = rng.integers(0, 3, v.shape).astype(v.dtype)
            continue
        if case.low is not None:
            a = rng.uniform(case.low, case.high, v.shape)
        else:
            a = rng.standard_normal(v.shape) * case.scale
        flat = a.reshape(-1)
        n = min(len(edges), flat.size // 2)
        order = rng.permutation(len(edges))[:n]
        flat[rng.permutation(flat.size)[:n]] = np.array(edges)[order] if n else flat[:0]
        with np.errstate(over="ignore"):
            result[v.name] = a.astype(v.dtype)
    return result


def prove(case: Case) -> None:
    """The rule fires on the case's model (`fires` times) and the results agree within its tolerance."""
    chosen = rule(case.rule)
    before, after = graph_of(case.model), graph_of(case.model)
    report = rewrite(after, [chosen])
    assert report.fired[chosen.name] == case.fires, f"{chosen.name} fired {report.fired[chosen.name]} times"
    after.validate()
    assert report.flops_after <= report.flops_before or chosen.always
    for seed in range(case.seeds):
        given = feeds(before, case, seed)
        with np.errstate(all="ignore"):
            expected = ReferenceExecutor(before).run(given)
            got = ReferenceExecutor(after).run(given)
        assert list(got) == list(expected)
        for name in expected:
            assert got[name].dtype == expected[name].dtype and got[name].shape == expected[name].shape
            np.testing.assert_allclose(got[name], expected[name], rtol=chosen.rtol, atol=chosen.atol,
                                       equal_nan=True, err_msg=f"{chosen.name}, seed {seed}, output {name}")


def refuse(case: Case) -> None:
    """The rule fires on none of the case's negatives."""
    chosen = rule(case.rule)
    for k, negative in enumerate(case.negatives):
        graph = graph_of(negative)
        count = len(graph.nodes)
        assert rewrite(graph, [chosen]).fired[chosen.name] == 0, f"{chosen.name} fired on negative {k}"
        assert len(graph.nodes) == count
