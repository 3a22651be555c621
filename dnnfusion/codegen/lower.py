"""One fusion block -> one C function. Pointwise operators inline into their consumers through composed index
maps (no data movement); a Many-to-Many operator's template reads its inputs through those inlined producers
(prologue) and, where the rest of the block is elementwise on its output, applies it before the store
(epilogue); otherwise its result goes to a block-local buffer that the rest of the block reads."""

from __future__ import annotations

from dataclasses import dataclass

from .. import ops
from ..errors import DnnfusionError
from ..fusion.plan import Block
from ..ir.graph import Node, Value
from ..kir.emit import Emitter
from ..kir.expr import C_TYPES, Bin, Expr, Index, Load, Var, blocked_linear, cast, ctype, linear, lit, numel, \
    postorder, rebuilt, unravel, variables, walk
from ..kir.kernel import PARALLEL, PARALLEL_GRAIN, KernelContext, KernelOptions, Placer, Reader, serial_for


class CodegenError(DnnfusionError):
    """An operator's codegen description failed for this node (a bug or an unsupported attribute)."""


@dataclass(frozen=True)
class Buffer:
    """A C array that holds one value: its generated name, C element type and layout: row-major, or with
    `block` > 0 channel-blocked (`blocked_linear`: [N][C / block][*spatial][block], chosen by layouts.py)."""

    name: str
    ctype: str
    block: int = 0

    def offset(self, index: Index, shape: tuple[int, ...]) -> Expr:
        """The element offset of a multi-index of a value of `shape` held in this buffer."""
        return blocked_linear(index, shape, self.block) if self.block else linear(index, shape)


PLACEHOLDER = "__kernel_output_"
SHORT_RUN = 128      # elements of an innermost loop below which trailing axes merge into one SIMD loop
DTYPES = {c: d for d, c in C_TYPES.items()}          # C type -> numpy dtype of a template's scratch array


class _Pending(Exception):
    """Raised inside a producer's `pointwise` when an input element it reads is not built yet."""

    def __init__(self, value: Value, index: Index) -> None:
        super().__init__(value.name)
        self.value, self.index = value, index


