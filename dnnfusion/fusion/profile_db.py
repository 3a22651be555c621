"""The persistent profile database (DESIGN §2.5): whether a fused pattern beat its parts, keyed by the pattern
(operator types in order, shapes, dtypes, layout), the machine (CPU model, ISA, threads) and the code version.
SQLite in the user cache directory, in WAL mode with a busy timeout, one short transaction per write, so
concurrent planners (pytest workers, parallel compiles) share it safely.

Each entry says where its times come from: "measured" (timed on this machine) or "estimate" (the cost model's,
which the planner records for every yellow cell it meets). Only measured entries answer `lookup`, so a plan's
profile-DB hits are measurements; an estimate is recomputed each time and never replaces a measurement."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterator

from ..cache import cache_dir
from ..machine import machine_key

MEASURED = "measured"            # Profile.source of a timing taken on this machine
ESTIMATE = "estimate"            # Profile.source of the cost model's figures (fusion/cost.py)
NOT_GENERATED = "not generated"  # a kernel method the template could not generate (recorded as infinitely slow)

CODE_VERSION = "plan-1"          # bump when what a pattern's timing means changes (codegen, kernels)

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    pattern_hash TEXT NOT NULL,
    machine TEXT NOT NULL,
    code_version TEXT NOT NULL,
    pattern TEXT NOT NULL,
    fused_seconds REAL NOT NULL,
    unfused_seconds REAL NOT NULL,
    source TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (pattern_hash, machine, code_version)
)"""

# Measured seconds of a block whose kernel chooses its method (Op.kernel_choices), one row per method tried.
METHODS_SCHEMA = """
CREATE TABLE IF NOT EXISTS kernel_methods (
    key_hash TEXT NOT NULL,
    machine TEXT NOT NULL,
    code_version TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (key_hash, machine, code_version, method)
)"""


@dataclass(frozen=True)
class Profile:
    fused_seconds: float
    unfused_seconds: float
    source: str                      # ESTIMATE (cost model) or MEASURED

    @property
    def fuse(self) -> bool:
        return self.fused_seconds < self.unfused_seconds


def code_version() -> str:
    try:
        return f"{metadata.version('dnnfusion')}/{CODE_VERSION}"
    except metadata.PackageNotFoundError:
        return CODE_VERSION


class ProfileDB:
    """Open (creating if needed) the database at `path` (default: the user cache directory)."""

    def __init__(self, path: Path | None = None, threads: int | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / "profiles.sqlite"
        self.machine = machine_key(threads)
        self.version = code_version()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
            db.execute(METHODS_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (each statement its own transaction), closed afterwards."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def pattern_hash(pattern: object) -> str:
        return hashlib.sha256(json.dumps(pattern, sort_keys=True).encode()).hexdigest()

    def lookup(self, pattern: object) -> Profile | None:
        """The measured profile of `pattern` on this machine and code version; None when it was never measured
        (an estimate recorded for it does not count: the caller estimates afresh)."""
        with self._connect() as db:
            row = db.execute("SELECT fused_seconds, unfused_seconds, source FROM profiles WHERE pattern_hash=? "
                             "AND machine=? AND code_version=? AND source=?",
                             (self.pattern_hash(pattern), self.machine, self.version, MEASURED)).fetchone()
        return Profile(*row) if row else None

    def record(self, pattern: object, profile: Profile) -> None:
        """Store `profile` for `pattern`: a measurement replaces any entry; an estimate is stored only where the
        pattern has no entry yet (so re-planning writes nothing, and never replaces a measurement)."""
        row = (self.pattern_hash(pattern), self.machine, self.version, json.dumps(pattern, sort_keys=True),
               profile.fused_seconds, profile.unfused_seconds, profile.source, time.time())
        verb = "INSERT OR REPLACE" if profile.source == MEASURED else "INSERT OR IGNORE"
        with self._connect() as db:
            db.execute(f"{verb} INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def method_seconds(self, key: object) -> dict[str, float]:
        """The measured seconds of each kernel method recorded for the block described by `key`, on this
        machine and code version."""
        with self._connect() as db:
            rows = db.execute("SELECT method, seconds FROM kernel_methods WHERE key_hash=? AND machine=? AND "
                              "code_version=?", (self.pattern_hash(key), self.machine, self.version)).fetchall()
        return dict(rows)

    def record_method(self, key: object, method: str, seconds: float) -> None:
        """Record one measured time of a kernel method for the block described by `key`."""
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO kernel_methods VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (self.pattern_hash(key), self.machine, self.version, json.dumps(key, sort_keys=True),
                        method, seconds, time.time()))

    def stats(self) -> dict[str, object]:
        with self._connect() as db:
            total = db.execute("SELECT COUNT(*) FROM profiles").fetchone()[0]
            by = db.execute("SELECT machine, code_version, source, COUNT(*), SUM(fused_seconds < unfused_seconds) "
                            "FROM profiles GROUP BY machine, code_version, source").fetchall()
            methods = db.execute("SELECT COUNT(*), COUNT(DISTINCT key_hash) FROM kernel_methods").fetchone()
        counts = {source: sum(n for _, _, s, n, _ in by if s == source) for source in (MEASURED, ESTIMATE)}
        return {"path": str(self.path), "bytes": self.path.stat().st_size if self.path.exists() else 0,
                "entries": total, "measured_entries": counts[MEASURED], "estimated_entries": counts[ESTIMATE],
                "this_machine": self.machine, "code_version": self.version,
                "kernel_method_timings": methods[0], "kernel_method_blocks": methods[1],
                "groups": [{"machine": m, "code_version": v, "source": s, "entries": n, "fused": int(f or 0)}
                           for m, v, s, n, f in by]}

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        with self._connect() as db:
            count = db.execute("SELECT COUNT(*) FROM profiles").fetchone()[0]
            db.execute("DELETE FROM profiles")
            db.execute("DELETE FROM kernel_methods")
        return count

    def rows(self) -> Iterator[dict[str, object]]:
        """Every fused-pattern entry, oldest first, with its source: "measured" or "estimate"."""
        with self._connect() as db:
            rows = db.execute("SELECT pattern, machine, code_version, fused_seconds, unfused_seconds, source, "
                              "created FROM profiles ORDER BY created").fetchall()
        for pattern, machine, version, fused, unfused, source, created in rows:
            yield {"pattern": json.loads(pattern), "machine": machine, "code_version": version,
                   "fused_seconds": fused, "unfused_seconds": unfused, "source": source, "created": created}

    def method_rows(self) -> Iterator[dict[str, object]]:
        """Every kernel-method timing (`record_method`), oldest first: "measured", or "not generated" (seconds
        None) for a method the template could not generate, which tuning records as infinitely slow."""
        with self._connect() as db:
            rows = db.execute("SELECT key, machine, code_version, method, seconds, created FROM kernel_methods "
                              "ORDER BY created").fetchall()
        for key, machine, version, method, seconds, created in rows:
            timed = math.isfinite(seconds)
            yield {"kernel_method": method, "block": json.loads(key), "machine": machine, "code_version": version,
                   "seconds": seconds if timed else None, "source": MEASURED if timed else NOT_GENERATED,
                   "created": created}
