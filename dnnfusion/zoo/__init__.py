"""Models built from code with random weights (no downloads). For now: the built-in demo model."""

from .demo import demo_model

__all__ = ["demo_model"]
