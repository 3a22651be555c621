"""ONNX -> Graph: read a model file (external data and >2 GB weights included) into the IR."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.inliner
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from ..errors import InvalidModelError, ModelLoadError, UnsupportedOpsetError
from . import dtypes
from .graph import Graph

MIN_OPSET = 7          # older default-domain opsets changed semantics we do not model
ModelSource = str | os.PathLike | bytes | onnx.ModelProto


def read_model(source: ModelSource) -> tuple[onnx.ModelProto, Path | None]:
    """Parse a model from a path, bytes or a ModelProto; external tensors are left unloaded."""
    if isinstance(source, onnx.ModelProto):
        return source, None
    if not isinstance(source, (str, os.PathLike, bytes)):
        raise ModelLoadError(f"a model is a path, bytes or an onnx.ModelProto, not {type(source).__name__}")
    path = None if isinstance(source, bytes) else Path(source)
    try:
        if path is None:
            model = onnx.load_model_from_string(source)
        else:
            _check_model_file(path)
            model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, OSError) as e:
        raise ModelLoadError(
            f"'{source if not isinstance(source, bytes) else '<bytes>'}' is not a readable ONNX model (truncated or "
            f"corrupt: {type(e).__name__}); re-export it") from e
    if not model.HasField("graph") and not model.opset_import:
        raise ModelLoadError(f"'{path or '<bytes>'}' holds no ONNX model (no graph and no opset): is it the right file?")
    return model, path.parent if path is not None else None


def _check_model_file(path: Path) -> None:
    """One-line errors for paths that cannot hold a model: missing, a folder, an empty file."""
    if path.is_dir():
        raise ModelLoadError(f"'{path}' is a folder, not a model file; give the path of the .onnx file inside it")
    if not path.is_file():
        raise ModelLoadError(f"model file '{path}' does not exist")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file '{path}' is empty; re-export the model")


def tensor_to_array(tensor: onnx.TensorProto, base_dir: Path | None) -> np.ndarray:
    """A numpy view of an initializer; external data is memory-mapped, never copied."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return _external_array(tensor, base_dir)
    try:
        return numpy_helper.to_array(tensor)
    except Exception as e:  # numpy_helper raises bare ValueError/TypeError on malformed payloads
        label = f"tensor '{tensor.name}'" if tensor.name else "an unnamed tensor (in an attribute or a sparse tensor)"
        raise InvalidModelError(f"{label} has malformed data ({e})") from e


def _external_array(tensor: onnx.TensorProto, base_dir: Path | None) -> np.ndarray:
    info = {e.key: e.value for e in tensor.external_data}
    if base_dir is None:
        raise ModelLoadError(f"tensor '{tensor.name}' keeps its data in an external file; load the model from its path")
    location = info.get("location", "")
    target = (base_dir / location).resolve()
    if Path(location).is_absolute() or base_dir.resolve() not in target.parents:
        raise InvalidModelError(f"tensor '{tensor.name}' points outside the model's folder ('{location}')")
    if not target.is_file():
        raise ModelLoadError(f"external data file '{location}' of tensor '{tensor.name}' is missing")
    dtype = dtypes.to_numpy(tensor.data_type)
    shape = tuple(int(d) for d in tensor.dims)
    count = int(np.prod(shape, dtype=np.int64))
    offset = _external_int(tensor, info, "offset", 0)
    length = _external_int(tensor, info, "length", count * dtype.itemsize)
    if length != count * dtype.itemsize or offset + length > target.stat().st_size:
        raise ModelLoadError(f"external data of tensor '{tensor.name}' in '{location}' is truncated")
    if count == 0:
        return np.zeros(shape, dtype)
    return np.memmap(target, dtype=dtype, mode="r", offset=offset, shape=shape)


def attribute_value(attr: onnx.AttributeProto, base_dir: Path | None) -> Any:
    """Plain Python for an attribute: numbers, str, lists, numpy arrays; subgraphs stay GraphProto."""
    kind = attr.type
    if kind == onnx.AttributeProto.TENSOR:
        return tensor_to_array(attr.t, base_dir)
    if kind == onnx.AttributeProto.TENSORS:
        return [tensor_to_array(t, base_dir) for t in attr.tensors]
    if kind == onnx.AttributeProto.SPARSE_TENSOR:
        return _dense(attr.sparse_tensor)
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


