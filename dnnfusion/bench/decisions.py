"""Tracing output differences to the points inside a model where a rounding difference moves the result by more
than rounding: selections (TopK, NonMaxSuppression: a near tie goes either way) and sampling positions (RoiAlign's
regions: with random weights the features vary fast, so a region a hundredth of a pixel off samples measurably
different values). For detections that differ in rows no output-level tie explains, or in masks beyond tolerance,
`check_decisions` has our compiler (its `run` argument) run the model with those values as extra outputs, then
onnxruntime run it with ours pinned in their place (`_pinned`). Its outputs must then equal ours, and what it
computes itself at each pinned point (on the same pinned inputs) must differ from ours only at ties (selections) or
within tolerance (sampling positions); the probed build's outputs must also match the plain build's up to
output-level ties, since extra outputs change what fuses."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import onnx

from ..ops.detection import _corners
from ..oracle import ATOL, RTOL, compare, run_onnxruntime
from .detections import OutputCheck, check_outputs, graph_constants, is_ranked_detections, match_detections, \
    nms_thresholds, node_nms_thresholds

SELECTIONS = {"TopK": 1, "NonMaxSuppression": 2}    # selection operators: how many data inputs they choose from
SAMPLERS = {"RoiAlign": (1,)}                      # operators: inputs that set where they sample
ORT_SUFFIX = "::onnxruntime"                       # onnxruntime's own value of a pinned name, as an extra output


@dataclass(frozen=True)
class Decision:
    """How one selection operator's choice in our build compares with onnxruntime's on the same inputs."""

    node: str
    op: str
    differing: int               # elements one runtime chose and the other did not
    ok: bool                     # every difference is a tie


@dataclass(frozen=True)
class DecisionCheck:
    """`check_decisions`' verdict: the selections differ only at ties, and with ours pinned into onnxruntime the
    outputs agree; `probe_consistent` says the probed build's outputs match the plain build's (up to ties)."""

    decisions: list[Decision]
    pinned_outputs: list[OutputCheck]
    probe_consistent: bool

    @property
    def ties(self) -> int:
        """Elements chosen differently, summed over all decisions."""
        return sum(d.differing for d in self.decisions)

    @property
    def ok(self) -> bool:
        """The probe is consistent, every decision is a tie and every pinned output agrees."""
        return (self.probe_consistent and all(d.ok for d in self.decisions)
                and all(o.ok for o in self.pinned_outputs))


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every inferred value, input and output by name (for the outputs and inputs we add)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: v.type.tensor_type.elem_type for v in values}


def _with_outputs(model: onnx.ModelProto, names: list[str], types: Mapping[str, int]) -> onnx.ModelProto:
    """A copy of the model with `names` added to its outputs."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output} | {i.name for i in copy.graph.input}
    copy.graph.output.extend(onnx.helper.make_tensor_value_info(n, types.get(n, onnx.TensorProto.FLOAT), None)
                             for n in dict.fromkeys(names) if n not in present)
    return copy


def _pinned(model: onnx.ModelProto, values: Mapping[str, np.ndarray], types: Mapping[str, int]) -> onnx.ModelProto:
    """A copy of the model that reads each of `values` from a new graph input of its name; the producer still
    runs, its output renamed with ORT_SUFFIX and added to the graph outputs."""
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    graph = pinned.graph
    for node in graph.node:
        for k, name in enumerate(node.output):
            if name in values:
                node.output[k] = name + ORT_SUFFIX
                graph.input.append(onnx.helper.make_tensor_value_info(name, types[name], values[name].shape))
                graph.output.append(onnx.helper.make_tensor_value_info(name + ORT_SUFFIX, types[name], None))
    kept = [v for v in graph.value_info if v.name not in values]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return pinned


