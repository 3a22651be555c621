"""The kernel IR that operator descriptions build on: expressions (expr), their C text (emit), the context a
kernel template writes through (kernel) and the float math helpers (mathlib)."""
