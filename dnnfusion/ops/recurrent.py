"""Recurrent layers: RNN, GRU and LSTM (Many-to-Many), one shared recurrence skeleton.

Each layer projects the whole input sequence once (X W^T + Wb), then walks the time steps of each direction
with its cell update. `sequence_lens` stops a batch entry early: its state freezes and its outputs are zero;
the reverse direction starts at each entry's own last step.
"""

from __future__ import annotations

from typing import Callable, ClassVar, NamedTuple, Sequence

import numpy as np

from ..kernels.gemm import Operand, Product, direct_buffer, product_kernel, strided
from ..kir.expr import INDEX, Cast, Expr, Index, Load, Var, binary, call, cast, ctype, floordiv, lit, mod, select
from ..kir.kernel import KernelContext, parallel_for, serial_for
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, shape_of
from .registry import register

Activation = Callable[[np.ndarray], np.ndarray]


class ActivationSpec(NamedTuple):
    """An activation function of (x, alpha, beta), its scalar formula for codegen, and its default alpha/beta
    (None: takes no such value)."""

    fn: Callable[[np.ndarray, float, float], np.ndarray]
    expr: Callable[[Expr, float, float], Expr]
    alpha: float | None = None
    beta: float | None = None


def _lit(v: float) -> Expr:
    return lit(v, "double")


def _clip_expr(x: Expr, low: float, high: float) -> Expr:
    """np.clip(x, low, high): NaN stays NaN."""
    return select(binary("<", x, _lit(low)), _lit(low), select(binary(">", x, _lit(high)), _lit(high), x))


def _max0(x: Expr) -> Expr:
    """np.maximum(x, 0): NaN stays NaN."""
    return select(binary("<", x, _lit(0)), _lit(0), x)


ACTIVATIONS: dict[str, ActivationSpec] = {
    "relu": ActivationSpec(lambda x, a, b: np.maximum(x, 0), lambda x, a, b: _max0(x)),
    "tanh": ActivationSpec(lambda x, a, b: np.tanh(x), lambda x, a, b: call("tanh", x)),
    "sigmoid": ActivationSpec(lambda x, a, b: 0.5 * (1 + np.tanh(0.5 * x)),      # no overflow for large |x|
                              lambda x, a, b: _lit(0.5) * (_lit(1) + call("tanh", _lit(0.5) * x))),
    "affine": ActivationSpec(lambda x, a, b: a * x + b, lambda x, a, b: _lit(a) * x + _lit(b), 1.0, 0.0),
    "leakyrelu": ActivationSpec(lambda x, a, b: np.where(x >= 0, x, a * x),
                                lambda x, a, b: select(binary(">=", x, _lit(0)), x, _lit(a) * x), 0.01),
    "thresholdedrelu": ActivationSpec(lambda x, a, b: np.where(x >= a, x, 0),
                                      lambda x, a, b: select(binary(">=", x, _lit(a)), x, _lit(0)), 1.0),
    "scaledtanh": ActivationSpec(lambda x, a, b: a * np.tanh(b * x),
                                 lambda x, a, b: _lit(a) * call("tanh", _lit(b) * x), 1.0, 1.0),
    "hardsigmoid": ActivationSpec(lambda x, a, b: np.clip(a * x + b, 0, 1),
                                  lambda x, a, b: _clip_expr(_lit(a) * x + _lit(b), 0.0, 1.0), 0.2, 0.5),
    "elu": ActivationSpec(lambda x, a, b: np.where(x >= 0, x, a * (np.exp(np.minimum(x, 0)) - 1)),
                          lambda x, a, b: select(binary(">=", x, _lit(0)), x, _lit(a) * (call("exp", x) - _lit(1))),
                          1.0),
    "softsign": ActivationSpec(lambda x, a, b: x / (1 + np.abs(x)), lambda x, a, b: x / (_lit(1) + call("abs", x))),
    "softplus": ActivationSpec(lambda x, a, b: np.logaddexp(0, x),
                               lambda x, a, b: _max0(x) + call("log1p", call("exp", -call("abs", x)))),
}
DOT_BLOCK = 4     # dot products the generated code computes side by side
DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}


