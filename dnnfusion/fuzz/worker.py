"""A reusable worker subprocess for fuzz cases: spawned once, reused for many cases, with a per-call timeout
and a memory limit, and restarted when it dies, so a segfault, a hang or a runaway allocation in generated code
or in the importer is recorded as a finding instead of killing the fuzzer (or the machine)."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

DEFAULT_MEMORY = 4 << 30


@dataclass
class Died:
    """A call that returned no result: the worker was killed by a signal, exited, timed out or raised."""

    error_type: str
    message: str


def limit_memory(max_bytes: int) -> None:
    """Cap this process's address space (and so any allocation) at `max_bytes`; no core files."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = max_bytes if hard == resource.RLIM_INFINITY else min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _serve(conn, memory_bytes: int, env: Mapping[str, str], log_path: str | None) -> None:
    """The worker's loop: receive (function, args), send back ("ok", result) or ("raised", type, message)."""
    os.environ.update(env)
    target = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 1)
    os.dup2(target, 2)
    limit_memory(memory_bytes)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        fn, args = request
        try:
            conn.send(("ok", fn(*args)))
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which records it
            conn.send(("raised", type(e).__name__, str(e).splitlines()[0] if str(e) else ""))


class Worker:
    """`call(fn, *args, timeout=...)` runs a module-level function in the worker; a `Died` when it failed."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None) -> None:
        self.memory_bytes = memory_bytes
        self.env = dict(env or {})
        self.log_path = str(log_path) if log_path else None
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        """Spawn the worker process and connect to it."""
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child, self.memory_bytes, self.env, self.log_path),
                                       daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def _kill(self) -> None:
        """Kill the worker (if alive) and forget it; the next call starts a fresh one."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self.restarts += 1

    def call(self, fn: Callable, *args: Any, timeout: float = 60.0) -> Any:
        """fn(*args) in the worker; a `Died` on a signal, an exit, a timeout or an exception that escaped fn."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((fn, args))
            ready = self._conn.poll(timeout)
        except (BrokenPipeError, EOFError, OSError):
            ready = True
        if not ready:
            self._kill()
            return Died("Timeout", f"no result after {timeout:.0f} s")
        try:
            reply = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            code = self._proc.exitcode
            self._kill()
            if code is not None and code < 0:
                name = signal.Signals(-code).name
                return Died(name, f"the worker was killed by {name}")
            return Died("WorkerExit", f"the worker exited with code {code}")
        if reply[0] == "raised":
            return Died(reply[1], reply[2])
        return reply[1]

    def close(self) -> None:
        """Stop the worker (politely, then by force)."""
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(3)
        self._kill()
        self.restarts -= 1

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
