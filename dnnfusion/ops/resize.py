"""Resize and Upsample: N-D nearest/linear/cubic interpolation (One-to-Many).

Interpolation is separable, so a resize is one pass per resized axis: map each output coordinate to a source
coordinate, pick the taps around it with their weights, gather along the axis and take the weighted sum.
The output extents come from the `scales` or `sizes` input; when that input is not a compile-time constant
the resized extents are data-dependent (None).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import NamedTuple, Sequence

import numpy as np

from ..kir.expr import Expr, Index, Lit, binary, cast, ctype, floordiv, lit, select
from ..kir.kernel import Reader
from ..ir.graph import Node
from .base import Inferred, MappingType, Op, TensorType, normalize_axis
from .registry import register
from .shape_ops import clamp

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")
KERNEL_RADIUS = {"linear": 1, "cubic": 2}
SNAP_TOLERANCE = 1e-6   # relative; well above float32 rounding of the coordinate arithmetic


class Settings(NamedTuple):
    """How a node interpolates: its attributes, with the defaults of its opset."""

    mode: str
    coordinate_mode: str
    nearest_mode: str          # "legacy": floor when upsampling, ceil when downsampling (Upsample, Resize-10)
    cubic_a: float
    exclude_outside: bool
    antialias: bool
    extrapolation: float


class AxisPlan(NamedTuple):
    """One axis of a resize: input and output extents, the scale, and the crop region (roi) along it."""

    size_in: int
    size_out: int
    scale: float
    roi: tuple[float, float]


class Slots(NamedTuple):
    """Input positions of roi, scales and sizes for the node's operator version (None: not an input)."""

    roi: int | None
    scales: int | None
    sizes: int | None


