"""The proof cases of every rewrite rule, one module per rule family module."""

from . import decomposed

ALL = [*decomposed.CASES]
