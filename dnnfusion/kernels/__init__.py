"""Hand-tuned kernel templates that operators call through the kernel IR: the matrix product (gemm),
convolutions, pools and row reductions. Tuning constants and ISA choices live here, not in the operator files."""
