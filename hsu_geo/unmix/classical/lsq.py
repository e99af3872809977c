"""Least-squares abundance estimation: UCLS, SCLS, NNLS and FCLS (baselines.md B1–B4).

Conventions (all functions): pixels are rows. ``Y`` is ``(N, L)`` (N pixels, L bands), ``M`` is
``(k, L)`` (one endmember spectrum per row) and the returned abundances ``A`` are ``(N, k)``.
Abundances are unitless fractions; ``Y`` and ``M`` share any radiometric unit.

NNLS and FCLS are exact solvers, not approximations: the objective
``||y - Mᵀa||² = aᵀGa - 2aᵀb + const`` with ``G = M Mᵀ`` (k×k, shared by all pixels) and
``b = Y Mᵀ`` (one matrix product for all pixels) is minimised in k-dimensional space by a primal
active-set method (Lawson–Hanson style) that is vectorised across pixels: pixels are grouped by
their current free set and each group is solved with one small precomputed k×k affine map, so the
only Python loops are over active-set iterations and distinct free sets (at most ``2**k``).

1. Start from the unconstrained (NNLS) or sum-to-one constrained (FCLS) solution; pixels that
   already satisfy ``a >= 0`` are optimal and leave.
2. Feasibility phase (Heinz & Chang): repeatedly fix the negative coefficients at zero and
   re-solve on the remaining free set until the solution is non-negative (at most k rounds).
3. Optimality phase (primal active set): compute the Lagrange multipliers of the bounds; if one
   is negative release that coefficient, solve on the enlarged free set and step towards it,
   stopping at the first bound that blocks. Every step keeps the iterate feasible and does not
   increase the objective. Pixels leave as soon as their KKT conditions hold.

The k-space work is float64; ``b`` is computed with one BLAS matmul in the precision of ``Y``
(float32 stays float32 there, which is what keeps the cost close to a single ``Y @ pinv(M)``).
Near-singular ``G`` (almost collinear endmembers) is handled by solving the small KKT systems
with a pseudo-inverse, which returns the minimum-norm optimum on a free set; no ridge is added.
Pixels that hit the iteration limit or stall (cycling under heavy degeneracy or rounding) are
solved by exhaustive enumeration of supports (exact; k <= 16, else a RuntimeWarning).
"""

from __future__ import annotations

import itertools
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError

__all__ = [
    "PoolNNLS",
    "fcls",
    "fcls_kkt_residual",
    "nnls",
    "nnls_kkt_residual",
    "reconstruction_rmse",
    "scaled_fcls",
    "scls",
    "ucls",
]

#: Pixels per internal batch of the k-space solver (bounds memory; (batch, k) float64 arrays).
BATCH_PIXELS = 65_536
#: Pixels per chunk of the band-space products (``Y @ Mᵀ`` and reconstruction).
_MATMUL_CHUNK = 262_144
#: Relative dual tolerance: multipliers are accepted down to ``-_DUAL_TOL * ||G||``.
_DUAL_TOL = 1e-11
#: Added to the multipliers of free coefficients so that they never look violated.
_HUGE = 1e300
#: Largest k for which the exhaustive-enumeration fallback is allowed.
_MAX_ENUM_K = 16

FloatArray = NDArray[np.floating]


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """float32 stays float32 (band-space matmul), everything else is computed in float64."""
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _check_inputs(Y: ArrayLike, M: ArrayLike) -> tuple[FloatArray, NDArray[np.float64]]:
    """Validate ``Y (N, L)`` and ``M (k, L)``; return Y (float32/64) and M as float64."""
    Y = np.asarray(Y)
    M = np.asarray(M)
    if Y.ndim != 2:
        raise InvalidSceneError(
            f"pixel matrix Y must be 2-D (N pixels, L bands); got shape {Y.shape}"
        )
    if M.ndim != 2:
        raise EndmemberError(f"endmember matrix M must be 2-D (k, L bands); got shape {M.shape}")
    k, n_bands = M.shape
    if Y.shape[1] != n_bands:
        raise EndmemberError(
            f"endmembers have {n_bands} bands but the pixels have {Y.shape[1]}; "
            "resample the endmembers to the scene bands first"
        )
    if k < 1:
        raise EndmemberError("at least one endmember is required (M has 0 rows)")
    if k > n_bands:
        raise EndmemberError(
            f"{k} endmembers but only {n_bands} bands: least squares is underdetermined; "
            "use fewer endmembers (or sparse unmixing)"
        )
    if Y.dtype not in (np.float32, np.float64):  # ints, float16, ... are computed in float64
        Y = Y.astype(np.float64)
    M = M.astype(np.float64, copy=False)
    if not np.isfinite(M).all():
        raise EndmemberError("endmember matrix M contains NaN or infinite values")
    return Y, M


