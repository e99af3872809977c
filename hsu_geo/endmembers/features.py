"""Mineral names from diagnostic absorption features (Tetracorder / MICA style).

Full-spectrum spectral angle (SAM) is dominated by albedo and continuum shape, so the same
mineral measured by another laboratory (other grain size, other sample) usually matches some
unrelated library entry. Geologists instead compare absorption features after removing the
continuum (Clark et al. 2003, Tetracorder, doi:10.1029/2002JE001847; Kokaly 2011, MICA, USGS
OFR 2011-1155). This module does that:

1. :func:`continuum_removed`: the upper convex hull of each spectrum over its valid bands
   (vectorised over spectra: one pass over the bands with a per-spectrum stack), and the
   spectrum divided by it (1 on the hull, < 1 inside an absorption).
2. :func:`absorption_features`: the absorptions of a continuum-removed spectrum, each with band
   centre (nm, parabolic refinement), depth (1 - CR at the centre), width (full width at half
   depth, nm) and asymmetry ((right - left half width) / width; > 0: longer-wavelength wing
   wider).
3. :func:`diagnostic_windows`: groups of absorptions (a doublet such as kaolinite's
   2165/2206 nm is one group when the shoulder between them is deeper than half the shallower
   band) with their wavelength span: the windows where a mineral is identified. They are
   derived a priori from each library spectrum itself (its deepest continuum-removed
   absorptions on a 5 nm reference grid), never from test spectra.
4. :func:`match_features`: within each window both spectra get a local continuum (the straight
   line between the window's end bands, as in Tetracorder) and their band-depth profiles are
   correlated (Tetracorder's fit, clipped to 0-1; 0 when either spectrum has no band there).
   The fit does not depend on band depth, so grain size and mixing with featureless material
   are tolerated. The score of mineral ``m`` for spectrum ``u`` is the mean of (a) the
   depth-weighted mean fit over ``m``'s usable diagnostic windows (does ``u`` have ``m``'s
   bands?) and (b) the depth-weighted mean fit over ``u``'s own windows (does ``m`` have
   ``u``'s bands?).
5. :func:`name_by_features`: the best score names the spectrum when it is at least
   :data:`MIN_FIT` and the whole spectrum is within :data:`MAX_ANGLE_RAD` of the mineral's
   (a gross consistency check that keeps smooth non-mineral curves unnamed); two minerals
   within :data:`AMBIGUITY_MARGIN` give ``"A or B"``; otherwise ``em_<i>``. A mineral whose
   diagnostic windows (those outside the atmospheric water-vapour bands) lie mostly in dropped
   or uncovered bands cannot be decided on this band set: when it is the best candidate the
   spectrum stays ``em_<i>`` and the result says why. A spectrum without any absorption outside
   the atmospheric water-vapour bands is *featureless*: it is named after the library's
   featureless minerals (no diagnostic window outside those bands: quartz, orthoclase, halite),
   closest continuum shape first, when it is bright enough to be one of them
   (:func:`_featureless_name`).

Window constants are set a priori (typical Tetracorder values: 2 % minimum band depth, doublets
merged, water-vapour bands secondary). The decision thresholds MIN_FIT and MAX_ANGLE_RAD were
set on the development set (older USGS library, ``benchmarks/mineral_naming.py``), never on
the held-out JPL spectra; they change only which names are given, not the ranking (top-1).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hsu_geo.errors import EndmemberError

#: smallest band depth (1 - continuum-removed reflectance) counted as an absorption
MIN_DEPTH = 0.02
#: a spectrum whose local band depth in a window is below this has no band there (R = 0)
MIN_WINDOW_DEPTH = 0.005
#: adjacent absorptions form one window (e.g. a doublet) when the shoulder between them is
#: deeper than this fraction of the shallower one
MERGE_SHOULDER = 0.5
#: a window extends at most this far (nm) beyond its outermost absorption centre
MAX_HALF_WIDTH_NM = 200.0
#: at most this many windows per spectrum (the deepest)
MAX_WINDOWS = 6
#: fewer valid bands than this in a window -> the window is not usable on that band set
MIN_WINDOW_BANDS = 4
#: a window is usable only if a valid band lies within this distance (nm) of its deepest centre
CENTRE_TOLERANCE_NM = 15.0
#: atmospheric water-vapour absorptions (nm): library windows centred here are "secondary"
#: (used when the bands exist, e.g. laboratory spectra, but not required for a decision)
ATMOSPHERIC_WATER_NM = ((1330.0, 1470.0), (1780.0, 1970.0))
#: a mineral whose usable primary windows hold less than this share of its primary window
#: depth cannot be decided on the band set
MIN_COVERAGE = 0.5
#: best score below this -> ``em_<i>`` (no convincing match); about the 5th-10th percentile of
#: the scores of correct matches on the development set (older USGS library), and above the
#: scores of smooth non-mineral curves (sinusoids score 0.66-0.85)
MIN_FIT = 0.85
#: a gross consistency check: a spectrum further than this (rad, 17 deg) from the named
#: mineral's library spectrum by full-spectrum angle is not named (about the 95th percentile
#: of the angle to the right mineral on the development set; three times the SAM default)
MAX_ANGLE_RAD = 0.3
#: top two scores closer than this -> ``"A or B"``
AMBIGUITY_MARGIN = 0.02
#: reference grid on which library windows are derived (nm)
REFERENCE_GRID_NM = (400.0, 2500.0, 5.0)
#: a featureless spectrum is named after featureless library minerals (quartz, feldspars,
#: halite) only when its mean reflectance is at least this: half the mean reflectance of the
#: darkest featureless mineral of the bundled library (orthoclase, 0.79 on 400-2500 nm), fixed
#: a priori from the library; darker featureless spectra are shade, water or dark surfaces
FEATURELESS_MIN_REFLECTANCE = 0.4
#: a mean above this means the spectrum is not on a 0-1 reflectance scale (percent, x10000)
MAX_UNIT_REFLECTANCE = 1.5


# --------------------------------------------------------------------------------------------
# Continuum removal


def upper_hull(wavelength_nm: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """Upper convex hull of each spectrum, evaluated at every band.

    Args:
        wavelength_nm: (L,) strictly increasing band centres, nm.
        spectra: (n, L) finite values (reflectance).

    Returns:
        (n, L) hull values (>= spectra; equal at the hull vertices, which always include the
        first and last band). Vectorised over spectra: one pass over the L bands (Andrew's
        monotone chain with a stack per spectrum).
    """
    x = np.asarray(wavelength_nm, dtype=float).ravel()
    y = np.atleast_2d(np.asarray(spectra, dtype=float))
    n, L = y.shape
    if x.size != L:
        raise EndmemberError(f"{L} bands in the spectra but {x.size} wavelengths")
    if L < 2:
        return y.copy()
    if not np.all(np.diff(x) > 0):
        raise EndmemberError("wavelengths must be strictly increasing for continuum removal")
    rows = np.arange(n)
    stack = np.zeros((n, L), dtype=np.intp)
    top = np.zeros(n, dtype=np.intp)  # index of the last stack entry
    for j in range(1, L):
        act = rows[top >= 1]  # spectra that may still pop their last vertex
        while act.size:
            t = top[act]
            a, b = stack[act, t - 1], stack[act, t]
            ya, yb = y[act, a], y[act, b]
            cross = (x[b] - x[a]) * (y[act, j] - ya) - (yb - ya) * (x[j] - x[a])
            act = act[cross >= 0]
            top[act] -= 1
            act = act[top[act] >= 1]
        top += 1
        stack[rows, top] = j
    vertex = np.zeros((n, L), dtype=bool)
    depth = np.arange(L)[None, :] <= top[:, None]
    vertex[np.repeat(rows, L)[depth.ravel()], stack[depth]] = True
    idx = np.broadcast_to(np.arange(L), (n, L))
    left = np.maximum.accumulate(np.where(vertex, idx, 0), axis=1)
    right = np.minimum.accumulate(np.where(vertex, idx, L - 1)[:, ::-1], axis=1)[:, ::-1]
    xl, xr = x[left], x[right]
    yl, yr = np.take_along_axis(y, left, 1), np.take_along_axis(y, right, 1)
    span = np.where(xr > xl, xr - xl, 1.0)
    return np.where(right > left, yl + (yr - yl) * (x[None, :] - xl) / span, y)


def continuum_removed(wavelength_nm: Sequence[float] | np.ndarray,
                      spectra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuum-removed spectra ``spectra / hull`` over each spectrum's valid bands.

    Args:
        wavelength_nm: (L,) increasing band centres, nm.
        spectra: (L,) or (n, L) reflectance; NaN bands (dropped) are skipped and stay NaN, so
            the hull bridges them.

    Returns:
        ``(cr, hull)``, both (n, L): continuum-removed values (1 on the hull, 0-1 inside
        absorptions; NaN where the input is NaN or the hull is not positive) and the hull.
    """
    wl = np.asarray(wavelength_nm, dtype=float).ravel()
    y = np.atleast_2d(np.asarray(spectra, dtype=float))
    if y.shape[1] != wl.size:
        raise EndmemberError(f"{y.shape[1]} bands in the spectra but {wl.size} wavelengths")
    cr = np.full(y.shape, np.nan)
    hull = np.full(y.shape, np.nan)
    finite = np.isfinite(y)
    patterns, inverse = np.unique(finite, axis=0, return_inverse=True)
    for p, mask in enumerate(patterns):  # one group per NaN pattern (usually one)
        if mask.sum() < 2:
            continue
        rows = np.flatnonzero(inverse.ravel() == p)
        h = upper_hull(wl[mask], y[np.ix_(rows, np.flatnonzero(mask))])
        hull[np.ix_(rows, np.flatnonzero(mask))] = h
        with np.errstate(invalid="ignore", divide="ignore"):
            cr[np.ix_(rows, np.flatnonzero(mask))] = np.where(
                h > 0, y[np.ix_(rows, np.flatnonzero(mask))] / np.where(h > 0, h, 1.0), np.nan)
    return cr, hull