class _Resample(Op):
    """Shared by Resize and Upsample: read the node into per-axis plans, then resample axis by axis."""

    mapping = MappingType.ONE_TO_MANY

    def slots(self, node: Node) -> Slots:
        raise NotImplementedError

    def settings(self, node: Node) -> Settings:
        raise NotImplementedError

    def attr_scales(self, node: Node) -> np.ndarray | None:
        """Scales given as an attribute (Upsample-7); None for operators that take them as an input."""
        return None

    # --- shape rule --------------------------------------------------------------------------------
    def infer(self, node: Node) -> list[Inferred]:
        x = node.inputs[0]
        self.settings(node)
        slots = self.slots(node)
        targets = [node.input(i) for i in (slots.scales, slots.sizes) if self._given(node, i)]
        if any(v.const is None for v in targets) or None in x.shape:     # extents known only at run time
            axes = self.axes(node, len(x.shape))
            return [TensorType(x.dtype, tuple(None if axis in axes else d for axis, d in enumerate(x.shape)))]
        roi, scales, sizes = self._arrays(node, [v.const if v is not None else None for v in node.inputs])
        return [TensorType(x.dtype, tuple(p.size_out for p in self.plans(node, x.shape, roi, scales, sizes)))]

    # --- semantics ---------------------------------------------------------------------------------
    def compute(self, node: Node, *inputs: np.ndarray | None) -> Sequence[np.ndarray]:
        x = inputs[0]
        settings = self.settings(node)
        roi, scales, sizes = self._arrays(node, list(inputs))
        y = x.astype(np.float64)
        for axis, plan in enumerate(self.plans(node, x.shape, roi, scales, sizes)):
            y = resample_axis(y, axis, plan, settings)
        return [_cast_like(y, x.dtype)]

    # --- code generation -------------------------------------------------------------------------
    def axis_reads(self, node: Node) -> list["AxisReads"] | None:
        """How each axis reads its source as index arithmetic (None: some axis needs a fallback: cubic,
        shrinking antialias, a roi known only at run time, or linear interpolation of integers)."""
        x, settings = node.inputs[0], self.settings(node)
        if settings.mode == "cubic" or x.shape is None or None in x.shape:
            return None
        if settings.mode == "linear" and ctype(x.dtype) not in ("float", "double"):
            return None
        consts = [None if v is None else v.const for v in node.inputs]
        slots = self.slots(node)
        if any(self._given(node, i) and consts[i] is None for i in (slots.roi, slots.scales, slots.sizes)):
            return None
        roi, scales, sizes = self._arrays(node, consts)
        reads = [axis_reads(plan, settings) for plan in self.plans(node, x.shape, roi, scales, sizes)]
        return None if any(r is None for r in reads) else reads

    def lowering(self, node: Node) -> str | None:
        return super().lowering(node) if self.axis_reads(node) is not None else None

    def pointwise(self, node: Node, out: int, index: Index, read: Reader) -> Expr | None:
        """The weighted sum of up to 2^k reads (k linearly resized axes; nearest: one read)."""
        reads = self.axis_reads(node)
        if reads is None:
            return None
        settings, ct = self.settings(node), ctype(node.outputs[0].dtype)
        per_axis = [r.taps(y, ct) for r, y in zip(reads, index)]
        total: Expr | None = None
        for combo in itertools.product(*per_axis):
            term = read(0, tuple(i for i, _ in combo))
            for _, weight in combo:
                term = term if weight is None else term * weight
            total = term if total is None else total + term
        outside = [r.outside(y) for r, y in zip(reads, index) if r.crops]
        if not outside:
            return total
        condition = outside[0]
        for c in outside[1:]:
            condition = binary("||", condition, c)
        extrapolation = _cast_like(np.array(settings.extrapolation), node.outputs[0].dtype).item()
        return select(condition, lit(extrapolation, ct), total)

    def flops(self, node: Node) -> int:
        """Two per tap per output element for each resized axis; nearest only moves data."""
        settings = self.settings(node)
        x, y = node.inputs[0], node.outputs[0]
        if settings.mode == "nearest" or x.shape is None or y.shape is None:
            return 0
        radius = KERNEL_RADIUS[settings.mode]
        changed = sum(1 for a, b in zip(x.shape, y.shape) if a != b or b is None)
        return 2 * y.numel * 2 * radius * changed

    # --- reading the node --------------------------------------------------------------------------
    def axes(self, node: Node, rank: int) -> list[int]:
        """The axes that scales/sizes/roi refer to (all of them unless the `axes` attribute says otherwise)."""
        axes = [normalize_axis(node, a, rank) for a in node.attr("axes", range(rank))]
        if len(set(axes)) != len(axes):
            raise self.invalid(node, f"axes {list(axes)} repeat an axis")
        return axes

    def plans(self, node: Node, shape: tuple, roi: np.ndarray | None, scales: np.ndarray | None,
              sizes: np.ndarray | None) -> list[AxisPlan]:
        """One AxisPlan per input axis, from whichever of scales/sizes the node gives."""
        rank = len(shape)
        axes = self.axes(node, rank)
        if (scales is None) == (sizes is None):
            raise self.invalid(node, "needs exactly one of 'scales' and 'sizes' (the other empty or omitted)")
        given = scales if scales is not None else sizes
        if given.ndim != 1 or len(given) != len(axes):
            raise self.invalid(node, f"has {given.size} {'scales' if scales is not None else 'sizes'} for "
                                     f"{len(axes)} axes of a rank-{rank} input")
        scale = [1.0] * rank
        size = list(shape)
        if scales is not None:
            if np.any(scales <= 0):
                raise self.invalid(node, f"scales {scales.tolist()} must be positive")
            for axis, s in zip(axes, scales.astype(np.float32)):
                scale[axis] = float(s)
                size[axis] = int(np.floor(np.float32(shape[axis]) * s))
        else:
            self._apply_sizes(node, shape, axes, [int(s) for s in sizes], scale, size)
        bounds = self._roi(node, roi, axes, rank)
        return [AxisPlan(shape[a], size[a], scale[a], bounds[a]) for a in range(rank)]

    def _apply_sizes(self, node: Node, shape: tuple, axes: list[int], sizes: list[int], scale: list[float],
                     size: list[int]) -> None:
        """Fill scale/size from target sizes, keeping the aspect ratio when the policy asks for it."""
        if any(s < 0 for s in sizes):
            raise self.invalid(node, f"sizes {sizes} must not be negative")
        ratios = [s / shape[a] if shape[a] else 1.0 for a, s in zip(axes, sizes)]
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy not in ASPECT_POLICIES:
            raise self.fail(node, f"with keep_aspect_ratio_policy='{policy}' is not supported")
        if policy == "stretch":
            for axis, s, r in zip(axes, sizes, ratios):
                scale[axis], size[axis] = r, s
            return
        common = min(ratios) if policy == "not_larger" else max(ratios)
        for axis in axes:
            scale[axis], size[axis] = common, int(common * shape[axis] + 0.5)

    def _roi(self, node: Node, roi: np.ndarray | None, axes: list[int], rank: int) -> list[tuple[float, float]]:
        """(start, end) of the crop region per input axis; the whole axis unless tf_crop_and_resize gives a roi."""
        bounds = [(0.0, 1.0)] * rank
        if roi is None or roi.size == 0 or self.settings(node).coordinate_mode != "tf_crop_and_resize":
            return bounds
        if roi.size != 2 * len(axes):
            raise self.invalid(node, f"roi has {roi.size} values, but {len(axes)} axes need {2 * len(axes)}")
        flat = roi.astype(np.float64).ravel()
        for i, axis in enumerate(axes):
            bounds[axis] = (float(flat[i]), float(flat[len(axes) + i]))
        return bounds

    def _given(self, node: Node, i: int | None) -> bool:
        """Whether input slot i is present and non-empty (an empty scales tensor means "use sizes")."""
        v = node.input(i) if i is not None else None
        return v is not None and v.shape != (0,)

    def _arrays(self, node: Node, inputs: list[np.ndarray | None]) -> tuple[np.ndarray | None, ...]:
        """roi, scales, sizes as arrays (None when omitted or empty)."""
        def pick(i: int | None) -> np.ndarray | None:
            a = inputs[i] if i is not None and i < len(inputs) else None
            return None if a is None or a.size == 0 else np.asarray(a)

        slots = self.slots(node)
        scales = pick(slots.scales)
        if slots.scales is None:
            scales = self.attr_scales(node)
        return pick(slots.roi), scales, pick(slots.sizes)