def _nonfinite_error() -> InvalidSceneError:
    return InvalidSceneError(
        "pixel matrix Y contains NaN or infinite values; remove nodata pixels before unmixing"
    )


def _projected_chunks(
    Y: FloatArray, M: NDArray[np.float64]
) -> Iterator[tuple[int, int, NDArray[np.float64]]]:
    """Yield ``(s, e, bT)`` per pixel chunk, ``bT = [M Y[s:e]ᵀ; 1ᵀ]`` float64 ``(k + 1, e - s)``.

    The matmul runs in the precision of Y (float32 stays float32: one BLAS pass over the
    pixels, like ``Y @ pinv(M)``). The constant last row lets every affine k-space map
    ``a = H b + h`` be one product ``[H | h] @ [b; 1]``. The buffer is reused: consume a chunk
    before asking for the next one. Raises InvalidSceneError if Y has NaN/inf (they always
    propagate into b).
    """
    wd = _work_dtype(Y.dtype)
    Mw = np.ascontiguousarray(M, dtype=wd)
    N, k = Y.shape[0], M.shape[0]
    buf = np.empty((k + 1, max(1, min(N, _MATMUL_CHUNK))))
    buf[k] = 1.0
    for s in range(0, N, _MATMUL_CHUNK):
        e = min(s + _MATMUL_CHUNK, N)
        bT = buf[:, : e - s]
        if wd == np.float64:
            np.matmul(Mw, Y[s:e].T, out=bT[:k])
        else:
            bT[:k] = Mw @ Y[s:e].T
        if not np.isfinite(np.sum(bT[:k])) and not np.isfinite(bT[:k]).all():
            raise _nonfinite_error()
        yield s, e, bT


def _gram(M: NDArray[np.float64]) -> NDArray[np.float64]:
    G = M @ M.T
    return 0.5 * (G + G.T)


def _out_dtype(Y: FloatArray) -> np.dtype:
    return np.dtype(np.float32) if Y.dtype == np.float32 else np.dtype(np.float64)


# --------------------------------------------------------------------------------------------
# k-space helpers, (k, n) layout: reductions over k run as k vector operations over n pixels
# --------------------------------------------------------------------------------------------


