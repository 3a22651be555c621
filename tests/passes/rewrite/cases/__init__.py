"""The proof cases of every rewrite rule, one module per rule family module."""

from . import associative, commutative, decomposed, distributive, identities, layout

ALL = [*identities.CASES, *associative.CASES, *distributive.CASES, *commutative.CASES, *layout.CASES,
       *decomposed.CASES]
