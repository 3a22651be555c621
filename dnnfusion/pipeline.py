"""The compilation pipeline, named once: load (import, bind shapes, fold) -> rewrite -> plan -> generate and build.
Every entry point (the API, the CLI, the onnx backend, the zoo, the benchmarks) goes through these functions."""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from .codegen.build import build_and_load
from .codegen.program import Program, generate
from .fusion import LEVELS, Block, Plan, PlannerOptions, ProfileDB, plan_graph
from .ir import Graph, ModelSource, from_onnx
from .machine import missing_features, required_features, targeting
from .ops.conv import DIRECT
from .options import CompileOptions, resolve
from .passes import InputShapes, RewriteOptions, RewriteReport, fold_channel_affine, fold_constants, infer_shapes, \
    pad_dynamic_extents, pick_rows_first, rewrite_graph
from .passes.rewrite import graph_flops
from .runtime.compiled import BuildInfo, CompiledModel
from .runtime.feeds import random_feeds
from .runtime.limits import check_memory, size_text

__all__ = ["LEVELS", "CompileOptions", "build_plan", "compile_graph", "compile_model", "load", "plan_model",
           "prepare_graph"]


def load(source: ModelSource, input_shapes: InputShapes | None = None, fold: bool = True) -> Graph:
    """Import a model, bind its input shapes, propagate static shapes and (by default) fold constants."""
    graph = infer_shapes(from_onnx(source), input_shapes)
    if fold:
        fold_constants(graph)
    return graph


def prepare_graph(graph: Graph, level: str = "O3", rewriting: RewriteOptions = RewriteOptions()) -> dict[str, Any]:
    """The rewrites before planning: constant folding and data-dependent extents padded to a static bound at
    every level, and from O1 up (ORT and TVM do it too) per-channel affine maps such as BatchNormalization
    folded into the preceding conv/Gemm weights; from O2 up, rows picked out of stacked results computed alone
    (`pick_rows_first`: a feature pyramid's RoiAlign levels); at O3, the algebraic rules and decomposed-operator
    recognition (passes/rewrite) that `rewriting` chooses. Returns what rewriting did (flops_before, flops_after,
    rules_fired) for the plan's statistics."""
    fold_constants(graph)
    pad_dynamic_extents(graph)
    if level != "O0":
        fold_channel_affine(graph)
    if level in ("O2", "O3"):
        pick_rows_first(graph)
    if level != "O3":
        flops = graph_flops(graph)
        return RewriteReport(flops, flops).as_stats()
    report = rewrite_graph(graph, rewriting)
    if report.fired:
        fold_constants(graph)
    return report.as_stats()


def plan_model(model: ModelSource, input_shapes: InputShapes | None = None, level: str = "O3",
               db: ProfileDB | None = None, options: PlannerOptions = PlannerOptions(),
               rewriting: RewriteOptions = RewriteOptions()) -> Plan:
    """Import, bind shapes, count what was loaded (DESIGN §5), rewrite, and plan."""
    graph = load(model, input_shapes, fold=False)
    ops_before = len(graph.operators())
    irs_before = sum(v.nbytes for v in graph.intermediates() if v.is_static)
    rewrites = prepare_graph(graph, level, rewriting)
    return plan_graph(graph, level, db, options, ops_before, irs_before, rewrites)


def compile_graph(graph: Graph, options: CompileOptions | None = None, **fields: object) -> CompiledModel:
    """Rewrite, plan, generate and build an already loaded and shaped graph (the onnx backend's path)."""
    started = time.perf_counter()
    chosen = resolve(options, **fields)
    with targeting(chosen.target):
        rewrites = prepare_graph(graph, chosen.opt_level, chosen.rewriting)
        plan = plan_graph(graph, chosen.opt_level, ProfileDB(threads=chosen.threads), chosen.planner,
                          rewrites=rewrites)
        return build_plan(plan, chosen, started)


TUNE_CANDIDATES = 3      # methods measured per block that chooses one: the estimate's best few
TUNE_RUNS = 5            # profiled runs per round; a block's time is its best one


@functools.lru_cache(maxsize=None)
def kernels_fingerprint() -> str:
    """A hash of the kernel templates' source (dnnfusion/kernels): timings of kernel methods measured with other
    templates are not reused."""
    folder = Path(__file__).with_name("kernels")
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def block_key(block: Block) -> dict:
    """What identifies a block's timing across models: its operators' types, input shapes and attributes, and
    the kernel templates' version."""
    return {"kernels": kernels_fingerprint(),
            "ops": [[op.node.op_type, [list(v.shape) if v is not None else None for v in op.node.inputs],
                     repr(sorted(op.node.attrs.items()))] for op in block.ops]}


def tune_methods(plan: Plan, options: CompileOptions, db: ProfileDB,
                 measure: bool = True) -> tuple[tuple[str, str], ...]:
    """The fastest measured method per node whose kernel chooses one (`Plan.kernel_choices`), among the
    estimate's TUNE_CANDIDATES best, for the nodes whose candidates all have a time in the profile database.
    With `measure`, the untimed ones are timed first in the compiled model itself (profiled blocks, so each in
    its own block with its fused producers and epilogue, at the options' threads), one build per round in
    which every block tries its next untimed candidate; a candidate the template cannot generate is recorded
    as infinitely slow."""
    choosing = plan.choosing_nodes(options.kernels)
    anchors = {position: node for position, (node, _) in choosing.items()}
    keys = {position: block_key(plan.blocks[position]) for position in choosing}
    candidates = {position: [name for name, _ in found[:TUNE_CANDIDATES]] for position, (_, found) in choosing.items()}
    feeds = random_feeds(plan.ecg.graph) if measure and choosing else {}
    for _ in range(TUNE_CANDIDATES if measure else 0):
        trial = {}
        for position, names in candidates.items():
            timed = db.method_seconds(keys[position])
            untimed = [name for name in names if name not in timed]
            if untimed:
                trial[position] = untimed[0]
        if not trial:
            break
        compiled = build_plan(plan, options.replace(profile=True, tune=False, methods=tuple(
            (anchors[position].name, name) for position, name in trial.items())))
        best = None
        for _ in range(TUNE_RUNS + 1):                  # best of the runs; the first one warms up
            compiled.block_seconds(reset=True)
            compiled.run(feeds)
            seconds = np.array(compiled.block_seconds(reset=True))
            best = seconds if best is None else np.minimum(best, seconds)
        for position, name in trial.items():
            ran = compiled.program.methods.get(position, DIRECT) == name
            db.record_method(keys[position], name, float(best[position]) if ran else float("inf"))
    chosen = []
    for position, names in candidates.items():
        timed = db.method_seconds(keys[position])
        if all(name in timed for name in names) and min(timed[name] for name in names) < float("inf"):
            chosen.append((anchors[position].name, min(names, key=lambda name: timed[name])))
    return tuple(chosen)


def build_plan(plan: Plan, options: CompileOptions, started: float | None = None) -> CompiledModel:
    """Generate C for a plan, check that it fits in memory, build it with the options' toolchain and load it."""
    started = started if started is not None else time.perf_counter()
    with targeting(options.target):
        program = generate(plan, options.profile, options.kernels)
    check_program_memory(program)
    toolchain = options.build_toolchain
    library_path, library = build_and_load(program.source, toolchain) if program.native_calls else (None, None)
    return CompiledModel(program, library_path, library, options.threads, time.perf_counter() - started,
                         BuildInfo(options.target, toolchain))


def runs_here(target: str) -> bool:
    """Whether this CPU runs code built for `target` (tuning measures only where it does)."""
    return not missing_features(required_features(target))


def check_program_memory(program: Program) -> None:
    """The arena, one set of outputs and the weights must fit in this machine's memory."""
    graph = program.plan.ecg.graph
    outputs = [v for v in graph.outputs if v.is_static]
    values = outputs + [v for n in graph.nodes for v in n.outputs if v is not None and v.is_static]
    biggest = max(values, key=lambda v: v.nbytes, default=None)
    largest = "none" if biggest is None else f"'{biggest.name}'" + (
        f" of {biggest.producer.op_type} node '{biggest.producer.name}'" if biggest.producer else "") + \
        f", {size_text(biggest.nbytes)}"
    check_memory({"arena": program.arena_bytes, "outputs": sum(v.nbytes for v in outputs),
                  "weights": int(program.weights.size)}, largest)


def compile_model(model: ModelSource, input_shapes: InputShapes | None = None,
                  options: CompileOptions | None = None, **fields: object) -> CompiledModel:
    """Plan `model`, generate C for the plan, build and load it, as `options` (and any CompileOptions fields
    given by name, e.g. opt_level="O0") say."""
    started = time.perf_counter()
    chosen = resolve(options, **fields)
    db = ProfileDB(threads=chosen.threads)
    with targeting(chosen.target):
        plan = plan_model(model, input_shapes, chosen.opt_level, db, chosen.planner, chosen.rewriting)
        if chosen.winograd:          # measured kernel methods where the profile database has them (tune: measure)
            chosen = chosen.replace(tune=False, methods=tune_methods(plan, chosen, db, chosen.tune and runs_here(chosen.target))
                                    + chosen.methods)
    return build_plan(plan, chosen, started)
