"""Whether an operator's codegen description handles a node: run it once on symbolic inputs (placeholder loads)
and see if it produces an expression or a template. Cheap, and exactly as strict as the description itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ir.graph import Node
from .expr import Load, Var, ctype, linear
from .kernel import KernelContext

if TYPE_CHECKING:
    from ..ops.base import Op


def _reader(node: Node):
    def read(i: int, index):
        value = node.inputs[i]
        return Load("probe", linear(index, value.shape), ctype(value.dtype))
    return read


def probe(op: "Op", node: Node) -> str | None:
    """'pointwise', 'kernel' or None (no generated code for this node)."""
    from ..ops.base import Op  # noqa: PLC0415

    try:
        if type(op).pointwise is not Op.pointwise:
            outputs = [(k, v) for k, v in enumerate(node.outputs) if v is not None]
            for k, v in outputs:
                index = tuple(Var(f"i{d}") for d in range(len(v.shape)))
                if op.pointwise(node, k, index, _reader(node)) is None:
                    return None
            return "pointwise"
        if type(op).kernel is not Op.kernel:
            ctx = KernelContext(node, _reader(node), lambda out, index, value: [], prefix="p")
            return "kernel" if op.kernel(node, ctx) is not None else None
    except Exception:  # noqa: BLE001 - a description that fails on this node means: no generated code
        return None
    return None