@register
class Resize(_Resample):
    """Resizes an N-D tensor by interpolation (nearest, N-linear or N-cubic) to given scales or sizes."""

    op_type = "Resize"

    def slots(self, node: Node) -> Slots:
        return Slots(None, 1, None) if node.opset < 11 else Slots(1, 2, 3)

    def settings(self, node: Node) -> Settings:
        mode = node.attr("mode", "nearest")
        if mode not in MODES:
            raise self.fail(node, f"with mode='{mode}' is not supported")
        if node.opset < 11:
            return Settings(mode, "asymmetric", "legacy", -0.75, False, False, 0.0)
        coordinate_mode = node.attr("coordinate_transformation_mode", "half_pixel")
        nearest_mode = node.attr("nearest_mode", "round_prefer_floor")
        if coordinate_mode not in COORDINATE_MODES:
            raise self.fail(node, f"with coordinate_transformation_mode='{coordinate_mode}' is not supported")
        if nearest_mode not in NEAREST_MODES:
            raise self.fail(node, f"with nearest_mode='{nearest_mode}' is not supported")
        return Settings(mode, coordinate_mode, nearest_mode, float(node.attr("cubic_coeff_a", -0.75)),
                        bool(node.attr("exclude_outside", 0)), bool(node.attr("antialias", 0)),
                        float(node.attr("extrapolation_value", 0.0)))


@register
class Upsample(_Resample):
    """Deprecated upsampling by scales (asymmetric coordinates): nearest or N-linear."""

    op_type = "Upsample"

    def slots(self, node: Node) -> Slots:
        return Slots(None, None if node.opset < 9 else 1, None)

    def attr_scales(self, node: Node) -> np.ndarray | None:
        if node.opset >= 9:
            return None
        if "scales" not in node.attrs:
            raise self.invalid(node, "needs the 'scales' attribute")
        return np.asarray(node.attrs["scales"], dtype=np.float32)

    def settings(self, node: Node) -> Settings:
        mode = node.attr("mode", "nearest")
        if mode not in ("nearest", "linear"):
            raise self.fail(node, f"with mode='{mode}' is not supported")
        return Settings(mode, "asymmetric", "legacy", -0.75, False, False, 0.0)


