"""Pure-pixel refinement of extracted endmembers, and the multi-start ``refined`` extractor.

Geometric extractors (VCA, N-FINDR, ATGP) return *extreme* pixels: vertices of the data cloud.
Real scenes have endmember variability (illumination, shade, material variants) and noise, so
an extreme pixel is one draw from the edge of its class, while the reference endmembers of the
standard benchmarks (and what a user wants as "the spectrum of tree") are *class means*.
:func:`refine_endmembers` moves each endmember to the mean of the pixels that are pure in it,
and iterates:

1. **Purity** (:func:`purity`), invariant to pixel brightness. Unconstrained least-squares
   coefficients ``c = Y pinv(M)`` (no sum-to-one: a pixel may be darker or brighter than the
   endmembers) are weighted by the endmember norms, ``s_i = c_i ||m_i||``: the share of the
   pixel's signal each endmember carries. Pixel n is pure in j when
   ``|s_i| <= (1 - threshold) s_j`` for every other i, i.e. ``p_j = 1 - max_i |s_i| / s_j``
   is at least ``threshold``. Scaling a pixel scales every ``s_i`` and leaves ``p`` unchanged.
2. **Update**: ``m_j`` = plain mean of the pure pixels of j (at least ``min_pixels``: the
   purest ones when fewer pass), i.e. the class mean at the class's mean brightness, which is
   the scale FCLS needs.
3. Repeat until no endmember turns by more than ``tol_rad``, the selection repeats, or
   ``max_iter`` rounds.

Read as clustering, one refinement is a flat-kernel mean shift in the purity metric with
bandwidth ``1 - threshold``: it climbs to the nearest density mode of the class. Started at an
extreme pixel with a narrow window (0.95), it stops at a *local* mode near that pixel when the
class is a mix of material variants (several modes), and never sees the class's main mode.
:func:`anneal_endmembers` therefore runs the refinement over a schedule of thresholds, widest
first (``DEFAULT_SCHEDULE``, 0.7 -> 0.8 -> 0.9 -> 0.95: the other endmembers may carry up to 30 %,
then 20, 10 and 5 % of a pixel's signal): the wide window finds the main mode, biased inwards
by the mixed pixels it admits, and each narrower stage removes them again.

Why this purity (evidence on synthetic scenes with variability, ``benchmarks/
endmember_refine.py``): the window is *two-sided* (``|s_i|``): a one-sided test such as NNLS
or FCLS fractions accepts every pixel lying beyond the current endmember (its other
coefficients clip to 0) but only mixed pixels on the inside, and the plain mean of such a
selection is biased; weighting by signal (``||m_i||``) rather than by area keeps a few
percent of a bright class from passing as a pure dark pixel (water next to vegetation: 10 %
tree cover is half of the signal). Subtracting each pixel's share of the other endmembers
before averaging ("purified" mean) is consistent for a noiseless linear mixture but expands
the simplex every round under variability (NNLS clips only one side) and diverged in the
study. Plain FCLS abundances (not brightness-invariant) were worse too.

The constants were chosen on those synthetic scenes, never on a benchmark's ground truth:
the final ``threshold`` 0.95 (0.9, 0.95 and 0.98 studied), ``min_pixels`` 5, and the schedule
(single 0.95, 0.8 -> 0.95, 0.7 -> 0.95 and 0.5 -> 0.95 studied, adding two scenes whose classes
are a few material variants, Dirichlet alpha 0.1). 0.7 -> 0.95 was fixed on seeds 0-2 as the
middle of the three annealed schedules; over seeds 0-4 it beats the single 0.95 stage on four
of the seven scenes (by 0.002-0.034 rad) and loses <= 0.0015 rad on two. Known failure (Jasper
Ridge, seen after the choice): the set with the lowest reconstruction error has tree, water
and dirt at their class means and spends its fourth endmember on a material with 0-5 pure
pixels of 10 000 instead of the road; the support rule below keeps the set with the road
(N-FINDR's), in which dirt is 0.18 rad from its reference, and combining the sets' endmembers
(below) replaces that dirt by the road-less sets' one.

:func:`refined` (extractor name ``"refined"``, the default of ``hsu-geo unmix``) starts from
N-FINDR, ATGP and VCA with several seeds, replaces each start endmember by the mean of its 10
spectrally nearest pixels (:func:`denoise_start`: an extreme pixel is mostly noise and
variability), refines each, and keeps the refined set that reconstructs the pixels best
(:func:`selection_score`, blind: no reference needed) among the sets whose every endmember is
*supported*: at least ``DEFAULT_MIN_SUPPORT`` = 0.1 % of the pixels (and at least
``min_pixels``) pure in it, a minimum mapping unit. One VCA run can miss a small class because
two of its endmembers land in one class; after refinement such a start leaves the missed
class's pixels unexplained, which the reconstruction error sees. The support test guards the
opposite failure: a rare, extreme material (a few bright roofs in a natural scene) is a vertex
every geometric start picks, and with ``k`` fixed it costs a real class its endmember; its
few pixels have a large residual without it, so the reconstruction error alone prefers it.
When the best set has an endmember that is short of pure pixels and also leads (carries the
largest signal share of) fewer than that many pixels - a few isolated pixels, not a thin class
like a road, whose mixed edge pixels it leads - :func:`refined` sets those pixels aside and
extracts again (up to ``DEFAULT_RARE_ROUNDS`` = 3 rounds, never more than half of the pixels);
all rounds' sets compete under the same rule.
A rare material is still found with a larger ``k``. Both were added after Jasper Ridge's
failure was diagnosed (below); the 0.1 % was set a priori, not fitted, and its sensitivity on
the synthetic scenes (including ``vswir4road_rare``: two 2 x 2 roof patches) is in
``benchmarks/endmember_refine.py``.

**Combining the starts** (``combine="pool"``, default): each start tends to get some classes
right and misplace others (on Jasper Ridge the road-keeping set misplaces dirt, the sets with
the right dirt miss the road), so the distinct refined endmembers of every set of every round
form a pool (:func:`endmember_pool`), and :func:`swap_search` looks for the ``k`` of them with
the lowest :func:`selection_key`, starting from the best set and swapping one endmember at a
time while the key drops. It looks for supported subsets only: from an unsupported set (a
highly mixed scene, or ``k`` too large, where no set has pure pixels in every endmember) it
moves only if one swap makes the set supported, so that the residual alone never ranks pool
subsets (it prefers rare extremes, the failure the support test guards against; and on a
32 x 32 EnMAP tile with k = 14 the residual-only search took minutes). The pool's products
with the pixels are computed once (:class:`_SubsetKeys`), so a subset's key costs k-space work
only, and an unconstrained least-squares residual (a lower bound of the NNLS one) rules most
swaps out without their NNLS.
The kept endmembers are each a refined fixed point of the set it came from, not necessarily of
the kept set: refining the kept set once more (``"pool-refined"``) was worse on the synthetic
scenes (measured with the first, unrestricted search: mean SAD over seeds 0-4 worse on six of
the eight by 0.0001-0.0055 rad, better on one by 0.0007), and so was not chosen. Added after
the Jasper Ridge diagnosis too. Its one constant bounds the cost: on more than
``DEFAULT_SEARCH_PIXELS`` = 10 000 pixels (the size of the scenes the rules were designed on)
the search runs on a seeded sample of that many, and the subset it finds must still beat the
kept set on all pixels. Measured cost: 1.0-1.1x the extraction time on the 10 000-pixel
synthetic scenes, 1.5x on a 100 000-pixel scene with k = 10 whose sets are supported (pool of
50: 49 -> 76 s).

Spatial smoothing (:func:`smooth_cube`, a 3x3 mean filter before extraction) helped the starts
on the synthetic scenes more than :func:`denoise_start` (see the benchmark's smoothing table),
but it needs the image layout, which the pipeline's pixel sample does not keep: it is available
in memory only (``refined(Y, k, Y_start=smoothed pixels)``) and not used by ``hsu-geo unmix``.

Shapes: pixels are rows, ``Y (N, L)``; endmembers ``M (k, L)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import uniform_filter

from hsu_geo.endmembers.atgp import atgp, validate_pixels
from hsu_geo.endmembers.nfindr import nfindr
from hsu_geo.endmembers.vca import vca
from hsu_geo.errors import ConfigError, EndmemberError
from hsu_geo.unmix.classical.lsq import PoolNNLS, fcls, nnls, ucls

__all__ = [
    "COMBINES",
    "DEFAULT_MIN_PIXELS",
    "DEFAULT_MIN_SUPPORT",
    "DEFAULT_NEIGHBOURS",
    "DEFAULT_RARE_ROUNDS",
    "DEFAULT_SCHEDULE",
    "DEFAULT_SEARCH_PIXELS",
    "DEFAULT_STARTS",
    "DEFAULT_THRESHOLD",
    "PURITY_RULES",
    "SELECTIONS",
    "Refinement",
    "anneal_endmembers",
    "denoise_start",
    "purity",
    "refine_endmembers",
    "refine_extractor",
    "refined",
    "selection_key",
    "selection_score",
    "smooth_cube",
    "starts",
    "support",
    "support_needed",
]

#: pure in j: every other endmember's signal share is at most (1 - this) times j's
DEFAULT_THRESHOLD = 0.95
#: purity thresholds of :func:`anneal_endmembers`, widest window first, ending at the default
DEFAULT_SCHEDULE = (0.7, 0.8, 0.9, DEFAULT_THRESHOLD)
#: fewest pixels averaged per endmember (the purest ones when fewer pass the threshold)
DEFAULT_MIN_PIXELS = 5
#: bound on refinement rounds, and the convergence tolerance (largest endmember turn, rad)
DEFAULT_MAX_ITER = 30
DEFAULT_TOL_RAD = 1e-4
#: smallest share of the pixels that must be pure in every endmember of the set ``refined``
#: prefers (a minimum mapping unit: 1 pixel in 1000, at least ``DEFAULT_MIN_PIXELS``)
DEFAULT_MIN_SUPPORT = 0.001
#: rounds of ``refined`` that set aside the pixels of rare materials and extract again
DEFAULT_RARE_ROUNDS = 3
#: VCA starts of the ``refined`` extractor (besides one N-FINDR and one ATGP start)
DEFAULT_STARTS = 8
#: pixels (closest in angle) averaged into each start endmember before refinement
DEFAULT_NEIGHBOURS = 10
#: pixels (a seeded sample) on which :func:`refined` searches the pooled endmembers' subsets;
#: the subset found must then beat the kept set on all pixels
DEFAULT_SEARCH_PIXELS = 10_000
#: purity rules: the default, and the alternatives studied in benchmarks/endmember_refine.py
PURITY_RULES = ("signal", "area", "nnls-signal", "nnls-area", "fcls")
#: how :func:`refined` picks among its refined starts
SELECTIONS = ("supported", "residual")
#: how :func:`refined` combines the endmembers of its refined sets
COMBINES = ("pool", "pool-refined", "none")


@dataclass
class Refinement:
    """Result of :func:`refine_endmembers`.

    Attributes:
        M: refined endmembers ``(k, L)`` float64.
        idx: per endmember, the selected pixel closest in angle to it (a representative).
        n_pure: pixels averaged per endmember in the last round.
        iterations: rounds run; converged: stopped by ``tol_rad`` or a repeated selection.
    """

    M: NDArray[np.float64]
    idx: NDArray[np.intp]
    n_pure: NDArray[np.intp]
    iterations: int
    converged: bool


def _unit(X: NDArray[np.float64]) -> NDArray[np.float64]:
    n = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


def _angles(A: NDArray[np.float64], B: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise angles (rad) between ``A (k, L)`` and ``B (k, L)``."""
    cos = np.einsum("ij,ij->i", _unit(A), _unit(B))
    return np.arccos(np.clip(cos, -1.0, 1.0))