class Cell(NamedTuple):
    """One direction's recurrent weights and activations, as a cell update needs them."""

    r: np.ndarray                 # [gates * hidden, hidden]
    rb: np.ndarray                # [gates * hidden]
    peephole: np.ndarray | None   # LSTM only: [3 * hidden] for the i, o, f gates
    acts: list[Activation]
    clip: Callable[[np.ndarray], np.ndarray]


class Dims(NamedTuple):
    """The static extents of a recurrent node."""

    seq: int
    batch: int
    input: int
    hidden: int
    directions: int


class _Recurrent(Op):
    """The shared skeleton; subclasses give the gate count, the states, the activations and the cell update."""

    mapping = MappingType.MANY_TO_MANY
    gates: ClassVar[int] = 1
    states: ClassVar[int] = 1                 # h, or h and c
    default_activations: ClassVar[tuple[str, ...]] = ()
    initial_inputs: ClassVar[tuple[int, ...]] = (5,)   # input positions of initial_h (and initial_c)
    reset_row: ClassVar[bool] = False                  # the generated cell needs a row for r * h (GRU)

    def step(self, node: Node, cell: Cell, xw: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """The new states (hidden state first) from the projected input xw and the previous states."""
        raise NotImplementedError

    # --- shape rule --------------------------------------------------------------------------------
    def infer(self, node: Node) -> list[Inferred]:
        d = self.dims(node)
        dtype = node.inputs[0].dtype
        if self.layout(node):
            y, state = (d.batch, d.seq, d.directions, d.hidden), (d.batch, d.directions, d.hidden)
        else:
            y, state = (d.seq, d.directions, d.batch, d.hidden), (d.directions, d.batch, d.hidden)
        self.activations(node, d.directions)
        for i, shape in self.optional_shapes(d, state).items():
            v = node.input(i)
            if v is not None and tuple(v.shape) != shape:
                raise self.invalid(node, f"input {i} ('{v.name}') has shape {v.shape}, not {shape}")
        return [TensorType(dtype, y)] + [TensorType(dtype, state)] * self.states

    def optional_shapes(self, d: Dims, state: tuple) -> dict[int, tuple]:
        """Input position -> required shape of the optional inputs: B, sequence_lens and the initial states."""
        return {3: (d.directions, 2 * self.gates * d.hidden), 4: (d.batch,), **{i: state for i in self.initial_inputs}}

    def dims(self, node: Node) -> Dims:
        """Sequence, batch, input and hidden extents and the number of directions, checked against W and R."""
        x, w, r = shape_of(node, 0), shape_of(node, 1), shape_of(node, 2)
        if len(x) != 3:
            raise self.invalid(node, f"X must be 3-D, not {x}")
        seq, batch, size = (x[1], x[0], x[2]) if self.layout(node) else x
        directions = len(self.directions(node))
        hidden = int(node.attr("hidden_size", r[-1] if len(r) == 3 else 0))
        if tuple(w) != (directions, self.gates * hidden, size) or tuple(r) != (directions, self.gates * hidden, hidden):
            raise self.invalid(node, f"W {w} and R {r} must be [{directions}, {self.gates}*{hidden}, {size}] and "
                                     f"[{directions}, {self.gates}*{hidden}, {hidden}]")
        return Dims(seq, batch, size, hidden, directions)

    # --- semantics ---------------------------------------------------------------------------------
    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x, w, r = (a.astype(np.float64) for a in inputs[:3])
        d = self.dims(node)
        layout = self.layout(node)
        if layout:
            x = x.transpose(1, 0, 2)
        bias = _input(inputs, 3)
        bias = np.zeros((d.directions, 2 * self.gates * d.hidden)) if bias is None else bias.astype(np.float64)
        lens = _input(inputs, 4)
        lens = np.full(d.batch, d.seq, np.int64) if lens is None else lens.astype(np.int64)
        if lens.shape != (d.batch,) or np.any((lens < 0) | (lens > d.seq)):
            raise self.invalid(node, f"sequence_lens {lens.tolist()} must give one length in [0, {d.seq}] "
                                     "per batch entry")
        initial = [self._initial(inputs, i, d, layout) for i in self.initial_inputs]
        acts = self.activations(node, d.directions)
        per_direction = len(self.default_activations)
        ys, finals = [], []
        for k, reverse in enumerate(self.directions(node)):
            cell = Cell(r[k], bias[k, self.gates * d.hidden:], self.peephole(inputs, k),
                        acts[k * per_direction:(k + 1) * per_direction], self.clip(node))
            xw = x @ w[k].T + bias[k, :self.gates * d.hidden]
            y, states = self.run_direction(node, cell, xw, lens, reverse, tuple(s[k] for s in initial))
            ys.append(y)
            finals.append(states)
        y = np.stack(ys, axis=1)                                               # [seq, dirs, batch, hidden]
        outs = [np.stack([f[i] for f in finals]) for i in range(self.states)]  # [dirs, batch, hidden]
        if layout:
            y, outs = y.transpose(2, 0, 1, 3), [o.transpose(1, 0, 2) for o in outs]
        return [a.astype(inputs[0].dtype) for a in (y, *outs)]

    def run_direction(self, node: Node, cell: Cell, xw: np.ndarray, lens: np.ndarray, reverse: bool,
                      states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Walk the time steps of one direction: every hidden state [seq, batch, hidden], and the final states."""
        seq, batch = xw.shape[:2]
        rows = np.arange(batch)
        y = np.zeros((seq, batch, states[0].shape[-1]))
        for step in range(int(lens.max(initial=0))):
            active = step < lens
            t = np.clip(lens - 1 - step if reverse else np.full(batch, step), 0, seq - 1)
            new = self.step(node, cell, xw[t, rows], states)
            states = tuple(np.where(active[:, None], n, s) for n, s in zip(new, states))
            y[t[active], rows[active]] = new[0][active]
        return y, states

    # --- code generation ---------------------------------------------------------------------------
    def cell(self, node: Node, gen: _CellCode) -> list[str]:
        """C for one time step (mirrors `step`): the new states in rnn_h (and rnn_c) from the projected input row
        rnn_xw and the previous states."""
        raise NotImplementedError

    def kernel(self, node: Node, ctx: KernelContext) -> list[str]:
        """As `compute`: the input sequence loaded once and projected once (X W^T + Wb, every gate row in
        parallel), then every (direction, batch entry) runs its own recurrence in parallel: states in double
        scratch rows, per step h R^T and the cell update, Y stored (zeros past the entry's sequence length),
        the final states last."""
        d = self.dims(node)
        width = self.gates * d.hidden
        xw = ctx.scratch("double", d.directions * d.seq * d.batch * width)
        lines = self._project(node, ctx, d, xw)
        rows = d.directions * d.batch
        sizes = {"h": d.hidden, "c": d.hidden * (self.states - 1), "g": width, "r": d.hidden * self.reset_row}
        kb = ctx.var("kb")
        body = [f"const int64_t rnn_b = {kb.name} % {d.batch};"]
        for name, size in sizes.items():
            if size:
                body.append(f"double* const rnn_{name} = {ctx.scratch('double', rows * size)} + {kb.name} * {size};")
        per_direction = len(self.default_activations)
        specs = self.activation_specs(node, d.directions)
        directions = []
        for k, reverse in enumerate(self.directions(node)):
            gen = _CellCode(node, ctx, d, k, self.gates, specs[k * per_direction:(k + 1) * per_direction])
            directions.append(self._direction_code(node, gen, reverse, xw))
        if len(directions) == 1:
            body += directions[0]
        else:
            body += [f"if ({kb.name} < {d.batch}) {{"] + _indent(directions[0]) + ["} else {"] + \
                _indent(directions[1]) + ["}"]
        recurrent = 2 * d.seq * rows * width * d.hidden
        return lines + parallel_for(kb, rows, body, recurrent)

    def _project(self, node: Node, ctx: KernelContext, d: Dims, xw: str) -> list[str]:
        """`xw`[direction, step, batch, row] = X W^T + Wb in double, as one batched matrix product on the GEMM
        template: X (through its fused producers) is (step, batch) rows by input columns, each direction's
        W^T its B (packed at compile time when W is a weight). Float32 layers multiply in float32, as
        onnxruntime does, so that the product runs on the microkernels; the recurrence stays in double."""
        width, steps = self.gates * d.hidden, d.seq * d.batch
        acc = "float" if node.inputs[0].dtype == np.float32 else "double"
        layout = self.layout(node)

        def x_element(bidx: Index, r: Expr, c: Expr) -> Expr:
            t, b = floordiv(r, d.batch), mod(r, d.batch)
            return cast(ctx.read(0, (b, t, c) if layout else (t, b, c)), acc)

        buffer = None if layout else direct_buffer(ctx, 0, (d.seq, d.batch, d.input), acc)
        x = Operand((1,), steps, d.input, x_element) if buffer is None else \
            strided(buffer, acc, (1,), [0], steps, d.input, d.input, 1)
        w = node.inputs[1]
        weights = None if w.const is None else w.const.swapaxes(-2, -1)
        w_buffer = direct_buffer(ctx, 1, tuple(w.shape), acc)
        if w_buffer is not None:
            wt = strided(w_buffer, acc, (d.directions,), [width * d.input], d.input, width, 1, d.input, weights)
        else:
            wt = Operand((d.directions,), d.input, width,
                         lambda bidx, r, c: cast(ctx.read(1, (bidx[0], c, r)), acc), constant=weights)

        def store(bidx: Index, i: Expr, j: Index, value: Expr) -> list[str]:
            k, row = bidx[0], j[0]
            bias = Cast(ctx.read(3, (k, row)), "double") if node.input(3) is not None else None
            return [f"{xw}[{ctx.c((k * steps + i) * width + row)}] = {ctx.c(_plus(Cast(value, 'double'), bias))};"]
        return product_kernel(ctx, Product((d.directions,), x, wt, acc, store))

    def _direction_code(self, node: Node, gen: _CellCode, reverse: bool, xw: str) -> list[str]:
        """C for one batch entry of one direction (as `run_direction`), its projected inputs in `xw`."""
        d, ctx = gen.d, gen.ctx
        b, j, t, step = Var("rnn_b"), ctx.var("j"), Var("rnn_t"), ctx.var("st")
        lines = []
        for name, i in zip("hc", self.initial_inputs):
            if node.input(i) is None:
                lines += serial_for(j, d.hidden, [f"rnn_{name}[{j.name}] = 0.0;"])
            else:
                initial = Cast(ctx.read(i, gen.state_index(b, j)), "double")
                lines += serial_for(j, d.hidden, ctx.value("rnn_init", initial) + [f"rnn_{name}[{j.name}] = rnn_init;"])
        if node.input(4) is None:
            lines.append(f"const int64_t rnn_len = {d.seq};")
        else:
            lines += ctx.value("rnn_given", Cast(ctx.read(4, (b,)), INDEX))
            lines.append(f"const int64_t rnn_len = rnn_given < 0 ? 0 : (rnn_given > {d.seq} ? {d.seq} : rnn_given);")
        time = f"rnn_len - 1 - {step.name}" if reverse else step.name
        active = [f"const int64_t rnn_t = {time};",
                  f"const double* const rnn_xw = {xw} + (({gen.k * d.seq} + rnn_t) * {d.batch} + rnn_b) * "
                  f"{self.gates * d.hidden};"]
        active += self.cell(node, gen)
        active += gen.store_rows(0, lambda j_: gen.y_index(t, b, j_), "h")
        idle = gen.store_rows(0, lambda j_: gen.y_index(step, b, j_), None)
        steps = [f"if ({step.name} < rnn_len) {{"] + _indent(active) + ["} else {"] + _indent(idle) + ["}"]
        lines += serial_for(step, d.seq, steps)
        for out, name in zip(range(1, self.states + 1), "hc"):
            lines += gen.store_rows(out, lambda j_: gen.state_index(b, j_), name)
        return lines

    def flops(self, node: Node) -> int:
        """Input and recurrent matrix products: 2 * seq * batch * gates*hidden * (input + hidden) per direction."""
        d = self.dims(node)
        return 2 * d.seq * d.batch * self.gates * d.hidden * (d.input + d.hidden) * d.directions

    # --- reading the node --------------------------------------------------------------------------
    def layout(self, node: Node) -> bool:
        layout = node.attr("layout", 0)
        if layout not in (0, 1):
            raise self.invalid(node, f"layout must be 0 or 1, not {layout}")
        return bool(layout)

    def directions(self, node: Node) -> tuple[bool, ...]:
        """One flag per direction: whether it runs backwards in time."""
        direction = node.attr("direction", "forward")
        if direction not in DIRECTIONS:
            raise self.invalid(node, f"direction must be one of {', '.join(DIRECTIONS)}, not '{direction}'")
        return DIRECTIONS[direction]

    def activations(self, node: Node, directions: int) -> list[Activation]:
        """The activation functions of every direction, with alpha/beta consumed in order by those that take them."""
        return [lambda x, fn=spec.fn, a=alpha, b=beta: fn(x, a, b)
                for spec, alpha, beta in self.activation_specs(node, directions)]

    def activation_specs(self, node: Node, directions: int) -> list[tuple[ActivationSpec, float, float]]:
        """Every direction's activations as (spec, alpha, beta)."""
        per_direction = len(self.default_activations)
        names = list(node.attr("activations", self.default_activations * directions))
        if len(names) == per_direction and directions == 2:
            names *= 2
        names = names[:per_direction * directions]
        if len(names) != per_direction * directions:
            raise self.invalid(node, f"needs {per_direction * directions} activations, not {len(names)}")
        alphas = list(node.attr("activation_alpha", []))
        betas = list(node.attr("activation_beta", []))
        specs = []
        for name in names:
            spec = ACTIVATIONS.get(name.lower())
            if spec is None:
                raise self.fail(node, f"with activation '{name}' is not supported")
            alpha = alphas.pop(0) if spec.alpha is not None and alphas else spec.alpha
            beta = betas.pop(0) if spec.beta is not None and betas else spec.beta
            specs.append((spec, alpha, beta))
        return specs

    def clip(self, node: Node) -> Callable[[np.ndarray], np.ndarray]:
        """Clipping of every activation's input to [-clip, clip] when the attribute is set."""
        bound = node.attr("clip")
        if bound is None:
            return lambda x: x
        return lambda x: np.clip(x, -bound, bound)

    def peephole(self, inputs: Sequence[np.ndarray | None], direction: int) -> np.ndarray | None:
        return None

    def _initial(self, inputs: Sequence[np.ndarray | None], i: int, d: Dims, layout: bool) -> np.ndarray:
        """An initial state as [directions, batch, hidden] (zeros when omitted)."""
        state = _input(inputs, i)
        if state is None:
            return np.zeros((d.directions, d.batch, d.hidden))
        return (state.transpose(1, 0, 2) if layout else state).astype(np.float64)


def _input(inputs: Sequence[np.ndarray | None], i: int) -> np.ndarray | None:
    return inputs[i] if i < len(inputs) else None


class _CellCode:
    """What a cell's C needs for direction k: its weights read per element, its activations as expressions,
    the gate pre-activations as dot products, and the output indices and stores."""

    def __init__(self, node: Node, ctx: KernelContext, d: Dims, k: int, gates: int,
                 specs: list[tuple[ActivationSpec, float, float]]) -> None:
        self.node, self.ctx, self.d, self.k, self.gate_rows = node, ctx, d, k, gates * d.hidden
        self.specs = specs
        self.layout = bool(node.attr("layout", 0))
        self.bound = node.attr("clip")

    def act(self, n: int, x: Expr, clip: bool = True) -> Expr:
        """The direction's n-th activation applied to x, after clipping unless `clip` is False."""
        spec, alpha, beta = self.specs[n]
        if clip and self.bound is not None:
            x = _clip_expr(x, -float(self.bound), float(self.bound))
        return spec.expr(x, alpha, beta)

    def weight(self, i: int, *index: Expr) -> Expr | None:
        """Input i (W, R, B or P) of this direction at `index`, in double; None when the input is omitted."""
        if self.node.input(i) is None:
            return None
        return Cast(self.ctx.read(i, (lit(self.k, INDEX), *index)), "double")

    def gates(self, lo: int, hi: int, vec: str, finish: Callable[[Var, Expr, Expr, Expr], list[str]]) -> list[str]:
        """The gate rows [lo, hi): rnn_g[row] = vec R^T first, then per row the statements of
        `finish(j, row, xw, hr)` with its projected input xw and that product hr (j counts from 0, row from lo)."""
        ctx = self.ctx

        def product(j: Expr, m: Var) -> Expr:
            return Load(vec, m, "double") * self.weight(2, j + lo, m)

        def store(j: Expr, acc: Expr) -> list[str]:
            return [f"rnn_g[{ctx.c(j + lo)}] = {ctx.c(acc)};"]
        j = ctx.var("j")
        row = j + lo
        return _dots(ctx, hi - lo, self.d.hidden, product, store) + serial_for(
            j, hi - lo, finish(j, row, Load("rnn_xw", row, "double"), Load("rnn_g", row, "double")))

    def preactivations(self, lo: int, hi: int) -> list[str]:
        """rnn_g[row] = x W^T + Wb + h R^T + Rb for the gate rows [lo, hi)."""
        def finish(j: Var, row: Expr, xw: Expr, hr: Expr) -> list[str]:
            return self.assign("rnn_g", row, _plus(xw + hr, self.recurrent_bias(row)))
        return self.gates(lo, hi, "rnn_h", finish)

    def recurrent_bias(self, row: Expr) -> Expr | None:
        return self.weight(3, row + self.gate_rows)

    def assign(self, array: str, index: Expr, value: Expr, name: str = "rnn_v") -> list[str]:
        """array[index] = value, the value's shared sub-expressions computed once."""
        return self.ctx.value(name, value) + [f"{array}[{self.ctx.c(index)}] = {name};"]

    def rows(self, body: Callable[[Var], list[str]]) -> list[str]:
        """A loop over the hidden units."""
        j = self.ctx.var("j")
        return serial_for(j, self.d.hidden, body(j))

    def y_index(self, t: Expr, b: Expr, j: Expr) -> tuple[Expr, ...]:
        k = lit(self.k, INDEX)
        return (b, t, k, j) if self.layout else (t, k, b, j)

    def state_index(self, b: Expr, j: Expr) -> tuple[Expr, ...]:
        k = lit(self.k, INDEX)
        return (b, k, j) if self.layout else (k, b, j)

    def store_rows(self, out: int, index: Callable[[Expr], tuple[Expr, ...]], state: str | None) -> list[str]:
        """Store output `out` for every hidden unit from rnn_{state} (None: zeros); nothing for omitted outputs."""
        if out >= len(self.node.outputs) or self.node.outputs[out] is None:
            return []
        ct = ctype(self.node.inputs[0].dtype)
        return self.rows(lambda j: self.ctx.store(
            out, index(j), Cast(Load(f"rnn_{state}", j, "double") if state else lit(0, "double"), ct)))


def _plus(a: Expr, b: Expr | None) -> Expr:
    """a + b, or a when b is an omitted input."""
    return a if b is None else a + b


def _gate(j: Expr, offset: int) -> Expr:
    """The gate row rnn_g[j + offset]."""
    return Load("rnn_g", j + offset, "double")


def _dots(ctx: KernelContext, count: int, n: int, product: Callable[[Expr, Var], Expr],
          finish: Callable[[Expr, Expr], list[str]]) -> list[str]:
    """Dot products 0..count-1 of length n, where `product(d, i)` is term i of dot product d and `finish(d, acc)`
    the statements that use its result: DOT_BLOCK of them share one vectorised pass, with independent
    accumulators (a single one would leave the multiply-add units waiting on each other)."""
    full, rest = divmod(count, DOT_BLOCK)
    lines = []
    if full:
        q = ctx.var("q")
        lines += serial_for(q, full, _dot_block(ctx, [q * DOT_BLOCK + u for u in range(DOT_BLOCK)], n, product, finish))
    if rest:
        r = ctx.var("q")
        lines += serial_for(r, rest, _dot_block(ctx, [r + full * DOT_BLOCK], n, product, finish))
    return lines


def _dot_block(ctx: KernelContext, rows: list[Expr], n: int, product: Callable[[Expr, Var], Expr],
               finish: Callable[[Expr, Expr], list[str]]) -> list[str]:
    """The dot products `rows` in one pass over i < n."""
    i = ctx.var("i")
    accs = [f"rnn_a{u}" for u in range(len(rows))]
    body = []
    for u, row in enumerate(rows):
        body += ctx.value(f"rnn_p{u}", product(row, i)) + [f"{accs[u]} += rnn_p{u};"]
    lines = [f"double {a} = 0.0;" for a in accs] + [f"#pragma omp simd reduction(+:{', '.join(accs)})"]
    lines += serial_for(i, n, body)
    for acc, row in zip(accs, rows):
        lines += finish(row, Var(acc, "double"))
    return lines


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


@register
class RNN(_Recurrent):
    """Simple recurrent layer: Ht = f(Xt W^T + Ht-1 R^T + Wb + Rb)."""

    op_type = "RNN"
    default_activations = ("Tanh",)

    def step(self, node: Node, cell: Cell, xw: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        (h,) = states
        return (cell.acts[0](cell.clip(xw + h @ cell.r.T + cell.rb)),)

    def cell(self, node: Node, gen: _CellCode) -> list[str]:
        return gen.preactivations(0, gen.d.hidden) + gen.rows(
            lambda j: gen.assign("rnn_h", j, gen.act(0, Load("rnn_g", j, "double"))))


@register
class GRU(_Recurrent):
    """Gated recurrent unit layer (update z, reset r and hidden h gates)."""

    op_type = "GRU"
    gates = 3
    reset_row = True
    default_activations = ("Sigmoid", "Tanh")

    def step(self, node: Node, cell: Cell, xw: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        (h,) = states
        size = h.shape[-1]
        f, g = cell.acts
        zr = xw[:, :2 * size] + h @ cell.r[:2 * size].T + cell.rb[:2 * size]
        z, r = f(cell.clip(zr[:, :size])), f(cell.clip(zr[:, size:]))
        r_h, rb_h = cell.r[2 * size:], cell.rb[2 * size:]
        if node.attr("linear_before_reset", 0):
            candidate = xw[:, 2 * size:] + r * (h @ r_h.T + rb_h)
        else:
            candidate = xw[:, 2 * size:] + (r * h) @ r_h.T + rb_h
        return ((1 - z) * g(cell.clip(candidate)) + z * h,)

    def cell(self, node: Node, gen: _CellCode) -> list[str]:
        size = gen.d.hidden
        before_reset = bool(node.attr("linear_before_reset", 0))
        lines = gen.preactivations(0, 2 * size)
        j = gen.ctx.var("j")
        lines += serial_for(j, 2 * size, gen.assign("rnn_g", j, gen.act(0, _gate(j, 0))))        # z, then r
        if not before_reset:
            lines += gen.rows(lambda j: gen.assign("rnn_r", j, _gate(j, size) * Load("rnn_h", j, "double")))

        def candidate(j: Var, row: Expr, xw: Expr, hr: Expr) -> list[str]:
            reset = _gate(j, size)
            value = xw + reset * _plus(hr, gen.recurrent_bias(row)) if before_reset else \
                _plus(xw + hr, gen.recurrent_bias(row))
            return gen.assign("rnn_g", row, value)
        lines += gen.gates(2 * size, 3 * size, "rnn_h" if before_reset else "rnn_r", candidate)
        return lines + gen.rows(lambda j: gen.assign("rnn_h", j, (lit(1, "double") - _gate(j, 0)) * gen.act(
            1, _gate(j, 2 * size)) + _gate(j, 0) * Load("rnn_h", j, "double")))


@register
class LSTM(_Recurrent):
    """Long short-term memory layer (input, output, forget and cell gates; optional peepholes)."""

    op_type = "LSTM"
    gates = 4
    states = 2
    default_activations = ("Sigmoid", "Tanh", "Tanh")
    initial_inputs = (5, 6)

    def optional_shapes(self, d: Dims, state: tuple) -> dict[int, tuple]:
        return {**super().optional_shapes(d, state), 7: (d.directions, 3 * d.hidden)}

    def peephole(self, inputs: Sequence[np.ndarray | None], direction: int) -> np.ndarray | None:
        p = _input(inputs, 7)
        return None if p is None else p[direction].astype(np.float64)

    def step(self, node: Node, cell: Cell, xw: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        h, c = states
        f, g, act_h = cell.acts
        i_in, o_in, f_in, c_in = np.split(xw + h @ cell.r.T + cell.rb, 4, axis=1)
        p_i, p_o, p_f = np.split(cell.peephole, 3) if cell.peephole is not None else (0.0, 0.0, 0.0)
        i = f(cell.clip(i_in + p_i * c))
        forget = 1 - i if node.attr("input_forget", 0) else f(cell.clip(f_in + p_f * c))
        c = forget * c + i * g(cell.clip(c_in))
        o = f(cell.clip(o_in + p_o * c))
        return o * act_h(c), c

    def cell(self, node: Node, gen: _CellCode) -> list[str]:
        size = gen.d.hidden

        def update(j: Var) -> list[str]:
            def peephole(gate: int, c: Expr) -> Expr:
                p = gen.weight(7, j + gate * size)
                return _gate(j, gate * size) if p is None else _gate(j, gate * size) + p * c
            c = Load("rnn_c", j, "double")
            lines = gen.ctx.value("rnn_i", gen.act(0, peephole(0, c)))
            i = Var("rnn_i", "double")
            forget = lit(1, "double") - i if node.attr("input_forget", 0) else gen.act(0, peephole(2, c))
            lines += gen.ctx.value("rnn_cn", forget * c + i * gen.act(1, _gate(j, 3 * size)))
            new_c = Var("rnn_cn", "double")
            lines += gen.ctx.value("rnn_o", gen.act(0, peephole(1, new_c)))
            return lines + gen.assign("rnn_h", j, Var("rnn_o", "double") * gen.act(2, new_c, clip=False)) + \
                gen.assign("rnn_c", j, new_c, "rnn_cv")
        return gen.preactivations(0, 4 * size) + gen.rows(update)