# --------------------------------------------------------------------------------------------
# Features and windows


@dataclass(frozen=True)
class Feature:
    """One absorption of a continuum-removed spectrum (nm; depth 0-1)."""

    centre_nm: float
    depth: float
    width_nm: float
    asymmetry: float

    def to_dict(self) -> dict[str, float]:
        return {"centre_nm": round(self.centre_nm, 1), "depth": round(self.depth, 4),
                "width_nm": round(self.width_nm, 1), "asymmetry": round(self.asymmetry, 3)}


@dataclass(frozen=True)
class Window:
    """A diagnostic window: one absorption or a group of close ones (a doublet)."""

    lo_nm: float
    hi_nm: float
    centre_nm: float  # the deepest absorption of the group
    depth: float
    centres_nm: tuple[float, ...]

    @property
    def primary(self) -> bool:
        """False when the deepest absorption lies in an atmospheric water-vapour band."""
        return not _atmospheric(self.centre_nm)


def _parabolic_centre(x: np.ndarray, d: np.ndarray, i: int) -> float:
    """Sub-band position of the depth maximum at ``i`` (parabola through 3 samples)."""
    if 0 < i < d.size - 1:
        x0, x1, x2 = x[i - 1], x[i], x[i + 1]
        y0, y1, y2 = d[i - 1], d[i], d[i + 1]
        den = (x0 - x1) * (x0 - x2) * (x1 - x2)
        if den != 0:
            a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
            b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
            if a < 0:
                c = -b / (2 * a)
                if x0 <= c <= x2:
                    return float(c)
    return float(x[i])


