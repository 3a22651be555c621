"""Rewrite rules of the distributive family (see engine.py for what a rule promises)."""

from __future__ import annotations

from .engine import Rule

RULES: list[Rule] = []
