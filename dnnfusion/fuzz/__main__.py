"""`python -m dnnfusion.fuzz`: run a seeded fuzzing campaign with a live progress display, write the
reproducers and summary.json to --out and, with --doc, the RELIABILITY.md report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import report
from .campaign import Campaign, Config, Summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m dnnfusion.fuzz",
                                description="Differential fuzzing of dnnfusion against onnxruntime.")
    p.add_argument("--minutes", type=float, default=5.0, help="time budget for the whole run (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the run; the same seed replays the same cases")
    p.add_argument("--graphs", type=int, default=None, help="stop generating graphs after this many")
    p.add_argument("--mutations", type=int, default=None, help="stop mutating model files after this many")
    p.add_argument("--out", type=Path, default=Path("fuzz-out"), help="folder for reproducers and summary.json")
    p.add_argument("--doc", type=Path, default=None, help="write the RELIABILITY.md report here")
    p.add_argument("--levels", default="O0,O3", help="opt levels to compare (default O0,O3)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per graph case before it counts as a hang")
    p.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit of the worker process")
    p.add_argument("--max-nodes", type=int, default=14, help="largest number of generated nodes per graph")
    p.add_argument("--no-hostile", action="store_true", help="skip the fixed list of hostile inputs")
    return p.parse_args(argv)


def _config(args: argparse.Namespace) -> Config:
    """The campaign's Config from the parsed command line."""
    return Config(seed=args.seed, minutes=args.minutes, graphs=args.graphs, mutations=args.mutations, out=args.out,
                  levels=tuple(s.strip() for s in args.levels.split(",") if s.strip()), case_timeout=args.timeout,
                  memory_bytes=int(args.memory_gb * (1 << 30)), max_nodes=args.max_nodes,
                  hostile=not args.no_hostile)


def _print_summary(console: Console, s: Summary) -> None:
    """Result classes per level and the findings, as tables."""
    table = Table(title=f"{s.graphs} graphs, {s.mutations} mutated files, {len(s.hostile)} hostile inputs")
    for col in ("cases", "ok", "mismatch", "crash", "rejected", "ort-rejected"):
        table.add_column(col)
    for level, c in s.graph_results.items():
        table.add_row(f"graphs {level}", *(str(c.get(k, 0)) for k in ("ok", "mismatch", "crash", "rejected",
                                                                     "ort-rejected")))
    mutated = {k: sum(c.get(k, 0) for c in s.mutation_results.values()) for k in ("ok", "crash", "rejected")}
    table.add_row("mutated files", str(mutated["ok"]), "-", str(mutated["crash"]), str(mutated["rejected"]), "-")
    console.print(table)
    if s.findings:
        found = Table(title="findings")
        for col in ("source", "class", "level", "exception", "where", "reproducer", "cases"):
            found.add_column(col, overflow="fold")
        for f in s.findings:
            found.add_row(f.source, f.kind, f.level or "-", f.error_type, f.where or "-", f.reproducer, str(f.count))
        console.print(found)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the campaign; exit status 1 when it found crashes or mismatches."""
    args = parse_args(argv)
    console = Console(stderr=True)
    command = "python -m dnnfusion.fuzz " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                              else sys.argv[1:]))
    columns = (SpinnerColumn(), TextColumn("[bold]{task.fields[phase]:<15}"), BarColumn(),
               TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, int] = {}

        def update(phase: str, done: float, total: float | None, text: str) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(text, total=total, phase=phase)
            progress.update(tasks[phase], completed=done, total=total, description=text)

        summary = Campaign(_config(args), update).run()
        for task in progress.tasks:
            progress.update(task.id, completed=task.total or 1, total=task.total or 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary.to_json(), indent=1, default=str))
    if args.doc is not None:
        report.write(summary, args.doc, command)
        console.print(f"wrote {args.doc}")
    _print_summary(console, summary)
    return 1 if any(f.kind in ("crash", "mismatch") for f in summary.findings) else 0


if __name__ == "__main__":
    sys.exit(main())
