"""Where the time goes: per-kernel timings of a compiled model (profiled build) against onnxruntime's per-node
profile, split into dense kernels (GEMM/convolution: the next issue's microkernels) and everything else
(elementwise, reductions, softmax, normalisation, data movement), which fusion must already make faster."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping

from .. import ops
from ..oracle import import_onnxruntime

# onnxruntime's node types that are GEMM or convolution work (its own fused contrib ops included).
ORT_DENSE = {"MatMul", "Gemm", "Conv", "ConvTranspose", "FusedMatMul", "FusedConv", "FusedGemm", "Attention",
             "MultiHeadAttention", "MatMulInteger", "ConvInteger", "QLinearConv", "QLinearMatMul", "NchwcConv",
             "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FusedMatMulActivation"}


@dataclass
class Breakdown:
    dense_seconds: float
    other_seconds: float
    by_type: dict[str, float]       # operator type (ours: the block's dominant operator) -> seconds


def dnnfusion_breakdown(compiled: Any, feeds: Mapping[str, Any], runs: int = 10) -> Breakdown:
    """Per-block times of a model compiled with profile=True, best run per block, summed by kind."""
    best = [float("inf")] * len(compiled.plan.blocks)
    compiled.block_seconds(reset=True)
    for _ in range(runs):
        compiled.run(feeds)
        best = [min(b, t) for b, t in zip(best, compiled.block_seconds(reset=True))]
    dense = other = 0.0
    by_type: dict[str, float] = {}
    for block, seconds in zip(compiled.plan.blocks, best):
        seconds = 0.0 if seconds == float("inf") else seconds
        anchor = next((o.node for o in block.ops if ops.lookup(o.node).dense), None)
        if anchor is not None:
            dense += seconds
        else:
            other += seconds
        key = (anchor or max(block.ops, key=lambda o: o.flops).node).op_type
        by_type[key] = by_type.get(key, 0.0) + seconds
    return Breakdown(dense, other, by_type)


def onnxruntime_breakdown(model_path: str, feeds: Mapping[str, Any], threads: int, runs: int = 10,
                          optimized: bool = True) -> Breakdown:
    """onnxruntime's own per-node profile (best run per node), summed by kind."""
    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "ort")
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, dict(feeds))
        events = json.loads(open(session.end_profiling()).read())
    best: dict[str, tuple[str, float]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        name, kind, seconds = event["name"], event.get("args", {}).get("op_name", "?"), event["dur"] * 1e-6
        if name not in best or seconds < best[name][1]:
            best[name] = (kind, seconds)
    dense = sum(t for kind, t in best.values() if kind in ORT_DENSE)
    by_type: dict[str, float] = {}
    for kind, t in best.values():
        by_type[kind] = by_type.get(kind, 0.0) + t
    return Breakdown(dense, sum(t for _, t in best.values()) - dense, by_type)
