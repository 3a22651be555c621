"""Graph passes between import and planning: static shape inference (with folding of constant subgraphs as it
goes), constant folding, padded data-dependent extents, per-channel affine folding and decomposed activations
recognised as one operator; algebraic rules later."""

from .decomposed import recognise_mish
from .fold import fold_constants
from .padded import pad_dynamic_extents
from .shapes import InputShapes, infer_shapes
from .structural import fold_channel_affine

__all__ = ["InputShapes", "fold_channel_affine", "fold_constants", "infer_shapes", "pad_dynamic_extents",
           "recognise_mish"]
