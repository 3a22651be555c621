"""Fusion planning: the ECG, the pair table, the DNNFusion planner, the O0/O1 baselines and the profile DB.

`plan_graph` plans a loaded, shaped and rewritten graph; `pipeline.plan_model` runs everything before it."""

from __future__ import annotations

import time

from ..errors import DnnfusionError
from ..ir.graph import Graph
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


__all__ = ["ECG", "LEVELS", "Block", "OpInfo", "Plan", "PlannerOptions", "ProfileDB", "Reason", "Rejection",
           "Verdict", "YellowDecision", "build_ecg", "pair", "plan_graph"]