# --- per-axis resampling ---------------------------------------------------------------------------

def resample_axis(data: np.ndarray, axis: int, plan: AxisPlan, settings: Settings) -> np.ndarray:
    """Resample `data` (float64) along one axis according to the plan."""
    coords = source_coords(plan, settings.coordinate_mode)
    if plan.size_out == plan.size_in and np.array_equal(coords, np.arange(plan.size_in)):
        return data                     # the identity along this axis
    if plan.size_out == 0 or plan.size_in == 0:
        shape = list(data.shape)
        shape[axis] = plan.size_out
        return np.zeros(shape, data.dtype)
    trailing = (1,) * (data.ndim - axis - 1)
    index, weight = taps(coords, plan, settings)
    gathered = np.take(data, np.clip(index, 0, plan.size_in - 1), axis=axis)
    out = (gathered * weight.reshape(weight.shape + trailing)).sum(axis=axis + 1)
    if settings.coordinate_mode == "tf_crop_and_resize":
        outside = (coords < 0) | (coords > plan.size_in - 1)
        out = np.where(outside.reshape(outside.shape + trailing), settings.extrapolation, out)
    return out


def source_coords(plan: AxisPlan, mode: str) -> np.ndarray:
    """The source coordinate of every output position along the axis (coordinate_transformation_mode)."""
    y = np.arange(plan.size_out, dtype=np.float64)
    n_in, scale = plan.size_in, plan.scale
    width = scale * n_in                # the target extent, fractional when it comes from a scale
    if mode == "asymmetric":
        return y / scale
    if mode == "align_corners":
        return np.zeros_like(y) if width == 1 else y * (n_in - 1) / (width - 1)
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if plan.size_out > 1 else np.zeros_like(y)
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - plan.size_out / width)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode == "tf_crop_and_resize":
        start, end = plan.roi
        if width == 1:
            return np.full_like(y, (start + end) * (n_in - 1) / 2)
        return start * (n_in - 1) + y * (end - start) * (n_in - 1) / (width - 1)
    return (y + 0.5) / scale - 0.5    # half_pixel