def _purity(Y: NDArray[np.floating], M: NDArray[np.float64], rule: str) -> NDArray[np.float64]:
    if rule == "fcls":
        return np.asarray(fcls(Y, M), dtype=np.float64)
    norms = np.linalg.norm(M, axis=1)
    if rule.startswith("nnls"):  # one-sided: NNLS fractions
        C = np.asarray(nnls(Y, M), dtype=np.float64)
        if rule == "nnls-signal":
            C = C * norms
        tot = C.sum(axis=1, keepdims=True)
        return np.divide(C, tot, out=np.zeros_like(C), where=tot > 0)
    S = np.asarray(ucls(Y, M), dtype=np.float64)
    return _purity_of_shares(S * norms if rule == "signal" else S)


def _top_two(S: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.float64],
                                              NDArray[np.float64]]:
    """Per row of ``S (N, k)``, ``k >= 2``: the column of the largest ``|s|``, that ``|s|`` and
    the second largest ``|s|``, each ``(N,)``."""
    A = np.abs(S)
    first = np.argmax(A, axis=1)
    rows = np.arange(S.shape[0])
    top1 = A[rows, first]
    A[rows, first] = -1.0  # A is a fresh array: mask the largest
    return first, top1, A.max(axis=1)


def _purity_of_shares(S: NDArray[np.float64]) -> NDArray[np.float64]:
    """Two-sided purity ``(N, k)`` from signed shares ``S (N, k)`` (see :func:`purity`)."""
    k = S.shape[1]
    if k == 1:
        return np.where(S > 0, 1.0, -np.inf)
    # largest |s_i| over i != j, for every j: the top two of each row do it
    first, top1, top2 = _top_two(S)
    other = np.where(first[:, None] == np.arange(k)[None, :], top2[:, None], top1[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 1.0 - other / S
    return np.where(S > 0, p, -np.inf)


def _pure_counts(S: NDArray[np.float64], threshold: float) -> NDArray[np.intp]:
    """Pixels pure in each endmember ``(k,)`` from shares ``S (N, k)``: as
    ``(_purity_of_shares(S) >= threshold).sum(0)``, without the ``(N, k)`` purity when
    ``threshold >= 0.5`` (a pixel can then be pure only in its largest share)."""
    k = S.shape[1]
    if threshold < 0.5 or k == 1:
        return (_purity_of_shares(S) >= threshold).sum(axis=0)
    first, top1, top2 = _top_two(S)
    s1 = S[np.arange(S.shape[0]), first]  # signed: pure only where positive
    pure = (s1 > 0) & (top2 <= (1.0 - threshold) * top1)
    return np.bincount(first[pure], minlength=k)


def purity(Y: ArrayLike, M: ArrayLike, rule: str = "signal") -> NDArray[np.float64]:
    """Brightness-invariant purity ``p (N, k)`` of pixels ``Y (N, L)`` in endmembers
    ``M (k, L)``; pixel n is pure in j when ``p[n, j] >= threshold``.

    ``rule="signal"`` (default): ``p_j = 1 - max_{i != j} |s_i| / s_j`` with
    ``s = ucls(y, M) * ||m||`` (``-inf`` where ``s_j <= 0``). Studied alternatives:
    ``"area"`` (same without the norm weights), ``"nnls-signal"`` / ``"nnls-area"``
    (one-sided: NNLS fractions ``c / 1ᵀc``) and ``"fcls"`` (FCLS abundances, not
    brightness-invariant). All but ``"fcls"`` satisfy ``purity(a * Y, M) == purity(Y, M)`` for
    ``a > 0``.
    """
    if rule not in PURITY_RULES:
        raise ConfigError(f"unknown purity rule {rule!r}; valid: {', '.join(PURITY_RULES)}")
    M = np.asarray(M, dtype=np.float64)
    Y = validate_pixels(Y, None, as_float64=False)
    if M.ndim != 2 or M.shape[1] != Y.shape[1]:
        raise EndmemberError(f"endmembers must be (k, {Y.shape[1]}); got shape {M.shape}")
    return _purity(Y, M, rule)


def _check_constants(threshold: float, min_pixels: int, max_iter: int, rule: str,
                     update: str) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"purity threshold must be in (0, 1], got {threshold}")
    if min_pixels < 1:
        raise ConfigError(f"min_pixels must be >= 1, got {min_pixels}")
    if max_iter < 0:
        raise ConfigError(f"max_iter must be >= 0, got {max_iter}")
    if rule not in PURITY_RULES:
        raise ConfigError(f"unknown purity rule {rule!r}; valid: {', '.join(PURITY_RULES)}")
    if update not in ("mean", "purified"):
        raise ConfigError(f"update must be 'mean' or 'purified', got {update!r}")


def refine_endmembers(
    Y: ArrayLike,
    M: ArrayLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_iter: int = DEFAULT_MAX_ITER,
    tol_rad: float = DEFAULT_TOL_RAD,
    rule: str = "signal",
    update: str = "mean",
) -> Refinement:
    """Move endmembers ``M (k, L)`` to the mean of the pixels of ``Y (N, L)`` pure in them.

    See the module docstring. ``rule`` is the purity rule of :func:`purity`; ``update=
    "purified"`` (studied, not recommended) subtracts each selected pixel's NNLS share of the
    other endmembers before averaging. Vectorised: a round is one ``Y pinv(M)`` product, a
    top-two per pixel and one ``(k, N) x (N, L)`` product.
    """
    _check_constants(threshold, min_pixels, max_iter, rule, update)
    M = np.array(M, dtype=np.float64)
    if M.ndim != 2:
        raise EndmemberError(f"endmembers must be (k, L); got shape {M.shape}")
    Y = validate_pixels(Y, M.shape[0], as_float64=False)
    if Y.shape[1] != M.shape[1]:
        raise EndmemberError(f"endmembers have {M.shape[1]} bands but the pixels "
                             f"{Y.shape[1]}")
    N, k = Y.shape[0], M.shape[0]
    m = min(min_pixels, N)
    Yu = _unit(np.asarray(Y, dtype=np.float64))
    sel = np.zeros((N, k), dtype=bool)
    seen: set[bytes] = set()
    it, converged = 0, False
    for it in range(1, max_iter + 1):  # noqa: B007 - `it` is reported
        pur = _purity(Y, M, rule)
        sel = pur >= threshold
        short = np.flatnonzero(sel.sum(axis=0) < m)
        if short.size:  # too few pure pixels: the purest m (by angle where p is undefined)
            cos = Yu @ _unit(M[short]).T
            key = np.where(np.isfinite(pur[:, short]), pur[:, short], cos - 3.0)
            for col, j in enumerate(short):
                sel[np.argpartition(-key[:, col], m - 1)[:m], j] = True
        signature = np.packbits(sel).tobytes()
        if signature in seen:  # the same selection again: a fixed point or a cycle
            converged = True
            break
        seen.add(signature)
        counts = sel.sum(axis=0)
        # plain means (k, L), gathering only the selected rows (10-30x faster than S.T @ Y,
        # which reads every pixel each round)
        new = np.stack([Y[sel[:, j]].sum(axis=0, dtype=np.float64)
                        for j in range(k)]) / counts[:, None]
        if update == "purified":
            S = sel.astype(np.float64)
            C = np.asarray(nnls(Y, M), dtype=np.float64)
            others = (S.T @ C) - np.diag(np.einsum("nj,nj->j", S, C))  # (k, k): sum_n c_ni
            new -= (others @ M) / counts[:, None]
        bad = ~np.isfinite(new).all(axis=1) | (np.linalg.norm(new, axis=1) == 0)
        new[bad] = M[bad]
        turn = float(_angles(M, new).max())
        M = new
        if turn <= tol_rad:
            converged = True
            break
    cos = Yu @ _unit(M).T
    cos[~sel] = -np.inf
    idx = np.argmax(cos, axis=0).astype(np.intp)
    return Refinement(M, idx, sel.sum(axis=0).astype(np.intp), it, converged)


def _checked_schedule(schedule: Sequence[float], refine_kw: dict[str, Any]
                      ) -> tuple[float, ...]:
    out = tuple(float(t) for t in schedule)
    if not out:
        raise ConfigError("the refinement schedule needs at least one purity threshold")
    if "threshold" in refine_kw:
        raise ConfigError("give the purity thresholds as schedule=(...), not threshold=")
    return out


def anneal_endmembers(
    Y: ArrayLike,
    M: ArrayLike,
    *,
    schedule: Sequence[float] = DEFAULT_SCHEDULE,
    **refine_kw: Any,
) -> Refinement:
    """:func:`refine_endmembers` at each purity threshold of ``schedule`` in turn (widest
    first), each stage starting from the previous stage's endmembers; ``refine_kw`` are its
    other keywords. Returns the last stage's result with ``iterations`` summed over stages.
    """
    r = None
    total = 0
    for t in _checked_schedule(schedule, refine_kw):
        r = refine_endmembers(Y, M if r is None else r.M, threshold=t, **refine_kw)
        total += r.iterations
    assert r is not None
    r.iterations = total
    return r


def selection_score(Y: ArrayLike, M: ArrayLike) -> float:
    """Blind score of endmembers for :func:`refined` (lower is better): the RMS residual of
    NNLS (FCLS with a free per-pixel brightness), relative to the RMS of the pixels.

    Brightness-free so that illumination does not dominate; a start that merged two classes
    and missed a third leaves the missed class's pixels unexplained.
    """
    Y = validate_pixels(Y, None, as_float64=False)
    M = np.asarray(M, dtype=np.float64)
    R = np.asarray(Y, dtype=np.float64) - nnls(Y, M) @ M
    scale = float(np.sqrt(np.mean(np.square(Y, dtype=np.float64))))
    return float(np.sqrt(np.mean(R * R)) / max(scale, np.finfo(float).tiny))


def support(Y: ArrayLike, M: ArrayLike, *, threshold: float = DEFAULT_THRESHOLD,
            rule: str = "signal") -> NDArray[np.intp]:
    """Pixels of ``Y (N, L)`` pure in each endmember of ``M (k, L)`` (:func:`purity` at
    ``threshold``): ``(k,)``."""
    return (purity(Y, M, rule) >= threshold).sum(axis=0).astype(np.intp)


def support_needed(n_pixels: int, fraction: float = DEFAULT_MIN_SUPPORT,
                min_pixels: int = DEFAULT_MIN_PIXELS) -> int:
    """Pure pixels an endmember needs to count as a scene class in :func:`refined`:
    ``max(min_pixels, ceil(fraction * n_pixels))``, at most ``n_pixels``."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"min_support must be in [0, 1), got {fraction}")
    return int(min(n_pixels, max(min_pixels, int(np.ceil(fraction * n_pixels)))))


def selection_key(Y: ArrayLike, M: ArrayLike, *, threshold: float = DEFAULT_THRESHOLD,
                  min_pixels: int = DEFAULT_MIN_PIXELS, rule: str = "signal",
                  by: str = "supported", fraction: float = DEFAULT_MIN_SUPPORT
                  ) -> tuple[bool, float]:
    """Sort key of :func:`refined` (lower is better): ``(some endmember unsupported,
    selection_score)``, where unsupported means fewer pure pixels than :func:`support_needed`
    (``by="supported"``, default); ``by="residual"``: ``(False, selection_score)``."""
    if by not in SELECTIONS:
        raise ConfigError(f"unknown selection {by!r}; valid: {', '.join(SELECTIONS)}")
    short = False
    if by == "supported":
        n = np.asarray(Y).shape[0]
        short = bool((support(Y, M, threshold=threshold, rule=rule)
                      < support_needed(n, fraction, min_pixels)).any())
    return short, selection_score(Y, M)


def starts(Y: ArrayLike, k: int, seed: int = 0, n_vca: int = DEFAULT_STARTS
           ) -> list[tuple[str, NDArray[np.float64]]]:
    """Starting endmember sets of :func:`refined`: N-FINDR (ATGP init), ATGP, then ``n_vca``
    VCA runs with seeds drawn from ``default_rng(seed)``; ``[(label, M (k, L)), ...]``."""
    Y = validate_pixels(Y, k)
    out = [("nfindr", nfindr(Y, k)[0]), ("atgp", atgp(Y, k)[0])]
    for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n_vca):
        out.append((f"vca:{int(s)}", vca(Y, k, seed=int(s))[0]))
    return out


def denoise_start(Y: ArrayLike, M: ArrayLike, neighbours: int = DEFAULT_NEIGHBOURS
                  ) -> NDArray[np.float64]:
    """Each start endmember replaced by the mean of its ``neighbours`` pixels of ``Y`` closest
    in angle (itself included when it is a pixel): a spectral, layout-free stand-in for the
    spatial smoothing of :func:`smooth_cube`. ``neighbours <= 1`` returns ``M`` as is."""
    M = np.asarray(M, dtype=np.float64)
    n = min(int(neighbours), np.asarray(Y).shape[0])
    if n <= 1:
        return M.copy()
    cos = _unit(np.asarray(Y, dtype=np.float64)) @ _unit(M).T  # (N, k)
    near = np.argpartition(-cos, n - 1, axis=0)[:n]  # (n, k)
    return np.stack([np.asarray(Y, dtype=np.float64)[near[:, j]].mean(axis=0)
                     for j in range(M.shape[0])])


def _refined_sets(Y: NDArray[np.floating], Ys: NDArray[np.floating], k: int, seed: int,
                  n_vca: int, neighbours: int, schedule: tuple[float, ...],
                  refine_kw: dict[str, Any]) -> list[Refinement]:
    """Every start of :func:`starts` (on ``Ys``), denoised and annealed on ``Y`` stage by
    stage; starts that reach the same endmembers after a stage go on as one."""
    current = [denoise_start(Y, M0, neighbours) for _, M0 in starts(Ys, k, seed, n_vca)]
    results: list[Refinement] = []
    for t in schedule:  # stage by stage, as anneal_endmembers
        results = []
        for M in current:
            r = refine_endmembers(Y, M, threshold=t, **refine_kw)
            if not any(np.allclose(r.M, q.M) for q in results):  # else: an earlier start's
                results.append(r)                                # fixed point, refined once
        current = [r.M for r in results]
    return results


def endmember_pool(sets: Sequence[tuple[NDArray[np.float64], NDArray[np.intp]]]
                   ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """The distinct endmembers of several sets ``[(M (k, L), idx (k,)), ...]``, in order of
    first appearance (rows equal within ``np.allclose`` count once): ``(P (p, L), idx (p,))``."""
    rows: list[NDArray[np.float64]] = []
    idx: list[int] = []
    for M, ix in sets:
        for m, i in zip(M, ix, strict=True):
            if not any(np.allclose(m, q) for q in rows):
                rows.append(np.asarray(m, dtype=np.float64))
                idx.append(int(i))
    return np.stack(rows), np.asarray(idx, dtype=np.intp)


class _SubsetKeys:
    """:func:`selection_key` of subsets of a pool ``P (p, L)`` of endmembers on pixels
    ``Y (N, L)``, from the pool's products (:class:`~hsu_geo.unmix.classical.lsq.PoolNNLS`):
    a key costs k-space work only (the purity shares ``Y pinv(M) = (M Yᵀ)ᵀ (M Mᵀ)⁻¹``, the
    pool NNLS and the residual ``||y||² - 2 aᵀ(M y) + aᵀ(M Mᵀ)a``). Only the ``"signal"``
    and ``"area"`` purity rules."""

    def __init__(self, Y: NDArray[np.floating], P: NDArray[np.float64], *, threshold: float,
                 need: int, rule: str, by: str) -> None:
        self.threshold, self.need, self.rule, self.by = threshold, need, rule, by
        self.nnls = PoolNNLS(Y, P)
        self.scale = max(float(np.sqrt(self.nnls.yy / self.nnls.size)), np.finfo(float).tiny)

    def __call__(self, rows: Sequence[int], bound: tuple[bool, float]) -> tuple[bool, float]:
        """The key of the subset ``rows``, or ``(short, inf)`` when it is unsupported (the
        search looks for supported subsets only) or cannot be below ``bound`` (an
        unconstrained least-squares residual, a lower bound of the NNLS one, already at or
        above it)."""
        BT, G = self.nnls.B[rows], self.nnls.G[np.ix_(rows, rows)]
        try:  # (k, N): Y pinv(M), transposed
            C = np.linalg.solve(G, BT)
        except np.linalg.LinAlgError:  # singular: two pool rows parallel
            C = np.linalg.lstsq(G, BT, rcond=None)[0]
        if self.by == "supported":
            S = C.T * np.sqrt(np.diag(G)) if self.rule == "signal" else C.T
            if (_pure_counts(S, self.threshold) < self.need).any():
                return True, np.inf
        lower = self.nnls.yy - float(np.einsum("kn,kn->", C, BT))
        if (False, self._score(lower)) >= bound:
            return False, np.inf
        return False, self._score(self.nnls.residual_sq(rows, self.nnls(rows)))

    def _score(self, residual_sq: float) -> float:
        """:func:`selection_score` from the summed squared residual."""
        return float(np.sqrt(max(residual_sq, 0.0) / self.nnls.size)) / self.scale


def swap_search(p: int, start: Sequence[int],
                key: Callable[[list[int], tuple[bool, float]], tuple[bool, float]]
                ) -> tuple[list[int], tuple[bool, float], int]:
    """Best-improvement local search over ``k``-subsets of a pool of ``p`` endmembers: from
    the rows ``start``, replace one endmember by one other pool row as long as that lowers
    ``key(rows, bound)`` (a :func:`selection_key`; it may return ``(short, inf)`` for a subset
    it can tell is not below ``bound``). Returns ``(rows, key, swaps made)``; a pass costs
    ``k (p - k)`` keys."""
    cur = list(start)
    best = key(cur, (True, np.inf))
    swaps = 0
    while True:
        move: tuple[tuple[bool, float], list[int]] | None = None
        for j in range(len(cur)):
            for c in range(p):
                if c in cur:
                    continue
                trial = [*cur[:j], c, *cur[j + 1:]]
                bound = best if move is None else move[0]
                k_trial = key(trial, bound)
                if k_trial < bound:
                    move = (k_trial, trial)
        if move is None:
            return cur, best, swaps
        best, cur = move
        swaps += 1


def _start_rows(P: NDArray[np.float64], M: NDArray[np.float64]) -> list[int] | None:
    """Pool rows of the endmembers ``M (k, L)`` for :func:`swap_search`; an endmember equal
    to an earlier one (two starts that met) takes the first pool row not yet used, so the
    search starts from distinct rows. ``None`` when the pool has fewer than ``k`` rows."""
    if P.shape[0] < M.shape[0]:
        return None
    rows: list[int] = []
    for m in M:
        i = next(i for i in range(P.shape[0]) if np.allclose(P[i], m))
        rows.append(i if i not in rows else next(j for j in range(P.shape[0]) if j not in rows))
    return rows


def _pool_key(Y: NDArray[np.floating], P: NDArray[np.float64], *, threshold: float,
              min_pixels: int, rule: str, by: str, fraction: float
              ) -> Callable[[list[int], tuple[bool, float]], tuple[bool, float]]:
    """:func:`selection_key` of pool subsets for :func:`swap_search`."""
    if rule in ("signal", "area"):
        return _SubsetKeys(Y, P, threshold=threshold, rule=rule, by=by,
                           need=support_needed(Y.shape[0], fraction, min_pixels))

    def direct(rows: list[int], bound: tuple[bool, float]) -> tuple[bool, float]:
        key = selection_key(Y, P[rows], threshold=threshold, min_pixels=min_pixels,
                            rule=rule, by=by, fraction=fraction)
        return (True, np.inf) if key[0] else key
    return direct


def _pooled_best(
    Y: NDArray[np.floating],
    sets: list[tuple[NDArray[np.float64], NDArray[np.intp]]],
    best: tuple[tuple[bool, float], NDArray[np.float64], NDArray[np.intp]],
    *, seed: int, combine: str, threshold: float, min_pixels: int, rule: str, by: str,
    fraction: float, refine_kw: dict[str, Any],
) -> tuple[tuple[tuple[bool, float], NDArray[np.float64], NDArray[np.intp]], int, int]:
    """The best ``k`` of every distinct endmember of ``sets`` (:func:`refined`'s pool search
    from the kept set ``best = (key, M, idx)``): ``(best, pool size, swaps kept)``. The
    search runs on at most ``DEFAULT_SEARCH_PIXELS`` seeded pixels; its subset replaces
    ``best`` only if its key is lower on all pixels."""
    P, P_idx = endmember_pool(sets)
    start = _start_rows(P, best[1])
    if start is None:
        return best, P.shape[0], 0
    search = np.arange(Y.shape[0])
    if Y.shape[0] > DEFAULT_SEARCH_PIXELS:  # bounded cost on large samples
        search = np.sort(np.random.default_rng(seed).choice(
            Y.shape[0], DEFAULT_SEARCH_PIXELS, replace=False))
    pool_key = _pool_key(Y[search], P, threshold=threshold, min_pixels=min_pixels, rule=rule,
                         by=by, fraction=fraction)
    chosen, _, swaps = swap_search(P.shape[0], start, pool_key)
    M, idx = P[chosen], P_idx[chosen]
    if combine == "pool-refined" and swaps:
        r = refine_endmembers(Y, M, threshold=threshold, **refine_kw)
        M, idx = r.M, r.idx
    if np.array_equal(M, best[1]):
        return best, P.shape[0], 0
    exact = selection_key(Y, M, threshold=threshold, min_pixels=min_pixels, rule=rule, by=by,
                          fraction=fraction)
    if exact < best[0]:  # on all pixels, not only the searched sample
        return (exact, M, idx), P.shape[0], swaps
    return best, P.shape[0], 0


def refined(
    Y: ArrayLike,
    k: int,
    *,
    seed: int = 0,
    n_vca: int = DEFAULT_STARTS,
    neighbours: int = DEFAULT_NEIGHBOURS,
    Y_start: ArrayLike | None = None,
    schedule: Sequence[float] = DEFAULT_SCHEDULE,
    selection: str = "supported",
    min_support: float = DEFAULT_MIN_SUPPORT,
    rare_rounds: int = DEFAULT_RARE_ROUNDS,
    combine: str = "pool",
    evidence: dict[str, Any] | None = None,
    **refine_kw: Any,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Multi-start refined endmembers ``M (k, L)`` and representative pixel indices ``(k,)``.

    Every start of :func:`starts` (computed on ``Y_start`` when given, e.g. the pixels of a
    spatially smoothed cube, else on ``Y``) is denoised (:func:`denoise_start`, ``neighbours``
    pixels of ``Y``) and refined on ``Y`` over the purity ``schedule``
    (:func:`anneal_endmembers`; ``refine_kw``: the other keywords of
    :func:`refine_endmembers`). Starts that reach the same endmembers after a stage (most do,
    once the window is wide) go on as one. The set kept is the one with the lowest
    :func:`selection_key`: sets in which every endmember has at least :func:`support_needed`
    pure pixels (``min_support`` of the pixels) first, then the lowest
    :func:`selection_score` (ties: the earlier start).

    Rare materials: when the best set has an endmember that is short of pure pixels and
    carries the largest signal share in fewer than :func:`support_needed` pixels too (an
    extreme material of a few isolated pixels that every geometric start picks, which then
    crowds out a real class), those pixels are set aside and the starts are run again on the
    others, up to ``rare_rounds`` times; the sets of every round compete under the same key,
    on all pixels. ``selection="residual"``: the lowest score alone, one round (the rule
    before the support test). ``combine="pool"``: then the best ``k`` of the pooled
    endmembers of every set (:func:`swap_search` from the kept set, same key, supported
    subsets only);
    ``"pool-refined"``: that subset refined once more at the last threshold, kept if its key
    is lower; ``"none"``: the best set as it is. Deterministic for a seed. ``evidence``: a
    dict filled with the decision (pure pixels per kept endmember, the support needed, whether
    every endmember has it, rounds run, the round kept and the pixels set aside before it, the
    pool's size and the swaps made), for ``run.json``.
    """
    Y = validate_pixels(Y, k, as_float64=False)
    Ys = Y if Y_start is None else validate_pixels(Y_start, k, as_float64=False)
    if Ys.shape != Y.shape:
        raise EndmemberError("Y_start must hold the same pixels and bands as Y")
    if rare_rounds < 0:
        raise ConfigError(f"rare_rounds must be >= 0, got {rare_rounds}")
    if combine not in COMBINES:
        raise ConfigError(f"unknown combine {combine!r}; valid: {', '.join(COMBINES)}")
    stages = _checked_schedule(schedule, refine_kw)
    mp = refine_kw.get("min_pixels", DEFAULT_MIN_PIXELS)
    rule = refine_kw.get("rule", "signal")
    need = support_needed(Y.shape[0], min_support, mp)
    keep = np.ones(Y.shape[0], dtype=bool)
    best: tuple[tuple[bool, float], NDArray[np.float64], NDArray[np.intp]] | None = None
    best_round, set_aside, rounds = 0, [0], 0
    every: list[tuple[NDArray[np.float64], NDArray[np.intp]]] = []  # all rounds' sets
    for rnd in range(rare_rounds + 1 if selection == "supported" else 1):
        rounds = rnd + 1
        rows = np.flatnonzero(keep)
        sets = _refined_sets(Y[rows], Ys[rows], k, seed, n_vca, neighbours, stages, refine_kw)
        round_best = None
        for r in sets:
            every.append((r.M, rows[r.idx]))
            key = selection_key(Y, r.M, threshold=stages[-1], min_pixels=mp, rule=rule,
                                by=selection, fraction=min_support)
            if round_best is None or key < round_best[0]:
                round_best = (key, r.M, rows[r.idx])
        assert round_best is not None
        if best is None or round_best[0] < best[0]:  # ties: the earlier round
            best, best_round = round_best, rnd
        if not round_best[0][0] or rnd == rare_rounds:
            break
        pur = _purity(Y, round_best[1], rule)
        # pixels each endmember carries the largest signal share of; a rare material is
        # short of pure pixels AND of such pixels (a thin real class, e.g. a road, has few
        # pure pixels but many mixed ones it dominates: it is kept)
        lead = pur >= 0.0
        rare = ((pur >= stages[-1]).sum(axis=0) < need) & (lead.sum(axis=0) < need)
        dominated = keep & lead[:, rare].any(axis=1)
        if not dominated.any() or (keep & ~dominated).sum() < Y.shape[0] / 2:
            break  # nothing rare to set aside
        keep &= ~dominated
        set_aside.append(int((~keep).sum()))
    assert best is not None
    swaps, pool_size = 0, 0
    if combine != "none":
        best, pool_size, swaps = _pooled_best(
            Y, every, best, seed=seed, combine=combine, threshold=stages[-1], min_pixels=mp,
            rule=rule, by=selection, fraction=min_support, refine_kw=refine_kw)
    if evidence is not None:
        evidence.update({
            "rule": selection, "support_needed": need,
            "pure_pixels": [int(v) for v in support(Y, best[1], threshold=stages[-1],
                                                    rule=rule)],
            "all_supported": not best[0][0], "relative_residual": best[0][1],
            "rounds": rounds, "round_kept": best_round,
            "pixels_set_aside": set_aside[best_round], "pool_size": pool_size,
            "swaps": swaps})
    return best[1], best[2]


def refine_extractor(base: Callable[..., tuple[NDArray[np.float64], NDArray[np.intp]]],
                     name: str) -> Callable[..., tuple[NDArray[np.float64], NDArray[np.intp]]]:
    """The extractor ``base`` followed by :func:`anneal_endmembers` (same signature)."""

    def extractor(Y: ArrayLike, k: int, *, seed: int = 0
                  ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        Y = validate_pixels(Y, k, as_float64=False)
        r = anneal_endmembers(Y, base(Y, k, seed=seed)[0])
        return r.M, r.idx

    extractor.__name__ = f"{name}_refine"
    extractor.__qualname__ = extractor.__name__
    extractor.__doc__ = f"{name} endmembers refined by :func:`anneal_endmembers`."
    return extractor


def smooth_cube(cube: ArrayLike, size: int = 3) -> NDArray[np.float64]:
    """``size x size`` spatial mean filter of a ``(L, rows, cols)`` cube (edges: nearest).

    For extraction only, in memory: smoothed pixels make less noisy starts
    (``refined(Y, k, Y_start=smoothed pixels)``); refinement and unmixing still use the
    original pixels. ``size=1`` returns a float64 copy.
    """
    X = np.asarray(cube, dtype=np.float64)
    if X.ndim != 3:
        raise ConfigError(f"smooth_cube needs a (bands, rows, cols) cube; got {X.shape}")
    if size < 1:
        raise ConfigError(f"smoothing size must be >= 1, got {size}")
    return uniform_filter(X, size=(1, size, size), mode="nearest")
