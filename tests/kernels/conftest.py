"""The ISAs with microkernels that this CPU runs, and a fixture that generates code for each of them."""

import pytest

from dnnfusion.kernels import microkernel
from dnnfusion.machine import cpu_flags

ISAS = [name for name, flags in (("avx512", {"avx512f"}), ("avx2", {"avx2", "fma"})) if flags <= cpu_flags()]
needs_microkernels = pytest.mark.skipif(not ISAS, reason="no vector ISA with microkernels on this CPU")


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Generate for one ISA (the widest is the default; narrower ones run here too)."""
    monkeypatch.setattr(microkernel, "target_isa", lambda: microkernel.ISAS[request.param])
    return microkernel.ISAS[request.param]
