"""The fused graph as ONNX: each multi-operator block becomes a model-local function (domain `dnnfusion`) and
one call node, so the plan opens in Netron and still runs in onnxruntime (which checks it is the same model)."""

from __future__ import annotations

import onnx
from onnx import helper

from ..ir.graph import Graph
from ..ir.onnx_export import to_onnx
from ..ops import lookup
from .plan import Block, Plan

DOMAIN = "dnnfusion"


def _block_io(block: Block, plan: Plan) -> tuple[list[str], list[str]]:
    """Names the block reads from outside (weights included) and the names it must hand out."""
    inside = {id(o.node) for o in block.ops}
    produced = {v.name for o in block.ops for v in o.node.outputs if v is not None}
    inputs: list[str] = []
    for o in block.ops:
        for v in o.node.inputs:
            if v is not None and v.name not in produced and v.name not in inputs:
                inputs.append(v.name)
    graph_outputs = {v.name for v in plan.ecg.graph.outputs}
    outputs = [v.name for o in block.ops for v in o.node.outputs if v is not None and
               (v.name in graph_outputs or any(id(c) not in inside for c in v.consumers))]
    return inputs, outputs


def _internal_functions(graph: Graph, protos: dict[int, onnx.NodeProto],
                        opsets: list[onnx.OperatorSetIdProto]) -> list[onnx.FunctionProto]:
    """Operators the compiler made for itself (padded NonMaxSuppression) as one function each, defined by the
    op in standard operators (`Op.onnx_body`); their nodes in `protos` become calls to those functions."""
    functions = []
    for k, node in enumerate(graph.nodes):
        body = lookup(node).onnx_body(node)
        if body is None:
            continue
        inputs = [v.name for v in node.inputs if v is not None]
        outputs = [v.name for v in node.outputs if v is not None]
        name = f"{node.op_type}_{k}"
        functions.append(helper.make_function(DOMAIN, name, inputs, outputs, body, opsets))
        protos[id(node)] = helper.make_node(name, inputs, outputs, name=name, domain=DOMAIN)
    return functions


def fused_model(plan: Plan) -> onnx.ModelProto:
    """A ModelProto of the planned (folded) graph with each block of two or more operators as a function."""
    graph = plan.ecg.graph
    model = to_onnx(graph)
    protos = {id(node): proto for node, proto in zip(graph.nodes, model.graph.node)}
    opsets = [helper.make_opsetid(d, v) for d, v in sorted(graph.opsets.items())]
    nodes: list[onnx.NodeProto] = []
    functions = _internal_functions(graph, protos, opsets)
    opsets.append(helper.make_opsetid(DOMAIN, 1))          # block bodies may call those functions
    for block in plan.blocks:
        body = [protos[id(o.node)] for o in block.ops]
        if len(body) == 1:
            nodes.append(body[0])
            continue
        name = f"block_{block.id}_{block.mapping.name.lower()}"
        inputs, outputs = _block_io(block, plan)
        functions.append(helper.make_function(DOMAIN, name, inputs, outputs, body, opsets,
                                              doc_string=" -> ".join(block.op_types)))
        nodes.append(helper.make_node(name, inputs, outputs, name=name, domain=DOMAIN))
    constants = [protos[id(n)] for n in graph.nodes if n.op_type == "Constant"]
    del model.graph.node[:]
    model.graph.node.extend(constants + nodes)
    model.functions.extend(functions)
    model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return model
