"""docs/RELIABILITY.md from a fuzzing run's Summary: what ran, the result classes, the findings with their
minimal reproducers, the mutated-file results, the hostile-input table and the op coverage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from .campaign import Summary
from .differential import ATOL, KINDS, RTOL
from .mutate import MUTATION_KINDS

HOSTILE_VERDICT = {"ok": "accepted", "rejected": "clean error", "crash": "**raw exception**"}


def _cell(text: object) -> str:
    """Text safe inside a markdown table cell."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text).replace("\n", " "))
    return text.replace("|", "\\|").replace("`", "'")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _per_minute(count: int, seconds: float) -> str:
    """A rate per minute, or '-' for an empty phase."""
    return f"{count / seconds * 60:.0f}" if seconds > 0 else "-"


def _run_section(s: Summary, command: str) -> list[str]:
    """What ran: command, date, seed, budget, machine and throughput."""
    return ["## Run", ""] + _table(["", ""], [
        ("command", command),
        ("date", s.date), ("seed", s.seed), ("budget", f"{s.minutes:g} min"),
        ("elapsed", f"{s.elapsed_s / 60:.1f} min"), ("machine", s.machine),
        ("random graphs", f"{s.graphs} in {s.graph_seconds / 60:.1f} min "
                          f"({_per_minute(s.graphs, s.graph_seconds)} per minute, each at {len(s.graph_results)} "
                          f"opt levels)"),
        ("mutated files", f"{s.mutations} in {s.mutation_seconds / 60:.1f} min "
                          f"({_per_minute(s.mutations, s.mutation_seconds)} per minute)"),
        ("worker restarts", s.worker_restarts),
    ]) + [""]


def _graph_section(s: Summary) -> list[str]:
    """Result classes of the random graphs per opt level."""
    rows = [(level, sum(c.values()), *(c.get(k, 0) for k in KINDS)) for level, c in s.graph_results.items()]
    return ["## Random graphs against onnxruntime", "",
            "Each seeded graph (valid per `onnx.checker.check_model(full_check=True)`) is compiled with "
            "`dnnfusion.compile(model, input_shapes, opt_level)` and run on seeded inputs; every output must match "
            f"onnxruntime's CPU provider in dtype, shape and values (rtol {RTOL:g}, atol {ATOL:g}). *crash*: an "
            "exception that is not a `DnnfusionError`, a `BuildError` (gcc refused the generated C), a dead worker "
            "or a timeout; *rejected*: a `DnnfusionError` "
            "on a valid graph; *ort-rejected*: onnxruntime refused the graph (skipped).", ""] + \
        _table(["opt level", "graphs", *KINDS], rows) + [""]


def _findings_section(s: Summary) -> list[str]:
    """One row per distinct finding."""
    lines = ["## Findings", ""]
    if not s.findings:
        return lines + ["None in this run.", ""]
    lines += ["One row per distinct failure (class, level, exception type and place in dnnfusion). Graph "
              "findings are shrunk to a minimal model; reproducers (`.onnx`, `.npz`, `test_*.py`) were written to "
              "the run's output folder, to be moved into `tests/fuzz/regressions/`. *where* is the innermost "
              "traceback frame inside dnnfusion.", ""]
    rows = [(k + 1, f.source, f.kind, f.level or "-", f.error_type, f.message, f.where or "-", f.reproducer,
             f.count) for k, f in enumerate(s.findings)]
    return lines + _table(["#", "source", "class", "level", "exception", "message (first line)", "where",
                           "minimal reproducer", "cases"], rows) + [""]


def _mutation_section(s: Summary) -> list[str]:
    """Result classes of the mutated files per mutation kind."""
    lines = ["## Mutated model files", "",
             "Valid generated models, corrupted at the byte level (`bytes:`) or through protobuf (`proto:`), "
             "are loaded, compiled and run (random feeds) in a worker with a memory limit and a timeout. "
             "Wanted: success (*ok*) or a `DnnfusionError` (*rejected*); anything else is a *crash* (a `BuildError` "
             "too: generated C that gcc refuses is a dnnfusion bug).", ""]
    rows = []
    for kind in [k for k in MUTATION_KINDS if k in s.mutation_results]:
        c = s.mutation_results[kind]
        rows.append((kind, sum(c.values()), c.get("ok", 0), c.get("rejected", 0), c.get("crash", 0)))
    total = Counter()
    for c in s.mutation_results.values():
        total.update(c)
    rows.append(("**all**", sum(total.values()), total.get("ok", 0), total.get("rejected", 0), total.get("crash", 0)))
    lines += _table(["mutation", "files", "ok", "rejected", "crash"], rows) + [""]
    if s.rejection_types:
        lines += ["Errors users got for rejected files: " + ", ".join(
            f"{name} {n}" for name, n in s.rejection_types.most_common()) + ".", ""]
    return lines


def _hostile_section(s: Summary) -> list[str]:
    """What users get for each hostile input."""
    rows = [(h["case"], h["error_type"] or "(none: it works)", HOSTILE_VERDICT.get(h["kind"], h["kind"]),
             h["message"]) for h in s.hostile]
    return ["## Hostile inputs", "",
            "A fixed list of named cases, each run as a user would meet it (`dnnfusion/fuzz/hostile.py`); the "
            "exception type users get.", ""] + _table(["case", "exception", "verdict", "message"], rows) + [""]


def _coverage_section(s: Summary) -> list[str]:
    """How many graphs used each op, in four column pairs."""
    ranked = sorted(s.coverage.items(), key=lambda kv: (-kv[1], kv[0]))
    cols = 4
    per = -(-len(ranked) // cols) if ranked else 0
    rows = []
    for r in range(per):
        row = []
        for c in range(cols):
            k = c * per + r
            row += [ranked[k][0], ranked[k][1]] if k < len(ranked) else ["", ""]
        rows.append(row)
    return ["## Op coverage", "", f"How many of the {s.graphs} random graphs used each op ({len(ranked)} ops).",
            ""] + _table(["op", "graphs"] * cols, rows) + [""]


def render(s: Summary, command: str) -> str:
    """The whole RELIABILITY.md text."""
    lines = ["# Reliability", "",
             "Generated by `python -m dnnfusion.fuzz` (`dnnfusion/fuzz/`) from one run; do not edit by hand, rerun "
             "it to refresh. Differential fuzzing against onnxruntime, corrupted model files and hostile inputs.",
             ""]
    for section in (_run_section(s, command), _graph_section(s), _findings_section(s), _mutation_section(s),
                    _hostile_section(s), _coverage_section(s)):
        lines += section
    return "\n".join(lines).rstrip() + "\n"


def write(s: Summary, path: Path, command: str) -> None:
    """Write the report to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(s, command))
