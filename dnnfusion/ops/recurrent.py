"""Recurrent layers: RNN, GRU and LSTM (Many-to-Many), one shared recurrence skeleton.

Each layer projects the whole input sequence once (X W^T + Wb), then walks the time steps of each direction
with its cell update. `sequence_lens` stops a batch entry early: its state freezes and its outputs are zero;
the reverse direction starts at each entry's own last step.
"""

from __future__ import annotations

from typing import Callable, ClassVar, NamedTuple, Sequence

import numpy as np

from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, shape_of
from .registry import register

Activation = Callable[[np.ndarray], np.ndarray]


class ActivationSpec(NamedTuple):
    """An activation function of (x, alpha, beta) and its default alpha/beta (None: takes no such value)."""

    fn: Callable[[np.ndarray, float, float], np.ndarray]
    alpha: float | None = None
    beta: float | None = None


ACTIVATIONS: dict[str, ActivationSpec] = {
    "relu": ActivationSpec(lambda x, a, b: np.maximum(x, 0)),
    "tanh": ActivationSpec(lambda x, a, b: np.tanh(x)),
    "sigmoid": ActivationSpec(lambda x, a, b: 0.5 * (1 + np.tanh(0.5 * x))),   # no overflow for large |x|
    "affine": ActivationSpec(lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": ActivationSpec(lambda x, a, b: np.where(x >= 0, x, a * x), 0.01),
    "thresholdedrelu": ActivationSpec(lambda x, a, b: np.where(x >= a, x, 0), 1.0),
    "scaledtanh": ActivationSpec(lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": ActivationSpec(lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": ActivationSpec(lambda x, a, b: np.where(x >= 0, x, a * (np.exp(np.minimum(x, 0)) - 1)), 1.0),
    "softsign": ActivationSpec(lambda x, a, b: x / (1 + np.abs(x))),
    "softplus": ActivationSpec(lambda x, a, b: np.logaddexp(0, x)),
}
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
        per_direction = len(self.default_activations)
        names = list(node.attr("activations", self.default_activations * directions))
        if len(names) == per_direction and directions == 2:
            names *= 2
        names = names[:per_direction * directions]
        if len(names) != per_direction * directions:
            raise self.invalid(node, f"needs {per_direction * directions} activations, not {len(names)}")
        alphas = list(node.attr("activation_alpha", []))
        betas = list(node.attr("activation_beta", []))
        acts = []
        for name in names:
            spec = ACTIVATIONS.get(name.lower())
            if spec is None:
                raise self.fail(node, f"with activation '{name}' is not supported")
            alpha = alphas.pop(0) if spec.alpha is not None and alphas else spec.alpha
            beta = betas.pop(0) if spec.beta is not None and betas else spec.beta
            acts.append(lambda x, fn=spec.fn, a=alpha, b=beta: fn(x, a, b))
        return acts

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


@register
class RNN(_Recurrent):
    """Simple recurrent layer: Ht = f(Xt W^T + Ht-1 R^T + Wb + Rb)."""

    op_type = "RNN"
    default_activations = ("Tanh",)

    def step(self, node: Node, cell: Cell, xw: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        (h,) = states
        return (cell.acts[0](cell.clip(xw + h @ cell.r.T + cell.rb)),)


@register
class GRU(_Recurrent):
    """Gated recurrent unit layer (update z, reset r and hidden h gates)."""

    op_type = "GRU"
    gates = 3
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
