"""The protocol a benchmark worker answers its parent in, one line per command: `N` runs the model N times back to
back and answers the N durations in seconds as JSON; `outputs PATH` saves one run's outputs there (.npz) and
answers `saved`; `stats` answers the compile statistics as JSON. Standard library and numpy only, so that a
worker running under another runtime's own Python (bench/mnn_worker.py, by path) speaks it too."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping

import numpy as np


def serve(run: Callable[[], Mapping[str, np.ndarray]], stats: Mapping[str, Any], commands: Any,
          answers: Any) -> None:
    """Answer the parent's commands, read line by line from `commands`, on `answers` until the input ends."""
    for line in commands:
        word = line.strip()
        if not word:
            continue
        if word.startswith("outputs "):
            np.savez(word.split(" ", 1)[1], **run())
            answers.write("saved\n")
        elif word == "stats":
            answers.write(json.dumps(stats, default=str) + "\n")
        else:
            times = []
            for _ in range(int(word)):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            answers.write(json.dumps(times) + "\n")
        answers.flush()
