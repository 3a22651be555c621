"""Static shapes: bind the inputs' dynamic dimensions, then propagate types and known constants node by node.

Each node's shape rule lives with its operator (`Op.infer`). A node whose inputs are all known constants is
evaluated with its reference semantics, so shape subgraphs (Shape -> Gather -> Concat -> Reshape, Range,
ConstantOfShape -> Expand, ...) become constants that later shape rules read.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx

from ..errors import DnnfusionError, InvalidModelError, ResourceError, ShapeError, UnboundDimensionError
from ..ir.dtypes import tensor_type
from ..ir.graph import Graph, Node
from ..ops import lookup

FOLD_LIMIT_BYTES = 64 << 20   # constants larger than this are left for run time


def bind_inputs(graph: Graph, input_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
    """Give every graph input a static shape: declared static dims, overridden by `input_shapes`."""
    input_shapes = dict(input_shapes or {})
    names = {v.name for v in graph.inputs}
    unknown = sorted(set(input_shapes) - names)
    if unknown:
        raise ShapeError(f"input_shapes names {', '.join(map(repr, unknown))}, which the model does not have; "
                         f"its inputs are {', '.join(sorted(names))}")
    for v in graph.inputs:
        declared = v.shape
        if v.name in input_shapes:
            bound = tuple(int(d) for d in input_shapes[v.name])
            if declared is not None and len(declared) != len(bound):
                raise ShapeError(f"input '{v.name}' has rank {len(declared)} ({_fmt(declared)}) "
                                 f"but input_shapes gives {len(bound)} dims {bound}")
            for axis, (d, b) in enumerate(zip(declared or bound, bound)):
                if isinstance(d, int) and d > 0 and d != b:
                    raise ShapeError(f"input '{v.name}' dimension {axis} is fixed to {d} by the model, not {b}")
                if b < 0:
                    raise ShapeError(f"input '{v.name}' dimension {axis}: {b} is not a valid size")
            v.shape = bound
        elif declared is None:
            raise ShapeError(f"input '{v.name}' has no declared shape; give it with input_shapes or --shape")
        else:
            for axis, d in enumerate(declared):
                if not isinstance(d, int) or d < 0:
                    raise UnboundDimensionError(v.name, axis, d)
            v.shape = tuple(declared)
        if v.dtype is None:
            raise InvalidModelError(f"input '{v.name}' has no element type")


def infer_node(node: Node, fold_limit: int = FOLD_LIMIT_BYTES) -> None:
    """Set the types of the node's outputs, and their values when the node can run at compile time."""

    op = lookup(node)
    _check_arity(node)
    try:
        inferred = op.infer(node)
    except DnnfusionError:
        raise
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise InvalidModelError(f"{node.op_type} node '{node.name}': cannot infer output shapes ({type(e).__name__}: {e})") from e
    for value, out in zip(node.outputs, inferred):
        if value is None:
            continue
        if isinstance(out, np.ndarray):
            value.set_const(out)
        else:
            value.dtype, value.shape = np.dtype(out.dtype), tuple(out.shape)
    if _foldable(node, op.deterministic, fold_limit):
        results = _folded(op, node)
        for value, array in zip(node.outputs, results):
            if value is None:
                continue
            array = np.asarray(array)
            if value.const is None and value.shape is not None and tuple(array.shape) != tuple(
                    d if d is not None else array.shape[i] for i, d in enumerate(value.shape)):
                raise ShapeError(f"{node.op_type} node '{node.name}': shape rule says {value.shape} "
                                 f"but the operator computes {array.shape} (an internal error; please report it)")
            value.set_const(array)