def _half_crossing(x: np.ndarray, d: np.ndarray, i: int, lo: int, hi: int, step: int) -> float:
    """Wavelength where ``d`` falls to half of ``d[i]`` walking from ``i`` by ``step``."""
    half = d[i] / 2
    j = i
    while lo <= j + step <= hi and d[j + step] > half:
        j += step
    k = j + step
    if not lo <= k <= hi:
        return float(x[j])
    t = (d[j] - half) / (d[j] - d[k]) if d[j] != d[k] else 0.0
    return float(x[j] + t * (x[k] - x[j]))


def _groups(x: np.ndarray, d: np.ndarray, min_depth: float
            ) -> list[tuple[int, int, list[int]]]:
    """Absorption groups of one depth profile ``d = 1 - CR`` (finite, (n,)): a list of
    ``(lo, hi, minima)`` band indices, ``minima`` the local depth maxima >= min_depth."""
    n = d.size
    if n < 3:
        return []
    inner = (d[1:-1] > d[:-2]) & (d[1:-1] >= d[2:])
    peaks = [i + 1 for i in np.flatnonzero(inner) if d[i + 1] >= min_depth]
    if not peaks:
        return []
    # merge neighbours whose shoulder is deeper than MERGE_SHOULDER x the shallower one
    groups: list[list[int]] = [[peaks[0]]]
    for p in peaks[1:]:
        q = groups[-1][-1]
        shoulder = float(d[q:p + 1].min())
        if shoulder > MERGE_SHOULDER * min(d[p], d[q]):
            groups[-1].append(p)
        else:
            groups.append([p])
    out = []
    for g_i, g in enumerate(groups):
        left_start = groups[g_i - 1][-1] if g_i else 0
        right_end = groups[g_i + 1][0] if g_i + 1 < len(groups) else n - 1
        lo = left_start + int(np.argmin(d[left_start:g[0] + 1])) if g_i else \
            int(np.argmin(d[:g[0] + 1]))
        hi = g[-1] + int(np.argmin(d[g[-1]:right_end + 1]))
        lo = max(lo, int(np.searchsorted(x, x[g[0]] - MAX_HALF_WIDTH_NM)))
        hi = min(hi, int(np.searchsorted(x, x[g[-1]] + MAX_HALF_WIDTH_NM, side="right")) - 1)
        out.append((lo, hi, g))
    return out


