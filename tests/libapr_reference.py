"""Independent numpy references for the APR formation tests: required levels from aprlib's
low-level kernels, the minimal one-level-graded cell set, and an emulation of LibAPR's pulling
scheme (states SEED / BOUNDARY / ASCENDANT / ASCENDANT_NEIGHBOUR / FILLER of PullingScheme.hpp,
then the equivalence optimisation that replaces seed cells by their children)."""
from __future__ import annotations

import math

import numpy as np

from aprlib import _core
from aprlib.apr.formation import bspline_recursion


def expected_level_max(H, W):
    return max(math.ceil(math.log2(max(H, W))), 2) if max(H, W) > 1 else 2


def required_half_levels(img, E, lam, sigma_th=0.0, sigma_th_max=0.0, grad_th=0.0, Ip_th=0.0):
    """Required level per half-grid cell (LibAPR: floor(log2(grad/sigma 2^L/E)) in [1, L-1], +1).

    Uses the _core gradient / scale kernels, which are tested separately against numpy.
    """
    img = np.ascontiguousarray(img, np.float32)
    H, W = img.shape
    L = expected_level_max(H, W)
    if lam > 0:
        b1, b2, norm, k = bspline_recursion(lam)
        coef = _core.bspline_smooth(img, b1, b2, norm, k)
    else:
        coef = img
    grad = _core.gradient_magnitude_ds(coef, img, grad_th, Ip_th).astype(np.float64)
    sigma = _core.local_intensity_scale(coef, sigma_th, sigma_th_max, from_bspline=lam > 0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = grad / sigma * (2.0**L / float(np.float32(E)))
        lv = np.floor(np.log2(np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)))
    lv = np.clip(lv, 1, L - 1)
    lv = np.where(ratio > 0, lv, 1)
    lv = np.where(np.isinf(ratio), L - 1, lv)
    return lv.astype(np.int64) + 1


def minimal_graded_level_map(req_half, H, W):
    """Smallest (coarsest) quadtree leaf level map with cells no coarser than required and
    8-neighbour grading, by the classic balancing iteration on the pixel grid."""
    L = expected_level_max(H, W)
    req = np.repeat(np.repeat(req_half, 2, 0), 2, 1)[:H, :W]

    def block_max(a, lv):
        s = 1 << (L - lv)
        R, C = -(-H // s), -(-W // s)
        pad = np.full((R * s, C * s), -1, np.int64)
        pad[:H, :W] = a
        return pad.reshape(R, s, C, s).max(axis=(1, 3)), s

    # initial tree: a cell at level l splits iff it requires a finer level
    lm = np.full((H, W), 1, np.int64)
    for lv in range(1, L):
        bm, s = block_max(req, lv)
        split = np.repeat(np.repeat(bm > lv, s, 0), s, 1)[:H, :W]
        lm = np.where(split & (lm == lv), lv + 1, lm)
    # balancing: a leaf with an 8-neighbour two or more levels finer is split
    while True:
        p = np.pad(lm, 1, constant_values=0)
        nb = np.max([p[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        need = nb - 1
        changed = False
        for lv in range(1, L):
            bm, s = block_max(np.where(lm == lv, need, -1), lv)
            split = np.repeat(np.repeat(bm > lv, s, 0), s, 1)[:H, :W] & (lm == lv)
            if split.any():
                lm = np.where(split, lv + 1, lm)
                changed = True
        if not changed:
            return lm


EMPTY, SEED, BOUNDARY, FILLER, UPSAMPLED, ASCENDANT, PROPAGATE, ASCENDANT_NEIGHBOUR = 0, 1, 2, 3, 4, 8, 15, 16


def _dilate(m):
    H, W = m.shape
    p = np.pad(m, 1)
    return np.any([p[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def _children(m, shape):
    return np.repeat(np.repeat(m, 2, 0), 2, 1)[:shape[0], :shape[1]]


def _block_max(a, shape):
    R, C = shape
    p = np.full((2 * R, 2 * C), np.iinfo(np.int64).min, np.int64)
    p[:a.shape[0], :a.shape[1]] = a
    return p.reshape(R, 2, C, 2).max((1, 3))


def libapr_level_map(req_half, H, W):
    """Level map of LibAPR's pulling scheme, emulated in numpy from LibAPR's PullingScheme.hpp
    (SEED / BOUNDARY / ASCENDANT / ASCENDANT_NEIGHBOUR / FILLER states on levels 1..L-1) and the
    equivalence optimisation of APRAccess (only SEED cells are replaced by their children).
    ``req_half`` uses aprlib's convention (LibAPR's level + 1). Returns (level map, coverage,
    number of particles)."""
    L = expected_level_max(H, W)
    top, lmin = L - 1, 1
    dims = {lv: (-(-H // 2 ** (L - lv)), -(-W // 2 ** (L - lv))) for lv in range(lmin, L + 1)}
    raw = {top: req_half.astype(np.int64) - 1}
    for lv in range(top - 1, lmin - 1, -1):
        raw[lv] = _block_max(raw[lv + 1], dims[lv])
    st = {}
    for lv in range(lmin, top + 1):
        seed = raw[lv] >= lv if lv == top else (raw[lv] <= lv if lv == lmin else raw[lv] == lv)
        st[lv] = np.where(seed, SEED, EMPTY).astype(np.int64)
    for lv in range(top, lmin - 1, -1):
        S = st[lv]
        if lv != top:
            nb = _dilate(S == ASCENDANT)
            S[nb & (S == EMPTY)] = ASCENDANT_NEIGHBOUR
            S[nb & (S == SEED)] = PROPAGATE
            fill = _children((S == ASCENDANT_NEIGHBOUR) | (S == PROPAGATE), dims[lv + 1])
            st[lv + 1][fill & (st[lv + 1] == EMPTY)] = FILLER
        seeds = (S == SEED) | (S == PROPAGATE)
        S[_dilate(seeds) & (S == EMPTY)] = BOUNDARY
        if lv - 1 >= lmin:
            par = _block_max((seeds | (S == ASCENDANT)).astype(np.int64), dims[lv - 1]) > 0
            st[lv - 1][par & (st[lv - 1] != SEED)] = ASCENDANT
    for lv in range(lmin + 1, top + 1):
        st[lv][_children(st[lv - 1] == SEED, dims[lv])] = UPSAMPLED
    lm = np.zeros((H, W), np.int64)
    cnt = np.zeros((H, W), np.int64)
    n = 0
    for lv in range(lmin, top + 1):
        part = np.isin(st[lv], (BOUNDARY, FILLER, UPSAMPLED))
        n += int(part.sum())
        s = 2 ** (L - lv)
        pm = np.repeat(np.repeat(part, s, 0), s, 1)[:H, :W]
        lm[pm] = lv
        cnt += pm
    finest = _children(st[top] == SEED, (H, W))
    lm[finest] = L
    cnt += finest
    n += int(finest.sum())
    return lm, cnt, n
