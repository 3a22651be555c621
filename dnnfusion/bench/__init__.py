"""Side-by-side benchmarks against other runtimes: each in its own process, taking turns; best, median and p90."""

from .timing import RuntimeWorkers, Timing, busy_neighbours, interleaved, onnxruntime_session

__all__ = ["RuntimeWorkers", "Timing", "busy_neighbours", "interleaved", "onnxruntime_session"]
