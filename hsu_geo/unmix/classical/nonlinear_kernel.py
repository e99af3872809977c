"""Compiled per-pixel projected Gauss-Newton for PPNMM and GBM (numba).

The same algorithm as the vectorised numpy engine of
:func:`hsu_geo.unmix.classical.nonlinear._gauss_newton` (same start, same free-variable rule,
same bordered KKT step with Levenberg-Marquardt damping, same backtracking, convergence test
and damping update), run pixel by pixel in compiled code: the numpy engine spends most of its
time allocating ``(n, m, m)`` temporaries and in LAPACK's per-matrix overhead for the tiny
bordered systems, which here are restricted to the free variables and solved in place: Cholesky
and the Schur complement of the sum-to-one border, pivoted Gaussian elimination when the block
is not positive definite, ``pinv`` when singular (``m + 1 <= 22`` unknowns for k <= 6). Results
equal the numpy engine's to rounding (tested). GBM's iterations use the Gram form of the same
least squares (:func:`_gbm_normal`: the normal equations from ``[E; W] [E; W]ᵀ`` and the sparse
Jacobian of the coefficients, not from ``(m, r)`` Jacobian rows), 1.2-1.3x faster at k = 4-6,
with ``H = D G Dᵀ`` formed by row operations on contiguous rows (another 1.2x at k = 5, 1.3x at
k = 6, measured on the fit of 16 k pixels; same iterates to rounding), and take GBM's optional
Gaussian prior on γ (``gamma_prior``, see
:func:`hsu_geo.unmix.classical.nonlinear.fit_nonlinear`). Compiled on first use (about 10 s)
and cached on disk by numba (``cache=True``).

Inputs are in the reduced space of :class:`hsu_geo.unmix.classical.nonlinear._Subspace`:
projected pixels ``z (n, r)``, endmembers ``E (k, r)``, products ``T (k, k, r)`` (PPNMM: all
pairs ``i <= j`` used; GBM: ``W (P, r)`` the pairs ``i < j``). The kernels release the GIL, so
callers run blocks of pixels on threads (dask's chunk threads, or
:func:`fit_block` called from a thread pool).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["fit_block"]

_EPS = 1e-12


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _model(gbm: bool, x, k, E, T, W, pi, pj, f, J, aT, jac: bool) -> None:  # pragma: no cover
    """``f (r,)`` at parameters ``x (m,)`` and, with ``jac`` (PPNMM only: GBM's iterations use
    :func:`_gbm_normal`), Jacobian rows ``J (m, r)``."""
    r = E.shape[1]
    for ri in range(r):
        s = 0.0
        for i in range(k):
            s += x[i] * E[i, ri]
        f[ri] = s
    if not gbm:
        b = x[k]
        for i in range(k):  # aT_i = Σ_j a_j T_ij
            for ri in range(r):
                aT[i, ri] = 0.0
            for j in range(k):
                aj = x[j]
                if aj != 0.0:
                    for ri in range(r):
                        aT[i, ri] += aj * T[i, j, ri]
        for ri in range(r):
            q = 0.0
            for i in range(k):
                q += x[i] * aT[i, ri]
            f[ri] += b * q
            if jac:
                J[k, ri] = q
        if jac:
            for i in range(k):
                for ri in range(r):
                    J[i, ri] = E[i, ri] + 2.0 * b * aT[i, ri]
        return
    for p in range(pi.shape[0]):
        c = x[k + p] * x[pi[p]] * x[pj[p]]
        if c != 0.0:
            for ri in range(r):
                f[ri] += c * W[p, ri]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _objective(gbm, x, k, E, T, W, pi, pj, z, f, J, aT) -> float:  # pragma: no cover
    _model(gbm, x, k, E, T, W, pi, pj, f, J, aT, False)
    s = 0.0
    for ri in range(z.shape[0]):
        d = z[ri] - f[ri]
        s += d * d
    return s


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _normal(gbm, x, k, E, T, W, pi, pj, z, f, J, aT, R, g, H) -> float:  # pragma: no cover
    """PPNMM objective; fills ``g = J R (m,)`` and ``H = J Jᵀ (m, m)``."""
    _model(gbm, x, k, E, T, W, pi, pj, f, J, aT, True)
    r, m = z.shape[0], J.shape[0]
    s = 0.0
    for ri in range(r):
        R[ri] = z[ri] - f[ri]
        s += R[ri] * R[ri]
    for a in range(m):
        t = 0.0
        for ri in range(r):
            t += J[a, ri] * R[ri]
        g[a] = t
        for b in range(a + 1):
            t = 0.0
            for ri in range(r):
                t += J[a, ri] * J[b, ri]
            H[a, b] = t
            H[b, a] = t
    return s


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _gbm_coefficients(x, k, pi, pj, c) -> None:  # pragma: no cover
    """GBM model coefficients on the basis ``[E; W]``: ``c = [a; γ_p a_i a_j]`` (m,)."""
    for i in range(k):
        c[i] = x[i]
    for p in range(pi.shape[0]):
        c[k + p] = x[k + p] * x[pi[p]] * x[pj[p]]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _gbm_objective(x, k, pi, pj, G, chat, c, lam) -> float:  # pragma: no cover
    """``||(ĉ - c)ᵀB||² + λ Σ_p (γ_p - ½)²``: the GBM objective less the pixel's constant
    misfit outside the model's span, from the Gram matrix ``G = B Bᵀ (m, m)`` of the basis
    ``B = [E; W]`` and the pixel's unconstrained least-squares coefficients ``ĉ (m,)``
    (``z = ĉᵀB +`` a part orthogonal to every ``cᵀB``); ``m²/2`` products instead of ``m r``,
    and no cancellation against ``||z||²``. ``λ``: the γ prior's weight (0 = least squares)."""
    _gbm_coefficients(x, k, pi, pj, c)
    m = c.shape[0]
    for a in range(m):
        c[a] = chat[a] - c[a]
    s = 0.0
    for a in range(m):
        t = 0.5 * G[a, a] * c[a]
        for b in range(a):
            t += G[a, b] * c[b]
        s += 2.0 * c[a] * t
    if lam > 0.0:
        for p in range(pi.shape[0]):
            s += lam * (x[k + p] - 0.5) ** 2
    return s


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _gbm_normal(x, k, pi, pj, G, chat, c, e, S, g, H, lam) -> float:  # pragma: no cover
    """The objective of :func:`_gbm_objective`, ``g = J R`` and ``H = J Jᵀ`` in coefficient
    space: with ``D = ∂c/∂x`` (sparse: ``∂c_i/∂a_i = 1``, ``∂c_p/∂a_i = γ_p a_j``,
    ``∂c_p/∂γ_p = a_i a_j``) the Jacobian is ``J = D B``, so ``g = D G (ĉ - c)`` and
    ``H = D G Dᵀ``: about ``6 P m`` products instead of the ``m² r / 2`` of forming ``J Jᵀ``
    (``P`` pairs, ``m = k + P``, ``r <= m``). The γ prior adds ``-λ (γ_p - ½)`` to ``g`` and
    ``λ`` to ``H``'s γ diagonal."""
    _gbm_coefficients(x, k, pi, pj, c)
    m = c.shape[0]
    P = pi.shape[0]
    for a in range(m):
        c[a] = chat[a] - c[a]
    s = 0.0
    for a in range(m):
        t = 0.0
        for b in range(m):
            t += G[a, b] * c[b]
        e[a] = t
        s += c[a] * t
    for i in range(k):
        g[i] = e[i]
        for b in range(m):
            S[i, b] = G[i, b]
    for p in range(P):
        i, j, q = pi[p], pj[p], k + p
        ci, cj, cp = x[q] * x[j], x[q] * x[i], x[i] * x[j]
        g[i] += ci * e[q]
        g[j] += cj * e[q]
        g[q] = cp * e[q]
        for b in range(m):
            gq = G[q, b]
            S[i, b] += ci * gq
            S[j, b] += cj * gq
            S[q, b] = cp * gq
    # H = D Sᵀ (H is symmetric) by rows of Sᵀ, held in H's storage: row operations on
    # contiguous rows, as S = D G above (the column-wise H = S Dᵀ scattered its writes)
    for u in range(m):
        for b in range(m):
            H[b, u] = S[u, b]
    for p in range(P):  # H[i] += γ a_j Sᵀ[q], H[j] += γ a_i Sᵀ[q] (before row q is scaled)
        i, j, q = pi[p], pj[p], k + p
        ci, cj = x[q] * x[j], x[q] * x[i]
        for b in range(m):
            uq = H[q, b]
            H[i, b] += ci * uq
            H[j, b] += cj * uq
    for p in range(P):  # H[q] = a_i a_j Sᵀ[q]
        q = k + p
        cp = x[pi[p]] * x[pj[p]]
        for b in range(m):
            H[q, b] *= cp
    if lam > 0.0:
        for p in range(P):
            q = k + p
            s += lam * (x[q] - 0.5) ** 2
            g[q] -= lam * (x[q] - 0.5)
            H[q, q] += lam
    return s


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _bordered(H, g, free, k, mu, ridge, K, rhs, idx, w, d) -> int:  # pragma: no cover
    """The bordered KKT system of :func:`_kkt_step` restricted to the free variables
    ``idx[:nf]``: ``K (nf+1, nf+1)``, ``rhs (nf+1,)``; returns ``nf``. (The numpy engine keeps
    the fixed variables as identity rows with a zero right-hand side: the same solution.)
    A free GBM ``γ_p`` whose weight ``w = a_i a_j`` is exactly 0 has a zero row and column in
    ``H`` besides its diagonal (``H = D G Dᵀ`` with ``D``'s row ``a_i a_j`` zero) and no
    border entry, so its step is its own 1 x 1 system: written to ``d`` and left out of ``K``
    (a smaller Cholesky wherever an abundance is 0; the same solution)."""
    m = g.shape[0]
    mean_d = 0.0
    for a in range(m):
        mean_d += H[a, a]
    scale = max(mean_d / m, 2.2250738585072014e-308)
    nf = 0
    for a in range(m):
        if free[a]:
            if a >= k and w[a] == 0.0:
                d[a] = g[a] / ((1.0 + mu) * H[a, a] + ridge * scale)
            else:
                idx[nf] = a
                nf += 1
    for u in range(nf):
        a = idx[u]
        for v in range(nf):
            K[u, v] = H[a, idx[v]]
        K[u, u] += mu * H[a, a] + ridge * scale
        K[u, nf] = 1.0 if a < k else 0.0
        K[nf, u] = K[u, nf]
        rhs[u] = g[a]
    K[nf, nf] = 0.0
    rhs[nf] = 0.0
    return nf


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _schur_solve(K, rhs, nf) -> bool:  # pragma: no cover
    """Solve the bordered system ``[[A, c], [cᵀ, 0]] [δ; λ] = [g; 0]`` of :func:`_bordered`
    (``A = K[:nf, :nf]`` symmetric positive definite, ``c = K[:nf, nf]``) by Cholesky and the
    Schur complement: ``δ = A⁻¹g - λ A⁻¹c`` with ``λ = cᵀA⁻¹g / cᵀA⁻¹c``. Writes ``δ`` to
    ``rhs[:nf]``; False (inputs partly overwritten) when ``A`` is not positive definite or
    ``cᵀA⁻¹c`` vanishes. Half the work of pivoted LU."""
    n = nf
    for j in range(n):  # in-place Cholesky, lower triangle of K
        t = K[j, j]
        for p in range(j):
            t -= K[j, p] * K[j, p]
        if not t > 0.0:
            return False
        t = np.sqrt(t)
        K[j, j] = t
        inv = 1.0 / t
        for i in range(j + 1, n):
            u = K[i, j]
            for p in range(j):
                u -= K[i, p] * K[j, p]
            K[i, j] = u * inv
    # two right-hand sides: g (rhs[:n]) and c (column n of K, still intact above row n)
    for i in range(n):  # forward: L y = b
        u, v = rhs[i], K[i, n]
        for p in range(i):
            u -= K[i, p] * rhs[p]
            v -= K[i, p] * K[p, n]
        rhs[i] = u / K[i, i]
        K[i, n] = v / K[i, i]
    cg, cc = 0.0, 0.0
    for i in range(n):  # cᵀA⁻¹g = yg·yc, cᵀA⁻¹c = |yc|²
        cg += rhs[i] * K[i, n]
        cc += K[i, n] * K[i, n]
    if not cc > 0.0:
        return False
    lam = cg / cc
    for i in range(n):
        rhs[i] -= lam * K[i, n]
    for i in range(n - 1, -1, -1):  # backward: Lᵀ δ = y
        u = rhs[i]
        for p in range(i + 1, n):
            u -= K[p, i] * rhs[p]
        rhs[i] = u / K[i, i]
    return True


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _kkt_step(H, g, free, k, mu, ridge, K, rhs, idx, d, w) -> None:  # pragma: no cover
    """``d = argmin ½δᵀ(H + μ diag H)δ - gᵀδ`` over the free variables with ``Σ δ_a = 0``:
    the bordered system solved in place by Cholesky and its Schur complement, or Gaussian
    elimination with partial pivoting when not positive definite (``pinv`` when singular, as
    the numpy engine). ``w (m,)``: :func:`_weights` at the current point (decoupled γ)."""
    m = g.shape[0]
    for a in range(m):
        d[a] = 0.0
    nf = _bordered(H, g, free, k, mu, ridge, K, rhs, idx, w, d)
    n = nf + 1
    if _schur_solve(K, rhs, nf):
        for u in range(nf):
            d[idx[u]] = rhs[u]
        return
    _bordered(H, g, free, k, mu, ridge, K, rhs, idx, w, d)  # not positive definite: LU
    singular = False
    for c in range(n):
        p = c
        best = abs(K[c, c])
        for a in range(c + 1, n):
            v = abs(K[a, c])
            if v > best:
                best, p = v, a
        if best == 0.0:
            singular = True
            break
        if p != c:
            for b in range(n):
                K[c, b], K[p, b] = K[p, b], K[c, b]
            rhs[c], rhs[p] = rhs[p], rhs[c]
        piv = K[c, c]
        for a in range(c + 1, n):
            fct = K[a, c] / piv
            if fct != 0.0:
                for b in range(c, n):
                    K[a, b] -= fct * K[c, b]
                rhs[a] -= fct * rhs[c]
    if singular:
        _bordered(H, g, free, k, mu, ridge, K, rhs, idx, w, d)
        sol = np.linalg.pinv(K[:n, :n]) @ rhs[:n]
        for u in range(nf):
            d[idx[u]] = sol[u]
        return
    for c in range(n - 1, -1, -1):
        t = rhs[c]
        for b in range(c + 1, n):
            t -= K[c, b] * rhs[b]
        rhs[c] = t / K[c, c]
    for u in range(nf):
        d[idx[u]] = rhs[u]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _project(v, k, lo, hi, out, u) -> None:  # pragma: no cover
    """Simplex projection of ``v[:k]`` (sort-based) and box clipping of ``v[k:]``."""
    for i in range(k):  # insertion sort, descending
        t = v[i]
        j = i - 1
        while j >= 0 and u[j] < t:
            u[j + 1] = u[j]
            j -= 1
        u[j + 1] = t
    css = 0.0
    tau = 0.0
    for i in range(k):
        css += u[i]
        if u[i] - (css - 1.0) / (i + 1) > 0.0:
            tau = (css - 1.0) / (i + 1)
    for i in range(k):
        out[i] = max(v[i] - tau, 0.0)
    for i in range(k, v.shape[0]):
        out[i] = min(max(v[i], lo[i]), hi[i])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _weights(gbm, x, k, pi, pj, w) -> None:  # pragma: no cover
    for a in range(w.shape[0]):
        w[a] = 1.0
    if gbm:
        for p in range(pi.shape[0]):
            w[k + p] = x[pi[p]] * x[pj[p]]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _fit_pixels(gbm, z, a0, E, T, W, pi, pj, G, Bp, lam, lo, hi, max_iter, tol, b_max, ridge,
                backtrack, mu0, mu_min, mu_max, X, conv, iters, rss, rss_lin
                ) -> None:  # pragma: no cover
    n, r = z.shape
    k = E.shape[0]
    m = X.shape[1]
    chat = np.empty(m)
    c = np.empty(m)
    e = np.empty(m)
    S = np.empty((m, m))
    f = np.empty(r)
    J = np.empty((m, r))
    aT = np.empty((k, r))
    R = np.empty(r)
    g = np.empty(m)
    H = np.empty((m, m))
    K = np.empty((m + 1, m + 1))
    rhs = np.empty(m + 1)
    d = np.empty(m)
    x = np.empty(m)
    xn = np.empty(m)
    xt = np.empty(m)
    v = np.empty(m)
    u = np.empty(k)
    w = np.empty(m)
    free = np.empty(m, dtype=np.bool_)
    idx = np.empty(m, dtype=np.int64)
    for px in range(n):
        zp = z[px]
        for a in range(k):
            x[a] = a0[px, a]
        for a in range(k, m):
            x[a] = 0.0
        # the linear (FCLS) point, and the nonlinear start
        if gbm:  # GBM iterates on the Gram form (ĉ = z B⁺), see _gbm_normal
            for a in range(m):
                t = 0.0
                for ri in range(r):
                    t += zp[ri] * Bp[ri, a]
                chat[a] = t
            lin = _objective(gbm, x, k, E, T, W, pi, pj, zp, f, J, aT)
            for a in range(k, m):
                x[a] = 0.5
            obj = _gbm_normal(x, k, pi, pj, G, chat, c, e, S, g, H, lam)
        else:
            lin = _normal(gbm, x, k, E, T, W, pi, pj, zp, f, J, aT, R, g, H)
            x[k] = min(max(g[k] / max(H[k, k], 1e-300), -b_max), b_max)
            obj = _normal(gbm, x, k, E, T, W, pi, pj, zp, f, J, aT, R, g, H)
        rss_lin[px] = lin
        mu = mu0
        done = False
        it_used = max_iter
        for it in range(max_iter):
            _weights(gbm, x, k, pi, pj, w)  # γ weights a_i a_j: step test, decoupled γ
            nu = 0.0
            sd = 0.0
            for a in range(k):
                nu += x[a] * g[a]
            for a in range(m):
                sd += H[a, a]
            gscale = np.sqrt(sd / m) * tol
            for a in range(k):
                free[a] = (x[a] > _EPS) or (g[a] > nu + gscale)
            for a in range(k, m):
                free[a] = ((x[a] > lo[a] + _EPS) or (g[a] > gscale)) and \
                          ((x[a] < hi[a] - _EPS) or (g[a] < -gscale))
            _kkt_step(H, g, free, k, mu, ridge, K, rhs, idx, d, w)
            redo = False
            for a in range(m):
                if a < k:
                    out = x[a] <= _EPS and d[a] < 0.0
                else:
                    out = (x[a] <= lo[a] + _EPS and d[a] < 0.0) or \
                          (x[a] >= hi[a] - _EPS and d[a] > 0.0)
                if out:
                    free[a] = False
                    redo = True
            if redo:
                _kkt_step(H, g, free, k, mu, ridge, K, rhs, idx, d, w)
            alpha = 1.0
            accepted = False
            obj_new = obj
            for a in range(m):
                xn[a] = x[a]
            for _ in range(backtrack):
                for a in range(m):
                    v[a] = x[a] + alpha * d[a]
                _project(v, k, lo, hi, xt, u)
                if gbm:
                    ot = _gbm_objective(xt, k, pi, pj, G, chat, c, lam)
                else:
                    ot = _objective(gbm, xt, k, E, T, W, pi, pj, zp, f, J, aT)
                if ot <= obj:
                    for a in range(m):
                        xn[a] = xt[a]
                    obj_new = ot
                    accepted = True
                    break
                alpha *= 0.25
            step = 0.0
            dmax = 0.0
            for a in range(m):
                step = max(step, abs(xn[a] - x[a]) * w[a])
                dmax = max(dmax, abs(d[a]) * w[a])
            finished = (accepted and step < tol) or ((not accepted) and dmax < tol)
            if accepted and alpha == 1.0:
                mu = max(mu * 0.1, mu_min)
            elif not accepted:
                mu = min(mu * 100.0, mu_max)
            for a in range(m):
                x[a] = xn[a]
            obj = obj_new
            if finished:
                done = True
                it_used = it + 1
                break
            if gbm:
                _gbm_normal(x, k, pi, pj, G, chat, c, e, S, g, H, lam)
            else:
                _normal(gbm, x, k, E, T, W, pi, pj, zp, f, J, aT, R, g, H)
        if gbm:  # the reported residual from the residual itself, not the Gram expansion
            obj = _objective(gbm, x, k, E, T, W, pi, pj, zp, f, J, aT)
        # never worse than the linear point (GBM starts at γ = 1/2, not at γ = 0)
        if obj > lin:
            for a in range(k):
                x[a] = a0[px, a]
            for a in range(k, m):
                x[a] = 0.0
            obj = lin
        for a in range(m):
            X[px, a] = x[a]
        conv[px] = done
        iters[px] = it_used
        rss[px] = obj


