"""HySime — signal subspace / number of endmembers (Bioucas-Dias & Nascimento 2008; A1).

Shapes: pixels are rows, ``Y (N, L)``. All correlation matrices are non-centred, L×L.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.endmembers.atgp import validate_pixels
from hsu_geo.errors import InvalidSceneError

__all__ = ["HySimeResult", "estimate_noise", "hysime"]


_CHUNK = 65_536


def _correlation(Y: NDArray[np.floating]) -> NDArray[np.float64]:
    """Non-centred ``YᵀY`` ``(L, L)`` accumulated in float64 over pixel chunks."""
    L = Y.shape[1]
    Ry = np.zeros((L, L))
    for s in range(0, Y.shape[0], _CHUNK):
        c = np.asarray(Y[s : s + _CHUNK], dtype=np.float64)
        Ry += c.T @ c
    return 0.5 * (Ry + Ry.T)


def _regression(Ry: NDArray[np.float64]) -> NDArray[np.float64]:
    """``P (L, L)`` with noise ``W = Y P``: band-wise multiple-regression residuals (A1 step 1).

    With ``Q = (YᵀY + εI)⁻¹`` (ε = 1e-6·trace/L) the regression of band i on all other bands
    leaves the residual ``(Y Q)[:, i] / Q[i, i]``, so ``P = Q diag(Q)⁻¹``.
    """
    L = Ry.shape[0]
    eps = 1e-6 * float(np.trace(Ry)) / L
    if not eps > 0:
        raise InvalidSceneError("all pixels are zero: the signal subspace is undefined")
    Q = np.linalg.inv(Ry + eps * np.eye(L))
    return Q / np.diag(Q)


def estimate_noise(Y: ArrayLike) -> NDArray[np.float64]:
    """Noise estimate ``W (N, L)`` of ``Y (N, L)`` by multiple regression (A1 step 1)."""
    Y = validate_pixels(Y, None)
    return Y @ _regression(_correlation(Y))


class HySimeResult(NamedTuple):
    """``k`` — estimated number of endmembers; ``subspace`` — basis ``(L, k)`` of the signal
    subspace (columns sorted by the HySime cost, most significant first)."""

    k: int
    subspace: NDArray[np.float64]


def hysime(Y: ArrayLike) -> HySimeResult:
    """Estimate the number of endmembers of ``Y (N, L)``: ``(k, subspace (L, k))``.

    Eigenvectors e_j of the signal correlation ``R_x`` are kept when the cost
    ``δ_j = -e_jᵀR_y e_j + 2 e_jᵀR_n e_j`` is negative; the basis columns are sorted by δ
    ascending. Returns a named tuple (``hysime(Y).k`` or ``hysime(Y)[0]``). Needs N well above
    L for a reliable noise estimate. Memory is O(L²): since ``W = Y P`` and ``X = Y - W``,
    ``R_n = PᵀR_yP`` and ``R_x = (I - P)ᵀR_y(I - P)`` follow from ``R_y`` alone (one pass).
    """
    Y = validate_pixels(Y, None, as_float64=False)
    N, L = Y.shape
    if L < 2:
        raise InvalidSceneError("HySime needs at least 2 bands")
    Ry = _correlation(Y) / N
    P = _regression(Ry)
    Rn = P.T @ Ry @ P
    IP = np.eye(L) - P
    Rx = IP.T @ Ry @ IP
    _, E = np.linalg.eigh(0.5 * (Rx + Rx.T))
    p = np.einsum("li,lm,mi->i", E, Ry, E)
    s2 = np.einsum("li,lm,mi->i", E, Rn, E)
    delta = -p + 2.0 * s2
    order = np.argsort(delta, kind="stable")
    k_hat = int(np.count_nonzero(delta < 0))
    return HySimeResult(k_hat, E[:, order[:k_hat]])
