"""The operator registry: one `Op` instance per (domain, op_type)."""

from __future__ import annotations

from typing import TypeVar

from ..errors import UnsupportedOperatorError
from ..ir.graph import Node
from .base import Op

_OPS: dict[tuple[str, str], Op] = {}
T = TypeVar("T", bound=type[Op])


def register(cls: T) -> T:
    """Class decorator: add one instance of `cls` to the registry under its op_type and domain."""
    key = (cls.domain, cls.op_type)
    if not cls.op_type or key in _OPS:
        raise RuntimeError(f"operator {key} registered twice or without a name")
    _OPS[key] = cls()
    return cls


def get(op_type: str, domain: str = "") -> Op | None:
    return _OPS.get((_canonical(domain), op_type))


def lookup(node: Node) -> Op:
    """The op for a node, or UnsupportedOperatorError naming the node, domain and opset."""
    op = get(node.op_type, node.domain)
    if op is None:
        raise UnsupportedOperatorError(node.op_type, node.name, node.domain, node.opset)
    return op


def all_ops() -> list[Op]:
    return sorted(_OPS.values(), key=lambda op: (op.domain, op.op_type))


def _canonical(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain
