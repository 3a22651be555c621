"""Corrupted model files: byte-level mutations of serialized models and structural ones through protobuf,
fed to the importer and the compiler, which must only ever raise DnnfusionError subclasses (or succeed).

Byte mutations: bit flips, byte replacements, truncation, insertion of random bytes, duplicated chunks.
Structural mutations: random attribute values, random or huge dims, wrong element types, dangling or cyclic
inputs, dims that disagree with the data, wrong opsets, unknown or swapped op types, duplicate producers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .differential import Outcome, failure, refusal
from .graphs import OPS, generate

INTERESTING_INTS = [0, -1, 1, 2, 7, 2**31 - 1, 2**31, -2**31, 2**40, -2**62, 2**63 - 1]
INTERESTING_FLOATS = [0.0, -1.0, 1e30, -1e30, float("nan"), float("inf"), 1e-30]
HUGE_DIMS = [2**20, 2**31, 2**33, 2**40, 2**62]
MAX_FEED_BYTES = 64 << 20      # a compiled model that wants larger feeds is not run (no user could feed it)


@dataclass
class Mutant:
    """One corrupted model: which mutation made it, from which base model, and its bytes."""

    index: int
    kind: str
    base: int
    data: bytes
    origin: onnx.ModelProto | None = None

    def describe(self) -> str:
        """What the mutation changed, in a line (see `describe_change`)."""
        return describe_change(self.origin, self.data) if self.origin is not None else self.kind


# ---------------------------------------------------------------------------------------------------------------
# Byte mutations

def _bitflip(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip one to eight random bits."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        k = int(rng.integers(len(b)))
        b[k] ^= 1 << int(rng.integers(8))
    return bytes(b)


def _replace(data: bytes, rng: np.random.Generator) -> bytes:
    """Overwrite one to eight bytes with 0x00, 0xff, 0x7f, 0x80 or a random byte."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        b[int(rng.integers(len(b)))] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80, int(rng.integers(256))]))
    return bytes(b)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    """Cut the file at a random length."""
    return data[: int(rng.integers(0, len(data)))]


def _insert(data: bytes, rng: np.random.Generator) -> bytes:
    """Insert 1 to 16 random bytes at a random place."""
    k = int(rng.integers(len(data) + 1))
    return data[:k] + rng.integers(0, 256, int(rng.integers(1, 17))).astype(np.uint8).tobytes() + data[k:]


def _duplicate(data: bytes, rng: np.random.Generator) -> bytes:
    """Copy a chunk of up to 64 bytes to a random place."""
    a = int(rng.integers(len(data)))
    chunk = data[a: a + int(rng.integers(1, 65))]
    k = int(rng.integers(len(data) + 1))
    return data[:k] + chunk + data[k:]


BYTE_MUTATIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "bitflip": _bitflip, "replace": _replace, "truncate": _truncate, "insert": _insert, "duplicate": _duplicate,
}


# ---------------------------------------------------------------------------------------------------------------
# Structural mutations (on a copy of the ModelProto)

def _pick(rng: np.random.Generator, items):
    """A seeded choice from a sequence (protobuf containers included)."""
    return items[int(rng.integers(len(items)))]


