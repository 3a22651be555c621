"""A short seeded fuzzing run in the default suite: random graphs at O0 and O3 against onnxruntime
(in-process), and corrupted model files through the importer, which may only raise DnnfusionError.
The long runs are `python -m dnnfusion.fuzz` (see docs/RELIABILITY.md)."""

import resource
import signal
from contextlib import contextmanager

import pytest

from dnnfusion.fuzz.differential import check
from dnnfusion.fuzz.graphs import generate, make_feeds
from dnnfusion.fuzz.mutate import check_mutant, mutants

pytest.importorskip("onnxruntime")

SEED = 2024
GRAPHS = 24
MUTANTS = 200


@contextmanager
def bounded(seconds: int, extra_bytes: int = 3 << 30):
    """Fail instead of hanging or exhausting the machine: an alarm, and an address-space cap a few GB above
    what the test process already maps (restored afterwards)."""
    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    old = resource.getrlimit(resource.RLIMIT_AS)
    cap = mapped + extra_bytes
    if old[1] != resource.RLIM_INFINITY:
        cap = min(cap, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))

    def expire(*_):
        raise TimeoutError(f"case still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, old)


@pytest.mark.parametrize("level", ["O0", "O3"])
def test_random_graphs_match_onnxruntime(level):
    failures = []
    for k in range(GRAPHS):
        fg = generate(SEED * 1_000_003 + k)
        with bounded(60):
            outcome = check(fg.model.SerializeToString(), make_feeds(fg.model, fg.seed), level)
        if outcome.kind != "ok":
            failures.append(f"graph seed {fg.seed} ({' -> '.join(fg.op_sequence)}): {outcome}")
    assert not failures, "\n".join(failures)


def test_corrupted_files_raise_only_dnnfusion_errors():
    raw = []
    kinds = set()
    for m in mutants(SEED, MUTANTS):
        with bounded(20):
            outcome = check_mutant(m.data, compile_and_run=False)
        kinds.add(outcome.kind)
        if outcome.kind == "crash":
            raw.append(f"mutant {m.index} ({m.kind}): {outcome.error_type}: {outcome.message} at {outcome.where}")
    assert not raw, "\n".join(raw)
    assert "rejected" in kinds
