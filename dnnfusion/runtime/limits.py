"""What a compiled model may ask of the machine: its arena, outputs and weights must fit in the memory this
machine has, checked when it is compiled rather than discovered as a MemoryError in the middle of a run."""

from __future__ import annotations

import os
import resource

from ..errors import ResourceError


def available_bytes() -> int:
    """Memory a new allocation can get now: MemAvailable plus free swap (Linux), else all physical memory; no
    more than what the process's address-space limit (ulimit -v) leaves above its current size."""
    try:
        with open("/proc/meminfo") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:]}
        machine = fields["MemAvailable"] + fields.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    return machine if limit == resource.RLIM_INFINITY else min(machine, max(limit - address_space_used(), 0))


def address_space_used() -> int:
    """This process's virtual size (VmSize, Linux; 0 elsewhere): what ulimit -v counts against its limit."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def size_text(nbytes: int) -> str:
    """Bytes in the largest binary unit that keeps the number at or above 1 (e.g. '8.0 TiB')."""
    value, unit = float(nbytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    return f"{value:.1f} {unit}" if unit != "B" else f"{nbytes} B"


def check_memory(parts: dict[str, int], largest: str, available: int | None = None) -> None:
    """Refuse a model whose memory parts (name -> bytes) together exceed what is available; `largest` names the
    biggest single value so the user knows which shape to bind smaller."""
    needed = sum(parts.values())
    available = available_bytes() if available is None else available
    if needed > available:
        detail = ", ".join(f"{name} {size_text(n)}" for name, n in parts.items())
        raise ResourceError(f"the compiled model needs {size_text(needed)} of memory ({detail}; largest: {largest}) "
                            f"but {size_text(available)} is available; bind smaller input shapes")
