"""Hand-tuned kernel templates that operators call through the kernel IR: the matrix product (gemm). Tuning
constants and ISA choices live here, not in the operator files."""
