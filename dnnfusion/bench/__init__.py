"""Side-by-side benchmarks against other runtimes: interleaved rounds, best and median per runtime."""

from .timing import Timing, interleaved, onnxruntime_session

__all__ = ["Timing", "interleaved", "onnxruntime_session"]