def _kmul(
    H: NDArray[np.float64], x: NDArray[np.float64], out: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """``H @ x`` for a small ``(k, m)`` H and a wide ``(m, n)`` x.

    numpy's own sum-of-products loops beat BLAS by ~5x for k <= 16 here (BLAS is tuned for
    large inner dimensions and pays threading overhead).
    """
    if H.shape[1] <= 17:
        return np.einsum("ij,jn->in", H, x, out=out)
    return np.matmul(H, x, out=out)


def _argmin0(v: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """``(argmin, min)`` over axis 0 of ``(k, n)``; first index wins ties.

    Computed as ``k - max((v == min) * [k, k-1, ..., 1])``: reductions over axis 0 of a
    C-ordered (k, n) array are fast, ``np.argmin(axis=0)`` and masked assignments are not.
    """
    k = v.shape[0]
    best = v.min(axis=0)
    dt = np.uint8 if k < 256 else np.intp  # uint8 arithmetic is the fastest here
    weights = np.arange(k, 0, -1, dtype=dt)[:, None]
    hit = (v == best).view(np.uint8).astype(dt, copy=False)
    return k - (hit * weights).max(axis=0).astype(np.intp), best


# --------------------------------------------------------------------------------------------
# closed forms: UCLS and SCLS
# --------------------------------------------------------------------------------------------


def _band_affine(Y: FloatArray, P: NDArray[np.float64], h: NDArray[np.float64]) -> FloatArray:
    """``A = Y P + h`` ``(N, k)`` with ``P (L, k)``, in pixel chunks (one BLAS pass)."""
    wd = _work_dtype(Y.dtype)
    Pw = np.ascontiguousarray(P, dtype=wd)
    hw = h.astype(wd)
    A = np.empty((Y.shape[0], P.shape[1]), dtype=_out_dtype(Y))
    for s in range(0, Y.shape[0], _MATMUL_CHUNK):
        e = min(s + _MATMUL_CHUNK, Y.shape[0])
        a = Y[s:e] @ Pw
        a += hw
        if not np.isfinite(np.sum(a)) and not np.isfinite(a).all():
            raise _nonfinite_error()
        A[s:e] = a
    return A


def ucls(Y: ArrayLike, M: ArrayLike) -> FloatArray:
    """Unconstrained least squares (B1) ``A (N, k)`` = ``Y pinv(M)`` (= ``lstsq`` per pixel).

    ``pinv`` by SVD of M, so the conditioning of M is not squared as in the normal equations.
    """
    Y, M = _check_inputs(Y, M)
    P = np.linalg.pinv(M)  # (L, k)
    return _band_affine(Y, P, np.zeros(M.shape[0]))


def scls(Y: ArrayLike, M: ArrayLike) -> FloatArray:
    """Sum-to-one constrained least squares ``A (N, k)``, closed form of baselines.md B2.

    ``a = a_u - G⁻¹1 (1ᵀa_u - 1) / (1ᵀG⁻¹1)`` with ``a_u = y pinv(M)`` the UCLS solution and
    ``G⁻¹ = pinv(M)ᵀ pinv(M)``; folded into one affine map ``a = y P (I - 1wᵀ) + w``.
    """
    Y, M = _check_inputs(Y, M)
    P = np.linalg.pinv(M)  # (L, k)
    u = (P.T @ P).sum(axis=1)  # G⁻¹ 1
    if not u.sum() > 0:
        raise EndmemberError("sum-to-one least squares is undefined for these endmembers")
    w = u / u.sum()
    k = M.shape[0]
    return _band_affine(Y, P @ (np.eye(k) - np.outer(np.ones(k), w)), w)


# --------------------------------------------------------------------------------------------
# batched active-set solver for NNLS / FCLS in k-space
# --------------------------------------------------------------------------------------------


class _FreeSetMaps:
    """Cache of affine maps ``a = [H_F | h_F] @ [b; 1]`` solving the equality-constrained QP

    ``min aᵀGa - 2aᵀb  s.t.  a_i = 0 (i not in F)  [and 1ᵀa = 1]`` for a free set ``F``.
    The map is ``(k, k + 1)`` and zero on the rows of fixed coefficients, so they come out as
    exact zeros. Computed from the bordered KKT matrix with a pseudo-inverse (robust to
    near-collinear endmembers: minimum-norm solution when the free block is singular).
    """

    def __init__(self, G: NDArray[np.float64], sum_to_one: bool) -> None:
        self.G = G
        self.k = G.shape[0]
        self.sum_to_one = sum_to_one
        #: ``||G||₂`` (scale of the multipliers)
        self.scale = max(float(np.linalg.norm(G, 2)), float(np.finfo(float).tiny))
        self.cache: dict[object, NDArray[np.float64]] = {}

    def get(self, free: NDArray[np.bool_], key: object = None) -> NDArray[np.float64]:
        """The map of free set ``free (k,)`` (``key``: its cache key, default its bytes)."""
        if key is None:
            key = np.asarray(free, dtype=bool).tobytes()
        hit = self.cache.get(key)
        if hit is None:
            hit = self.cache[key] = self._build(np.flatnonzero(free))
        return hit

    def _build(self, f: NDArray[np.intp]) -> NDArray[np.float64]:
        """The ``(k, k + 1)`` map of the free coefficients ``f``."""
        k = self.k
        Haug = np.zeros((k, k + 1))
        if f.size:
            Gff = self.G[np.ix_(f, f)]
            if self.sum_to_one:
                m = f.size
                K = np.ones((m + 1, m + 1))
                K[:m, :m] = Gff
                K[m, m] = 0.0
                Ki = np.linalg.pinv(K)
                Ki = 0.5 * (Ki + Ki.T)
                Haug[np.ix_(f, f)] = Ki[:m, :m]
                Haug[f, k] = Ki[:m, m]
            else:
                Haug[np.ix_(f, f)] = np.linalg.pinv(Gff, hermitian=True)
        return Haug


#: free-set maps of recently used Gram matrices, so block-by-block calls over one scene (same
#: endmembers every call) factor each free set once instead of once per call
_MAPS_CACHE: OrderedDict[tuple[bytes, bool], _FreeSetMaps] = OrderedDict()
_MAPS_CACHE_SIZE = 8
_MAPS_LOCK = threading.Lock()


def _free_set_maps(G: NDArray[np.float64], sum_to_one: bool) -> _FreeSetMaps:
    """The shared :class:`_FreeSetMaps` of ``G`` (created on first use; LRU of 8)."""
    key = (np.ascontiguousarray(G).tobytes(), sum_to_one)
    with _MAPS_LOCK:
        maps = _MAPS_CACHE.get(key)
        if maps is None:
            maps = _MAPS_CACHE[key] = _FreeSetMaps(G.copy(), sum_to_one)
        _MAPS_CACHE.move_to_end(key)
        while len(_MAPS_CACHE) > _MAPS_CACHE_SIZE:
            _MAPS_CACHE.popitem(last=False)
    return maps


def _codes(free: NDArray[np.bool_]) -> NDArray[np.generic]:
    """One sortable code per column of a boolean ``(k, n)`` free-set matrix."""
    k = free.shape[0]
    if k <= 63:
        dt = np.uint8 if k <= 8 else np.uint16 if k <= 16 else np.uint64
        code = free[0].astype(dt)
        for i in range(1, k):
            code |= free[i].astype(dt) << dt(i)
        return code
    return np.unique(free.T, axis=0, return_inverse=True)[1].ravel()


def _solve_free(
    b: NDArray[np.float64], free: NDArray[np.bool_], maps: _FreeSetMaps
) -> NDArray[np.float64]:
    """Equality-constrained solutions ``(k, n)`` of every pixel (column) on its free set.

    ``b`` is augmented ``(k + 1, n)``. Pixels are sorted by free set (radix sort of small
    integer codes) and each group is solved with one small matrix product.
    """
    k, n = free.shape
    out = np.empty((k, n))
    if n == 0:
        return out
    codes = _codes(free)
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    cuts = np.flatnonzero(sc[1:] != sc[:-1]) + 1
    if cuts.size == 0:  # one free set for all pixels: no gather/scatter needed
        return _kmul(maps.get(free[:, 0], sc[0].item()), b, out=out)
    bs = np.take(b, order, axis=1)
    res = np.empty((k, n))
    bounds = np.concatenate(([0], cuts, [n])).tolist()
    cache = maps.cache
    for s, e in itertools.pairwise(bounds):
        code = sc[s].item()
        H = cache.get(code)
        if H is None:
            H = maps.get(free[:, order[s]], code)
        if e - s < 32:  # tiny group: BLAS call overhead is lower than einsum's
            np.matmul(H, bs[:, s:e], out=res[:, s:e])
        else:
            _kmul(H, bs[:, s:e], out=res[:, s:e])
    out[:, order] = res
    return out


def _multipliers(
    x: NDArray[np.float64],
    b: NDArray[np.float64],
    free: NDArray[np.bool_],
    G: NDArray[np.float64],
    sum_to_one: bool,
) -> NDArray[np.float64]:
    """Bound multipliers λ ``(k, n)`` (huge on free coefficients); KKT holds iff λ >= 0.

    ``x`` must be the solution on its free set. λ = Gx - b, plus the sum-to-one multiplier
    ``ν = -xᵀ(Gx - b)`` (exact there: ``Gx - b`` is constant on the support and ``1ᵀx = 1``).
    """
    g = _kmul(G, x)
    g -= b[:-1]
    if sum_to_one:
        g -= np.einsum("in,in->n", x, g)
    g += free * _HUGE  # arithmetic masking: much faster than boolean-mask assignment
    return g


def _step_to_free_solution(
    x: NDArray[np.float64],
    b: NDArray[np.float64],
    free: NDArray[np.bool_],
    maps: _FreeSetMaps,
) -> None:
    """Primal active-set inner loop, in place: move each pixel from its feasible ``x`` towards
    the solution on its free set; a coefficient that hits zero first is fixed (removed from the
    free set) and the step is retried, until every pixel reaches its free-set solution."""
    k, n = free.shape
    ia = np.arange(n)
    for _ in range(k + 1):
        xa, fa = x[:, ia], free[:, ia]
        p = _solve_free(b[:, ia], fa, maps)
        p -= xa
        cand = fa & (p < -1e-14)
        ratio = np.full(p.shape, np.inf)
        np.divide(xa, -p, out=ratio, where=cand)
        jb, rb = _argmin0(ratio)
        xa += np.minimum(rb, 1.0) * p
        blocked = np.flatnonzero(rb < 1.0)
        xa[jb[blocked], blocked] = 0.0
        fa[jb[blocked], blocked] = False
        np.maximum(xa, 0.0, out=xa)
        xa *= fa
        x[:, ia], free[:, ia] = xa, fa
        ia = ia[blocked]
        if ia.size == 0:
            return


def _active_set(
    b: NDArray[np.float64],
    x: NDArray[np.float64],
    G: NDArray[np.float64],
    maps: _FreeSetMaps,
    sum_to_one: bool,
    max_iter: int,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Solve pixels whose full-free-set solution ``x (k, n)`` has negative entries.

    Returns ``(x (k, n), converged (n,))``.
    """
    k, n = x.shape
    tol = _DUAL_TOL * maps.scale

    # --- feasibility phase (Heinz & Chang): fix negatives at 0 until the solution is >= 0 -----
    free = x >= 0
    x = _solve_free(b, free, maps)
    for _ in range(k):
        neg = x < 0  # fixed coefficients are exact zeros
        ib = np.flatnonzero(neg.any(axis=0))
        if ib.size == 0:
            break
        fb = free[:, ib] & ~neg[:, ib]
        if sum_to_one:  # keep one free coefficient (cannot trigger in exact arithmetic)
            empty = np.flatnonzero(~fb.any(axis=0))
            if empty.size:
                fb[np.argmax(x[:, ib[empty]], axis=0), empty] = True
        free[:, ib] = fb
        x[:, ib] = _solve_free(b[:, ib], fb, maps)
    else:  # rounding only: make the iterate feasible
        np.maximum(x, 0.0, out=x)
        if sum_to_one:
            x /= x.sum(axis=0)

    # --- optimality phase: primal active set (release the most negative multiplier) -----------
    out = x  # columns are final once converged; later iterations work on compacted copies
    converged = np.zeros(n, dtype=bool)
    cols = np.arange(n)
    for it in range(max_iter):
        lam = _multipliers(x, b, free, G, sum_to_one)
        done = lam.min(axis=0) >= -tol
        if done.any():
            if it > 0:
                out[:, cols[done]] = x[:, done]
            converged[cols[done]] = True
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                return out, converged
            cols, x, b, free, lam = cols[keep], x[:, keep], b[:, keep], free[:, keep], lam[:, keep]
        j, _ = _argmin0(lam)
        before = free.copy()
        free[j, np.arange(x.shape[1])] = True
        _step_to_free_solution(x, b, free, maps)
        # a release undone at once by a zero-length step (rounding near a degenerate vertex)
        # would repeat forever: hand such pixels to the caller as not converged
        stalled = (free == before).all(axis=0)
        if stalled.any():
            out[:, cols[stalled]] = x[:, stalled]
            keep = np.flatnonzero(~stalled)
            if keep.size == 0:
                return out, converged
            cols, x, b, free = cols[keep], x[:, keep], b[:, keep], free[:, keep]
    out[:, cols] = x
    return out, converged


def _enumerate_supports(
    b: NDArray[np.float64], G: NDArray[np.float64], maps: _FreeSetMaps, sum_to_one: bool
) -> NDArray[np.float64]:
    """Exact fallback ``(k, n)``: the best feasible free-set solution over all supports."""
    k, n = G.shape[0], b.shape[1]
    best = np.zeros((k, n))
    best_obj = np.full(n, np.inf)
    for r in range(1 if sum_to_one else 0, k + 1):
        for sup in itertools.combinations(range(k), r):
            free = np.zeros(k, dtype=bool)
            free[list(sup)] = True
            x = maps.get(free) @ b
            ok = (x >= -1e-12 * np.maximum(1.0, np.abs(x).max(axis=0))).all(axis=0)
            x = np.maximum(x, 0.0)
            obj = np.einsum("in,in->n", x, G @ x - 2.0 * b[:-1])
            better = ok & (obj < best_obj)
            best[:, better] = x[:, better]
            best_obj[better] = obj[better]
    if sum_to_one:
        best /= best.sum(axis=0)
    return best


def _solve_batch(
    b: NDArray[np.float64],
    G: NDArray[np.float64],
    maps: _FreeSetMaps,
    sum_to_one: bool,
    max_iter: int,
    out: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Solve NNLS/FCLS for one batch given augmented ``[bᵀ; 1ᵀ] (k + 1, n)``; ``Aᵀ (k, n)``.

    ``out`` is an optional ``(k, n)`` buffer for the result (reused across batches).
    """
    k = G.shape[0]
    x = _kmul(maps.get(np.ones(k, dtype=bool)), b, out=out)
    bad = np.flatnonzero(x.min(axis=0) < 0)
    if bad.size:
        bb = b[:, bad]
        xr, conv = _active_set(bb, x[:, bad], G, maps, sum_to_one, max_iter)
        if not conv.all():
            nc = np.flatnonzero(~conv)
            if k <= _MAX_ENUM_K:
                xr[:, nc] = _enumerate_supports(bb[:, nc], G, maps, sum_to_one)
            else:
                warnings.warn(
                    f"active-set solver stopped before convergence for {nc.size} pixels "
                    f"(max_iter={max_iter}); their abundances are feasible but may not be optimal",
                    RuntimeWarning,
                    stacklevel=4,
                )
        x[:, bad] = xr
    return x


def _constrained(
    Y: ArrayLike, M: ArrayLike, sum_to_one: bool, max_iter: int, threads: int
) -> FloatArray:
    Y, M = _check_inputs(Y, M)
    if max_iter < 0:
        raise ConfigError(f"max_iter must be >= 0, got {max_iter}")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    G = _gram(M)
    k, N = G.shape[0], Y.shape[0]
    maps = _free_set_maps(G, sum_to_one)
    A = np.empty((N, k), dtype=_out_dtype(Y))
    local = threading.local()

    def solve(bT: NDArray[np.float64], s0: int, s: int) -> None:
        e = min(s + BATCH_PIXELS, s0 + bT.shape[1])
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty((k, BATCH_PIXELS))
        bb = bT[:, s - s0 : e - s0]
        A[s:e] = _solve_batch(bb, G, maps, sum_to_one, max_iter, buf[:, : e - s]).T

    pool = ThreadPoolExecutor(int(threads)) if threads > 1 else None
    try:
        for s0, e0, bT in _projected_chunks(Y, M):
            starts = range(s0, e0, BATCH_PIXELS)
            if pool is None:
                for s in starts:
                    solve(bT, s0, s)
            else:
                list(pool.map(lambda s, bT=bT, s0=s0: solve(bT, s0, s), starts))
    finally:
        if pool is not None:
            pool.shutdown()
    return A


def fcls(Y: ArrayLike, M: ArrayLike, *, max_iter: int = 200, threads: int = 1) -> FloatArray:
    """Fully constrained least squares (B4): ``min ||y - Mᵀa||²`` s.t. ``a >= 0, 1ᵀa = 1``.

    ``Y (N, L)``, ``M (k, L)`` → ``A (N, k)`` (float32 for float32 ``Y``, else float64). Exact
    (KKT residual ~1e-10 in k-space), vectorised over pixels. ``threads > 1`` splits the internal
    batches over worker threads (measured no faster on 2 cores: the k-space work is bound by
    memory traffic and the GIL; the band-space matmul already uses BLAS threads).
    """
    return _constrained(Y, M, True, max_iter, threads)


def nnls(Y: ArrayLike, M: ArrayLike, *, max_iter: int = 200, threads: int = 1) -> FloatArray:
    """Non-negative least squares (B3): ``min ||y - Mᵀa||²`` s.t. ``a >= 0``; ``A (N, k)``."""
    return _constrained(Y, M, False, max_iter, threads)


class _SharedFreeSetMaps(_FreeSetMaps):
    """Free-set maps of the Gram matrix of a subset ``rows`` of an endmember pool (NNLS only),
    whose free-block inverses are shared, keyed by pool rows, with every other subset of the
    pool: a search over subsets inverts each block of pool rows once."""

    def __init__(self, G: NDArray[np.float64], rows: NDArray[np.intp],
                 shared: dict[bytes, NDArray[np.float64]]) -> None:
        super().__init__(G, False)
        self.rows, self.shared = rows, shared

    def _build(self, f: NDArray[np.intp]) -> NDArray[np.float64]:
        f = f[np.argsort(self.rows[f])]  # pool order: the same block in every subset
        block = self.rows[f].tobytes()
        inv = self.shared.get(block)
        if inv is None and f.size:
            Gff = self.G[np.ix_(f, f)]
            try:  # 10x cheaper than pinv; a singular block falls back to the min-norm map
                inv = np.linalg.inv(Gff)
            except np.linalg.LinAlgError:
                inv = np.linalg.pinv(Gff, hermitian=True)
            self.shared[block] = inv
        Haug = np.zeros((self.k, self.k + 1))
        if inv is not None:
            Haug[np.ix_(f, f)] = inv
        return Haug


class PoolNNLS:
    """:func:`nnls` of pixels ``Y (N, L)`` against many subsets of one endmember pool
    ``P (p, L)``, from the pool's products ``B = P Yᵀ (p, N)`` and ``G = P Pᵀ (p, p)``
    (float64, computed once): a subset then costs k-space work only, and the free-block
    inverses are shared between subsets. Same solver as :func:`nnls`; the blocks are inverted
    directly (pseudo-inverse only when singular), so answers agree to rounding.
    """

    #: shared block inverses kept before the cache is cleared (each at most k² floats)
    MAX_SHARED = 200_000

    def __init__(self, Y: ArrayLike, P: ArrayLike) -> None:
        Y, P = _check_inputs(Y, P)
        N = Y.shape[0]
        self.B = np.empty((P.shape[0], N))
        self.yy = 0.0  # sum of squares of every pixel value
        for s in range(0, N, BATCH_PIXELS):  # float64 products, no float64 copy of Y
            Yc = np.asarray(Y[s : s + BATCH_PIXELS], dtype=np.float64)
            if not np.isfinite(Yc).all():
                raise _nonfinite_error()
            self.B[:, s : s + Yc.shape[0]] = P @ Yc.T
            self.yy += float(np.sum(Yc * Yc))
        self.G = _gram(P)
        self.size = Y.shape[0] * Y.shape[1]
        self._shared: dict[bytes, NDArray[np.float64]] = {}

    def __call__(self, rows: ArrayLike, *, max_iter: int = 200) -> NDArray[np.float64]:
        """NNLS abundances ``A (N, k)`` of the pixels in the pool rows ``rows (k,)``."""
        rows = np.asarray(rows, dtype=np.intp)
        if rows.ndim != 1 or rows.size == 0 or len(set(rows.tolist())) != rows.size:
            raise EndmemberError(f"rows must be distinct pool indices; got {rows.tolist()}")
        if len(self._shared) > self.MAX_SHARED:
            self._shared.clear()
        BT, G = self.B[rows], self.G[np.ix_(rows, rows)]
        k, N = BT.shape
        maps = _SharedFreeSetMaps(G, rows, self._shared)
        A = np.empty((N, k))
        b = np.empty((k + 1, max(1, min(N, BATCH_PIXELS))))
        b[k] = 1.0
        for s in range(0, N, BATCH_PIXELS):
            e = min(s + BATCH_PIXELS, N)
            b[:k, : e - s] = BT[:, s:e]
            A[s:e] = _solve_batch(b[:, : e - s], G, maps, False, max_iter).T
        return A

    def residual_sq(self, rows: ArrayLike, A: NDArray[np.float64]) -> float:
        """``sum ||y - Mᵀa||²`` over the pixels for abundances ``A (N, k)`` of ``rows``."""
        rows = np.asarray(rows, dtype=np.intp)
        BT, G = self.B[rows], self.G[np.ix_(rows, rows)]
        fit = 2.0 * float(np.einsum("nk,kn->", A, BT)) - float(
            np.einsum("nk,kl,nl->", A, G, A, optimize=True))
        return max(self.yy - fit, 0.0)


def scaled_fcls(
    Y: ArrayLike, M: ArrayLike, *, max_iter: int = 200, threads: int = 1
) -> tuple[FloatArray, FloatArray]:
    """FCLS with a per-pixel brightness: ``min ||y - s Mᵀf||²`` s.t. ``f >= 0, 1ᵀf = 1, s >= 0``.

    Returns ``(A (N, k), s (N,))``: fractions ``A`` that sum to one and the brightness ``s``
    (unitless; 1 = the endmembers' own brightness). This is the MESMA-style answer to library
    spectra whose overall level differs from the scene's (illumination, topography, grain
    size). Substituting ``a = s f`` turns the problem into NNLS exactly (``s = 1ᵀa``,
    ``f = a / s``), so it reuses the exact active-set solver of :func:`nnls` and costs the same.
    Unlike a shade (zero-spectrum) endmember, which only allows ``s <= 1``, the scale is
    unbounded both ways. Pixels whose NNLS solution is zero (no positive projection on any
    endmember, e.g. all-zero pixels) get ``s = 0`` and the plain :func:`fcls` fractions, so
    every finite pixel has finite abundances.
    """
    Y, M = _check_inputs(Y, M)
    a = _constrained(Y, M, False, max_iter, threads)
    s = a.sum(axis=1)
    zero = ~(s > 0)
    if zero.any():
        s[zero] = 0.0
        a[zero] = _constrained(Y[zero], M, True, max_iter, threads)
        a[~zero] /= s[~zero, None]
    else:
        a /= s[:, None]
    return a, s


# --------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------


def _kkt(
    Y: ArrayLike, M: ArrayLike, A: ArrayLike, sum_to_one: bool, per_pixel: bool
) -> float | NDArray[np.float64]:
    Y, M = _check_inputs(Y, M)
    A = np.asarray(A, dtype=np.float64)
    if A.shape != (Y.shape[0], M.shape[0]):
        raise EndmemberError(f"A must have shape {(Y.shape[0], M.shape[0])}, got {A.shape}")
    G = _gram(M)
    s = max(float(np.linalg.norm(G, 2)), np.finfo(float).tiny)
    res = np.empty(Y.shape[0])
    for i in range(0, Y.shape[0], _MATMUL_CHUNK):
        e = min(i + _MATMUL_CHUNK, Y.shape[0])
        a = A[i:e]
        b = Y[i:e].astype(np.float64) @ M.T
        g = (a @ G - b) / s  # scaled half-gradient, in abundance units
        if sum_to_one:
            g -= np.einsum("ij,ij->i", a, g)[:, None]  # λ = g + ν1 with ν = -aᵀg
        r = np.maximum(-a, 0.0).max(axis=1)  # primal: a >= 0
        r = np.maximum(r, np.maximum(-g, 0.0).max(axis=1))  # dual: λ >= 0
        r = np.maximum(r, np.abs(a * g).max(axis=1))  # complementarity: a_i λ_i = 0
        if sum_to_one:
            r = np.maximum(r, np.abs(a.sum(axis=1) - 1.0))  # primal: 1ᵀa = 1
        res[i:e] = r
    return res if per_pixel else float(res.max(initial=0.0))


def fcls_kkt_residual(
    Y: ArrayLike, M: ArrayLike, A: ArrayLike, *, per_pixel: bool = False
) -> float | NDArray[np.float64]:
    """Max KKT violation of FCLS abundances ``A (N, k)`` (float64 arithmetic, unitless).

    Per pixel: max of ``max(-a_i, 0)``, ``|1ᵀa - 1|``, ``max(-λ_i, 0)`` and ``|a_i λ_i|`` where
    ``λ = (Ga - b)/||G||₂ - (aᵀ(Ga - b)/||G||₂) 1`` are the bound multipliers (scaled to
    abundance units by the spectral norm of ``G = M Mᵀ``). Returns the maximum over pixels, or
    the ``(N,)`` array with ``per_pixel=True``.
    """
    return _kkt(Y, M, A, True, per_pixel)


def nnls_kkt_residual(
    Y: ArrayLike, M: ArrayLike, A: ArrayLike, *, per_pixel: bool = False
) -> float | NDArray[np.float64]:
    """Max KKT violation of NNLS abundances (as :func:`fcls_kkt_residual`, no sum-to-one)."""
    return _kkt(Y, M, A, False, per_pixel)


def reconstruction_rmse(Y: ArrayLike, M: ArrayLike, A: ArrayLike) -> NDArray[np.float64]:
    """Per-pixel reconstruction RMSE ``(N,)``: ``sqrt(mean_bands((Y - A M)²))`` (units of Y)."""
    Y, M = _check_inputs(Y, M)
    A = np.asarray(A, dtype=np.float64)
    if A.shape != (Y.shape[0], M.shape[0]):
        raise EndmemberError(f"A must have shape {(Y.shape[0], M.shape[0])}, got {A.shape}")
    out = np.empty(Y.shape[0])
    for i in range(0, Y.shape[0], _MATMUL_CHUNK):
        e = min(i + _MATMUL_CHUNK, Y.shape[0])
        r = Y[i:e] - A[i:e] @ M
        out[i:e] = np.sqrt(np.mean(r * r, axis=1))
    return out


Estimator = Callable[[ArrayLike, ArrayLike], FloatArray]
