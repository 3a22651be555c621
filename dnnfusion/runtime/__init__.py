"""Executing graphs: feed checking and the numpy reference executor."""

from .feeds import check_feeds, random_feeds
from .reference import ReferenceExecutor, run_reference

__all__ = ["ReferenceExecutor", "check_feeds", "random_feeds", "run_reference"]