def _attribute(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """A random value for a random attribute (or a new, bogus one)."""
    node = _pick(rng, m.graph.node)
    if not node.attribute or rng.random() < 0.2:
        node.attribute.append(helper.make_attribute(_pick(rng, ["axis", "perm", "to", "kernel_shape", "pads",
                                                                "group", "mode", "alpha"]),
                                                    int(_pick(rng, INTERESTING_INTS))))
        return
    attr = _pick(rng, node.attribute)
    if attr.type == onnx.AttributeProto.INT:
        attr.i = int(_pick(rng, INTERESTING_INTS))
    elif attr.type == onnx.AttributeProto.FLOAT:
        attr.f = float(_pick(rng, INTERESTING_FLOATS))
    elif attr.type == onnx.AttributeProto.STRING:
        attr.s = _pick(rng, [b"", b"\xff\xfe", b"NOSUCHMODE", b"constant" * 100])
    elif attr.type == onnx.AttributeProto.INTS:
        values = [int(_pick(rng, INTERESTING_INTS)) for _ in range(int(rng.integers(0, 6)))]
        del attr.ints[:]
        attr.ints.extend(values)
    elif attr.type == onnx.AttributeProto.TENSOR:
        attr.t.dims.append(int(_pick(rng, HUGE_DIMS)))
    else:
        attr.type = int(rng.integers(0, 15))


def _value_infos(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph's declared inputs and outputs."""
    return list(m.graph.input) + list(m.graph.output)


def _dims(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """A graph input/output dim set to 0, -1, a random size, a symbol, or a dim added or removed."""
    vi = _pick(rng, _value_infos(m))
    shape = vi.type.tensor_type.shape
    choice = rng.random()
    if choice < 0.15:
        shape.dim.add().dim_value = int(rng.integers(1, 5))
    elif choice < 0.3 and len(shape.dim):
        del shape.dim[int(rng.integers(len(shape.dim)))]
    elif len(shape.dim):
        dim = shape.dim[int(rng.integers(len(shape.dim)))]
        if rng.random() < 0.2:
            dim.dim_param = "N"
        else:
            dim.dim_value = int(_pick(rng, [0, -1, -7, 1, 3, 64]))


def _huge_dim(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """A huge dim on a graph input, or a huge value in an int64 initializer (shapes, repeats, pads)."""
    ints = [t for t in m.graph.initializer if t.data_type == TensorProto.INT64 and np.prod(t.dims) > 0]
    if ints and rng.random() < 0.6:
        t = _pick(rng, ints)
        array = numpy_helper.to_array(t).copy()
        array.reshape(-1)[int(rng.integers(array.size))] = int(_pick(rng, HUGE_DIMS + [-(2**40)]))
        t.CopyFrom(numpy_helper.from_array(array, t.name))
        return
    vi = _pick(rng, list(m.graph.input) or list(m.graph.output))
    dims = vi.type.tensor_type.shape.dim
    if len(dims):
        dims[int(rng.integers(len(dims)))].dim_value = int(_pick(rng, HUGE_DIMS))


def _dtype(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """A wrong element type on an input/output, an initializer (data left as is) or a Cast's `to`."""
    where = rng.random()
    if where < 0.4:
        _pick(rng, _value_infos(m)).type.tensor_type.elem_type = int(rng.integers(0, 27))
    elif where < 0.8 and len(m.graph.initializer):
        _pick(rng, m.graph.initializer).data_type = int(rng.integers(0, 27))
    else:
        node = _pick(rng, m.graph.node)
        node.attribute.append(helper.make_attribute("to", int(rng.integers(0, 27))))


def _initializer_dims(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """An initializer's dims changed without its data."""
    if not len(m.graph.initializer):
        return
    t = _pick(rng, m.graph.initializer)
    if len(t.dims) and rng.random() < 0.7:
        t.dims[int(rng.integers(len(t.dims)))] = int(_pick(rng, [0, -1, 1, 3, 100, 2**31]))
    else:
        t.dims.append(int(rng.integers(1, 4)))


def _dangling(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """A node input, a graph output or an initializer name that nothing defines."""
    choice = rng.random()
    if choice < 0.6:
        node = _pick(rng, m.graph.node)
        if len(node.input):
            node.input[int(rng.integers(len(node.input)))] = _pick(rng, ["nowhere", "", " "])
    elif choice < 0.8:
        _pick(rng, m.graph.output).name = "nowhere"
    elif len(m.graph.initializer):
        _pick(rng, m.graph.initializer).name = ""


def _cycle(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """An early node reads a later node's output (or its own)."""
    nodes = m.graph.node
    a = int(rng.integers(len(nodes)))
    b = int(rng.integers(a, len(nodes)))
    if len(nodes[a].input) and len(nodes[b].output):
        nodes[a].input[int(rng.integers(len(nodes[a].input)))] = nodes[b].output[0]


def _duplicate_producer(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """Two nodes write the same value, or a node writes a graph input."""
    nodes = m.graph.node
    node = _pick(rng, nodes)
    names = [o for n in nodes for o in n.output] + [vi.name for vi in m.graph.input]
    if len(node.output):
        node.output[0] = _pick(rng, names)


def _op_type(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """A node becomes another op (arity and attributes kept), an unknown one, or gains/loses an input."""
    node = _pick(rng, m.graph.node)
    choice = rng.random()
    if choice < 0.5:
        node.op_type = _pick(rng, [n for n in OPS if n[0].isupper()] + ["Loop", "If", "Scan", "Conv", "Resize",
                                                                         "TopK", "NonZero", "Unique", "Einsum"])
    elif choice < 0.65:
        node.op_type = _pick(rng, ["NoSuchOp", "", "relu", "Relu\x00"])
    elif choice < 0.8:
        node.input.append(_pick(rng, [vi.name for vi in m.graph.input] or ["x"]))
    elif len(node.input):
        del node.input[-1]
    else:
        node.domain = "com.example"


def _opset(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """A wrong opset version, a second default-domain import, or a wrong IR version."""
    choice = rng.random()
    if choice < 0.5:
        m.opset_import[0].version = int(_pick(rng, [0, 1, 6, 7, 9, 11, 13, 18, 24, 99, -1, 2**40]))
    elif choice < 0.7:
        m.opset_import.append(helper.make_opsetid("", 7))
    else:
        m.ir_version = int(_pick(rng, [0, 1, 3, 99, -1]))


def _drop(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """A node, graph input or initializer removed."""
    choice = rng.random()
    if choice < 0.5:
        del m.graph.node[int(rng.integers(len(m.graph.node)))]
    elif choice < 0.75 and len(m.graph.input):
        del m.graph.input[int(rng.integers(len(m.graph.input)))]
    elif len(m.graph.initializer):
        del m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]


def _raw_data(m: onnx.ModelProto, rng: np.random.Generator) -> None:
    """An initializer's raw_data truncated, extended, or moved to external data that is not there."""
    if not len(m.graph.initializer):
        return
    t = _pick(rng, m.graph.initializer)
    array = numpy_helper.to_array(t)
    t.CopyFrom(numpy_helper.from_array(array, t.name))
    choice = rng.random()
    if choice < 0.4:
        t.raw_data = t.raw_data[: int(rng.integers(len(t.raw_data) + 1))]
    elif choice < 0.7:
        t.raw_data = t.raw_data + b"\x01" * int(rng.integers(1, 9))
    else:
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        for key, value in (("location", _pick(rng, ["w.bin", "../w.bin", "/etc/passwd", ""])),
                           ("offset", str(_pick(rng, [0, -8, 2**40]))), ("length", str(_pick(rng, [4, -1, 2**40])))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value


STRUCT_MUTATIONS: dict[str, Callable[[onnx.ModelProto, np.random.Generator], None]] = {
    "attribute": _attribute, "dims": _dims, "huge_dim": _huge_dim, "dtype": _dtype,
    "initializer_dims": _initializer_dims, "dangling": _dangling, "cycle": _cycle,
    "duplicate_producer": _duplicate_producer, "op_type": _op_type, "opset": _opset, "drop": _drop,
    "raw_data": _raw_data,
}


def base_models(seed: int, count: int = 4) -> list[onnx.ModelProto]:
    """Valid models to corrupt, built by the generator (no downloads)."""
    return [generate(seed * 7919 + 104729 + k, min_nodes=4, max_nodes=10).model for k in range(count)]


def mutate(model: onnx.ModelProto, rng: np.random.Generator, kind: str) -> bytes:
    """The bytes of one mutation `kind` ("bytes:<name>" or "proto:<name>") of `model`."""
    family, name = kind.split(":")
    if family == "bytes":
        return BYTE_MUTATIONS[name](model.SerializeToString(), rng)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for _ in range(int(rng.choice([1, 1, 1, 2]))):
        if len(m.graph.node):
            try:
                STRUCT_MUTATIONS[name](m, rng)
            except Exception:  # noqa: BLE001 - this mutation did not apply to this model: keep the others
                continue
    return m.SerializeToString()


MUTATION_KINDS = [f"bytes:{k}" for k in BYTE_MUTATIONS] + [f"proto:{k}" for k in STRUCT_MUTATIONS]


def mutants(seed: int, count: int | None = None, bases: int = 4,
            kinds: list[str] | None = None) -> Iterator[Mutant]:
    """Seeded corrupted models, byte-level and structural in turn; endless when `count` is None."""
    models = base_models(seed, bases)
    kinds = kinds or MUTATION_KINDS
    index = 0
    while count is None or index < count:
        rng = np.random.default_rng([seed, 1, index])
        base = int(rng.integers(len(models)))
        kind = kinds[index % len(kinds)]
        yield Mutant(index, kind, base, mutate(models[base], rng, kind), models[base])
        index += 1


def _short(value: object, limit: int = 60) -> str:
    """A value in at most `limit` characters."""
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _vi_text(vi: onnx.ValueInfoProto) -> str:
    """name: elem_type[dims] of a declared input or output."""
    t = vi.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim]
    return f"{vi.name}: {TensorProto.DataType.Name(t.elem_type) if t.elem_type in TensorProto.DataType.values() else t.elem_type}{dims}"


def _tensor_text(t: TensorProto) -> str:
    """name, type, dims and (for small tensors) values of an initializer."""
    try:
        values = numpy_helper.to_array(t).reshape(-1)[:4].tolist()
    except Exception:  # noqa: BLE001 - a corrupted tensor is described without its values
        values = "unreadable"
    return f"{t.name} type {t.data_type} dims {list(t.dims)} values {values}"


def _node_text(n: onnx.NodeProto) -> str:
    """op(inputs) -> outputs {attributes} of a node."""
    attrs = {a.name: (helper.get_attribute_value(a) if a.type else "UNDEFINED") for a in n.attribute}
    return f"{n.op_type}({', '.join(n.input)}) -> {', '.join(n.output)} {attrs or ''}".strip()


def describe_change(base: onnx.ModelProto, data: bytes, limit: int = 2) -> str:
    """The first differences between a base model and its mutated bytes, for the findings table: opsets,
    declared inputs/outputs, initializers (with the nodes reading them) and nodes."""
    try:
        mutated = onnx.load_model_from_string(data)
    except Exception:  # noqa: BLE001 - bytes protobuf cannot parse
        return f"unparseable bytes ({len(data)} of {base.ByteSize()})"
    changes = []
    if [(o.domain, o.version) for o in base.opset_import] != [(o.domain, o.version) for o in mutated.opset_import]:
        changes.append(f"opset_import {[(o.domain, o.version) for o in mutated.opset_import]}")
    if base.ir_version != mutated.ir_version:
        changes.append(f"ir_version {mutated.ir_version}")
    for role, old, new in (("input", base.graph.input, mutated.graph.input),
                           ("output", base.graph.output, mutated.graph.output)):
        before = [_vi_text(v) for v in old]
        changes += [f"graph {role} {v}" for v in (_vi_text(v) for v in new) if v not in before]
    readers = {}
    for n in mutated.graph.node:
        for name in n.input:
            readers.setdefault(name, n.op_type)
    before = {_tensor_text(t) for t in base.graph.initializer}
    changes += [f"initializer {_tensor_text(t)} (read by {readers.get(t.name, 'nothing')})"
                for t in mutated.graph.initializer if _tensor_text(t) not in before]
    if len(mutated.graph.node) != len(base.graph.node):
        changes.append(f"{len(base.graph.node)} -> {len(mutated.graph.node)} nodes")
    changes += [f"node {_short(_node_text(b), 120)}" for a, b in zip(base.graph.node, mutated.graph.node)
                if _node_text(a) != _node_text(b)]
    return "; ".join(changes[:limit]) or "no structural change (bytes only)"


def _feed_bytes(graph) -> int:
    """The bytes a run's feeds take (Python ints: no overflow on absurd dims)."""
    total = 0
    for v in graph.inputs:
        dims = [d if isinstance(d, int) else 0 for d in (v.shape or ())]
        total += math.prod(dims) * np.dtype(v.dtype).itemsize
    return total


def check_mutant(data: bytes, compile_and_run: bool = True) -> Outcome:
    """Load (import, shapes, folding) and by default compile and run a model file's bytes (with random feeds,
    unless they would exceed MAX_FEED_BYTES): "ok" when all of it works, "rejected" on a DnnfusionError,
    "crash" on anything else (a BuildError included: generated C that gcc refuses is a dnnfusion bug)."""
    import dnnfusion  # noqa: PLC0415
    from dnnfusion import pipeline  # noqa: PLC0415
    from dnnfusion.runtime.feeds import random_feeds  # noqa: PLC0415

    try:
        pipeline.load(data)
        if compile_and_run:
            compiled = dnnfusion.compile(data, opt_level="O3")
            if _feed_bytes(compiled.graph) <= MAX_FEED_BYTES:
                compiled.run(random_feeds(compiled.graph))
    except dnnfusion.DnnfusionError as e:
        return refusal(e)
    except Exception as e:  # noqa: BLE001 - anything else is a finding
        return failure("crash", e)
    return Outcome("ok")
