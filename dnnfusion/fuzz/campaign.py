"""One fuzzing run: hostile inputs, random graphs at each opt level, mutated model files, then shrinking of
each distinct failure; every case runs in the worker subprocess. Produces a `Summary` for the report."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from .differential import LEVELS, Outcome, check, check_cached
from .graphs import FuzzGraph, generate, make_feeds
from .hostile import CASES, run_hostile
from .mutate import Mutant, check_mutant, mutants
from .repro import save_graph_case, save_mutant_case
from .shrink import shrink
from .worker import Died, Worker

FAILURES = ("crash", "mismatch", "rejected")


@dataclass
class Config:
    """What to run and for how long; `graphs`/`mutations` cap the counts within the time budget."""

    seed: int = 0
    minutes: float = 5.0
    graphs: int | None = None
    mutations: int | None = None
    out: Path = Path("fuzz-out")
    levels: tuple[str, ...] = LEVELS
    case_timeout: float = 60.0
    mutant_timeout: float = 10.0          # a corrupted small file must be settled well within this
    memory_bytes: int = 4 << 30
    shrink_seconds: float = 60.0
    max_shrinks: int = 8
    max_nodes: int = 14
    hostile: bool = True


@dataclass
class Finding:
    """One distinct failure: what users get, where in dnnfusion, its minimal reproducer and how often seen."""

    source: str
    kind: str
    level: str
    error_type: str
    message: str
    where: str
    reproducer: str = ""
    path: str = ""
    count: int = 1
    example: int = 0


@dataclass
class Summary:
    """Everything the report shows about a run."""

    date: str
    seed: int
    minutes: float
    machine: str
    elapsed_s: float = 0.0
    graphs: int = 0
    graph_seconds: float = 0.0
    graph_results: dict[str, Counter] = field(default_factory=dict)
    coverage: Counter = field(default_factory=Counter)
    mutations: int = 0
    mutation_seconds: float = 0.0
    mutation_results: dict[str, Counter] = field(default_factory=dict)
    rejection_types: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    hostile: list[dict] = field(default_factory=list)
    worker_restarts: int = 0

    def to_json(self) -> dict:
        """Plain JSON-able data (Counters as dicts: dataclasses.asdict would rebuild them from pairs)."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["graph_results"] = {k: dict(v) for k, v in self.graph_results.items()}
        data["mutation_results"] = {k: dict(v) for k, v in self.mutation_results.items()}
        data["coverage"], data["rejection_types"] = dict(self.coverage), dict(self.rejection_types)
        data["findings"] = [asdict(f) for f in self.findings]
        return data


Progress = Callable[[str, float, float | None, str], None]


def _no_progress(phase: str, done: float, total: float | None, text: str) -> None:
    """The default progress sink: nothing."""


def _outcome(result: Outcome | Died, level: str = "") -> Outcome:
    """A worker result as an Outcome: a dead worker or an escaped exception is a crash."""
    if isinstance(result, Died):
        return Outcome("crash", level, result.error_type, result.message)
    return result


class Campaign:
    """A fuzzing run over one worker; `run()` returns the Summary."""

    def __init__(self, config: Config, progress: Progress = _no_progress) -> None:
        self.cfg = config
        self.progress = progress
        self.summary = Summary(datetime.datetime.now().astimezone().isoformat(timespec="seconds"), config.seed,
                               config.minutes, f"{platform.machine()}, {os.cpu_count()} cores, "
                                               f"Python {platform.python_version()}, onnx {onnx.__version__}")
        self.graph_failures: list[tuple[FuzzGraph, Outcome]] = []
        self.mutant_findings: dict[tuple[str, str], Finding] = {}

    def run(self) -> Summary:
        """All phases within the time budget (shrinking may overrun it a little so every finding gets a
        reproducer)."""
        cfg = self.cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        cache = Path(tempfile.mkdtemp(prefix="dnnfusion-fuzz-cache-"))
        start = time.monotonic()
        budget = cfg.minutes * 60
        try:
            with Worker(cfg.memory_bytes, {"DNNFUSION_CACHE_DIR": str(cache)}, cfg.out / "worker.log") as worker:
                self.worker = worker
                if cfg.hostile:
                    self._hostile()
                self._graphs(start + 0.55 * budget)
                self._mutations(start + (0.85 if self.graph_failures else 1.0) * budget)
                self._shrink_all(start + budget)
                self.summary.worker_restarts = worker.restarts
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        self.summary.elapsed_s = round(time.monotonic() - start, 1)
        self.summary.findings.sort(key=lambda f: (FAILURES.index(f.kind) if f.kind in FAILURES else 9, f.source))
        return self.summary

    def _hostile(self) -> None:
        """Each named hostile case once."""
        for k, name in enumerate(CASES):
            self.progress("hostile inputs", k, len(CASES), name)
            o = _outcome(self.worker.call(run_hostile, name, timeout=self.cfg.case_timeout))
            self.summary.hostile.append({"case": name, **o.to_dict()})
        self.progress("hostile inputs", len(CASES), len(CASES), "done")

    def _graphs(self, deadline: float) -> None:
        """Random graphs, each compiled and compared at every level, until the count or the deadline."""
        cfg, s = self.cfg, self.summary
        s.graph_results = {level: Counter() for level in cfg.levels}
        started = time.monotonic()
        while (cfg.graphs is None or s.graphs < cfg.graphs) and time.monotonic() < deadline:
            graph_seed = cfg.seed * 1_000_003 + s.graphs
            fg = generate(graph_seed, max_nodes=cfg.max_nodes)
            feeds = make_feeds(fg.model, graph_seed)
            data = fg.model.SerializeToString()
            s.coverage.update(fg.ops)
            for level in cfg.levels:
                o = _outcome(self.worker.call(check_cached, data, feeds, level, timeout=cfg.case_timeout), level)
                s.graph_results[level][o.kind] += 1
                if o.kind in FAILURES:
                    self.graph_failures.append((fg, o))
            s.graphs += 1
            self.progress("random graphs", *self._clock(started, deadline, s.graphs, cfg.graphs),
                          self._tally(s.graphs, "graphs", Counter(k for c in s.graph_results.values()
                                                                  for k in c.elements())))
        s.graph_seconds = round(time.monotonic() - started, 1)

    def _mutations(self, deadline: float) -> None:
        """Corrupted model files through import, compile and run, until the count or the deadline."""
        cfg, s = self.cfg, self.summary
        started = time.monotonic()
        totals: Counter = Counter()
        for m in mutants(cfg.seed):
            if (cfg.mutations is not None and s.mutations >= cfg.mutations) or time.monotonic() >= deadline:
                break
            o = _outcome(self.worker.call(check_mutant, m.data, True, timeout=cfg.mutant_timeout))
            s.mutation_results.setdefault(m.kind, Counter())[o.kind] += 1
            totals[o.kind] += 1
            if o.kind == "rejected":
                s.rejection_types[o.error_type] += 1
            elif o.kind == "crash":
                self._mutant_finding(m, o)
            s.mutations += 1
            self.progress("mutated files", *self._clock(started, deadline, s.mutations, cfg.mutations),
                          self._tally(s.mutations, "files", totals))
        s.mutation_seconds = round(time.monotonic() - started, 1)

    def _mutant_finding(self, m: Mutant, o: Outcome) -> None:
        """Count a crashing mutant under its (type, place); the first of each is saved with a test file."""
        key = (o.error_type, o.where)
        if key in self.mutant_findings:
            self.mutant_findings[key].count += 1
            return
        path = save_mutant_case(self.cfg.out, m.data, m.kind, o.error_type, o.message, self.cfg.seed,
                                self.cfg.mutant_timeout)
        finding = Finding("mutant", o.kind, "", o.error_type, o.message, o.where, f"{m.kind}: {m.describe()}",
                          str(path), 1, m.index)
        self.mutant_findings[key] = finding
        self.summary.findings.append(finding)

    def _shrink_all(self, deadline: float) -> None:
        """Shrink the first graph of each distinct failure (class, exception, place; the levels where it
        happened are listed together) and save it."""
        groups: dict[tuple, list[tuple[FuzzGraph, Outcome]]] = {}
        for fg, o in self.graph_failures:
            groups.setdefault((o.kind, o.error_type, o.where), []).append((fg, o))
        order = sorted(groups, key=lambda k: FAILURES.index(k[0]))
        for k, key in enumerate(order):
            fg, o = groups[key][0]
            self.progress("shrinking", k, len(order), f"{o.kind} {o.error_type} at {o.level}")
            if k < self.cfg.max_shrinks:
                seconds = min(self.cfg.shrink_seconds, max(15.0, (deadline - time.monotonic()) / (len(order) - k)))
                model, o = self._shrink_one(fg, o, seconds)
            else:
                model = fg.model
            path = save_graph_case(self.cfg.out, model, make_feeds(model, fg.seed), o.kind, o.level, o.message,
                                   self.cfg.seed, fg.seed)
            ops = " -> ".join(n.op_type for n in model.graph.node)
            levels = ", ".join(sorted({case.level for _, case in groups[key]}))
            self.summary.findings.append(Finding("graph", o.kind, levels, o.error_type, o.message, o.where, ops,
                                                 str(path), len(groups[key]), fg.seed))
        self.progress("shrinking", len(order), max(len(order), 1), "done")

    def _shrink_one(self, fg: FuzzGraph, target: Outcome, seconds: float) -> tuple[onnx.ModelProto, Outcome]:
        """The smallest model that still fails with the same signature, and its outcome."""
        last = [target]

        def still_fails(model: onnx.ModelProto) -> bool:
            result = _outcome(self.worker.call(check, model.SerializeToString(), make_feeds(model, fg.seed),
                                               target.level, timeout=self.cfg.case_timeout), target.level)
            if result.signature() == target.signature():
                last[0] = result
                return True
            return False

        model, _ = shrink(fg.model, still_fails, seconds=seconds)
        return model, last[0]

    @staticmethod
    def _clock(started: float, deadline: float, done: int, cap: int | None) -> tuple[float, float]:
        """Progress as (done, total): by count when the phase has a count cap, else by time."""
        if cap is not None:
            return float(done), float(cap)
        return time.monotonic() - started, max(deadline - started, 1e-9)

    @staticmethod
    def _tally(n: int, noun: str, counts: Counter) -> str:
        """A progress line: how many cases and how many of each class."""
        parts = " ".join(f"{k} {counts[k]}" for k in ("ok", "mismatch", "crash", "rejected", "ort-rejected")
                         if counts[k])
        return f"{n} {noun}: {parts}"
