"""Rewrite rules of the layout family (see engine.py for what a rule promises)."""

from __future__ import annotations

from .engine import Rule

RULES: list[Rule] = []
