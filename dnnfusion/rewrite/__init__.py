"""Graph rewrites: structural (constant folding, per-channel affine folding) now; algebraic rules later."""

from .fold import fold_constants
from .structural import fold_channel_affine

__all__ = ["fold_channel_affine", "fold_constants"]
