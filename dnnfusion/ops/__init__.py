"""Operator definitions (one module per small family) and the registry that holds them."""

import importlib
import pkgutil

from .base import Algebra, MappingType, Op, TensorType
from .registry import all_ops, get, lookup, register

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["Algebra", "MappingType", "Op", "TensorType", "all_ops", "get", "lookup", "register"]
