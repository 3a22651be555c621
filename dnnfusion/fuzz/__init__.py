"""Differential fuzzing of dnnfusion against onnxruntime: random valid graphs, mutated model files, hostile
inputs, shrinking of failures and the docs/RELIABILITY.md report. Run it with `python -m dnnfusion.fuzz`."""

from __future__ import annotations

from .graphs import FuzzGraph, generate, make_feeds

__all__ = ["FuzzGraph", "generate", "make_feeds"]