def fit_block(gbm: bool, z: NDArray[np.float64], a0: NDArray[np.float64],
              E: NDArray[np.float64], T: NDArray[np.float64], W: NDArray[np.float64],
              pi: NDArray[np.intp], pj: NDArray[np.intp], lo: NDArray[np.float64],
              hi: NDArray[np.float64], *, max_iter: int, tol: float, b_max: float,
              ridge: float, backtrack: int, mu: tuple[float, float, float],
              gamma_prior: float = 0.0
              ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.int16],
                         NDArray[np.float64], NDArray[np.float64]]:
    """Fit the pixels ``z (n, r)`` from FCLS abundances ``a0 (n, k)``; releases the GIL.
    ``gamma_prior``: GBM's ``λ`` of ``λ Σ (γ - ½)²`` added to the objective (0: none).

    Returns ``(x (n, m), converged (n,), iterations (n,), rss (n,), rss_linear (n,))``, the
    residual sums in the reduced space (add the part of ``||y||²`` outside it).
    """
    n, m = z.shape[0], lo.shape[0]
    X = np.empty((n, m))
    conv = np.empty(n, dtype=np.bool_)
    iters = np.empty(n, dtype=np.int16)
    rss = np.empty(n)
    rss_lin = np.empty(n)
    B = np.vstack([E, W]) if gbm else E  # GBM's basis (m, r); PPNMM does not use these
    G = np.ascontiguousarray(B @ B.T)
    Bp = np.ascontiguousarray(np.linalg.pinv(B, rcond=1e-10))  # (r, m): ĉ = z B⁺
    _fit_pixels(bool(gbm), np.ascontiguousarray(z, dtype=np.float64),
                np.ascontiguousarray(a0, dtype=np.float64), E, T, W,
                pi.astype(np.int64), pj.astype(np.int64), G, Bp, float(gamma_prior), lo, hi,
                int(max_iter), float(tol), float(b_max), float(ridge), int(backtrack),
                *map(float, mu), X, conv, iters, rss, rss_lin)
    return X, conv, iters, rss, rss_lin
