"""Fusion planning: the ECG, the pair table, the DNNFusion planner, the O0/O1 baselines and the profile DB.

`plan_graph` plans a loaded, shaped and rewritten graph; `pipeline.plan_model` runs everything before it."""

from __future__ import annotations

import time
from typing import Any

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
               irs_bytes_before: int | None = None, rewrites: dict[str, Any] | None = None) -> Plan:
    """Plan a shaped, folded graph at `level` (O0 one block per operator, O1 fixed patterns, O2/O3 DNNFusion);
    `rewrites` says what rewriting did before (flops_before, flops_after, rules_fired), for the statistics."""
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
        plan.estimated = any(not d.measured for d in plan.yellow)
        plan.notes.extend(yellow_notes(plan, db is not None))
        if level == "O3":
            plan.notes.append(rewrite_note(rewrites or {}))
    plan.rewrites = dict(rewrites or {})
    plan.seconds = time.perf_counter() - start
    return plan


def rewrite_note(rewrites: dict[str, Any]) -> str:
    """What O3's rewriting (algebraic rules, decomposed operators recognised) did before planning."""
    fired = rewrites.get("rules_fired") or {}
    if not fired:
        return "O3 rewrote nothing: no algebraic rule or decomposed-operator pattern matched (O3 = O2 here)"
    rules = ", ".join(f"{name} x{count}" for name, count in sorted(fired.items(), key=lambda kv: -kv[1]))
    return (f"O3 rewrote the graph before planning ({rules}): FLOPs {rewrites.get('flops_before', 0):,} -> "
            f"{rewrites.get('flops_after', 0):,}")


def yellow_notes(plan: Plan, with_db: bool) -> list[str]:
    """Where the yellow-cell decisions came from: measured timings from the profile DB, or the cost model."""
    measured = sum(d.measured for d in plan.yellow)
    estimated = len(plan.yellow) - measured
    notes = []
    if measured:
        notes.append(f"{measured} of {len(plan.yellow)} yellow cells were decided by measured timings from the "
                     "profile database")
    if estimated:
        why = ("the profile database holds no measured timing of their patterns (the estimates it keeps are marked "
               "'estimate' and never count as hits)" if with_db else "no profile database was given")
        notes.append(f"{estimated} of {len(plan.yellow)} yellow cells were decided by the cost-model estimate "
                     f"(fusion/cost.py), not a measurement: {why}; timing compiled blocks with "
                     "dnnfusion.compile(..., profile=True) does not feed back into these decisions")
    return notes


__all__ = ["ECG", "LEVELS", "Block", "OpInfo", "Plan", "PlannerOptions", "ProfileDB", "Reason", "Rejection",
           "Verdict", "YellowDecision", "build_ecg", "pair", "plan_graph"]
