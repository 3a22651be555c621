"""Executing graphs: feed checking and the numpy reference executor."""

from .feeds import check_feeds
from .reference import ReferenceExecutor, run_reference

__all__ = ["ReferenceExecutor", "check_feeds", "run_reference"]