class BlockLowering:
    """Lowers `block` given the buffers of every value it reads from outside or must hand out (`buffers`,
    keyed by id(Value)), a function `temp(value)` that gives a block-local buffer for a kernel's result (or a
    template's scratch array), and `place(array)` that puts a template's compile-time array with the weights."""

    def __init__(self, block: Block, name: str, buffers: dict[int, Buffer], temp, place: Placer | None = None,
                 options: KernelOptions = KernelOptions()) -> None:
        self.block, self.name, self.buffers, self.temp, self.place = block, name, buffers, temp, place
        self.options = options
        self.method: str | None = None                       # the kernel template's chosen method, if it names one
        self.nodes = [o.node for o in block.ops]
        self.inside = {id(n) for n in self.nodes}
        self.kernels = block.kernel_nodes
        if len(self.kernels) > 1:
            raise CodegenError(f"block {block.id} has {len(self.kernels)} kernel-template operators; at most one")
        self.materialized: dict[int, Buffer] = {}          # kernel outputs written to a buffer
        self._memo: dict[tuple, Expr] = {}
        self.placeholders: dict[int, str] = {}             # kernel outputs read as the epilogue's value
        self.scratch_bytes = 0                               # the kernel template's scratch arrays

    # --- reading values -------------------------------------------------------------------------------
    def read_value(self, value: Value, index: Index) -> Expr:
        """The element of `value` at `index`: a literal, a load, or its producer's expression inlined (memoised:
        a value read twice at one index is built once, so a chain of ops that reuse their input stays linear).
        Inlining runs on an explicit stack, not by recursion, so a fused chain of any length works: a producer
        whose input element is not built yet stops (`_Pending`), that element is built, and it is asked again."""
        state = self._state()
        key = (id(value), tuple(index), state)
        stack = [(value, tuple(index))]
        while key not in self._memo:
            wanted, at = stack[-1]
            try:
                self._memo[(id(wanted), at, state)] = self._read_value(wanted, at, state)
                stack.pop()
            except _Pending as pending:
                stack.append((pending.value, pending.index))
        return self._memo[key]

    def _state(self) -> tuple:
        """What besides value and index decides a read: the kernel outputs read as placeholders or buffers."""
        return (tuple(sorted(self.placeholders.items())),
                tuple(sorted((k, b.name) for k, b in self.materialized.items())))

    def _inlined(self, value: Value) -> bool:
        """Whether reading `value` means building its producer's expression (a pointwise producer here)."""
        producer = value.producer
        return (producer is not None and id(producer) in self.inside and id(value) not in self.placeholders
                and id(value) not in self.materialized and not (value.const is not None and value.numel == 1))

    def _read_value(self, value: Value, index: Index, state: tuple) -> Expr:
        """One element, built from already built input elements (raises `_Pending` for one that is not)."""
        ct = ctype(value.dtype)
        if value.const is not None and value.numel == 1:
            return lit(value.const.reshape(-1)[0].item(), ct)
        producer = value.producer
        if producer is not None and id(producer) in self.inside:
            if id(value) in self.placeholders:
                return Load(self.placeholders[id(value)], linear(index, value.shape), ct)
            if id(value) in self.materialized:
                buffer = self.materialized[id(value)]
                return Load(buffer.name, buffer.offset(index, value.shape), ct)
            op = ops.lookup(producer)
            out = next(k for k, v in enumerate(producer.outputs) if v is value)
            expr = op.pointwise(producer, out, tuple(index), self._built_reader(producer, state))
            if expr is None:
                raise CodegenError(f"{producer.op_type} node '{producer.name}' has no pointwise description")
            return cast(expr, ct)
        buffer = self.buffers.get(id(value))
        if buffer is None:
            raise CodegenError(f"value '{value.name}' read by block {self.block.id} has no buffer")
        return Load(buffer.name, buffer.offset(index, value.shape), ct)

    def _built_reader(self, node: Node, state: tuple) -> Reader:
        """The reader a producer's `pointwise` gets while inlining: built elements come from the memo, a literal
        or load is built on the spot, and an element that needs inlining first raises `_Pending`."""
        def read(i: int, index: Index) -> Expr:
            value, at = node.inputs[i], tuple(index)
            key = (id(value), at, state)
            cached = self._memo.get(key)
            if cached is not None:
                return cached
            if self._inlined(value):
                raise _Pending(value, at)
            cached = self._memo[key] = self._read_value(value, at, state)
            return cached
        return read

    def reader(self, node: Node) -> Reader:
        """The reader of `node`'s inputs for a kernel template (each read inlines fused producers)."""
        def read(i: int, index: Index) -> Expr:
            return self.read_value(node.inputs[i], index)
        return read

    # --- outputs ---------------------------------------------------------------------------------------
    def outputs(self) -> list[Value]:
        """Values of the block that leave it: read by another block or returned to the caller."""
        return [v for n in self.nodes for v in n.outputs if v is not None and id(v) in self.buffers]

    def pointwise_loop(self, value: Value) -> list[str]:
        """A loop nest over `value`'s shape that computes and stores it; short trailing axes (a 7x7 plane) run as
        one merged SIMD loop wherever every read of the block then indexes it without division."""
        if self.is_output_kernel(value):
            return []
        shape, buffer = value.shape, self.buffers[id(value)]
        block = buffer.block
        if block:           # in the array's own order: each pixel's channels one vector, contiguous
            n, cb, lane = Var("i0"), Var("i1"), Var("i1l", below=block)
            spatial = tuple(Var(f"i{d}") for d in range(2, len(shape)))
            index = (n, cb * block + lane, *spatial)
            return self._store_loop(value, (n, cb, *spatial, lane), (shape[0], shape[1] // block, *shape[2:], block),
                                    self.read_value(value, index), buffer.offset(index, shape))
        index = tuple(Var(f"i{d}") for d in range(len(shape)))
        merged = merged_run(shape)
        if merged is not None:
            loops, extents = merged
            flat = loops[-1]
            element = index[:len(loops) - 1] + unravel(flat, shape[len(loops) - 1:])
            expr = self.read_value(value, element)
            offset = buffer.offset(element, shape)
            if not divides(flat, [expr, offset]):
                return self._store_loop(value, loops, extents, expr, offset)
        return self._store_loop(value, index, shape, self.read_value(value, index), buffer.offset(index, shape))

    def _store_loop(self, value: Value, loops: tuple[Var, ...], extents: tuple[int, ...], expr: Expr,
                    offset: Expr) -> list[str]:
        emitter = Emitter("t")
        emitter.share([expr])
        body = emitter.lines + [f"{self.buffers[id(value)].name}[{emitter.c(offset)}] = {emitter.c(expr)};"]
        return nest(loops, extents, body)

    def is_output_kernel(self, value: Value) -> bool:
        return value.producer is not None and any(value.producer is k for k in self.kernels)

    # --- the kernel ------------------------------------------------------------------------------------
    def epilogue_targets(self, kernel: Node) -> list[Value] | None:
        """Block outputs computable elementwise from the kernel's output element (same shape, read only at the
        identity index): the epilogue. None when some output needs the kernel's result elsewhere."""
        targets = []
        for value in self.outputs():
            if any(value is o for o in kernel.outputs):
                continue
            index = tuple(Var(f"i{d}") for d in range(len(value.shape)))
            for k, out in enumerate(kernel.outputs):
                if out is not None:
                    self.placeholders[id(out)] = f"{PLACEHOLDER}{k}"
            expr = self.read_value(value, index)
            self.placeholders.clear()
            loads = [e for e in walk(expr) if isinstance(e, Load) and e.buffer.startswith(PLACEHOLDER)]
            if not loads:
                if self._reaches(value, kernel):    # simplified away (Where(c, x, x)), yet its inputs are read
                    return None
                continue                                   # independent of the kernel: its own loop
            if len(kernel.outputs) != 1 or tuple(value.shape) != tuple(kernel.outputs[0].shape) or \
                    any(e.index != linear(index, value.shape) for e in loads):
                return None
            targets.append(value)
        return targets

    def prologue_outputs(self, kernel: Node) -> list[Value]:
        """Block outputs the kernel's prologue computes (pointwise producers of its inputs, independent of its
        result): a Swish that leaves the block and also feeds its pooling. Stored by their own loop before the
        kernel runs, they are read back rather than computed a second time inside the kernel's reads."""
        feeding, stack = set(), [v for v in kernel.inputs if v is not None]
        while stack:
            v = stack.pop()
            if id(v) not in feeding:
                feeding.add(id(v))
                stack.extend(self._reads_of(v))
        return [v for v in self.outputs() if id(v) in feeding and not self.is_output_kernel(v)
                and v.producer is not None and id(v.producer) in self.inside and not self._reaches(v, kernel)]

    def _reads_of(self, value: Value) -> list[Value]:
        producer = value.producer
        if producer is None or id(producer) not in self.inside:
            return []
        return [v for v in producer.inputs if v is not None]

    def _reaches(self, value: Value, kernel: Node) -> bool:
        """Whether computing `value` inside the block reads one of the kernel's outputs, directly or through
        fused producers (an explicit stack: chains can be long)."""
        outputs = {id(o) for o in kernel.outputs if o is not None}
        stack, seen = [value], set()
        while stack:
            v = stack.pop()
            if id(v) in outputs:
                return True
            if id(v) not in seen:
                seen.add(id(v))
                stack.extend(self._reads_of(v))
        return False

    def kernel_code(self, kernel: Node) -> list[str]:
        op = ops.lookup(kernel)
        targets = self.epilogue_targets(kernel)
        if targets is None:
            for out in kernel.outputs:
                if out is not None:
                    self.materialized[id(out)] = self.buffers.get(id(out)) or self.temp(out)
            targets = []
        else:
            for out in kernel.outputs:
                if out is not None and id(out) in self.buffers:
                    self.materialized[id(out)] = self.buffers[id(out)]
        counter = [0]

        def store(out: int, index: Index, value: Expr) -> list[str]:
            result = kernel.outputs[out]
            counter[0] += 1
            local = f"v{counter[0]}"
            head = Emitter(f"{local}p_")
            head.share([value])
            lines = head.lines + [f"const {value.ctype} {local} = {head.c(value)};"]
            stored: list[tuple[Buffer, Value, Expr]] = []
            if id(result) in self.materialized:
                stored.append((self.materialized[id(result)], result, Var(local, value.ctype)))
            self.placeholders[id(result)] = f"{PLACEHOLDER}{out}"
            for target in targets:
                expr = self.read_value(target, index)
                stored.append((self.buffers[id(target)], target, substitute(expr, f"{PLACEHOLDER}{out}", local)))
            self.placeholders.clear()
            emitter = Emitter(f"{local}_")
            emitter.share([e for _, _, e in stored])
            lines += emitter.lines
            for buffer, value_, expr in stored:
                lines.append(f"{buffer.name}[{emitter.c(buffer.offset(index, value_.shape))}] = {emitter.c(expr)};")
            return ["{"] + ["  " + line for line in lines] + ["}"]

        written = [self.materialized[id(o)] for o in kernel.outputs[:1] if o is not None and id(o) in self.materialized]
        blocks = {b.block for b in written + [self.buffers[id(t)] for t in targets]}
        ctx = KernelContext(kernel, self.reader(kernel), store, prefix="k", place=self.place, options=self.options,
                            output_block=blocks.pop() if len(blocks) == 1 else 0)
        code = op.kernel(kernel, ctx)
        self.method = ctx.method
        if code is None:
            raise CodegenError(f"{kernel.op_type} node '{kernel.name}' has no kernel template for its attributes")
        self.done = {id(t) for t in targets} | {id(o) for o in kernel.outputs if o is not None}
        self.helpers.update(ctx.helpers)
        arrays = [(name, ct, Value(name, DTYPES[ct], (max(count, 1),))) for name, ct, count in ctx.scratch_arrays]
        self.scratch_bytes = sum(v.nbytes for _, _, v in arrays)
        scratch = [f"{ct}* restrict {name} = {self.temp(v).name};" for name, ct, v in arrays]
        return scratch + code

    def lower(self) -> str:
        """The block's C function: `static void NAME(char* arena, const char* weights, const void* const* in,
        void* const* out)` with its buffer pointers declared from the generated buffer table."""
        self.done: set[int] = set()
        self.helpers: dict[str, str] = {}     # file-scope C the kernel templates asked for, by name
        body: list[str] = []
        if self.kernels:
            early = self.prologue_outputs(self.kernels[0])
            for value in early:               # stored first, then read back by the kernel instead of recomputed
                body += self.pointwise_loop(value)
                self.materialized[id(value)] = self.buffers[id(value)]
            body += self.kernel_code(self.kernels[0])
            self.done |= {id(v) for v in early}
        for value in self.outputs():
            if id(value) not in self.done:
                body += self.pointwise_loop(value)
        return "\n".join(body)


def substitute(e: Expr, buffer: str, local: str) -> Expr:
    """Replace every load from the placeholder `buffer` by the C local `local` (shared sub-trees once; children
    first with an explicit stack, so a deep epilogue chain does not recurse)."""
    def leaf(x: Expr) -> Expr | None:
        return Var(local, x.ctype) if isinstance(x, Load) and x.buffer == buffer else None
    return postorder(e, leaf, rebuilt)


def merged_run(shape: tuple[int, ...]) -> tuple[tuple[Var, ...], tuple[int, ...]] | None:
    """Loop variables and extents for `shape` with its trailing axes merged into one run while the innermost
    loop would be shorter than SHORT_RUN (the first axis that is not 1 stays its own, parallel, loop); None when
    nothing merges. The merged variable is named after the first axis it covers."""
    first = next((d for d, n in enumerate(shape) if n != 1), len(shape))
    start = len(shape) - 1
    while start - 1 > first and numel(shape[start:]) < SHORT_RUN:
        start -= 1
    if sum(n != 1 for n in shape[start:]) < 2:
        return None
    loops = tuple(Var(f"i{d}") for d in range(start)) + (Var(f"i{start}r"),)
    return loops, tuple(shape[:start]) + (numel(shape[start:]),)


def divides(var: Var, exprs: list[Expr]) -> bool:
    """Whether some division or remainder in `exprs` takes `var` apart (an index that does not rejoin)."""
    for e in exprs:
        for x in walk(e):
            if isinstance(x, Bin) and x.op in ("floordiv", "mod", "/", "%") and \
                    var.name in variables(x.a):
                return True
    return False


def nest(index: tuple[Var, ...], shape: tuple[int, ...], body: list[str]) -> list[str]:
    """Loops over `shape`: size-1 axes become constants, the outermost loop runs on the thread pool when the work
    is large (fused with the next one when it is short and that one is not the SIMD loop), and the innermost is
    marked for SIMD."""
    fixed = [f"const int64_t {v.name} = 0;" for v, d in zip(index, shape) if d == 1]
    loops = [(v, d) for v, d in zip(index, shape) if d != 1]
    if not loops:
        return ["{"] + ["  " + line for line in fixed + body] + ["}"]
    parallel = numel(shape) >= PARALLEL_GRAIN
    fuse = parallel and len(loops) > 2 and loops[0][1] < 16
    for k in range(len(loops) - 1, 1 if fuse else 0, -1):
        body = serial_for(loops[k][0], loops[k][1], body, simd=k == len(loops) - 1)
    if fuse:
        (outer, n0), (second, n1) = loops[0], loops[1]
        var, extent = Var(f"{outer.name}_{second.name}"), n0 * n1
        body = [f"const int64_t {outer.name} = {var.name} / {n1}, {second.name} = {var.name} % {n1};"] + body
    else:
        var, extent = loops[0]
    loop = ([PARALLEL] if parallel else []) + \
        [f"for (int64_t {var.name} = 0; {var.name} < {extent}; ++{var.name}) {{"] + \
        ["  " + line for line in body] + ["}"]
    return ["{"] + ["  " + line for line in fixed + loop] + ["}"] if fixed else loop
