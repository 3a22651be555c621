"""The proof cases of every rewrite rule, one module per rule family module."""

from . import associative, decomposed, distributive, identities, layout

ALL = [*identities.CASES, *associative.CASES, *distributive.CASES, *layout.CASES, *decomposed.CASES]