def _check_arity(node: Node) -> None:
    """The node has as many inputs and outputs as its ONNX schema allows at its opset, inputs of types it accepts
    (internal operators of our own domains, which have no schema, are checked by their own rules)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, max(node.opset, 1), node.domain)
    except onnx.defs.SchemaError:
        return
    _check_count(node, schema)
    _check_types(node, schema)
    _check_attributes(node, schema)


def _check_count(node: Node, schema: onnx.defs.OpSchema) -> None:
    given = len(node.inputs)
    while given and node.inputs[given - 1] is None:
        given -= 1
    if given < schema.min_input or given > schema.max_input:
        raise InvalidModelError(f"{node.op_type} node '{node.name}' has {given} inputs; opset {node.opset} allows "
                                f"{schema.min_input} to {schema.max_input}: the model is malformed")
    produced = len(node.outputs)
    while produced and node.outputs[produced - 1] is None:
        produced -= 1
    if produced < min(schema.min_output, 1) or produced > schema.max_output:
        raise InvalidModelError(f"{node.op_type} node '{node.name}' has {produced} outputs; opset {node.opset} "
                                f"allows {schema.min_output} to {schema.max_output}: the model is malformed")
    required = [k for k in range(min(given, schema.min_input)) if node.inputs[k] is None]
    if required:
        raise InvalidModelError(f"{node.op_type} node '{node.name}' leaves required input {required[0]} empty: "
                                "the model is malformed")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


_ATTRIBUTE_KINDS = {
    onnx.AttributeProto.FLOAT: ("a float", _is_number),
    onnx.AttributeProto.INT: ("an int", _is_int),
    onnx.AttributeProto.STRING: ("a string", lambda v: isinstance(v, str)),
    onnx.AttributeProto.FLOATS: ("a list of floats", lambda v: isinstance(v, (list, tuple)) and all(map(_is_number, v))),
    onnx.AttributeProto.INTS: ("a list of ints", lambda v: isinstance(v, (list, tuple)) and all(map(_is_int, v))),
    onnx.AttributeProto.STRINGS: ("a list of strings",
                                  lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)),
    onnx.AttributeProto.TENSOR: ("a tensor", lambda v: isinstance(v, np.ndarray)),
}


def _check_attributes(node: Node, schema: onnx.defs.OpSchema) -> None:
    """Each attribute the schema declares has its declared kind (a LeakyRelu alpha given as a string or a
    list is named here instead of failing inside the operator's arithmetic)."""
    for key, value in node.attrs.items():
        declared = schema.attributes.get(key)
        kind = _ATTRIBUTE_KINDS.get(int(declared.type)) if declared is not None else None
        if kind is not None and not kind[1](value):
            raise InvalidModelError(f"{node.op_type} node '{node.name}': attribute '{key}' must be {kind[0]}, "
                                    f"got {type(value).__name__} {str(value)[:60]}")


def _check_types(node: Node, schema: onnx.defs.OpSchema) -> None:
    """Each input's element type is one the schema's type constraint allows (MaxPool of bool, Softmax of
    int64): named here rather than failing later inside numpy or the generated C."""
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    formals = list(schema.inputs)
    for k, value in enumerate(node.inputs):
        if value is None or value.dtype is None or not formals:
            continue
        formal = formals[min(k, len(formals) - 1)]
        if k >= len(formals) and formal.option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
            continue
        types = allowed.get(formal.type_str, {formal.type_str})
        if not any(t.startswith("tensor(") for t in types):
            continue
        given = tensor_type(value.dtype)
        if given is not None and given not in types:
            accepted = ", ".join(sorted(t[len("tensor("):-1] for t in types if t.startswith("tensor(")))
            raise InvalidModelError(f"{node.op_type} node '{node.name}': input {k} ('{value.name}') is "
                                    f"{given[len('tensor('):-1]}, which opset {node.opset} does not allow; it "
                                    f"takes {accepted}")


def _folded(op, node: Node) -> Sequence[np.ndarray]:
    """The node's outputs computed from its constant inputs; a malformed node that makes the operator's numpy
    semantics fail is the model's error, named with its node."""
    inputs = [v.const if v is not None else None for v in node.inputs]
    try:
        return op.compute(node, *inputs)
    except DnnfusionError:
        raise
    except MemoryError as e:
        raise ResourceError(f"{node.op_type} node '{node.name}': its constant result does not fit in memory; "
                            "check the model's shapes") from e
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        raise InvalidModelError(f"{node.op_type} node '{node.name}': cannot evaluate it at compile time "
                                f"({type(e).__name__}: {e})") from e


def _foldable(node: Node, deterministic: bool, limit: int) -> bool:
    if not deterministic or any(v is not None and v.const is None for v in node.inputs):
        return False
    if all(v is None or v.const is not None for v in node.outputs):
        return False
    return all(v is None or v.shape is None or v.nbytes <= limit for v in node.outputs)


def infer_shapes(graph: Graph, input_shapes: Mapping[str, Sequence[int]] | None = None,
                 fold_limit: int = FOLD_LIMIT_BYTES) -> Graph:
    """Bind the inputs and propagate static types through every node (in place; returns the graph)."""
    bind_inputs(graph, input_shapes)
    for node in graph.nodes:
        infer_node(node, fold_limit)
    return graph


def dynamic_values(graph: Graph) -> list[str]:
    """Names of values whose shape is still not static (data-dependent extents)."""
    return [v.name for v in graph.live_values() if not v.is_static]


def _fmt(shape: tuple) -> str:
    return "x".join(str(d) if d is not None else "?" for d in shape)