def _topk_decision(node: onnx.NodeProto, ours: Mapping[str, np.ndarray], ort: Mapping[str, np.ndarray],
                   rtol: float, atol: float) -> Decision:
    """Ours picked ties if onnxruntime's values of the elements ours picked, in our order, equal onnxruntime's own
    top values, and ours computed them, within tolerance of the input's magnitude along the axis (an intermediate
    value near zero carries the rounding error of the large values it was computed from)."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
    values, indices = node.output
    x = ort[node.input[0]]
    picked = np.take_along_axis(x, ours[indices], axis)
    tolerance = atol + rtol * np.abs(x).max(axis=axis, keepdims=True)
    ok = bool(np.all(np.abs(picked - ort[values + ORT_SUFFIX]) <= tolerance)
              and np.all(np.abs(ours[values] - picked) <= tolerance))
    chosen = np.moveaxis(ours[indices], axis, -1).reshape(-1, ours[indices].shape[axis])
    theirs = np.moveaxis(ort[indices + ORT_SUFFIX], axis, -1).reshape(chosen.shape)
    differing = sum(len(np.setdiff1d(a, b)) for a, b in zip(chosen, theirs))
    return Decision(node.name, node.op_type, differing, ok)


def _nms_decision(node: onnx.NodeProto, ours: Mapping[str, np.ndarray], ort: Mapping[str, np.ndarray],
                  constants: Mapping[str, np.ndarray]) -> Decision:
    """Ours picked ties if the boxes one runtime kept and the other did not (valued by onnxruntime's inputs) are
    tied in the sense of `match_detections` for this NMS's thresholds."""
    thresholds = node_nms_thresholds(node, constants)
    center = bool(next((a.i for a in node.attribute if a.name == "center_point_box"), 0))
    boxes, scores = _corners(ort[node.input[0]], center), ort[node.input[1]]

    def rows(selected: np.ndarray) -> dict[str, np.ndarray]:
        b, c, i = selected.T
        return {"boxes": boxes[b, i], "scores": scores[b, c, i], "labels": b * scores.shape[1] + c, "index": i}

    limit = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    match = match_detections(rows(ours[node.output[0]]), rows(ort[node.output[0] + ORT_SUFFIX]), thresholds,
                             int(limit.reshape(-1)[0]) if limit is not None else sys.maxsize)
    return Decision(node.name, node.op_type, match.tie_mismatched + len(match.unexplained_ours)
                    + len(match.unexplained_reference), match.ok)


def _sampling_decision(node: onnx.NodeProto, name: str, ours: Mapping[str, np.ndarray],
                       ort: Mapping[str, np.ndarray], rtol: float, atol: float) -> Decision:
    """Ours computed the sampling positions right if each row (a region) is within tolerance of onnxruntime's own
    on the same pinned selections, with the row's magnitude as the scale (as boxes are compared)."""
    a, b = ours[name].astype(np.float64), ort[name + ORT_SUFFIX].astype(np.float64)
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    far = np.abs(a - b) > atol + rtol * np.abs(b).max(axis=1, keepdims=True)
    return Decision(f"{node.name} ({name})", node.op_type, int(far.any(axis=1).sum()), not far.any())


def _probe(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
           run: Callable[[onnx.ModelProto], dict[str, np.ndarray]], pinned_names: list[str],
           choice_inputs: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Our build's values of `pinned_names` and `choice_inputs`, then onnxruntime's with ours pinned in place of
    `pinned_names` (its own values of those under ORT_SUFFIX)."""
    types = _elem_types(model)
    ours = run(_with_outputs(model, pinned_names + choice_inputs, types))
    pinned_values = {name: ours[name] for name in pinned_names}
    ort = run_onnxruntime(_with_outputs(_pinned(model, pinned_values, types), choice_inputs, types),
                          {**feeds, **pinned_values})
    return ours, ort


def _probe_consistent(model: onnx.ModelProto, probed: Mapping[str, np.ndarray],
                      plain: Mapping[str, np.ndarray]) -> bool:
    """Whether the probed build's outputs match the plain build's, ranked detections up to output-level ties."""
    if is_ranked_detections(plain):
        return match_detections(probed, plain, nms_thresholds(model)).ok
    return all(d.ok for d in compare(probed, plain))


def check_decisions(model_path: Path, feeds: Mapping[str, np.ndarray], plain_outputs: Mapping[str, np.ndarray],
                    run: Callable[[onnx.ModelProto], dict[str, np.ndarray]], rtol: float = RTOL,
                    atol: float = ATOL) -> DecisionCheck:
    """Trace output differences to the model's selections and sampling positions, pinning ours into onnxruntime."""
    model = onnx.load(str(model_path))
    selections = [n for n in model.graph.node if n.op_type in SELECTIONS]
    samplers = [(n, n.input[i]) for n in model.graph.node if n.op_type in SAMPLERS for i in SAMPLERS[n.op_type]]
    pinned_names = [o for n in selections for o in n.output] + [name for _, name in samplers]
    choice_inputs = [i for n in selections for i in n.input[:SELECTIONS[n.op_type]]]
    ours, ort = _probe(model, feeds, run, pinned_names, choice_inputs)
    finals = [o.name for o in model.graph.output]
    probed_finals = {k: ours[k] for k in finals}
    pinned_outputs, _ = check_outputs(probed_finals, {k: ort[k] for k in finals}, model_path)
    constants = graph_constants(model)
    decisions = [_topk_decision(n, ours, ort, rtol, atol) if n.op_type == "TopK"
                 else _nms_decision(n, ours, ort, constants) for n in selections]
    decisions += [_sampling_decision(n, name, ours, ort, rtol, atol) for name, n in {m: n for n, m in samplers}.items()]
    return DecisionCheck(decisions, pinned_outputs, _probe_consistent(model, probed_finals, plain_outputs))
