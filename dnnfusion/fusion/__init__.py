"""Fusion planning: the ECG, the pair table, the DNNFusion planner, the O0/O1 baselines and the profile DB.

`plan_model(model, input_shapes, level)` runs the whole front half of the pipeline (import, shapes, folding,
ECG, plan); `plan_graph` plans an already loaded graph."""

from __future__ import annotations

import time
from typing import Mapping, Sequence

from ..errors import DnnfusionError
from ..ir import from_onnx, infer_shapes
from ..ir.graph import Graph
from ..ir.onnx_import import ModelSource
from ..rewrite.fold import fold_constants
from ..rewrite.padded import pad_dynamic_extents
from ..rewrite.structural import fold_channel_affine
from .baselines import plan_o0, plan_o1
from .ecg import ECG, OpInfo, build_ecg
from .plan import Block, Plan, Reason, Rejection, YellowDecision
from .planner import PlannerOptions, plan_dnnfusion
from .profile_db import ProfileDB
from .table import Verdict, pair

LEVELS = ("O0", "O1", "O2", "O3")


def plan_graph(graph: Graph, level: str = "O3", db: ProfileDB | None = None,
               options: PlannerOptions = PlannerOptions(), ops_before: int | None = None,
               irs_bytes_before: int | None = None) -> Plan:
    """Plan a shaped, folded graph at `level` (O0 one block per operator, O1 fixed patterns, O2/O3 DNNFusion)."""
    if level not in LEVELS:
        raise DnnfusionError(f"unknown optimization level '{level}' (use one of {', '.join(LEVELS)})")
    start = time.perf_counter()
    ecg = build_ecg(graph)
    plan = Plan(ecg, [], level, ops_before if ops_before is not None else len(ecg.ops),
                irs_bytes_before if irs_bytes_before is not None else sum(v.nbytes for v in graph.intermediates()))
    if level == "O0":
        plan.blocks = plan_o0(ecg)
    elif level == "O1":
        plan.blocks = plan_o1(ecg)
    else:
        plan.blocks, plan.rejections, plan.yellow, plan.db_hits, plan.db_misses = plan_dnnfusion(ecg, db, options)
        plan.estimated = any(d.source == "estimate" for d in plan.yellow)
        if plan.estimated:
            plan.notes.append("yellow cells without a profile-DB entry were decided by the cost-model estimate "
                              "(fusion/cost.py): fused code cannot be timed until code generation exists")
        if level == "O3":
            plan.notes.append("O3 = O2 today: algebraic rewriting (DESIGN §2.4) is not implemented yet")
    plan.seconds = time.perf_counter() - start
    return plan


def prepare_graph(graph: Graph, level: str = "O3") -> None:
    """The rewrites before planning: constant folding and data-dependent extents padded to a static bound at
    every level, and from O1 up (ORT and TVM do it too) per-channel affine maps such as BatchNormalization
    folded into the preceding conv/Gemm weights."""
    fold_constants(graph)
    pad_dynamic_extents(graph)
    if level != "O0":
        fold_channel_affine(graph)


def plan_model(model: ModelSource, input_shapes: Mapping[str, Sequence[int]] | None = None, level: str = "O3",
               db: ProfileDB | None = None, options: PlannerOptions = PlannerOptions()) -> Plan:
    """Import, bind shapes, count what was loaded (DESIGN §5), fold, and plan."""
    graph = infer_shapes(from_onnx(model), input_shapes)
    ops_before = sum(n.op_type != "Constant" for n in graph.nodes)
    irs_before = sum(v.nbytes for v in graph.intermediates() if v.is_static)
    prepare_graph(graph, level)
    return plan_graph(graph, level, db, options, ops_before, irs_before)


__all__ = ["ECG", "LEVELS", "Block", "OpInfo", "Plan", "PlannerOptions", "ProfileDB", "Reason", "Rejection",
           "Verdict", "YellowDecision", "build_ecg", "pair", "plan_graph", "plan_model",
           "prepare_graph"]
