"""Minimum-volume constrained NMF (MVC-NMF; Miao & Qi, IEEE TGRS 2007; baselines.md C1).

Problem, with pixels as columns ``Y (L, n)``, endmembers ``M (L, k)``, abundances ``A (k, n)``::

    min_{M >= 0, A >= 0}  1/2 ||Ȳ - M̄A||²_F + (τ/2) J(M),
    J(M) = det²(Z) / ((k-1)!)²,   Z = C + B̄ Uᵀ(M - μ1ᵀ)   (k, k)

``μ`` is the mean pixel, ``U (L, k-1)`` the top ``k-1`` principal directions of the pixels,
``Z``'s first row is ones and its other rows the PCA coordinates of the endmembers, so ``J`` is
the squared volume of the endmember simplex in the PCA subspace. Sum-to-one is imposed softly
as in the paper: ``Ȳ = [Y; δ1ᵀ]`` and ``M̄ = [M; δ1ᵀ]`` (data term only). Gradients::

    ∇_A = M̄ᵀ(M̄A - Ȳ),   ∇_M = (MA - Y)Aᵀ + τ J(M) U B̄ᵀ Z⁻ᵀ

minimised by alternating projected gradient (projection ``max(·, 0)``) with an Armijo
backtracking step per block, as in Lin's projected-gradient NMF. M starts at the extracted
endmembers, A at their FCLS abundances. All products go through ``(k, k)`` Gram matrices, so an
iteration costs ``O(k L n)``; no Python loop runs over pixels.

Units: the pixels are divided by their RMS value inside the solver, so ``τ`` and ``δ`` are
scale-free (the same on reflectance in [0, 1], percent or scaled integers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix.base import Unmixer
from hsu_geo.unmix.classical.lsq import fcls

#: Armijo sufficient-decrease constant (Lin 2007: σ = 0.01)
ARMIJO_SIGMA = 0.01
#: step shrink factor of the backtracking and the most shrinks per step
SHRINK, MAX_SHRINKS = 0.5, 40
#: projected-gradient steps per block (A, then M) in one outer iteration (Lin's alternating
#: scheme solves each subproblem approximately by inner steps; the cost is O(k² n) per A step
#: and O(k² L) per M step through the Gram matrices)
INNER_STEPS = 10


@dataclass(frozen=True)
class MvcNmfConfig:
    """Settings of mvc_nmf (``--set key=value``).

    Attributes:
        tau: weight τ of the volume term (baselines.md C1 default 0.01; on pixels scaled to
            unit RMS).
        delta: weight δ of the sum-to-one row appended to pixels and endmembers, on pixels
            scaled to unit RMS (5 a priori: about 1.5 on reflectance of RMS 0.3, inside the
            paper's range 1-20 for [0, 1] data; larger enforces sum-to-one harder).
        max_iter: most outer (A then M) iterations (150, baselines.md C1).
        tol: stop when the relative change of the objective is below this (1e-6, C1).
        max_pixels: the fit uses at most this many pixels, a seeded random subsample.
        seed: seed of that subsample.
    """

    tau: float = 0.01
    delta: float = 5.0
    max_iter: int = 150
    tol: float = 1e-6
    max_pixels: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("tau", "delta"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"setting {key}={value}: give a finite number >= 0")
        if not (np.isfinite(self.tol) and self.tol > 0):
            raise ConfigError(f"setting tol={self.tol}: give a number > 0 (e.g. 1e-6)")
        if self.max_iter < 1 or self.max_pixels < 2:
            raise ConfigError(f"settings max_iter={self.max_iter} and max_pixels="
                              f"{self.max_pixels}: give max_iter >= 1 and max_pixels >= 2")


class _Volume:
    """``J(M)`` and its gradient for ``M (L, k)``; PCA of pixels ``Y (L, n)``."""

    def __init__(self, Y: NDArray[np.float64], k: int) -> None:
        self.mu = Y.mean(axis=1, keepdims=True)
        Yc = Y - self.mu
        _, V = np.linalg.eigh(Yc @ Yc.T / Y.shape[1])
        self.U = V[:, ::-1][:, : k - 1]  # (L, k-1) top principal directions
        self.scale = 1.0 / math.factorial(k - 1) ** 2

    def _z(self, M: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.vstack([np.ones((1, M.shape[1])), self.U.T @ (M - self.mu)])

    def value(self, M: NDArray[np.float64]) -> float:
        return self.scale * float(np.linalg.det(self._z(M))) ** 2

    def grad(self, M: NDArray[np.float64]) -> NDArray[np.float64]:
        """``∂J/∂M = 2 J U B̄ᵀ Z⁻ᵀ (L, k)``; zero for a degenerate simplex (det = 0)."""
        Z = self._z(M)
        det = float(np.linalg.det(Z))
        if det == 0.0:
            return np.zeros_like(M)
        Zit = np.linalg.inv(Z).T
        return 2.0 * self.scale * det**2 * (self.U @ Zit[1:])


def _armijo(x: NDArray[np.float64], g: NDArray[np.float64], f0: float, f, step: float
            ) -> tuple[NDArray[np.float64], float, float]:
    """One projected-gradient step from ``x`` with Armijo backtracking: the largest
    ``α = step·2·SHRINK^j`` with ``f(P(x - αg)) - f0 <= σ gᵀ(P(x - αg) - x)``. Returns
    ``(x_new, f_new, α)``; ``x`` unchanged when no step decreases ``f``."""
    alpha = 2.0 * step
    for _ in range(MAX_SHRINKS):
        x_new = np.maximum(x - alpha * g, 0.0)
        d = x_new - x
        f_new = f(x_new)
        if f_new - f0 <= ARMIJO_SIGMA * float(np.vdot(g, d)):
            return x_new, f_new, alpha
        alpha *= SHRINK
    return x, f0, step


def mvc_nmf(Y: NDArray[np.floating], M0: NDArray[np.floating], *, tau: float = 0.01,
            delta: float = 5.0, max_iter: int = 150, tol: float = 1e-6
            ) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """MVC-NMF endmembers ``M (k, L)`` of pixels ``Y (n, L)`` from the start ``M0 (k, L)``.

    ``tau``, ``delta`` as in :class:`MvcNmfConfig` (scale-free: the pixels are scaled to unit
    RMS inside). Returns ``(M float64 in the units of Y, info)``; ``info`` records the
    iterations, whether the relative objective change fell below ``tol``, and the start and
    final objective and simplex volume term.
    """
    Y = np.asarray(Y, dtype=np.float64)
    M0 = np.asarray(M0, dtype=np.float64)
    if Y.ndim != 2 or M0.ndim != 2:
        raise InvalidSceneError(f"mvc_nmf needs pixels (n, L) and endmembers (k, L); got "
                                f"{Y.shape} and {M0.shape}")
    k, L = M0.shape
    if Y.shape[1] != L:
        raise EndmemberError(f"endmembers have {L} bands but the pixels have {Y.shape[1]}")
    if k < 2:
        raise EndmemberError("mvc_nmf needs at least 2 endmembers (the volume of one point is "
                             "undefined); give -k 2 or more")
    if k > L or Y.shape[0] < k:
        raise EndmemberError(f"mvc_nmf needs k <= bands and >= k pixels; got k={k}, "
                             f"{L} bands, {Y.shape[0]} pixels")
    if not (np.isfinite(Y).all() and np.isfinite(M0).all()):
        raise InvalidSceneError("mvc_nmf: pixels or endmembers contain NaN or infinite values")
    s = float(np.sqrt(np.mean(np.square(Y))))
    s = s if s > 0 else 1.0
    Yt = Y.T / s  # (L, n)
    M = np.maximum(M0.T / s, 0.0)  # (L, k)
    n = Yt.shape[1]
    A = np.asarray(fcls(Y / s, M.T), dtype=np.float64).T  # (k, n)
    vol = _Volume(Yt, k)
    yy = float(np.vdot(Yt, Yt))
    d2 = delta**2

    def data(M: NDArray[np.float64], A: NDArray[np.float64]) -> float:
        R = M @ A - Yt
        return 0.5 * (float(np.vdot(R, R)) + d2 * float(np.sum((A.sum(axis=0) - 1.0) ** 2)))

    f = data(M, A) + 0.5 * tau * vol.value(M)
    f_start, J_start = f, vol.value(M)
    step_a = step_m = None
    converged = False
    iterations = 0
    for it in range(1, max_iter + 1):
        iterations, f_prev = it, f
        # A block: f_A(A) = 1/2 tr(AᵀGA) - tr(AᵀW) + const, G = M̄ᵀM̄, W = M̄ᵀȲ
        G = M.T @ M + d2
        W = M.T @ Yt + d2
        const_a = 0.5 * (yy + d2 * n)

        def f_a(X: NDArray[np.float64], G=G, W=W, c=const_a) -> float:
            return 0.5 * float(np.vdot(X, G @ X)) - float(np.vdot(X, W)) + c

        if step_a is None:
            step_a = 1.0 / max(float(np.linalg.eigvalsh(G)[-1]), 1e-12)
        fa = f_a(A)
        for _ in range(INNER_STEPS):
            A, fa, step_a = _armijo(A, G @ A - W, fa, f_a, step_a)
        # M block: 1/2 tr(M H Mᵀ) - tr(Mᵀ P) + (τ/2) J(M) + const, H = AAᵀ, P = YAᵀ
        H, P = A @ A.T, Yt @ A.T
        const_m = 0.5 * (yy + d2 * float(np.sum((A.sum(axis=0) - 1.0) ** 2)))

        def f_m(X: NDArray[np.float64], H=H, P=P, c=const_m) -> float:
            return (0.5 * float(np.vdot(X @ H, X)) - float(np.vdot(X, P)) + c
                    + 0.5 * tau * vol.value(X))

        if step_m is None:
            step_m = 1.0 / max(float(np.linalg.eigvalsh(H)[-1]), 1e-12)
        f = f_m(M)
        for _ in range(INNER_STEPS):
            M, f, step_m = _armijo(M, M @ H - P + 0.5 * tau * vol.grad(M), f, f_m, step_m)
        if abs(f_prev - f) <= tol * max(abs(f_prev), 1e-300):
            converged = True
            break
    info = {"iterations": iterations, "converged": converged, "pixels": int(n),
            "objective_start": f_start, "objective": f, "volume_start": J_start,
            "volume": vol.value(M), "data_scale": s}
    return (M * s).T, info


class MvcNmfUnmixer(Unmixer):
    """MVC-NMF: refines the extracted endmembers ``M0`` towards the minimum-volume simplex
    enclosing the pixels (it can move endmembers outside the data cloud, so it helps on scenes
    without pure pixels); abundances by FCLS with the refined endmembers."""

    name = "mvc_nmf"
    description = ("Minimum-volume constrained NMF (Miao & Qi 2007): endmembers refined from "
                   "the extracted ones, abundances by FCLS")
    doi = "10.1109/TGRS.2006.888466"
    Config = MvcNmfConfig

    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Refine ``M0 (k, L)`` on at most ``max_pixels`` seeded pixels of ``Y (N, L)``."""
        cfg = self.config
        Y = np.asarray(Y)
        if Y.ndim == 2 and Y.shape[0] > cfg.max_pixels:
            rng = np.random.default_rng(cfg.seed)
            Y = Y[np.sort(rng.choice(Y.shape[0], cfg.max_pixels, replace=False))]
        M, info = mvc_nmf(Y, M0, tau=cfg.tau, delta=cfg.delta, max_iter=cfg.max_iter,
                          tol=cfg.tol)
        self.endmembers = M.astype("float32")
        warnings = list(self.fit_info.get("warnings", []))
        if not info["converged"]:
            warnings.append(f"mvc_nmf: objective still changing after max_iter={cfg.max_iter} "
                            "iterations; --set max_iter=... to run longer")
        self.fit_info.update({"mvc_nmf": {key: (float(v) if isinstance(v, float) else v)
                                          for key, v in info.items()},
                              "warnings": warnings})

    def abundances(self, Y: np.ndarray) -> np.ndarray:
        if self.endmembers is None:
            raise ConfigError("mvc_nmf: fit the model before computing abundances")
        return np.asarray(fcls(Y, self.endmembers), dtype="float32")


__all__ = ["MvcNmfConfig", "MvcNmfUnmixer", "mvc_nmf"]