def taps(coords: np.ndarray, plan: AxisPlan, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (out, n) and their weights (out, n); indices may fall outside and are clamped later."""
    if settings.mode == "nearest":
        index = nearest_index(coords, settings.nearest_mode, plan.scale)
        return index[:, None], np.ones((len(coords), 1))
    radius = KERNEL_RADIUS[settings.mode]
    stretch = min(plan.scale, 1.0) if settings.antialias else 1.0   # antialias widens the kernel when shrinking
    half = int(np.ceil(radius / stretch))
    index = np.floor(coords).astype(np.int64)[:, None] + np.arange(1 - half, half + 1)
    distance = np.abs(index - coords[:, None]) * stretch
    weight = linear_kernel(distance) if settings.mode == "linear" else cubic_kernel(distance, settings.cubic_a)
    if settings.exclude_outside:
        weight = np.where((index < 0) | (index >= plan.size_in), 0.0, weight)
    if settings.exclude_outside or settings.antialias:
        total = weight.sum(axis=1, keepdims=True)
        weight = weight / np.where(total == 0, 1.0, total)
    return index, weight


def nearest_index(coords: np.ndarray, mode: str, scale: float) -> np.ndarray:
    """The nearest source index under nearest_mode ("legacy": floor upsampling, ceil downsampling).

    Coordinates within float32 rounding of a whole or half pixel are snapped to it first, so that the
    rounding error of float32 scales and rois does not decide which pixel is nearest."""
    if mode == "legacy":
        mode = "floor" if scale >= 1 else "ceil"
    halves = np.round(coords * 2) / 2
    coords = np.where(np.abs(coords - halves) <= SNAP_TOLERANCE * np.maximum(1.0, np.abs(coords)), halves, coords)
    rounded = {"round_prefer_floor": lambda c: np.ceil(c - 0.5), "round_prefer_ceil": lambda c: np.floor(c + 0.5),
               "floor": np.floor, "ceil": np.ceil}[mode](coords)
    return rounded.astype(np.int64)


def linear_kernel(distance: np.ndarray) -> np.ndarray:
    """The triangle (tent) filter."""
    return np.clip(1.0 - distance, 0.0, 1.0)


def cubic_kernel(distance: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient a (Keys 1981, eq. 4)."""
    d = distance
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


# --- per-axis index arithmetic for code generation ------------------------------------------------

class AxisReads(NamedTuple):
    """One axis of a resize as integer arithmetic. The source coordinate of output position y is exactly
    (a*y + b) / c; nearest reads floor((p*y + q) / d) (the rounding mode folded into p, q, d), linear reads
    floor((a*y + b) / c) and the position after it, weighted by the fraction. `crops`: positions whose
    coordinate lies outside the input take the extrapolation value (tf_crop_and_resize)."""

    mode: str                     # "identity", "nearest" or "linear"
    size_in: int
    size_out: int
    a: int
    b: int
    c: int
    rounding: tuple[int, int, int]
    crops: bool

    def taps(self, y: Expr, ct: str) -> list[tuple[Expr, Expr | None]]:
        """The source positions read for output position y, each with its weight (None: the only read)."""
        if self.mode == "identity":
            return [(y, None)]
        if self.mode == "nearest":
            return [(self.floor(y, *self.rounding), None)]
        below = self.floor(y, self.a, self.b, self.c, clamped=False)
        fraction = cast(y * self.a + self.b - below * self.c, ct) / lit(self.c, ct)
        first, last = self.span(self.a, self.b, self.c)
        return [(clamp(below, 0, self.size_in - 1, first, last), lit(1, ct) - fraction),
                (clamp(below + 1, 0, self.size_in - 1, first + 1, last + 1), fraction)]

    def floor(self, y: Expr, p: int, q: int, d: int, clamped: bool = True) -> Expr:
        """floor((p*y + q) / d) for the output positions (d > 0), held inside the input when `clamped`."""
        lowest = min(q, p * (self.size_out - 1) + q)
        shift = -(lowest // d) if lowest < 0 else 0           # C division truncates: keep the numerator >= 0
        if p > 0 and d % p == 0:                               # floor((p*y + q) / (p*m)) = floor((y + q//p) / m)
            value = floordiv(y + (q // p + shift * (d // p)), d // p)
        else:
            value = floordiv(y * p + (q + shift * d), d)
        value = value - shift
        return clamp(value, 0, self.size_in - 1, *self.span(p, q, d)) if clamped else value

    def span(self, p: int, q: int, d: int) -> tuple[int, int]:
        """The least and greatest floor((p*y + q) / d) over the output positions (it is monotonic in y)."""
        ends = (q // d, (p * (self.size_out - 1) + q) // d)
        return min(ends), max(ends)

    def outside(self, y: Expr) -> Expr:
        """Whether the source coordinate of y lies outside the input (the extrapolation region)."""
        numerator = y * self.a + self.b
        return binary("||", binary("<", numerator, Lit(0)),
                      binary(">", numerator, Lit((self.size_in - 1) * self.c)))


def axis_reads(plan: AxisPlan, settings: Settings) -> AxisReads | None:
    """The integer form of one axis of a resize, checked against the reference's own taps and weights; None
    when the axis is not an exact rational map of the output position or the check fails."""
    coords = source_coords(plan, settings.coordinate_mode)
    if plan.size_out == 0 or plan.size_in == 0:
        return None
    crops = settings.coordinate_mode == "tf_crop_and_resize"
    if plan.size_out == plan.size_in and np.array_equal(coords, np.arange(plan.size_in)) and not crops:
        return AxisReads("identity", plan.size_in, plan.size_out, 1, 0, 1, (1, 0, 1), False)
    affine = rational_affine(coords)
    if affine is None:
        return None
    a, b, c = affine
    mode = "nearest" if settings.mode == "nearest" else "linear"
    rounding = nearest_rounding(a, b, c, settings.nearest_mode, plan.scale)
    reads = AxisReads(mode, plan.size_in, plan.size_out, a, b, c, rounding, crops)
    y = np.arange(plan.size_out)
    numerator = a * y + b
    if crops and not np.array_equal((numerator < 0) | (numerator > (plan.size_in - 1) * c),
                                    (coords < 0) | (coords > plan.size_in - 1)):
        return None
    if mode == "nearest":
        p, q, d = rounding
        mine = [(np.clip((p * y + q) // d, 0, plan.size_in - 1), np.ones(len(y)))]
    else:
        below = numerator // c
        fraction = (numerator - below * c) / c
        mine = [(np.clip(below, 0, plan.size_in - 1), 1 - fraction),
                (np.clip(below + 1, 0, plan.size_in - 1), fraction)]
    index, weight = taps(coords, plan, settings)
    theirs = [(np.clip(index[:, k], 0, plan.size_in - 1), weight[:, k]) for k in range(index.shape[1])]
    return reads if same_weights(mine, theirs, plan.size_in) else None


def rational_affine(coords: np.ndarray) -> tuple[int, int, int] | None:
    """Integers (a, b, c), c > 0, with coords[y] = (a*y + b) / c up to float32 rounding; None if there are none."""
    start = simple_fraction(float(coords[0]))
    step = simple_fraction(float(coords[1] - coords[0])) if len(coords) > 1 else Fraction(0)
    if start is None or step is None:
        return None
    c = math.lcm(start.denominator, step.denominator)
    a, b = int(step * c), int(start * c)
    y = np.arange(len(coords))
    if np.any(np.abs(coords * c - (a * y + b)) > SNAP_TOLERANCE * c * np.maximum(1.0, np.abs(coords))):
        return None
    return a, b, c


def simple_fraction(value: float, largest: int = 1 << 20) -> Fraction | None:
    """The first continued-fraction convergent of `value` within float32 rounding of it (e.g. 5/4 for the
    float32 1/0.8), or None when no denominator up to `largest` comes that close."""
    tolerance = SNAP_TOLERANCE * max(1.0, abs(value)) * 0.1
    h, h_prev, k, k_prev = 1, 0, 0, 1
    x = value
    while True:
        whole = math.floor(x)
        h, h_prev, k, k_prev = whole * h + h_prev, h, whole * k + k_prev, k
        if k > largest:
            return None
        if abs(h / k - value) <= tolerance:
            return Fraction(h, k)
        x = 1 / (x - whole)


def nearest_rounding(a: int, b: int, c: int, mode: str, scale: float) -> tuple[int, int, int]:
    """(p, q, d) with round(((a*y + b) / c) = floor((p*y + q) / d) under the nearest_mode, for integer y."""
    if mode == "legacy":
        mode = "floor" if scale >= 1 else "ceil"
    return {"floor": (a, b, c), "ceil": (a, b + c - 1, c), "round_prefer_floor": (2 * a, 2 * b + c - 1, 2 * c),
            "round_prefer_ceil": (2 * a, 2 * b + c, 2 * c)}[mode]


def same_weights(mine: list[tuple[np.ndarray, np.ndarray]], theirs: list[tuple[np.ndarray, np.ndarray]],
                 size_in: int) -> bool:
    """Whether two tap lists give every output position the same weight on every source position."""
    def dense(taps_: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, float]:
        total: dict[int, float] = {}
        for index, weight in taps_:
            for key, w in zip((np.arange(len(index)) * size_in + index).tolist(), weight.tolist()):
                total[key] = total.get(key, 0.0) + w
        return total

    ours, reference = dense(mine), dense(theirs)
    return all(abs(ours.get(k, 0.0) - reference.get(k, 0.0)) <= 1e-6 for k in ours.keys() | reference.keys())


def _cast_like(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The float64 result in the input's type: integers are rounded and saturated."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(dtype)
    return y.astype(dtype)
