"""What identifies this machine to the profile database and the kernel cache: CPU model, the ISA extensions
that change generated code, the thread count; the cache sizes that tiling is planned for; and the cores this
process may use (the default thread count)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

ISA_FLAGS = ("avx512f", "avx512bw", "avx512vnni", "avx2", "fma", "sse4_2", "neon", "asimd", "sve")


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU model and its feature flags from /proc/cpuinfo (the platform's names where it is missing)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    return model, flags


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (avx512f, avx2, fma, neon, ...); empty where the platform does not say."""
    return frozenset(_cpuinfo()[1])


def machine_key(threads: int | None = None) -> str:
    """CPU model, the ISA extensions that change generated code, and the thread count."""
    model, flags = _cpuinfo()
    isa = ",".join(f for f in ISA_FLAGS if f in flags)
    return f"{model} | {platform.machine()} {isa} | threads={threads or available_cores()}"


def available_cores() -> int:
    """The physical cores this process may run on: the CPUs in its affinity mask with SMT siblings counted once,
    at most its cgroup CPU quota (a container's `cpu.max`), at least 1. The default thread count: more threads
    than this only queue behind each other."""
    cpus = _affinity()
    cores = len({_core_of(cpu) for cpu in cpus}) if cpus else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota is not None else cores)


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set()


def _core_of(cpu: int) -> str:
    """A name shared by the SMT siblings of `cpu` (the CPU itself where sysfs does not say)."""
    try:
        return Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
    except OSError:
        return str(cpu)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole CPUs granted by the cgroup v2 quota (`cpu.max`, rounded up), or None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def cache_bytes(level: int, default: int) -> int:
    """The size of the cache at `level` that cpu0 sees, in bytes, from sysfs (`default` where it does not say)."""
    try:
        for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
            if (index / "level").read_text().strip() == str(level):
                size = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
                return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return default


@functools.lru_cache(maxsize=None)
def l2_bytes() -> int:
    """The L2 cache of one core, in bytes (512 KiB where the kernel does not say)."""
    return cache_bytes(2, 512 << 10)


@functools.lru_cache(maxsize=None)
def l3_bytes() -> int:
    """The last-level cache cpu0 shares with its neighbours, in bytes (8 MiB where the kernel does not say)."""
    return cache_bytes(3, 8 << 20)