def declared_shape(vi: onnx.ValueInfoProto) -> tuple | None:
    """A graph input or output's declared shape: ints, dimension names (str) and None for unnamed or unknown."""
    t = vi.type
    if not t.HasField("tensor_type"):
        raise InvalidModelError(f"graph input/output '{vi.name}' is not a tensor ({t.WhichOneof('value')}); "
                                "sequences, maps and optionals are not supported")
    if not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim)


def _external_int(tensor: onnx.TensorProto, info: dict[str, str], key: str, default: int) -> int:
    """A non-negative integer field of a tensor's external-data record (offset, length)."""
    text = info.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidModelError(f"external data of tensor '{tensor.name}' has {key} {text!r}; it must be a "
                                f"non-negative integer: re-export the model")
    return value


def from_onnx(source: ModelSource) -> Graph:
    """Import a model as a Graph. Shapes of inputs are as declared (symbolic dims are strings)."""
    model, base_dir = read_model(source)
    if model.functions:
        model = _inlined(model)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    default = opsets.get("")
    if default is None or not MIN_OPSET <= default <= onnx.defs.onnx_opset_version():
        raise UnsupportedOpsetError(
            f"the model imports default-domain opset {default}; dnnfusion supports opsets "
            f"{MIN_OPSET} to {onnx.defs.onnx_opset_version()} (tested 11 to 23): convert it with onnx.version_converter")
    graph = Graph(model.graph.name or "graph", opsets)
    g = model.graph
    for tensor in g.initializer:
        graph.add_constant(tensor.name, tensor_to_array(tensor, base_dir))
    for sparse in g.sparse_initializer:
        graph.add_constant(sparse.values.name, _dense(sparse))
    for vi in g.input:
        if vi.name in graph.values:          # IR < 4: initializers are listed as inputs too
            continue
        v = graph.value(vi.name)
        v.dtype = dtypes.to_numpy(vi.type.tensor_type.elem_type) if vi.type.HasField("tensor_type") else None
        v.shape = declared_shape(vi)
        graph.inputs.append(v)
    node_names: set[str] = set()
    for i, proto in enumerate(g.node):
        name = _unique(proto.name or f"{proto.op_type}_{i}", node_names)
        untyped = [a.name for a in proto.attribute if a.type == onnx.AttributeProto.UNDEFINED]
        if untyped:
            raise InvalidModelError(f"{proto.op_type} node '{name}': attribute '{untyped[0]}' has no type "
                                    "(AttributeProto.type is UNDEFINED); re-export the model")
        attrs = {a.name: attribute_value(a, base_dir) for a in proto.attribute}
        ins = [graph.value(n) if n else None for n in proto.input]
        outs = [graph.value(n) if n else None for n in proto.output]
        domain = "" if proto.domain == "ai.onnx" else proto.domain
        graph.add_node(proto.op_type, ins, outs, attrs, name=name, domain=domain)
    for vi in g.output:
        declared_shape(vi)
        if vi.name not in graph.values:
            raise InvalidModelError(f"graph output '{vi.name}' is never defined")
        graph.outputs.append(graph.values[vi.name])
    graph.doc = {p.key: p.value for p in model.metadata_props}
    graph.doc["producer"] = f"{model.producer_name} {model.producer_version}".strip()
    graph.toposort()
    graph.validate()
    return graph


def _inlined(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its local functions inlined; recursive or malformed functions are the model's error."""
    try:
        return onnx.inliner.inline_local_functions(model)
    except Exception as e:  # onnx raises its C++ ValidationError (and others) for recursion and bad bodies
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidModelError(f"the model's local functions cannot be inlined: {first}") from e


def _dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """A sparse initializer as a dense array (indices are linear [NNZ] or coordinates [NNZ, rank])."""
    values = tensor_to_array(sparse.values, None)
    indices = tensor_to_array(sparse.indices, None).astype(np.int64)
    shape = tuple(sparse.dims)
    try:
        dense = np.zeros(shape, values.dtype)
        if indices.ndim == 2:
            indices = np.ravel_multi_index(tuple(indices.T), shape)
        dense.reshape(-1)[indices] = values
    except (ValueError, IndexError, TypeError) as e:
        raise InvalidModelError(f"sparse tensor '{sparse.values.name}' has indices or values that do not fit its "
                                f"shape {list(shape)} ({e})") from e
    return dense


def _unique(name: str, taken: set[str]) -> str:
    unique, k = name, 1
    while unique in taken:
        unique, k = f"{name}_{k}", k + 1
    taken.add(unique)
    return unique
