"""Everything a compilation can be told, in one object: the optimisation level, threads, the planner's limits,
the C toolchain and whether blocks are timed. The environment is read here only, as defaults (`from_env`):
CC and DNNFUSION_CFLAGS (optimisation flags, shell-split)."""

from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import machine
from .codegen.build import DEFAULT_OPTIMIZATION, Toolchain
from .codegen.layouts import MODES as LAYOUT_MODES
from .errors import DnnfusionError
from .fusion import LEVELS, PlannerOptions
from .kir.kernel import KernelOptions
from .passes import RewriteOptions


@dataclass(frozen=True)
class CompileOptions:
    """How to compile: `opt_level` O0 (one kernel per operator), O1 (fixed patterns), O2/O3 (DNNFusion);
    `threads` for the generated code (None: every core); `planner` limits; `toolchain` compiler and flags;
    `profile` times each block (CompiledModel.block_seconds); `winograd` lets 3 x 3 convolutions run as Winograd
    products where they pay (False: results bit-close to a direct convolution, docs/WINOGRAD.md); `tune` times
    each such block's candidate methods in the compiled model (timings kept in the profile database, and used
    by every later compile on this machine) and takes the fastest, instead of the estimate's choice; `methods`
    names a node's method outright (node name, method); `target` the CPUs the library must run on: "native"
(this one, `-march=native`) or a portable x86-64 level ("x86-64-v2", "x86-64-v3": AVX2, "x86-64-v4":
AVX-512), for which the kernels are generated and gcc builds; `rewriting` which of O3's rewrite rules run
(`RewriteOptions(approximate=True)` adds the rules that are off by default: inexact in floating point with
material overflow or rounding risk; `disabled` names rules to leave out); `layouts` where values between
blocks are held channel-blocked (NCHW16c / NCHW8c): "auto" between kernels fast on it, "off", or "all"
wherever legal (codegen/layouts.py)."""

    opt_level: str = "O3"
    threads: int | None = None
    planner: PlannerOptions = field(default_factory=PlannerOptions)
    toolchain: Toolchain = field(default_factory=Toolchain)
    profile: bool = False
    winograd: bool = True
    tune: bool = False
    methods: tuple[tuple[str, str], ...] = ()
    target: str = "native"
    rewriting: RewriteOptions = field(default_factory=RewriteOptions)
    layouts: str = "auto"

    def __post_init__(self) -> None:
        machine.target(self.target)                         # an unknown name: an error listing the known ones
        if self.opt_level not in LEVELS:
            raise DnnfusionError(f"unknown optimization level '{self.opt_level}' (use one of {', '.join(LEVELS)})")
        if self.layouts not in LAYOUT_MODES:
            raise DnnfusionError(f"unknown layouts mode '{self.layouts}' (use one of {', '.join(LAYOUT_MODES)})")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise DnnfusionError(f"threads must be a positive integer or None (every core), not {self.threads!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **fields: Any) -> CompileOptions:
        """Defaults from the environment (CC, DNNFUSION_CFLAGS), then the given fields."""
        env = os.environ if environ is None else environ
        cflags = env.get("DNNFUSION_CFLAGS")
        toolchain = Toolchain(env.get("CC") or "gcc",
                              tuple(shlex.split(cflags)) if cflags is not None else DEFAULT_OPTIMIZATION)
        return cls(**{"toolchain": toolchain, **fields})

    @property
    def build_toolchain(self) -> Toolchain:
        """The toolchain as it builds for the target."""
        return self.toolchain.for_target(machine.target(self.target).march,
                                         avx512="avx512f" in machine.required_features(self.target))

    @property
    def kernels(self) -> KernelOptions:
        """What the kernel templates may choose."""
        return KernelOptions(winograd=self.winograd, methods=tuple(self.methods), layouts=self.layouts)

    def replace(self, **fields: Any) -> CompileOptions:
        """A copy with some fields changed (unknown names are an error that lists the known ones)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise DnnfusionError(f"unknown compile option {', '.join(map(repr, unknown))}; the options are "
                                 f"{', '.join(sorted(known))}")
        return dataclasses.replace(self, **fields)


def resolve(options: CompileOptions | None = None, **fields: Any) -> CompileOptions:
    """`options` (or the environment's defaults) with `fields` applied: what every entry point compiles with."""
    return (options if options is not None else CompileOptions.from_env()).replace(**fields)
