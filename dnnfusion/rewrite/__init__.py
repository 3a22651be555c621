"""Graph rewrites: structural (constant folding, padded extents, per-channel affine folding) now; algebraic rules later."""

from .fold import fold_constants
from .padded import pad_dynamic_extents
from .structural import fold_channel_affine

__all__ = ["fold_channel_affine", "fold_constants", "pad_dynamic_extents"]
