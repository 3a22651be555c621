"""The error types users see: each one a single line that says what is wrong and what to do."""

from __future__ import annotations


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
    """A graph input has a symbolic or unknown dimension that input_shapes did not bind."""

    def __init__(self, input_name: str, axis: int, dim: object) -> None:
        label = f"'{dim}'" if isinstance(dim, str) and dim else "unknown"
        super().__init__(
            f"input '{input_name}' has a dynamic dimension {axis} ({label}); "
            f"bind it with input_shapes={{'{input_name}': (...)}} or --shape {input_name}=D0,D1,..."
        )
        self.input_name, self.axis = input_name, axis


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
