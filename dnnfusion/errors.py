"""The error types users see: each one a single line that says what is wrong and what to do."""

from __future__ import annotations

from typing import Mapping, Sequence


class DnnfusionError(Exception):
    """Base of every error dnnfusion raises on purpose; the CLI prints it without a traceback."""


class ModelLoadError(DnnfusionError):
    """The file is missing, truncated, or not an ONNX model."""


class InvalidModelError(DnnfusionError):
    """The model parses but is inconsistent: dangling inputs, cycles, wrong arity, bad attributes."""


class UnsupportedOpsetError(DnnfusionError):
    """The model imports an opset version or domain we cannot run."""


class UnsupportedOperatorError(DnnfusionError):
    """An operator (or an operator feature) the registry does not implement."""

    def __init__(self, op_type: str, node: str, domain: str, opset: int | None, detail: str = "") -> None:
        where = f"operator '{op_type}' (domain '{domain or 'ai.onnx'}', opset {opset}) at node '{node}'"
        what = detail or "is not supported by dnnfusion"
        super().__init__(f"{where} {what}; run `dnnfusion ops` for the supported list")
        self.op_type, self.node, self.domain, self.opset = op_type, node, domain, opset


class ShapeError(DnnfusionError):
    """A shape cannot be made static, or two shapes disagree."""


class UnboundDimensionError(ShapeError):
    """Graph inputs have symbolic or unknown dimensions that input_shapes did not bind: all of them, in one
    message that suggests binding the named ones by name."""

    def __init__(self, unbound: Sequence[tuple[str, int, object]], known: Mapping[str, int] | None = None) -> None:
        self.unbound = [(name, axis, dim) for name, axis, dim in unbound]
        self.input_name, self.axis = self.unbound[0][0], self.unbound[0][1]
        super().__init__(_unbound_message(self.unbound, known or {}))


def _unbound_message(unbound: list[tuple[str, int, object]], known: Mapping[str, int]) -> str:
    """Every unbound (input, axis, dimension name), then how to bind them: by name (with the extent another
    input already gives that name, else 1 as an example), or by whole shape."""
    per_input: dict[str, list[str]] = {}
    for name, axis, dim in unbound:
        label = f"'{dim}'" if isinstance(dim, str) and dim else "unnamed"
        per_input.setdefault(name, []).append(f"dimension {axis} ({label})")
    listed = "; ".join(f"input '{name}' " + ", ".join(axes) for name, axes in per_input.items())
    names = list(dict.fromkeys(dim for _, _, dim in unbound if isinstance(dim, str) and dim))
    first = next((name for name, _, dim in unbound if not (isinstance(dim, str) and dim)), unbound[0][0])
    by_shape = f"input_shapes={{'{first}': (...)}} (--shape {first}=D0,D1,...)"
    if not names:
        return f"unbound dynamic dimensions: {listed}; give each input's whole shape with {by_shape}"
    by_name = ", ".join(f"'{dim}': {known.get(dim, 1)}" for dim in names)
    flags = " ".join(f"--dim {dim}={known.get(dim, 1)}" for dim in names)
    return (f"unbound dynamic dimensions: {listed}; bind them by name with input_shapes={{{by_name}}} ({flags}), "
            f"or give an input's whole shape with {by_shape}")


class InputError(DnnfusionError):
    """A feed given at run time does not match the compiled model."""


class InputShapeError(InputError):
    """A feed has the wrong shape."""


class InputDtypeError(InputError):
    """A feed has the wrong element type."""


class MissingInputError(InputError):
    """A required feed is missing, or an unknown name was fed."""


class CacheError(DnnfusionError):
    """The cache folder is not private to the current user (wrong owner, or writable by group/others)."""


class ResourceError(DnnfusionError):
    """The compiled model would need more memory than this machine has."""
