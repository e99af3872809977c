"""VCA — Vertex Component Analysis (Nascimento & Bioucas-Dias 2005; baselines.md A2).

Shapes: pixels are rows, ``Y (N, L)``; endmembers ``M (k, L)``; indices ``idx (k,)`` into Y.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.endmembers.atgp import validate_pixels

__all__ = ["estimate_snr", "vca"]


def _top_eigvecs(C: NDArray[np.float64], r: int) -> NDArray[np.float64]:
    """Eigenvectors ``(L, r)`` of the symmetric ``C`` for its r largest eigenvalues."""
    w, V = np.linalg.eigh(C)
    return V[:, np.argsort(w)[::-1][:r]]


def estimate_snr(Y: ArrayLike, k: int) -> float:
    """VCA's SNR estimate in dB (A2 step 1) of ``Y (N, L)`` for a k-endmember model.

    Returns ``inf`` for (numerically) noiseless data and ``-inf`` when the signal power
    estimate is not positive.
    """
    Y = validate_pixels(Y, k)
    return _estimate_snr(Y, k, Y.mean(axis=0))


def _estimate_snr(Y: NDArray[np.float64], k: int, ybar: NDArray[np.float64]) -> float:
    N, L = Y.shape
    Yc = Y - ybar
    Ud = _top_eigvecs(Yc.T @ Yc / N, k)
    Xp = Yc @ Ud
    Py = float(np.sum(Y * Y)) / N
    Px = float(np.sum(Xp * Xp)) / N + float(ybar @ ybar)
    noise = Py - Px
    signal = Px - (k / L) * Py
    if noise <= 1e-12 * Py:
        return float("inf")
    if signal <= 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def vca(
    Y: ArrayLike,
    k: int,
    *,
    seed: int = 0,
    snr_db: float | None = None,
    projected: bool = True,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """VCA endmembers ``M (k, L)`` and pixel indices ``idx (k,)`` of ``Y (N, L)``.

    ``snr_db`` (dB) selects the projection (estimated when None; threshold
    ``15 + 10·log10(k)``): projective projection onto the top-k eigenvectors of ``YᵀY/N``
    above it, else a (k-1)-dim PCA with a constant appended. The random directions come from
    ``np.random.default_rng(seed)``. ``projected=True`` returns the subspace-projected
    endmembers (A2 step 5), ``False`` the raw pixels ``Y[idx]`` (identical without noise).
    """
    Y = validate_pixels(Y, k)
    N, L = Y.shape
    rng = np.random.default_rng(seed)
    ybar = Y.mean(axis=0)
    snr = _estimate_snr(Y, k, ybar) if snr_db is None else float(snr_db)
    snr_th = 15.0 + 10.0 * np.log10(k)

    if snr > snr_th:  # projective projection
        Ud = _top_eigvecs(Y.T @ Y / N, k)
        X = Y @ Ud  # (N, k)
        u = X.mean(axis=0)
        denom = X @ u
        tiny = np.finfo(np.float64).tiny
        denom = np.where(np.abs(denom) < tiny, tiny, denom)
        Yt = X / denom[:, None]
        offset = np.zeros(L)
    else:  # (k-1)-dimensional PCA with a constant coordinate
        Ud = _top_eigvecs((Y - ybar).T @ (Y - ybar) / N, k - 1)
        X = (Y - ybar) @ Ud  # (N, k-1)
        c = float(np.sqrt(np.max(np.einsum("ij,ij->i", X, X)))) if k > 1 else 1.0
        Yt = np.hstack([X, np.full((N, 1), c)])
        offset = ybar

    A = np.zeros((k, k))
    A[k - 1, 0] = 1.0
    idx = np.empty(k, dtype=np.intp)
    for i in range(k):
        w = rng.standard_normal(k)
        f = w - A @ (np.linalg.pinv(A) @ w)
        nf = np.linalg.norm(f)
        f = f / nf if nf > 0 else w / np.linalg.norm(w)
        v = Yt @ f
        t = int(np.argmax(np.abs(v)))
        A[:, i] = Yt[t]
        idx[i] = t

    if projected:
        M = X[idx] @ Ud.T + offset
    else:
        M = Y[idx].copy()
    return M, idx
