"""Graph rewrites: structural (constant folding) now; algebraic rules later."""

from .fold import fold_constants

__all__ = ["fold_constants"]
