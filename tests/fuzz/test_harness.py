"""The fuzzing harness around the generator: the worker survives crashes and hangs, the mutators and hostile
cases run, and the CLI writes reproducers and the report."""

import json
import os
import time

from dnnfusion.fuzz.__main__ import main
from dnnfusion.fuzz.campaign import Finding, Summary
from dnnfusion.fuzz.hostile import CASES
from dnnfusion.fuzz.mutate import MUTATION_KINDS, mutants
from dnnfusion.fuzz.report import render
from dnnfusion.fuzz.worker import Died, Worker


def test_the_worker_survives_an_abort_and_a_hang():
    with Worker(memory_bytes=2 << 30) as worker:
        assert worker.call(pow, 2, 10) == 1024
        died = worker.call(os.abort)
        assert isinstance(died, Died) and died.error_type == "SIGABRT"
        hung = worker.call(time.sleep, 30, timeout=1)
        assert isinstance(hung, Died) and hung.error_type == "Timeout"
        raised = worker.call(int, "x")
        assert isinstance(raised, Died) and raised.error_type == "ValueError"
        assert worker.call(pow, 3, 3) == 27 and worker.restarts == 2


def test_mutants_are_seeded_and_cover_every_kind():
    a = [m.data for m in mutants(5, 40)]
    assert a == [m.data for m in mutants(5, 40)]
    assert {m.kind for m in mutants(5, len(MUTATION_KINDS))} == set(MUTATION_KINDS)


def test_the_report_lists_findings_and_hostile_cases():
    s = Summary("2026-01-01", 3, 1.0, "test machine", graphs=2, graph_seconds=6.0,
                graph_results={"O0": {"ok": 2}}, coverage={"Add": 2})
    s.findings.append(Finding("graph", "crash", "O3", "KeyError", "'x' | bad", "dnnfusion/a.py:1 (f)", "Add -> Relu"))
    s.hostile.append({"case": "empty file", "kind": "rejected", "error_type": "ModelLoadError", "message": "m"})
    text = render(s, "python -m dnnfusion.fuzz")
    assert "| 1 | graph | crash | O3 | KeyError | 'x' \\| bad |" in text
    assert "| empty file | ModelLoadError | clean error | m |" in text and "20 per minute" in text


def test_the_cli_runs_a_tiny_campaign(tmp_path):
    doc = tmp_path / "RELIABILITY.md"
    main(["--minutes", "1", "--graphs", "2", "--mutations", "12", "--no-hostile", "--out", str(tmp_path),
          "--doc", str(doc), "--seed", "5"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["graphs"] == 2 and summary["mutations"] == 12
    assert sum(summary["graph_results"]["O3"].values()) == 2
    assert "## Hostile inputs" in doc.read_text() and len(CASES) >= 15