def _valid(wavelength_nm: Sequence[float] | np.ndarray, cr: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    wl = np.asarray(wavelength_nm, dtype=float).ravel()
    c = np.asarray(cr, dtype=float).ravel()
    if c.size != wl.size:
        raise EndmemberError(f"{c.size} continuum-removed values for {wl.size} wavelengths")
    ok = np.isfinite(c)
    return wl[ok], 1.0 - c[ok]


def absorption_features(wavelength_nm: Sequence[float] | np.ndarray, cr: np.ndarray,
                        min_depth: float = MIN_DEPTH) -> list[Feature]:
    """Absorptions of one continuum-removed spectrum ``cr`` (L,), deepest first.

    Each local minimum of ``cr`` at least ``min_depth`` deep is one feature; its width is the
    full width at half its depth, bounded by the shoulders of its group.
    """
    x, d = _valid(wavelength_nm, cr)
    feats = []
    for lo, hi, minima in _groups(x, d, min_depth):
        for i in minima:
            left = _half_crossing(x, d, i, lo, hi, -1)
            right = _half_crossing(x, d, i, lo, hi, +1)
            width = right - left
            centre = _parabolic_centre(x, d, i)
            asym = ((right - centre) - (centre - left)) / width if width > 0 else 0.0
            feats.append(Feature(centre, float(d[i]), width, float(asym)))
    return sorted(feats, key=lambda f: -f.depth)


def diagnostic_windows(wavelength_nm: Sequence[float] | np.ndarray, cr: np.ndarray,
                       min_depth: float = MIN_DEPTH,
                       max_windows: int = MAX_WINDOWS) -> list[Window]:
    """The ``max_windows`` deepest absorption groups of one continuum-removed spectrum (L,),
    in wavelength order."""
    x, d = _valid(wavelength_nm, cr)
    wins = []
    for lo, hi, minima in _groups(x, d, min_depth):
        deepest = max(minima, key=lambda i: d[i])
        wins.append(Window(float(x[lo]), float(x[hi]), _parabolic_centre(x, d, deepest),
                           float(d[deepest]), tuple(_parabolic_centre(x, d, i) for i in minima)))
    wins = sorted(wins, key=lambda w: -w.depth)[:max_windows]
    return sorted(wins, key=lambda w: w.lo_nm)


# --------------------------------------------------------------------------------------------
# Matching


def _window_depth(wl: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """(n, b) band-depth profiles ``1 - y / continuum`` of spectra (n, b) over the b window
    bands; the continuum is the straight line through the means of the two outermost bands at
    each end (Tetracorder's local continuum), so it is one vectorised step for all spectra."""
    e = 2 if wl.size >= 6 else 1
    x0, x1 = wl[:e].mean(), wl[-e:].mean()
    y0, y1 = spectra[:, :e].mean(axis=1, keepdims=True), spectra[:, -e:].mean(axis=1, keepdims=True)
    cont = y0 + (y1 - y0) * (wl[None, :] - x0) / (x1 - x0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cont > 0, 1.0 - spectra / np.where(cont > 0, cont, 1.0), 0.0)


def _pearson(du: np.ndarray, dr: np.ndarray) -> np.ndarray:
    """Correlation of depth profiles ``du`` (n, b) and ``dr`` (m, b) -> (n, m), clipped to
    0-1; 0 where either has no band there (max depth < MIN_WINDOW_DEPTH)."""
    a = du - du.mean(axis=1, keepdims=True)
    b = dr - dr.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a @ b.T) / (np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :])
    has = (du.max(axis=1) >= MIN_WINDOW_DEPTH)[:, None] & \
        (dr.max(axis=1) >= MIN_WINDOW_DEPTH)[None, :]
    return np.where(has, np.clip(np.nan_to_num(r, nan=0.0), 0.0, 1.0), 0.0)


def _usable(wl: np.ndarray, w: Window) -> np.ndarray | None:
    """Indices of the scene bands inside window ``w`` or None when it cannot be used there."""
    idx = np.flatnonzero((wl >= w.lo_nm) & (wl <= w.hi_nm))
    if idx.size < MIN_WINDOW_BANDS or np.min(np.abs(wl[idx] - w.centre_nm)) > CENTRE_TOLERANCE_NM:
        return None
    return idx


@dataclass
class FeatureMatch:
    """Scores of ``n`` spectra against ``m`` library minerals.

    Attributes:
        names: (m,) mineral names.
        score: (n, m) fit 0-1 over both window sets (NaN: no usable window of the mineral).
        library_fit: (n, m) fit over the mineral's usable windows only.
        own_fit: (n, m) fit over the spectrum's own windows only (NaN: none).
        coverage: (m,) share (0-1) of each mineral's primary window depth usable here.
        missing: per mineral, the diagnostic windows not usable here.
        windows: per mineral, its diagnostic windows (from the library spectrum).
        features: per spectrum, its absorptions (deepest first).
        angle: (n, m) full-spectrum spectral angle (rad), for the consistency check.
        featureless: (m,) True for a mineral without any diagnostic window outside the
            atmospheric water-vapour bands (quartz, orthoclase, halite in the bundled library).
        brightness: (n,) mean reflectance of each spectrum over the matched bands.
    """

    names: list[str]
    score: np.ndarray
    library_fit: np.ndarray
    own_fit: np.ndarray
    coverage: np.ndarray
    missing: list[list[Window]]
    windows: list[list[Window]]
    features: list[list[Feature]]
    angle: np.ndarray | None = None
    featureless: np.ndarray | None = None
    brightness: np.ndarray | None = None


def _atmospheric(centre_nm: float) -> bool:
    """Whether ``centre_nm`` lies in an atmospheric water-vapour band."""
    return any(a <= centre_nm <= b for a, b in ATMOSPHERIC_WATER_NM)


def _reference_grid(lib: Any) -> tuple[np.ndarray, np.ndarray]:
    from hsu_geo.endmembers.library import coverage_mask, resample_to_bands

    lo, hi, step = REFERENCE_GRID_NM
    grid = np.arange(lo, hi + step / 2, step)
    covered = coverage_mask(lib, grid, np.full(grid.size, step)).all(axis=0)
    if covered.sum() < MIN_WINDOW_BANDS:
        raise EndmemberError(f"library {lib.source!r} covers too little of 400-2500 nm to derive "
                             "absorption windows")
    grid = grid[covered]
    return grid, resample_to_bands(lib, grid, np.full(grid.size, step))


