"""Graph passes between import and planning: static shape inference (with folding of constant subgraphs as it
goes), constant folding, padded data-dependent extents, per-channel affine folding, rows picked before they are
computed, and rewriting by algebraic rules and decomposed-operator recognition (`rewrite/`)."""

from .fold import fold_constants
from .padded import pad_dynamic_extents
from .rewrite import RewriteOptions, RewriteReport, rewrite_graph
from .shapes import InputShapes, infer_shapes
from .structural import fold_channel_affine, pick_rows_first

__all__ = ["InputShapes", "RewriteOptions", "RewriteReport", "fold_channel_affine", "fold_constants", "infer_shapes",
           "pad_dynamic_extents", "pick_rows_first", "rewrite_graph"]
