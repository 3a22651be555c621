"""What identifies this machine to the profile database and the kernel cache: CPU model, the ISA extensions
that change generated code, the thread count; the cache sizes that tiling is planned for; and the cores this
process may use (the default thread count)."""

from __future__ import annotations

import contextvars
import functools
import os
import platform
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import DnnfusionError

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


@dataclass(frozen=True)
class Target:
    """A build target: the gcc `-march` it compiles with and the CPU features (as /proc/cpuinfo names them) its
    code may use, so a library built for it runs on any CPU that has them. `native` is this machine."""

    name: str
    march: str
    features: tuple[str, ...]


_V2 = ("pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16")
_V3 = _V2 + ("avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
# The x86-64 psABI microarchitecture levels (gcc 11 and later know them by these -march names).
TARGETS = {"native": Target("native", "native", ()),
           "x86-64-v2": Target("x86-64-v2", "x86-64-v2", _V2),
           "x86-64-v3": Target("x86-64-v3", "x86-64-v3", _V3),
           "x86-64-v4": Target("x86-64-v4", "x86-64-v4", _V4)}
_TARGET: contextvars.ContextVar[Target] = contextvars.ContextVar("target", default=TARGETS["native"])


def target(name: str) -> Target:
    """The build target called `name` (an error listing the known ones otherwise)."""
    if name not in TARGETS:
        raise DnnfusionError(f"unknown build target '{name}'; use one of {', '.join(TARGETS)}")
    return TARGETS[name]


@contextmanager
def targeting(name: str) -> Iterator[Target]:
    """Generate code for target `name` inside the block: `target_flags` then answers for it, not this CPU."""
    token = _TARGET.set(target(name))
    try:
        yield _TARGET.get()
    finally:
        _TARGET.reset(token)


def target_flags() -> frozenset[str]:
    """The CPU features generated code may use: this CPU's (native), or the current build target's."""
    return cpu_flags() if native_target() else frozenset(_TARGET.get().features)


def native_target() -> bool:
    """Whether code is generated for this machine (not a portable build target)."""
    return _TARGET.get().name == "native"


def full_width_fma() -> bool:
    """Whether this CPU runs 512-bit FMAs on two full-width units: Intel's AVX-512 cores (AMD's Zen 4 runs
    them as two 256-bit halves). Its register tiles are then bound by loads sooner (kernels/microkernel.py)."""
    model, flags = _cpuinfo()
    return "avx512f" in flags and "Intel" in model


def required_features(name: str) -> tuple[str, ...]:
    """The features a library built for target `name` needs from the CPU that loads it: the target's list, or
    for native the ISA extensions of ISA_FLAGS this CPU has (the ones that change generated code)."""
    chosen = target(name)
    return chosen.features if chosen.name != "native" else tuple(f for f in ISA_FLAGS if f in cpu_flags())


def missing_features(required: tuple[str, ...] | list[str]) -> list[str]:
    """The features of `required` this CPU lacks (none where the platform does not list its flags)."""
    flags = cpu_flags()
    return [f for f in required if flags and f not in flags]


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