def library_windows(lib: Any) -> list[list[Window]]:
    """Diagnostic windows of every library entry, derived from its own continuum-removed
    spectrum on the 5 nm reference grid (bands all entries cover within 400-2500 nm)."""
    from hsu_geo.endmembers.library import USGS_SOURCE

    if lib.source == USGS_SOURCE and set(lib.names) <= set(_bundled_names()):
        bundled = dict(zip(_bundled_names(), _bundled_windows(), strict=True))
        return [bundled[n] for n in lib.names]
    grid, ref = _reference_grid(lib)
    cr, _ = continuum_removed(grid, ref)
    return [diagnostic_windows(grid, c) for c in cr]


@functools.lru_cache(maxsize=1)
def _bundled_names() -> list[str]:
    from hsu_geo.endmembers.library import list_usgs_minerals

    return list_usgs_minerals()


@functools.lru_cache(maxsize=1)
def _bundled_windows() -> list[list[Window]]:
    from hsu_geo.endmembers.library import load_usgs_library

    lib = load_usgs_library(_bundled_names())
    grid, ref = _reference_grid(lib)
    cr, _ = continuum_removed(grid, ref)
    return [diagnostic_windows(grid, c) for c in cr]


def match_features(M: np.ndarray, wavelength_nm: Sequence[float] | np.ndarray,
                   ref: np.ndarray, names: Sequence[str],
                   windows: Sequence[Sequence[Window]]) -> FeatureMatch:
    """Score spectra against library minerals by their absorption features.

    Args:
        M: (n, L) spectra on the scene bands (reflectance; NaN bands are ignored).
        wavelength_nm: (L,) scene band centres, nm.
        ref: (m, L) library spectra resampled to the same bands.
        names: (m,) mineral names. windows: per mineral, its diagnostic windows (nm).

    Returns:
        :class:`FeatureMatch` (scores (n, m)).
    """
    M = np.atleast_2d(np.asarray(M, dtype=float))
    ref = np.atleast_2d(np.asarray(ref, dtype=float))
    wl_all = np.asarray(wavelength_nm, dtype=float).ravel()
    order = np.argsort(wl_all)
    keep = order[np.isfinite(M[:, order]).all(axis=0) & np.isfinite(ref[:, order]).all(axis=0)]
    wl, X, R = wl_all[keep], M[:, keep], ref[:, keep]
    if np.unique(wl).size != wl.size:
        raise EndmemberError("scene band centres repeat; feature matching needs distinct bands")
    n, m = X.shape[0], R.shape[0]
    cr, _ = continuum_removed(wl, X) if wl.size >= 2 else (np.full(X.shape, np.nan), None)
    features = [absorption_features(wl, c) if wl.size >= 3 else [] for c in cr]
    own = [diagnostic_windows(wl, c) if wl.size >= 3 else [] for c in cr]
    corr_num, corr_den = np.zeros((n, m)), np.zeros((n, m))
    own_num, own_den = np.zeros((n, m)), np.zeros((n, m))
    coverage = np.zeros(m)
    missing: list[list[Window]] = []
    used: list[list[Window]] = []
    for j in range(m):
        prim_all = sum(w.depth for w in windows[j] if w.primary)
        prim_ok = 0.0
        miss, ok = [], []
        for w in windows[j]:
            idx = _usable(wl, w)
            if idx is None:
                miss.append(w)
                continue
            ok.append(w)
            prim_ok += w.depth if w.primary else 0.0
            du = _window_depth(wl[idx], X[:, idx])
            dr = _window_depth(wl[idx], R[j:j + 1, idx])
            r = _pearson(du, dr)[:, 0]
            corr_num[:, j] += w.depth * r
            corr_den[:, j] += w.depth
        missing.append(miss)
        used.append(ok)
        if not windows[j]:
            coverage[j] = 0.0
        elif prim_all > 0:
            coverage[j] = prim_ok / prim_all
        else:  # only water-band windows: covered if any is usable
            coverage[j] = 1.0 if ok else 0.0
    for i in range(n):
        for w in own[i]:
            idx = np.flatnonzero((wl >= w.lo_nm) & (wl <= w.hi_nm))
            if idx.size < 3:
                continue
            du = _window_depth(wl[idx], X[i:i + 1, idx])[0]
            dr = _window_depth(wl[idx], R[:, idx])
            r = _pearson(du[None, :], dr)[0]
            own_num[i] += w.depth * r
            own_den[i] += w.depth

    with np.errstate(invalid="ignore", divide="ignore"):
        lib_fit = corr_num / corr_den
        own_fit = own_num / own_den
    score = 0.5 * (lib_fit + own_fit)
    score[:, [not u for u in used]] = np.nan  # a mineral with no usable window is not scored
    na = np.linalg.norm(X, axis=1)[:, None] * np.linalg.norm(R, axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.arccos(np.clip(np.nan_to_num((X @ R.T) / na, nan=-1.0), -1.0, 1.0))
    featureless = np.array([not any(w.primary for w in ws) for ws in windows], dtype=bool)
    return FeatureMatch(list(names), score, lib_fit, own_fit, coverage, missing,
                        [list(w) for w in windows], features, angle, featureless,
                        X.mean(axis=1) if wl.size else np.full(n, np.nan))


# --------------------------------------------------------------------------------------------
# Naming


@dataclass
class FeatureName:
    """The name given to one spectrum and the evidence for it.

    Attributes:
        name: mineral name, ``"A or B"``, or ``em_<i>``.
        score: best combined feature fit (0-1; NaN when nothing could be scored).
        confidence: 0-1, ``score x min(1, margin / (2 x AMBIGUITY_MARGIN))`` (margin = best
            minus second score); 0 for ``em_<i>``.
        candidates: the best three ``(mineral, score)``.
        info: JSON-ready details (decision, reason, features, undecidable minerals).
    """

    name: str
    score: float
    confidence: float
    candidates: list[tuple[str, float]]
    info: dict[str, Any] = field(default_factory=dict)


def _window_text(ws: Sequence[Window]) -> str:
    return ", ".join(f"{w.centre_nm:.0f} nm" for w in ws)


def _band_span(wl: np.ndarray) -> str:
    return f"{wl.min():.0f}-{wl.max():.0f} nm" if wl.size else "no bands"


def decide_names(match: FeatureMatch, wavelength_nm: Sequence[float] | np.ndarray,
                 min_fit: float = MIN_FIT, margin: float = AMBIGUITY_MARGIN,
                 min_coverage: float = MIN_COVERAGE,
                 max_angle: float = MAX_ANGLE_RAD) -> list[FeatureName]:
    """Turn feature scores into names (see the module docstring for the rules)."""
    wl = np.asarray(wavelength_nm, dtype=float)
    out: list[FeatureName] = []
    names = match.names
    for i in range(match.score.shape[0]):
        s = match.score[i]
        feats = [f.to_dict() for f in match.features[i][:6]]
        info: dict[str, Any] = {"method": "features", "features": feats}
        ranked = [j for j in np.argsort(-np.nan_to_num(s, nan=-1.0)) if np.isfinite(s[j])]
        cands = [(names[j], round(float(s[j]), 4)) for j in ranked[:3]]
        info["candidates"] = [{"mineral": names[j], "score": round(float(s[j]), 4),
                               "library_fit": round(float(match.library_fit[i, j]), 4),
                               "own_fit": round(float(match.own_fit[i, j]), 4),
                               "coverage": round(float(match.coverage[j]), 3)}
                              for j in ranked[:3]]
        fallback = f"em_{i + 1}"
        if not any(not _atmospheric(f.centre_nm) for f in match.features[i]):
            out.append(_featureless_name(match, i, info, max_angle))
            continue
        if not ranked:
            info["decision"] = "undecidable"
            info["reason"] = ("none of the library minerals' diagnostic windows is covered by "
                              f"the scene bands ({_band_span(wl)})")
            out.append(FeatureName(fallback, math.nan, 0.0, cands, info))
            continue
        decidable = [j for j in ranked if match.coverage[j] >= min_coverage]
        blocked = [j for j in ranked if match.coverage[j] < min_coverage]
        undecidable = []
        for j in blocked[:3]:
            undecidable.append({"mineral": names[j], "score": round(float(s[j]), 4),
                                "reason": f"diagnostic absorption(s) at "
                                          f"{_window_text(match.missing[j])} fall in dropped "
                                          f"bands or outside the scene bands ({_band_span(wl)})"})
        if undecidable:
            info["undecidable"] = undecidable
        top = ranked[0]
        best = float(s[top])
        if match.coverage[top] < min_coverage and best >= min_fit:
            info["decision"] = "undecidable"
            info["reason"] = (f"best candidate {names[top]} (fit {best:.2f} on its remaining "
                              f"windows) cannot be decided: its diagnostic absorption(s) at "
                              f"{_window_text(match.missing[top])} fall in dropped bands or "
                              f"outside the scene bands ({_band_span(wl)})")
            out.append(FeatureName(fallback, best, 0.0, cands, info))
            continue
        if not decidable:
            info["decision"] = "undecidable"
            info["reason"] = ("no library mineral keeps enough of its diagnostic windows in the "
                              f"scene bands ({_band_span(wl)})")
            out.append(FeatureName(fallback, best, 0.0, cands, info))
            continue
        j1 = decidable[0]
        s1 = float(s[j1])
        s2 = float(s[decidable[1]]) if len(decidable) > 1 else 0.0
        conf = s1 * min(1.0, (s1 - s2) / (2 * margin)) if margin > 0 else s1
        info["score"] = round(s1, 4)
        info["margin"] = round(s1 - s2, 4)
        if s1 < min_fit:
            info["decision"] = "no_match"
            info["reason"] = (f"best feature fit {s1:.2f} ({names[j1]}) is below {min_fit:g}: "
                              "no library mineral's absorptions match")
            out.append(FeatureName(fallback, s1, 0.0, cands, info))
            continue
        ang = float(match.angle[i, j1]) if match.angle is not None else 0.0
        if ang > max_angle:
            info["decision"] = "no_match"
            info["reason"] = (f"absorptions fit {names[j1]} ({s1:.2f}) but the whole spectrum is "
                              f"{math.degrees(ang):.0f} deg from it (over "
                              f"{math.degrees(max_angle):.0f} deg): too different to name")
            out.append(FeatureName(fallback, s1, 0.0, cands, info))
            continue
        if s1 - s2 < margin:
            info["decision"] = "ambiguous"
            info["reason"] = (f"{names[j1]} ({s1:.3f}) and {names[decidable[1]]} ({s2:.3f}) "
                              f"fit within {margin:g}; their features do not separate them")
            out.append(FeatureName(f"{names[j1]} or {names[decidable[1]]}", s1,
                                   round(conf, 4), cands, info))
            continue
        info["decision"] = "named"
        out.append(FeatureName(names[j1], s1, round(conf, 4), cands, info))
    return out


def _featureless_name(match: FeatureMatch, i: int, info: dict[str, Any],
                      max_angle: float) -> FeatureName:
    """Spectrum ``i`` has no absorption outside the atmospheric water-vapour bands: it can only
    be one of the library's featureless minerals (bright, colourless: quartz, feldspars,
    halite), which the VSWIR cannot tell apart, so they are ranked by full-spectrum angle
    (continuum shape) and the three closest are named together ("A or B or C"), with
    confidence 0. A dark spectrum (mean reflectance below
    :data:`FEATURELESS_MIN_REFLECTANCE`: shade, water, dark surfaces), one not on a 0-1 scale,
    or one far in angle stays ``em_<i>``."""
    fallback = f"em_{i + 1}"
    base = (f"no absorption deeper than {100 * MIN_DEPTH:g} % outside the atmospheric water "
            "bands after continuum removal")
    flib = [] if match.featureless is None or match.angle is None else \
        [j for j in np.flatnonzero(match.featureless) if np.isfinite(match.angle[i, j])]
    if not flib:
        info["decision"] = "no_features"
        info["reason"] = f"{base}, so no library mineral can be identified by its features"
        return FeatureName(fallback, math.nan, 0.0, [], info)
    order = sorted(flib, key=lambda j: float(match.angle[i, j]))
    names = match.names
    angles = [float(match.angle[i, j]) for j in order]
    cands = [(names[j], round(math.cos(a), 4)) for j, a in zip(order[:3], angles, strict=False)]
    info["decision"] = "featureless"
    info["candidates"] = [{"mineral": names[j], "angle_rad": round(a, 4),
                           "shape_similarity": round(math.cos(a), 4)}
                          for j, a in zip(order[:3], angles, strict=False)]
    closest = [f"{names[j]} ({a:.3f} rad)" for j, a in zip(order[:3], angles, strict=False)]
    bright = float(match.brightness[i]) if match.brightness is not None else math.nan
    if not bright >= FEATURELESS_MIN_REFLECTANCE:
        info["reason"] = (f"{base}; its mean reflectance {bright:.2f} is below "
                          f"{FEATURELESS_MIN_REFLECTANCE:g}, too dark for the featureless "
                          "minerals (quartz, feldspars, halite): shade, water or a dark surface")
        return FeatureName(fallback, math.nan, 0.0, cands, info)
    if bright > MAX_UNIT_REFLECTANCE:
        info["reason"] = (f"{base}; its mean value {bright:.3g} is not on a 0-1 reflectance "
                          "scale, so its brightness cannot be checked against the featureless "
                          "minerals")
        return FeatureName(fallback, math.nan, 0.0, cands, info)
    if angles[0] > max_angle:
        info["reason"] = (f"{base}; the closest featureless mineral, {closest[0]}, is over "
                          f"{math.degrees(max_angle):.0f} deg away")
        return FeatureName(fallback, math.nan, 0.0, cands, info)
    group = [names[j] for j in order[:3]]
    info["reason"] = (f"{base}: featureless in the VSWIR, like the bright colourless minerals, "
                      f"which the VSWIR cannot tell apart (closest continuum shapes "
                      f"{', '.join(closest)}), "
                      f"so it is named after {len(group)} of them")
    name = " or ".join(group)
    return FeatureName(name, math.nan, 0.0, cands, info)


def _scene_library(lib: Any, wl: np.ndarray, fw: np.ndarray
                   ) -> tuple[list[str], np.ndarray, list[list[Window]]]:
    """Library entries covering every scene band: names, spectra on the bands (m, L) and
    their diagnostic windows. Cached per band set for the bundled library."""
    from hsu_geo.endmembers.library import USGS_SOURCE

    if lib is None or (lib.source == USGS_SOURCE and lib.names == _bundled_order()):
        return _bundled_on_bands(wl.tobytes(), fw.tobytes())
    return _library_on_bands(lib, wl, fw)


def _library_on_bands(lib: Any, wl: np.ndarray, fw: np.ndarray
                      ) -> tuple[list[str], np.ndarray, list[list[Window]]]:
    from hsu_geo.endmembers.library import coverage_mask, resample_to_bands

    ok = coverage_mask(lib, wl, fw).all(axis=1)
    usable = [n for n, c in zip(lib.names, ok, strict=True) if c]
    if not usable:
        return [], np.zeros((0, wl.size)), []
    wins_all = library_windows(lib)
    wins = [w for w, c in zip(wins_all, ok, strict=True) if c]
    return usable, resample_to_bands(lib.select(usable), wl, fw), wins


@functools.lru_cache(maxsize=1)
def _bundled_order() -> list[str]:
    from hsu_geo.endmembers.library import load_usgs_library

    return list(load_usgs_library().names)


@functools.lru_cache(maxsize=4)
def _bundled_on_bands(wl_bytes: bytes, fw_bytes: bytes
                      ) -> tuple[list[str], np.ndarray, list[list[Window]]]:
    from hsu_geo.endmembers.library import load_usgs_library

    wl, fw = np.frombuffer(wl_bytes), np.frombuffer(fw_bytes)
    names, ref, wins = _library_on_bands(load_usgs_library(), wl, fw)
    ref.setflags(write=False)
    return names, ref, wins


def name_by_features(M: np.ndarray, wavelength_nm: Sequence[float] | np.ndarray,
                     fwhm_nm: Sequence[float] | np.ndarray | None = None,
                     library: Any = None, *, min_fit: float = MIN_FIT,
                     margin: float = AMBIGUITY_MARGIN) -> list[FeatureName]:
    """Name spectra ``M`` (n, L) on scene bands (nm) by absorption features.

    ``library`` (a :class:`~hsu_geo.endmembers.library.SpectralLibrary`, default the bundled
    USGS minerals) is resampled to the scene bands; entries without data under every scene band
    are skipped. Names are not made unique here (see ``name_endmembers``).
    """
    from hsu_geo.endmembers.library import _target_bands

    M = np.atleast_2d(np.asarray(M, dtype=float))
    wl, fw = _target_bands(wavelength_nm, fwhm_nm)
    if M.shape[1] != wl.size:
        raise EndmemberError(f"endmembers have {M.shape[1]} bands but {wl.size} wavelengths "
                             "were given")
    usable, ref, wins = _scene_library(library, wl, fw)
    if not usable:
        n = M.shape[0]
        empty = np.full((n, 0), np.nan)
        order = np.argsort(wl)
        cr, _ = continuum_removed(wl[order], M[:, order])
        match = FeatureMatch([], empty, empty, empty, np.zeros(0), [], [],
                             [absorption_features(wl[order], c) for c in cr])
        return decide_names(match, wl, min_fit, margin)
    return decide_names(match_features(M, wl, ref, usable, wins), wl, min_fit, margin)


class EndmemberName(tuple):
    """``(name, angle_rad)`` as :func:`~hsu_geo.endmembers.library.name_endmembers` returns,
    plus ``confidence`` (0-1) and ``info`` (JSON-ready evidence) of the feature naming."""

    confidence: float
    info: dict[str, Any]

    def __new__(cls, name: str, angle_rad: float, confidence: float = math.nan,
                info: dict[str, Any] | None = None) -> EndmemberName:
        obj = super().__new__(cls, (name, angle_rad))
        obj.confidence = confidence
        obj.info = info or {}
        return obj


def name_endmembers_by_features(M: np.ndarray, wavelength_nm: Sequence[float] | np.ndarray,
                                fwhm_nm: Sequence[float] | np.ndarray | None = None,
                                library: Any = None) -> list[EndmemberName]:
    """Feature-based names for extracted endmembers ``M`` (k, L) on the scene bands (nm).

    Returns one :class:`EndmemberName` per endmember: the name (a mineral, ``"A or B"`` or
    ``em_<i>``; repeats get ``_2``, ``_3`` in endmember order), the spectral angle (rad) to the
    named mineral's library spectrum (to the first of ``A or B``; the best SAM angle for
    ``em_<i>``; NaN without a usable library entry), the confidence and the evidence ``info``
    (``method``, ``decision`` named / ambiguous / featureless / no_match / no_features /
    undecidable, ``reason``, ``score``, ``margin``, ``candidates``, ``features``,
    ``undecidable``).
    """
    from hsu_geo.endmembers.library import _target_bands, spectral_angle

    M = np.atleast_2d(np.asarray(M, dtype=float))
    wl, fw = _target_bands(wavelength_nm, fwhm_nm)
    named = name_by_features(M, wl, fw, library)
    usable, ref, _ = _scene_library(library, wl, fw)
    angles = np.full((M.shape[0], 0), np.nan)
    if usable:
        angles = np.array([spectral_angle(m[np.isfinite(m)], ref[:, np.isfinite(m)])[0]
                           for m in M]).reshape(M.shape[0], len(usable))
    out: list[EndmemberName] = []
    seen: dict[str, int] = {}
    for i, res in enumerate(named):
        first = res.name.split(" or ")[0]
        if first in usable:
            angle = float(angles[i, usable.index(first)])
        else:
            angle = float(np.min(angles[i])) if angles.shape[1] else math.nan
        name = res.name
        if not name.startswith("em_"):
            seen[name] = seen.get(name, 0) + 1
            name = name if seen[name] == 1 else f"{name}_{seen[name]}"
        info = dict(res.info)
        info["confidence"] = res.confidence
        out.append(EndmemberName(name, angle, res.confidence, info))
    return out
