"""Graph -> ONNX: write the IR back as a ModelProto (shapes recorded as value_info)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import dtypes
from .graph import Graph, Value


def _value_info(v: Value) -> onnx.ValueInfoProto:
    elem = dtypes.to_onnx(v.dtype) if v.dtype is not None else onnx.TensorProto.UNDEFINED
    shape = None if v.shape is None else [d if isinstance(d, int) else None for d in v.shape]
    return helper.make_tensor_value_info(v.name, elem, shape)


def _attribute(key: str, value: Any) -> onnx.AttributeProto:
    if isinstance(value, np.ndarray):
        return helper.make_attribute(key, numpy_helper.from_array(np.asarray(value)))
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return helper.make_attribute(key, [numpy_helper.from_array(np.asarray(t)) for t in value])
    return helper.make_attribute(key, value)


def to_onnx(graph: Graph, producer: str = "dnnfusion") -> onnx.ModelProto:
    """A ModelProto equivalent to `graph`, with every inferred shape recorded."""
    nodes = [helper.make_node(n.op_type, [v.name if v else "" for v in n.inputs],
                              [v.name if v else "" for v in n.outputs], name=n.name, domain=n.domain,
                              **{}) for n in graph.nodes]
    for proto, node in zip(nodes, graph.nodes):
        proto.attribute.extend(_attribute(k, v) for k, v in sorted(node.attrs.items()))
    initializers = [numpy_helper.from_array(np.asarray(v.const), v.name) for v in graph.initializers]
    io = {id(v) for v in graph.inputs} | {id(v) for v in graph.outputs}
    value_info = [_value_info(v) for n in graph.nodes for v in n.outputs
                  if v is not None and id(v) not in io and v.dtype is not None]
    g = helper.make_graph(nodes, graph.name, [_value_info(v) for v in graph.inputs],
                          [_value_info(v) for v in graph.outputs], initializers, value_info=value_info)
    opsets = [helper.make_opsetid(domain, version) for domain, version in sorted(graph.opsets.items())]
    ir_version = helper.find_min_ir_version_for(opsets, ignore_unknown=True)
    return helper.make_model(g, opset_imports=opsets, producer_name=producer, ir_version=ir_version)
