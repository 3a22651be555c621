"""Lowering a fusion plan to C: block lowering (lower), the program of blocks and segments (program), arena
planning (memory) and the compiler driver with its cache (build)."""
