"""Unmixing metrics, exactly as defined in shared/models/README.md ("Metrics").

Shapes: endmembers ``M (k, L)`` (rows), abundances ``A (N, k)``, pixels ``Y (N, L)``.
Angles are in radians. Estimated endmembers are matched to the reference with one Hungarian
assignment on the k×k SAD matrix; :func:`evaluate` applies the same permutation to the
abundance maps before scoring them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment

from hsu_geo.errors import EndmemberError

__all__ = [
    "UnmixingScores",
    "abundance_armse",
    "abundance_rmse",
    "evaluate",
    "match_endmembers",
    "recon_psnr",
    "recon_re",
    "recon_rmse",
    "sad",
    "sad_matrix",
    "sid",
]

_SID_EPS = 1e-12


def _rows(X: ArrayLike, name: str) -> NDArray[np.float64]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2:
        raise EndmemberError(f"{name} must be 2-D (rows = spectra); got shape {X.shape}")
    return X


def _same_shape(a: NDArray[np.float64], b: NDArray[np.float64], what: str) -> None:
    if a.shape != b.shape:
        raise EndmemberError(f"{what}: shapes differ, {a.shape} vs {b.shape}")


def _unit(X: NDArray[np.float64]) -> NDArray[np.float64]:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


def sad_matrix(M_ref: ArrayLike, M_est: ArrayLike) -> NDArray[np.float64]:
    """Spectral angles ``(k_ref, k_est)`` in radians between every pair of rows."""
    R, E = _rows(M_ref, "M_ref"), _rows(M_est, "M_est")
    if R.shape[1] != E.shape[1]:
        raise EndmemberError(f"band counts differ: {R.shape[1]} vs {E.shape[1]}")
    return np.arccos(np.clip(_unit(R) @ _unit(E).T, -1.0, 1.0))


def sad(M_ref: ArrayLike, M_est: ArrayLike) -> NDArray[np.float64]:
    """Row-wise spectral angle distance ``(k,)`` in radians of already matched endmembers.

    ``SAD_r = arccos(m_rᵀm̂_r / (‖m_r‖‖m̂_r‖))`` (cosine clipped to [-1, 1]); mean SAD is
    ``sad(...).mean()``. Scale invariant.
    """
    R, E = _rows(M_ref, "M_ref"), _rows(M_est, "M_est")
    _same_shape(R, E, "sad")
    cos = np.einsum("ij,ij->i", _unit(R), _unit(E))
    return np.arccos(np.clip(cos, -1.0, 1.0))


def match_endmembers(M_ref: ArrayLike, M_est: ArrayLike) -> NDArray[np.intp]:
    """Hungarian matching on the SAD matrix: ``perm (k_ref,)`` with ``M_est[perm] ~ M_ref``.

    Minimises the total SAD; ``M_est`` may have more rows than ``M_ref`` (extra rows unused).
    Apply the same permutation to abundances as ``A_est[:, perm]``.
    """
    S = sad_matrix(M_ref, M_est)
    if S.shape[1] < S.shape[0]:
        raise EndmemberError(
            f"cannot match {S.shape[0]} reference endmembers with only {S.shape[1]} estimates"
        )
    rows, cols = linear_sum_assignment(S)
    perm = np.empty(S.shape[0], dtype=np.intp)
    perm[rows] = cols
    return perm


def sid(M_ref: ArrayLike, M_est: ArrayLike) -> NDArray[np.float64]:
    """Spectral information divergence ``(k,)`` of matched rows (mean SID = ``.mean()``).

    ``p = m/1ᵀm``, ``q = m̂/1ᵀm̂`` with negative entries clipped to 0 and ε = 1e-12 added to
    every entry; ``SID = Σ p log(p/q) + Σ q log(q/p)``.
    """
    R, E = _rows(M_ref, "M_ref"), _rows(M_est, "M_est")
    _same_shape(R, E, "sid")

    def dist(X: NDArray[np.float64]) -> NDArray[np.float64]:
        X = np.maximum(X, 0.0)
        s = X.sum(axis=1, keepdims=True)
        return X / np.where(s > 0, s, 1.0) + _SID_EPS

    p, q = dist(R), dist(E)
    return np.sum(p * np.log(p / q) + q * np.log(q / p), axis=1)


def abundance_rmse(A_ref: ArrayLike, A_est: ArrayLike) -> NDArray[np.float64]:
    """Per-endmember abundance RMSE ``(k,)``: ``sqrt((1/N) Σ_n (a_rn - â_rn)²)``.

    Mean RMSE (DFFN/AUVAE "mRMSE") is ``abundance_rmse(...).mean()``.
    """
    R, E = np.asarray(A_ref, dtype=np.float64), np.asarray(A_est, dtype=np.float64)
    _same_shape(R, E, "abundance_rmse")
    return np.sqrt(np.mean((R - E) ** 2, axis=0))


def abundance_armse(A_ref: ArrayLike, A_est: ArrayLike) -> float:
    """Overall abundance RMSE (NAE): ``sqrt((1/(N·k)) Σ_n ‖a_n - â_n‖²)``.

    SSANU-Net's variant is ``sqrt(k) · abundance_armse``.
    """
    R, E = np.asarray(A_ref, dtype=np.float64), np.asarray(A_est, dtype=np.float64)
    _same_shape(R, E, "abundance_armse")
    return float(np.sqrt(np.mean((R - E) ** 2)))


def recon_rmse(Y: ArrayLike, Y_hat: ArrayLike) -> float:
    """Reconstruction RMSE ``sqrt((1/(N·L)) Σ (y - ŷ)²)`` (units of Y).

    CResDAE's printed form is ``sqrt(L) · recon_rmse``.
    """
    R, E = np.asarray(Y, dtype=np.float64), np.asarray(Y_hat, dtype=np.float64)
    _same_shape(R, E, "recon_rmse")
    return float(np.sqrt(np.mean((R - E) ** 2)))


def recon_psnr(Y: ArrayLike, Y_hat: ArrayLike, max_value: float | None = None) -> float:
    """Reconstruction PSNR in dB: ``10·log10(MAX² / MSE)``; MAX defaults to ``max(Y)``."""
    R, E = np.asarray(Y, dtype=np.float64), np.asarray(Y_hat, dtype=np.float64)
    _same_shape(R, E, "recon_psnr")
    mse = float(np.mean((R - E) ** 2))
    peak = float(R.max()) if max_value is None else float(max_value)
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak**2 / mse))


def recon_re(Y: ArrayLike, Y_hat: ArrayLike) -> float:
    """RE (DFFN): mean spectral angle in radians between each pixel and its reconstruction.

    A zero vector has angle π/2 to anything.
    """
    R, E = _rows(Y, "Y"), _rows(Y_hat, "Y_hat")
    _same_shape(R, E, "recon_re")
    cos = np.einsum("ij,ij->i", _unit(R), _unit(E))
    return float(np.mean(np.arccos(np.clip(cos, -1.0, 1.0))))


@dataclass(frozen=True)
class UnmixingScores:
    """Scores after Hungarian matching; abundance/reconstruction fields are None if not given.

    ``perm`` maps reference endmember r to estimated endmember ``perm[r]``.
    """

    perm: NDArray[np.intp]
    sad: NDArray[np.float64]
    mean_sad: float
    sid: NDArray[np.float64]
    mean_sid: float
    rmse: NDArray[np.float64] | None = None
    mean_rmse: float | None = None
    armse: float | None = None
    recon_rmse: float | None = None
    psnr: float | None = None
    re: float | None = None


def evaluate(
    M_ref: ArrayLike,
    M_est: ArrayLike,
    A_ref: ArrayLike | None = None,
    A_est: ArrayLike | None = None,
    Y: ArrayLike | None = None,
    Y_hat: ArrayLike | None = None,
    max_value: float | None = None,
) -> UnmixingScores:
    """All project metrics with one Hungarian permutation on the SAD matrix.

    ``M_* (k, L)``; ``A_* (N, k)`` (``A_est`` columns follow ``M_est`` rows and are permuted);
    ``Y``, ``Y_hat`` ``(N, L)`` for RMSE_rec, PSNR (MAX = ``max_value`` or ``max(Y)``) and RE.
    """
    M_est = _rows(M_est, "M_est")
    perm = match_endmembers(M_ref, M_est)
    Mm = M_est[perm]
    s, d = sad(M_ref, Mm), sid(M_ref, Mm)
    rmse = mean_rmse = armse = None
    if A_ref is not None and A_est is not None:
        Am = np.asarray(A_est, dtype=np.float64)[:, perm]
        rmse = abundance_rmse(A_ref, Am)
        mean_rmse = float(rmse.mean())
        armse = abundance_armse(A_ref, Am)
    rr = ps = re = None
    if Y is not None and Y_hat is not None:
        rr, ps, re = recon_rmse(Y, Y_hat), recon_psnr(Y, Y_hat, max_value), recon_re(Y, Y_hat)
    return UnmixingScores(
        perm=perm,
        sad=s,
        mean_sad=float(s.mean()),
        sid=d,
        mean_sid=float(d.mean()),
        rmse=rmse,
        mean_rmse=mean_rmse,
        armse=armse,
        recon_rmse=rr,
        psnr=ps,
        re=re,
    )
