"""Winograd's minimal filtering F(m, r) as matrices (Lavin & Gray, 2016): for a 1-D signal d of m + r - 1
samples and a filter g of r taps, the m correlation outputs are AT @ ((G @ g) * (BT @ d)); in 2-D,
AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T. The matrices come from Toom-Cook interpolation at the points
of `POINTS` (and the point at infinity), built exactly in rationals so that any m is one function."""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Sequence

import numpy as np

# interpolation points per output-tile size m (r = 3): small magnitudes and their reciprocals keep the
# transforms' coefficients, and so the float32 rounding error, as small as they can be
POINTS: dict[int, tuple[Fraction, ...]] = {
    2: (Fraction(0), Fraction(1), Fraction(-1)),
    4: (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2)),
    6: (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2)),
}


def _poly_mul(p: Sequence[Fraction], q: Sequence[Fraction]) -> list[Fraction]:
    """The product of two polynomials given by their coefficients, lowest degree first."""
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


@functools.lru_cache(maxsize=None)
def matrices(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AT, G, BT) of F(m, r) in float64: AT is m x alpha, G alpha x r, BT alpha x alpha (alpha = m + r - 1).

    Built as the transpose of Toom-Cook linear convolution: with finite points a_0..a_{alpha-2} and infinity,
    AT[i][j] = a_j^i (and the last column picks the top coefficient), G[j] = (1, a_j, .., a_j^(r-1)) / N_j
    where N_j is prod over l != j of (a_j - a_l), and row j of BT holds the coefficients of
    prod over l != j of (x - a_l) (the last row: of prod over all l of (x - a_l))."""
    points = POINTS.get(m) if r == 3 else None
    alpha = m + r - 1
    if points is None or len(points) != alpha - 1:
        raise ValueError(f"no interpolation points for F({m}, {r})")
    at = [[p ** i for p in points] + [Fraction(int(i == m - 1))] for i in range(m)]
    g, bt = [], []
    for j, p in enumerate(points):
        others = [q for l, q in enumerate(points) if l != j]
        norm = Fraction(1)
        for q in others:
            norm *= p - q
        g.append([p ** k / norm for k in range(r)])
        poly = [Fraction(1)]
        for q in others:
            poly = _poly_mul(poly, [-q, Fraction(1)])
        bt.append(poly + [Fraction(0)] * (alpha - len(poly)))
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    poly = [Fraction(1)]
    for q in points:
        poly = _poly_mul(poly, [-q, Fraction(1)])
    bt.append(poly)
    # the infinity row of BT carries the full polynomial; its column of AT selects the top coefficient
    return (np.array(at, np.float64), np.array(g, np.float64), np.array(bt, np.float64))


def transform_filters(weights: np.ndarray, m: int) -> np.ndarray:
    """Filters (M, C, 3, 3) in the transform domain, (alpha * alpha, M, C) in float64 (G g G^T per filter)."""
    _, g, _ = matrices(m)
    u = np.einsum("ak,mckl,bl->abmc", g, weights.astype(np.float64), g)
    return u.reshape(g.shape[0] ** 2, *weights.shape[:2])


def correlate(x: np.ndarray, weights: np.ndarray, m: int) -> np.ndarray:
    """A reference Winograd correlation in float64 of an unpadded (N, C, H, W) input with (M, C, 3, 3) filters,
    (N, M, H - 2, W - 2): used by tests to check the matrices against a direct correlation."""
    at, _, bt = matrices(m)
    alpha = m + 2
    n, c, h, w = x.shape
    oh, ow = h - 2, w - 2
    th, tw = -(-oh // m), -(-ow // m)
    padded = np.zeros((n, c, th * m + 2, tw * m + 2))
    padded[:, :, :h, :w] = x
    tiles = np.lib.stride_tricks.sliding_window_view(padded, (alpha, alpha), axis=(2, 3))[:, :, ::m, ::m]
    v = np.einsum("ik,nctukl,jl->nctuij", bt, tiles, bt)
    u = transform_filters(weights, m).reshape(alpha, alpha, weights.shape[0], c)
    prod = np.einsum("ijmc,nctuij->nmtuij", u, v)
    y = np.einsum("ai,nmtuij,bj->nmtaub", at, prod, at).reshape(n, weights.shape[0], th * m, tw * m)
    return y[:, :, :oh, :ow]
