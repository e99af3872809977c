"""N-FINDR (Winter 1999; baselines.md A3), vectorised with cofactor volume updates.

Shapes: pixels are rows, ``Y (N, L)``; endmembers ``M (k, L)``; indices ``idx (k,)`` into Y.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.endmembers.atgp import atgp, validate_pixels
from hsu_geo.errors import ConfigError

__all__ = ["nfindr"]


def _cofactor_column(E: NDArray[np.float64], r: int) -> NDArray[np.float64]:
    """Cofactors ``c (k,)`` of column r: ``det(E with column r = v) = cᵀv`` for any v.

    Computed from the (k-1)×(k-1) minors, so it stays valid when E is singular.
    """
    k = E.shape[0]
    if k == 1:
        return np.ones(1)
    sub = np.delete(E, r, axis=1)  # (k, k-1)
    minors = np.stack([np.delete(sub, i, axis=0) for i in range(k)])  # (k, k-1, k-1)
    signs = (-1.0) ** (np.arange(k) + r)
    return signs * np.linalg.det(minors)


def nfindr(
    Y: ArrayLike,
    k: int,
    *,
    seed: int = 0,
    init: str = "atgp",
    max_sweeps: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """N-FINDR endmembers ``M (k, L)`` (rows of Y) and pixel indices ``idx (k,)``.

    Maximises the simplex volume ``|det([1ᵀ; Z_E])|`` in the (k-1)-dim PCA space. Each sweep
    visits every vertex r and scores all pixels at once as replacements
    (``vol_n = |c_rᵀ [1; z_n]|``, c_r the cofactors of column r), accepting the best one if it
    enlarges the simplex. Stops after a sweep without change or ``max_sweeps`` (default 3k).
    ``init="atgp"`` (deterministic, default) or ``"random"`` (``default_rng(seed)``).
    """
    Y = validate_pixels(Y, k)
    N = Y.shape[0]
    if init == "atgp":
        idx = atgp(Y, k)[1]
    elif init == "random":
        idx = np.random.default_rng(seed).choice(N, size=k, replace=False).astype(np.intp)
    else:
        raise ConfigError(f"unknown N-FINDR init {init!r}; valid: atgp, random")
    if k == 1:
        return Y[idx].copy(), idx

    ybar = Y.mean(axis=0)
    Yc = Y - ybar
    w, V = np.linalg.eigh(Yc.T @ Yc)
    U = V[:, np.argsort(w)[::-1][: k - 1]]
    Z = np.hstack([np.ones((N, 1)), Yc @ U])  # (N, k): [1, z_n]

    E = Z[idx].T.copy()  # (k, k), column r = [1; z] of vertex r
    vol = abs(np.linalg.det(E))
    sweeps = 3 * k if max_sweeps is None else int(max_sweeps)
    for _ in range(sweeps):
        changed = False
        for r in range(k):
            vols = np.abs(Z @ _cofactor_column(E, r))
            best = int(np.argmax(vols))
            if vols[best] > vol * (1.0 + 1e-12) and best != idx[r]:
                idx[r] = best
                E[:, r] = Z[best]
                vol = abs(np.linalg.det(E))
                changed = True
        if not changed:
            break
    return Y[idx].copy(), idx
