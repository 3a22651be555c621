"""Shrink a failing model to a small one that still fails the same way (greedy, one change at a time).

Moves, tried in order until none helps: remove a node (rewiring its consumers to an earlier value of the same
type and shape, or turning its output into a new graph input), drop a graph output, and shrink a dim of a graph
input or an initializer (shapes are re-inferred; candidates ONNX rejects are skipped). Every candidate passes
`onnx.checker.check_model(full_check=True)` before the failure predicate sees it.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import onnx
from onnx import helper, numpy_helper

Predicate = Callable[[onnx.ModelProto], bool]
MAX_PICKS = 4          # replacement values tried per removed node


def value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """The type (element type and shape) of every named value: inputs, initializers, intermediates, outputs."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {vi.name: vi.type for vi in list(g.input) + list(g.value_info) + list(g.output)}
    for t in g.initializer:
        types.setdefault(t.name, helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    return types


def _same_type(a: onnx.TypeProto | None, b: onnx.TypeProto | None) -> bool:
    """Whether two value types have the same element type and the same known shape."""
    return a is not None and b is not None and a.tensor_type.elem_type == b.tensor_type.elem_type and \
        a.tensor_type.HasField("shape") and a.tensor_type.shape == b.tensor_type.shape


def prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop nodes whose outputs nobody uses, then unused graph inputs and initializers (in place)."""
    g = model.graph
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [k for k, n in enumerate(g.node) if not any(o in used for o in n.output if o)]
        if not dead:
            break
        for k in reversed(dead):
            del g.node[k]
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep_inputs = [vi for vi in g.input if vi.name in used]
    keep_inits = [t for t in g.initializer if t.name in used]
    del g.input[:]
    g.input.extend(keep_inputs)
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    return model


def _rename_uses(g: onnx.GraphProto, old: str, new: str, after: int) -> None:
    """Consumers of `old` from node index `after` on read `new`; a graph output named `old` becomes `new`."""
    for node in g.node[after:]:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new
    outputs = [o.name for o in g.output]
    for k, o in enumerate(g.output):
        if o.name == old:
            if new in outputs:
                del g.output[k]
            else:
                o.name = new
            break


def _elem_type(t: onnx.TypeProto | None) -> int | None:
    """The element type of a value type, None when unknown."""
    return t.tensor_type.elem_type if t is not None else None


def remove_node(model: onnx.ModelProto, index: int, mode: str,
                types: dict[str, onnx.TypeProto] | None = None, pick: int = 0) -> onnx.ModelProto | None:
    """A copy without node `index`, its used outputs replaced according to `mode`: "rewire" to an earlier value
    of the same type and shape, "input" as new graph inputs, "bypass" by one of the node's inputs of the same
    element type (shapes downstream re-inferred); `pick` chooses among the fitting values. None when the mode
    or the pick does not apply."""
    types = types if types is not None else value_types(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    node = g.node[index]
    before = list(node.input) + [vi.name for vi in g.input] + [t.name for t in g.initializer] + \
        [o for n in g.node[:index] for o in n.output]
    used = {i for n in g.node[index + 1:] for i in n.input} | {o.name for o in g.output}
    inputs = {vi.name for vi in g.input}
    for out in [o for o in node.output if o and o in used]:
        if mode == "rewire":
            same = [v for v in before if v and v != out and _same_type(types.get(v), types.get(out))]
        elif mode == "bypass":
            same = [v for v in node.input if v and _elem_type(types.get(v)) == _elem_type(types.get(out))]
        else:
            same = None
        if same is not None and pick >= len(same):
            return None
        if same:
            _rename_uses(g, out, same[pick], index + 1)
        elif out not in inputs:
            if out not in types or not types[out].tensor_type.HasField("shape"):
                return None
            vi = onnx.ValueInfoProto(name=out)
            vi.type.CopyFrom(types[out])
            g.input.append(vi)
    del g.node[index]
    pruned = prune(m)
    return retype(pruned) if mode == "bypass" else pruned


def drop_output(model: onnx.ModelProto, index: int) -> onnx.ModelProto:
    """A copy without graph output `index` (and whatever only it needed)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[index]
    return prune(m)


def retype(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """Outputs' shapes re-inferred after a dim changed (value_info cleared); None when inference fails."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    try:
        return onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    except Exception:  # noqa: BLE001 - an inconsistent candidate is simply not a candidate
        return None


def _shrunk_dims(d: int) -> list[int]:
    """Smaller sizes to try for a dim: 1, half, one less."""
    return sorted({1, d // 2, d - 1} - {0, d})


def shrink_dims(model: onnx.ModelProto) -> Iterator[onnx.ModelProto]:
    """Copies with one dim of one graph input, or of one initializer (sliced), made smaller."""
    for k, vi in enumerate(model.graph.input):
        for axis, dim in enumerate(vi.type.tensor_type.shape.dim):
            for new in _shrunk_dims(dim.dim_value):
                m = onnx.ModelProto()
                m.CopyFrom(model)
                m.graph.input[k].type.tensor_type.shape.dim[axis].dim_value = new
                out = retype(m)
                if out is not None:
                    yield out
    for k, tensor in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(tensor)
        for axis, dim in enumerate(array.shape):
            for new in _shrunk_dims(dim):
                m = onnx.ModelProto()
                m.CopyFrom(model)
                m.graph.initializer[k].CopyFrom(numpy_helper.from_array(array.take(range(new), axis), tensor.name))
                out = retype(m)
                if out is not None:
                    yield out


def candidates(model: onnx.ModelProto) -> Iterator[onnx.ModelProto]:
    """Smaller variants of `model`, the biggest simplifications first."""
    types = value_types(model)
    for index in range(len(model.graph.node)):
        for mode, picks in (("rewire", MAX_PICKS), ("input", 1), ("bypass", MAX_PICKS)):
            for pick in range(picks):
                m = remove_node(model, index, mode, types, pick)
                if m is None:
                    break
                if len(m.graph.output):
                    yield m
    if len(model.graph.output) > 1:
        for index in range(len(model.graph.output)):
            yield drop_output(model, index)
    yield from shrink_dims(model)


def is_valid(model: onnx.ModelProto) -> bool:
    """Whether the ONNX checker (with full shape inference) accepts the model."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception:  # noqa: BLE001 - any checker complaint rejects the candidate
        return False
    return True


def size(model: onnx.ModelProto) -> tuple[int, int, int]:
    """What shrinking minimizes: nodes, then outputs, then the total number of input and weight elements."""
    elements = 0
    for vi in model.graph.input:
        n = 1
        for d in vi.type.tensor_type.shape.dim:
            n *= d.dim_value
        elements += n
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        elements += n
    return len(model.graph.node), len(model.graph.output), elements


def shrink(model: onnx.ModelProto, still_fails: Predicate, seconds: float = 60.0,
           max_checks: int = 500) -> tuple[onnx.ModelProto, int]:
    """The smallest variant found within the budget that `still_fails`, and how many checks it took."""
    best = prune(_copy(model))
    checks = 0
    deadline = time.monotonic() + seconds
    progress = True
    while progress and checks < max_checks and time.monotonic() < deadline:
        progress = False
        for cand in candidates(best):
            if checks >= max_checks or time.monotonic() >= deadline:
                break
            if size(cand) >= size(best) or not is_valid(cand):
                continue
            checks += 1
            if still_fails(cand):
                best, progress = cand, True
                break
    return best, checks


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of a model."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m
