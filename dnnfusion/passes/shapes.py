"""Static shapes: bind the inputs' dynamic dimensions, then propagate types and known constants node by node.

Each node's shape rule lives with its operator (`Op.infer`). A node whose inputs are all known constants is
evaluated with its reference semantics, so shape subgraphs (Shape -> Gather -> Concat -> Reshape, Range,
ConstantOfShape -> Expand, ...) become constants that later shape rules read.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx

from ..errors import DnnfusionError, InvalidModelError, ResourceError, ShapeError, UnboundDimensionError
from ..ir.dtypes import tensor_type
from ..ir.graph import Graph, Node
from ..ops import lookup

FOLD_LIMIT_BYTES = 64 << 20   # constants larger than this are left for run time


InputShapes = Mapping[str, Sequence[int] | int]   # an input's shape, or one dimension name's extent


def bind_inputs(graph: Graph, input_shapes: InputShapes | None = None) -> None:
    """Give every graph input a static shape: its declared static dims, with `input_shapes` binding the rest.

    A key naming an input gives that input's whole shape (an int per axis); a key naming a dimension (an ONNX
    dim_param such as 'batch') with an int binds that dimension in every input that uses it, like
    onnxruntime_perf_test's `-f batch:1`. Input names win when a key is both. Inputs that share a dimension
    name must agree on its extent; every dimension still unbound is reported at once."""
    shapes, extents = _split_bindings(graph, dict(input_shapes or {}))
    for v in graph.inputs:
        if v.dtype is None:
            raise InvalidModelError(f"input '{v.name}' has no element type")
    declared = {v.name: v.shape for v in graph.inputs}
    bound = {v.name: _bound_shape(v.name, declared[v.name], shapes, extents) for v in graph.inputs}
    known = _check_shared_names(graph, bound, extents)
    unbound = [(v.name, axis, declared[v.name][axis]) for v in graph.inputs
               for axis, d in enumerate(bound[v.name]) if not isinstance(d, int) or d < 0]
    if unbound:
        raise UnboundDimensionError(unbound, known)
    for v in graph.inputs:
        v.shape = bound[v.name]


def dimension_names(graph: Graph) -> dict[str, list[tuple[str, int]]]:
    """Each dimension name (dim_param) declared by the graph inputs -> the (input, axis) pairs that use it."""
    names: dict[str, list[tuple[str, int]]] = {}
    for v in graph.inputs:
        for axis, d in enumerate(v.shape or ()):
            if isinstance(d, str):
                names.setdefault(d, []).append((v.name, axis))
    return names


def _split_bindings(graph: Graph, given: dict[str, object]) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """`input_shapes` split into whole input shapes and dimension-name extents, each checked for its kind."""
    inputs = {v.name for v in graph.inputs}
    names = dimension_names(graph)
    unknown = sorted(k for k in given if k not in inputs and k not in names)
    if unknown:
        raise ShapeError(f"input_shapes names {', '.join(map(repr, unknown))}, which the model does not have as "
                         f"an input or a dimension name; its inputs are {_listing(inputs)} and its dimension "
                         f"names are {_listing(names)}")
    shapes = {k: _input_axes(k, value) for k, value in given.items() if k in inputs}
    extents = {k: _name_extent(k, value) for k, value in given.items() if k not in inputs}
    return shapes, extents


def _input_axes(name: str, value: object) -> tuple[int, ...]:
    """The shape given for input `name`: a sequence with a non-negative int per axis."""
    keep = f"or leave '{name}' out of input_shapes to keep its declared static shape"
    if value is None:
        raise ShapeError(f"input_shapes['{name}'] is None: give an int per axis, {keep}")
    if _is_int(value):
        raise ShapeError(f"input_shapes['{name}'] is {value}, but '{name}' is an input, which takes a shape: "
                         f"give an int per axis, e.g. {{'{name}': ({value}, ...)}}")
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ShapeError(f"input_shapes['{name}'] is {value!r}: give an int per axis, {keep}")
    axes = tuple(value)
    for axis, d in enumerate(axes):
        if not _is_int(d):
            raise ShapeError(f"input_shapes['{name}'] = {axes!r}: axis {axis} is {d!r}; give an int per axis, "
                             f"{keep}")
        if d < 0:
            raise ShapeError(f"input '{name}' dimension {axis}: {d} is not a valid size; give 0 or more")
    return tuple(int(d) for d in axes)


def _name_extent(name: str, value: object) -> int:
    """The extent given for dimension name `name`: one non-negative int."""
    if not _is_int(value):
        raise ShapeError(f"input_shapes['{name}'] is {value!r}, but '{name}' is a dimension name, which takes "
                         f"one int: e.g. {{'{name}': 1}}")
    if value < 0:
        raise ShapeError(f"dimension '{name}': {value} is not a valid size; give 0 or more")
    return int(value)


def _bound_shape(name: str, declared: tuple | None, shapes: dict[str, tuple[int, ...]],
                 extents: dict[str, int]) -> tuple:
    """Input `name`'s shape: the one given for it, checked against its declared static dims, else its
    declared shape with named dimensions bound (a dimension still unbound stays a name or None)."""
    if name in shapes:
        return _checked_shape(name, declared, shapes[name])
    if declared is None:
        raise ShapeError(f"input '{name}' has no declared shape; give it with input_shapes or --shape")
    return tuple(extents.get(d, d) if isinstance(d, str) else d for d in declared)


def _checked_shape(name: str, declared: tuple | None, bound: tuple[int, ...]) -> tuple[int, ...]:
    """A shape given for input `name`, which must have the declared rank and keep its static dims."""
    if declared is None:
        return bound
    if len(declared) != len(bound):
        raise ShapeError(f"input '{name}' has rank {len(declared)} ({_fmt(declared)}) "
                         f"but input_shapes gives {len(bound)} dims {bound}")
    for axis, (d, b) in enumerate(zip(declared, bound)):
        if _is_int(d) and d > 0 and d != b:
            raise ShapeError(f"input '{name}' dimension {axis} is fixed to {d} by the model, not {b}; give {d} "
                             f"there")
    return bound


def _check_shared_names(graph: Graph, bound: dict[str, tuple], extents: dict[str, int]) -> dict[str, int]:
    """Every use of a dimension name has one extent: inputs bound one by one that disagree (x with batch 2,
    mask with batch 3) are named here, not left to fail as a broadcast deep in the graph. Returns the extent
    of each dimension name that is bound somewhere."""
    known: dict[str, int] = {}
    for dim, uses in dimension_names(graph).items():
        first = (extents[dim], f"input_shapes binds '{dim}' to {extents[dim]}") if dim in extents else None
        for name, axis in uses:
            extent = bound[name][axis]
            if not isinstance(extent, int):
                continue
            if first is None:
                first = (extent, f"input '{name}' has {extent} at dimension {axis}")
            elif extent != first[0]:
                raise ShapeError(f"inputs disagree on dimension '{dim}': {first[1]} but input '{name}' has "
                                 f"{extent} at dimension {axis}; give every input the same '{dim}', or bind it "
                                 f"once by name with input_shapes={{'{dim}': {first[0]}}}")
        if first is not None:
            known[dim] = first[0]
    return known


def _listing(names: Iterable[str]) -> str:
    """Names for a message, sorted and quoted, or 'none'."""
    return ", ".join(repr(n) for n in sorted(names)) or "none"


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


def infer_shapes(graph: Graph, input_shapes: InputShapes | None = None,
                 fold_limit: int = FOLD_LIMIT_BYTES) -> Graph:
    """Bind the inputs (`bind_inputs`: by input or by dimension name) and propagate static types through every
    node (in place; returns the graph)."""
    bind_inputs(graph, input_shapes)
    for node in graph.nodes:
        infer_node(node, fold_limit)
    return graph


def dynamic_values(graph: Graph) -> list[str]:
    """Names of values whose shape is still not static (data-dependent extents)."""
    return [v.name for v in graph.live_values() if not v.is_static]


def _fmt(shape: tuple) -> str:
    return "x".join(str(d) if d is not None else "?" for d in shape)
