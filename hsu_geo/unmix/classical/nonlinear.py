"""Nonlinear abundance estimation: PPNMM and GBM fitted by batched projected Gauss-Newton.

Shapes (as in :mod:`hsu_geo.unmix.classical.lsq`): pixels ``Y (N, L)``, endmembers ``M (k, L)``
(rows), abundances ``A (N, k)`` on the simplex (``a >= 0``, ``1ᵀa = 1``).

Models (``P = k(k-1)/2`` pairs ``i < j`` in ``numpy.triu_indices(k, 1)`` order, as
:mod:`hsu_geo.synth.mixing`):

- **PPNMM** (Altmann, Halimi, Dobigeon & Tourneret 2012, doi:10.1109/TIP.2012.2187668):
  ``y = s + b s⊙s + n`` with ``s = Mᵀa``; one real ``b`` per pixel (unitless, 0 = linear).
- **GBM** (Halimi, Altmann, Dobigeon & Tourneret 2011, doi:10.1109/TGRS.2011.2140119):
  ``y = Mᵀa + Σ_{i<j} γ_ij a_i a_j (m_i⊙m_j) + n`` with ``0 <= γ_ij <= 1``.

Both models are least-squares fits (the maximum-likelihood estimate under white Gaussian noise,
which is what the papers' Bayesian and gradient estimators approximate).

Method. Every modelled spectrum lies in the span of the ``k`` endmembers and their ``k(k+1)/2``
(PPNMM) or ``k(k-1)/2`` (GBM) element-wise products, a subspace of dimension ``r <= L`` with an
orthonormal basis ``Q (r, L)``. ``||y - f||² = ||Qy - Qf||² + ||y - QᵀQy||²`` and the second term
does not depend on the parameters, so after one BLAS projection ``z = Y Qᵀ`` (the only work in
band space) every iteration runs on ``r``-vectors (``r = 20`` for k = 5 PPNMM, 15 for GBM, instead
of ~200 bands). The fit starts at the exact FCLS solution (:func:`~hsu_geo.unmix.classical.fcls`,
the linear model) with ``b`` from its closed-form least squares (PPNMM) or ``γ = 1/2`` (GBM), then
runs projected Gauss-Newton with Levenberg-Marquardt damping on all pixels of a batch at once:
per pixel the ``m x m`` normal equations (``m = k + 1`` or ``k + P``) bordered by the
sum-to-one constraint are solved for the free variables (those not at a bound whose gradient
pushes outward), the step is projected back onto the simplex (abundances) and the box (``γ``,
``b``), and shortened until the objective does not increase. Pixels leave the batch when the
step (for ``γ_ij`` weighted by ``a_i a_j``: a ``γ`` of an absent pair changes nothing) is below
``tol``; pixels still moving after ``max_iter`` iterations are reported as not converged (their
abundances are the last feasible iterate, never NaN). A GBM fit that ends with a larger residual
than FCLS (a poorer local minimum) returns the FCLS point (``γ = 0``, a valid GBM point), so the
nonlinear fit never explains less than the linear one. The numpy engine has no Python loop over
pixels (loops run over iterations); the compiled engine loops over pixels in machine code.

Speed (``benchmarks/nonlinear.py``): the default engine runs the same iterations pixel by pixel
in compiled code (:mod:`hsu_geo.unmix.classical.nonlinear_kernel`), 2-4x faster per core than
the vectorised numpy engine and on several threads; on 2 cores PPNMM fits 210-360 k px/s and
GBM 155-345 k px/s for k = 6..4 (README, "Nonlinear mixtures").
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix.classical.lsq import fcls

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn / scipy stacks
    import contextlib

    def threadpool_limits(limits: int | None = None, user_api: str | None = None):  # type: ignore
        return contextlib.nullcontext()

__all__ = [
    "ENGINES",
    "KINDS",
    "NonlinearFit",
    "check_problem",
    "fit_nonlinear",
    "forward",
    "linearity_gate",
    "n_parameters",
    "scene_noise_std",
    "simplex_projection",
]

#: nonlinear models fitted here
KINDS = ("ppnmm", "gbm")
#: implementations of the iterations: compiled per-pixel kernel (default), vectorised numpy
ENGINES = ("compiled", "numpy")
#: pixels per internal batch (bounds the (batch, m, r) Jacobian temporaries)
BATCH = 16_384
#: convergence step of the Gauss-Newton fits (abundance units; γ steps weighted by a_i a_j).
#: Chosen on the design seeds 100-104 of the nine synthetic sets (``benchmarks/nonlinear.py
#: --seeds 100-104 --tol T``): the largest of 1e-5, 1e-4, 1e-3, 1e-2 that changes no design
#: run's aRMSE by more than 1 % and no gate decision (1e-3: at most 0.47 %, GBM 4.3 iterations
#: instead of 7.7; 1e-2: 9.5 % and one gate decision). 0.1 % abundance is also far below the
#: error of any estimate on those sets (aRMSE >= 0.008).
DEFAULT_TOL = 1e-3

#: pixels per block of the compiled engine (the unit of work of its threads)
BLOCK = 4096
#: ridge added to the Gauss-Newton normal matrix, relative to its mean diagonal (keeps
#: parameters without influence, e.g. γ of a pair absent from the pixel, at a zero step)
_RIDGE = 1e-9
#: step halvings tried before a pixel counts as stalled
_BACKTRACK = 6
#: Levenberg-Marquardt damping (relative to diag H): start, floor, ceiling
_MU0, _MU_MIN, _MU_MAX = 1e-4, 1e-10, 1e8

#: fit_quality codes (per pixel)
CONVERGED, NOT_CONVERGED, LINEAR_KEPT = 0, 1, 2


@dataclass
class NonlinearFit:
    """Result of :func:`fit_nonlinear` for ``N`` pixels.

    Attributes:
        A: ``(N, k)`` abundances (float64), on the simplex.
        theta: ``(N, p)`` nonlinearity parameters: PPNMM ``b`` (``p = 1``), GBM ``γ``
            (``p = k(k-1)/2``, pair order of ``numpy.triu_indices(k, 1)``).
        converged: ``(N,)`` bool, False where the step was still above ``tol`` after
            ``max_iter`` iterations or the objective could not be decreased further.
        iterations: ``(N,)`` Gauss-Newton iterations used.
        rss: ``(N,)`` residual sum of squares over the bands of the nonlinear fit (units of Y²).
        rss_linear: ``(N,)`` residual sum of squares of the FCLS start (the linear model).
    """

    A: NDArray[np.float64]
    theta: NDArray[np.float64]
    converged: NDArray[np.bool_]
    iterations: NDArray[np.int16]
    rss: NDArray[np.float64]
    rss_linear: NDArray[np.float64]


def n_parameters(kind: str, k: int) -> int:
    """Free parameters per pixel: ``k - 1`` abundances (sum-to-one) plus the nonlinear ones."""
    return k - 1 + (1 if kind == "ppnmm" else k * (k - 1) // 2)


def forward(kind: str, A: ArrayLike, M: ArrayLike, theta: ArrayLike) -> NDArray[np.floating]:
    """Modelled spectra ``(N, L)`` of abundances ``A (N, k)`` with parameters ``theta (N, p)``."""
    from hsu_geo.synth.mixing import bilinear_gbm, pnmm

    A = np.asarray(A)
    theta = np.asarray(theta)
    if kind == "ppnmm":
        return pnmm(A, M, xi=theta.reshape(-1).astype(A.dtype, copy=False))
    return bilinear_gbm(A, M, gamma=theta.astype(A.dtype, copy=False))


def simplex_projection(V: NDArray[np.float64]) -> NDArray[np.float64]:
    """Euclidean projection of each row of ``V (n, k)`` onto the unit simplex (sort-based)."""
    n, k = V.shape
    U = -np.sort(-V, axis=1)
    css = np.cumsum(U, axis=1) - 1.0
    ind = np.arange(1, k + 1)
    cond = U - css / ind > 0
    rho = k - 1 - np.argmax(cond[:, ::-1], axis=1)  # last index where cond holds
    tau = css[np.arange(n), rho] / (rho + 1)
    return np.maximum(V - tau[:, None], 0.0)


# --------------------------------------------------------------------------------------------
# the model in the reduced space
# --------------------------------------------------------------------------------------------


class _Subspace:
    """Orthonormal basis ``Q (r, L)`` of the endmembers and their products, and the model's
    pieces in it: ``E (k, r)`` endmembers, ``T (k, k, r)`` products ``Q(m_i⊙m_j)``."""

    def __init__(self, M: NDArray[np.float64], kind: str) -> None:
        k = M.shape[0]
        self.kind, self.k = kind, k
        i, j = np.triu_indices(k, 0 if kind == "ppnmm" else 1)
        B = np.vstack([M, M[i] * M[j]])
        _, S, Vt = np.linalg.svd(B, full_matrices=False)
        r = int(np.count_nonzero(S[0] * 1e-10 < S))
        self.Q = Vt[:r]                                             # (r, L)
        self.E = M @ self.Q.T                                       # (k, r)
        T = np.einsum("il,jl,rl->ijr", M, M, self.Q)                # (k, k, r)
        if kind == "gbm":
            T[np.arange(k), np.arange(k)] = 0.0
        self.T = T
        self.T2 = T.reshape(k * k, -1)                              # (k², r)
        self.Tj = np.ascontiguousarray(T.transpose(1, 0, 2)).reshape(k, -1)  # (j, i·r)
        self.W = np.ascontiguousarray(T[np.triu_indices(k, 1)])       # (P, r)
        self.pi, self.pj = np.triu_indices(k, 1)
        self.m = k + (1 if kind == "ppnmm" else self.pi.size)

    def model(self, x: NDArray[np.float64], jac: bool
              ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """``f (n, r)`` and, with ``jac``, the Jacobian rows ``J (n, m, r)`` at ``x (n, m)``."""
        k = self.k
        a = x[:, :k]
        n = a.shape[0]
        r = self.E.shape[1]
        if self.kind == "ppnmm":
            b = x[:, k]
            aa = (a[:, :, None] * a[:, None, :]).reshape(n, k * k)
            q = aa @ self.T2                                        # s⊙s in the subspace
            f = a @ self.E + b[:, None] * q
            if not jac:
                return f, None
            J = np.empty((n, self.m, r))
            aT = (a @ self.Tj).reshape(n, k, r)                     # Σ_j a_j T_ij
            np.multiply(aT, 2.0 * b[:, None, None], out=J[:, :k])
            J[:, :k] += self.E
            J[:, k] = q
            return f, J
        g = x[:, k:]
        pi_ = a[:, self.pi] * a[:, self.pj]                         # (n, P)
        f = a @ self.E + (g * pi_) @ self.W
        if not jac:
            return f, None
        Ga = np.zeros((n, k, k))                                    # Γ_ij a_j
        Ga[:, self.pi, self.pj] = g * a[:, self.pj]
        Ga[:, self.pj, self.pi] = g * a[:, self.pi]
        J = np.empty((n, self.m, r))
        for i in range(k):
            J[:, i] = Ga[:, i] @ self.T[i]
        J[:, :k] += self.E
        np.multiply(pi_[:, :, None], self.W, out=J[:, k:])
        return f, J

    def bind(self, z: NDArray[np.float64]) -> _Subspace:
        """Attach the projected pixels ``z (n, r)`` the objective refers to."""
        self.z = z
        return self

    def objective(self, x: NDArray[np.float64], rows: NDArray[np.intp]) -> NDArray[np.float64]:
        """``||z - f(x)||² (n,)`` of the pixels ``rows`` of the bound data."""
        R = self.z[rows] - self.model(x, False)[0]
        return np.einsum("nr,nr->n", R, R)

    def normal(self, x: NDArray[np.float64], rows: NDArray[np.intp]
               ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """``(objective (n,), JᵀR (n, m), JᵀJ (n, m, m))`` at ``x`` for the pixels ``rows``."""
        f, J = self.model(x, True)
        R = self.z[rows] - f
        return (np.einsum("nr,nr->n", R, R), np.einsum("nmr,nr->nm", J, R),
                np.matmul(J, J.transpose(0, 2, 1)))

    def weights(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(n, m)`` scale of each parameter's effect, for the convergence test: 1 for the
        abundances and b, ``a_i a_j`` for γ_ij (γ of an absent pair changes nothing)."""
        w = np.ones_like(x)
        if self.kind == "gbm":
            a = x[:, :self.k]
            w[:, self.k:] = a[:, self.pi] * a[:, self.pj]
        return w


class _PpnmmMoments:
    """PPNMM least squares from moments, without any band-space work in the iterations.

    With ``s = Mᵀa`` and ``q = s⊙s`` the objective ``||y - s - b q||²`` and its Gauss-Newton
    normal equations are polynomials in ``a`` whose coefficients are the shared moments
    ``G = Σ_λ m_i m_j``, ``G3 = Σ_λ m_i m_j m_l``, ``G4 = Σ_λ m_i m_j m_l m_m`` and the per-pixel
    ``ζ_i = y·m_i``, ``η_ij = y·(m_i⊙m_j)``, ``||y||²`` (one band-space product per pixel).
    Per pixel and iteration that is a ``(k², k²)`` product and ``k x k`` arithmetic instead of
    ``(k + 1) x r`` Jacobians. Exact (the same objective and normal equations as
    :class:`_Subspace` with ``kind="ppnmm"``), float64; not the default engine (no faster in
    numpy, see :func:`fit_nonlinear`).
    """

    kind = "ppnmm"

    def __init__(self, M: NDArray[np.float64]) -> None:
        k = M.shape[0]
        self.k, self.m = k, k + 1
        self.G = M @ M.T
        self.G3 = np.einsum("il,jl,ml->ijm", M, M, M).reshape(k, k * k)
        P = (M[:, None, :] * M[None, :, :]).reshape(k * k, -1)
        self.G4 = P @ P.T                                            # (k², k²)
        self.iu, self.ju = np.triu_indices(k, 0)
        self.B = np.vstack([M, M[self.iu] * M[self.ju]])             # (k + k(k+1)/2, L)
        full = np.zeros((k, k), dtype=np.intp)
        full[self.iu, self.ju] = np.arange(self.iu.size)
        full[self.ju, self.iu] = np.arange(self.iu.size)
        self.full = full.reshape(-1)

    def bind(self, Y: NDArray[np.floating]) -> _PpnmmMoments:
        """Per-pixel moments of ``Y (n, L)`` (one BLAS product in Y's precision)."""
        k = self.k
        C = (Y @ self.B.T.astype(Y.dtype)).astype(np.float64)
        if not np.isfinite(C).all():
            raise InvalidSceneError("pixel matrix Y contains NaN or infinite values; remove "
                                    "nodata pixels before unmixing")
        self.zeta = C[:, :k]
        self.eta = C[:, k:][:, self.full].reshape(-1, k, k)
        self.yy = np.einsum("nl,nl->n", Y, Y, dtype=np.float64)
        return self

    def _parts(self, x: NDArray[np.float64], rows: NDArray[np.intp], normal: bool):
        k = self.k
        a, b = x[:, :k], x[:, k]
        n = a.shape[0]
        Et = (a @ self.G3).reshape(n, k, k)                         # E_i·t_j
        aa = (a[:, :, None] * a[:, None, :]).reshape(n, k * k)
        Psi = (aa @ self.G4).reshape(n, k, k)                       # T_ij·q = t_i·t_j
        Eq = np.einsum("nij,nj->ni", Et, a)                          # E_i·q
        tq = np.einsum("nij,nj->ni", Psi, a)                         # t_i·q
        qq = np.einsum("ni,ni->n", a, tq)
        Ga = a @ self.G
        tz = np.einsum("nij,nj->ni", self.eta[rows], a)              # t_i·y
        qz = np.einsum("ni,ni->n", a, tz)
        za = np.einsum("ni,ni->n", self.zeta[rows], a)
        aEq = np.einsum("ni,ni->n", a, Eq)
        obj = self.yy[rows] - 2.0 * (za + b * qz) + np.einsum("ni,ni->n", a, Ga) \
            + 2.0 * b * aEq + b * b * qq
        if not normal:
            return obj, None, None
        g = np.empty((n, k + 1))
        bb = b[:, None]
        g[:, :k] = self.zeta[rows] - Ga - bb * Eq + 2.0 * bb * (tz - Eq - bb * tq)
        g[:, k] = qz - aEq - b * qq
        H = np.empty((n, k + 1, k + 1))
        H[:, :k, :k] = self.G + 4.0 * b[:, None, None] * (Et + b[:, None, None] * Psi)
        H[:, :k, k] = H[:, k, :k] = Eq + 2.0 * bb * tq
        H[:, k, k] = qq
        return obj, g, H

    def objective(self, x: NDArray[np.float64], rows: NDArray[np.intp]) -> NDArray[np.float64]:
        return self._parts(x, rows, False)[0]

    def normal(self, x: NDArray[np.float64], rows: NDArray[np.intp]):
        return self._parts(x, rows, True)

    def b_given_a(self, a: NDArray[np.float64], rows: NDArray[np.intp]) -> NDArray[np.float64]:
        """Least-squares ``b (n,)`` for abundances ``a``."""
        x = np.concatenate([a, np.zeros((a.shape[0], 1))], axis=1)
        _, g, H = self._parts(x, rows, True)
        return g[:, self.k] / np.maximum(H[:, self.k, self.k], 1e-300)

    def weights(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.ones_like(x)


class _GbmMoments:
    """GBM least squares from moments (as :class:`_PpnmmMoments`): with ``V_mj = γ_mj a_j``,
    ``U = Γ⊙aaᵀ`` (``Γ`` the symmetric γ matrix, zero diagonal) the Jacobian columns are
    ``E_m + Σ_j V_mj T_mj`` (abundances) and ``a_i a_j T_ij`` (γ_ij), and every inner product
    of them, the pixel and the model is a contraction of ``G``, ``G3``, ``G4`` with ``V``,
    ``U`` and the per-pixel ``ζ``, ``η``. Exact, float64."""

    kind = "gbm"

    def __init__(self, M: NDArray[np.float64]) -> None:
        k = M.shape[0]
        self.k = k
        self.pi, self.pj = np.triu_indices(k, 1)
        self.m = k + self.pi.size
        self.G = M @ M.T
        G3 = np.einsum("il,jl,ml->ijm", M, M, M)
        self.G3 = G3
        self.G3r = G3.reshape(k, k * k)
        P = (M[:, None, :] * M[None, :, :]).reshape(k * k, -1)
        self.G4 = P @ P.T                                            # (k², k²)
        self.G4m = self.G4.reshape(k, k, k * k)                      # [m, j, (n, l)]
        pair = self.pi * k + self.pj
        self.G4pp = self.G4[np.ix_(pair, pair)]
        self.G3p = G3[:, self.pi, self.pj]                           # (k, P)
        self.iu, self.ju = np.triu_indices(k, 0)
        self.B = np.vstack([M, M[self.iu] * M[self.ju]])
        full = np.zeros((k, k), dtype=np.intp)
        full[self.iu, self.ju] = np.arange(self.iu.size)
        full[self.ju, self.iu] = np.arange(self.iu.size)
        self.full = full.reshape(-1)

    bind = _PpnmmMoments.bind

    def _gamma(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        k = self.k
        Gm = np.zeros((x.shape[0], k, k))
        Gm[:, self.pi, self.pj] = x[:, k:]
        Gm[:, self.pj, self.pi] = x[:, k:]
        return Gm

    def _parts(self, x: NDArray[np.float64], rows: NDArray[np.intp], normal: bool):
        k = self.k
        a = x[:, :k]
        n = a.shape[0]
        Gm = self._gamma(x)
        U = Gm * (a[:, :, None] * a[:, None, :])
        Uf = U.reshape(n, k * k)
        Z = (Uf @ self.G4).reshape(n, k, k)                         # Σ_kl U_kl G4[m,j,k,l]
        Eu = 0.5 * (Uf @ self.G3r.T)                                 # E_m·q
        Ga = a @ self.G
        eta = self.eta[rows]
        yf = np.einsum("ni,ni->n", self.zeta[rows], a) + 0.5 * np.einsum("nij,nij->n", U, eta)
        ff = np.einsum("ni,ni->n", a, Ga) + 2.0 * np.einsum("ni,ni->n", a, Eu) \
            + 0.25 * np.einsum("nij,nij->n", U, Z)
        obj = self.yy[rows] - 2.0 * yf + ff
        if not normal:
            return obj, None, None
        V = Gm * a[:, None, :]                                       # V_mj = γ_mj a_j
        Et = (a @ self.G3r).reshape(n, k, k)                        # Σ_i a_i G3[i,m,j]
        W = np.empty((n, k, k, k))                                   # Σ_j V_mj G4[m,j,n,l]
        for m in range(k):
            W[:, m] = (V[:, m] @ self.G4m[m]).reshape(n, k, k)
        X = np.einsum("mnj,pnj->pmn", self.G3, V)                    # Σ_j G3[m,n,j] V_nj
        Y4 = np.einsum("pmnl,pnl->pmn", W, V)
        pa = a[:, self.pi] * a[:, self.pj]                           # π (n, P)
        H = np.empty((n, self.m, self.m))
        H[:, :k, :k] = self.G + X + X.transpose(0, 2, 1) + Y4
        Hag = (self.G3p + W[:, :, self.pi, self.pj]) * pa[:, None, :]
        H[:, :k, k:] = Hag
        H[:, k:, :k] = Hag.transpose(0, 2, 1)
        H[:, k:, k:] = self.G4pp * (pa[:, :, None] * pa[:, None, :])
        g = np.empty((n, self.m))
        Jy = self.zeta[rows] + np.einsum("nmj,nmj->nm", V, eta)
        Jf = Ga + Eu + np.einsum("nmj,nmj->nm", V, Et + 0.5 * Z)
        g[:, :k] = Jy - Jf
        g[:, k:] = pa * (eta[:, self.pi, self.pj] - Et[:, self.pi, self.pj]
                         - 0.5 * Z[:, self.pi, self.pj])
        return obj, g, H

    objective = _PpnmmMoments.objective
    normal = _PpnmmMoments.normal

    def weights(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        w = np.ones_like(x)
        a = x[:, :self.k]
        w[:, self.k:] = a[:, self.pi] * a[:, self.pj]
        return w


class _GammaPrior:
    """A bound GBM problem (:class:`_Subspace` or :class:`_GbmMoments`) with ``λ Σ_p (γ_p - ½)²``
    added to its objective: the gradient gains ``-λ (γ - ½)``, the normal matrix ``λ`` on the γ
    diagonal. The residual itself stays ``problem.objective``."""

    def __init__(self, problem: Any, lam: float) -> None:
        self.problem, self.lam = problem, lam
        self.k, self.m, self.kind = problem.k, problem.m, problem.kind

    def _penalty(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.lam * np.square(x[:, self.k:] - 0.5).sum(axis=1)

    def objective(self, x: NDArray[np.float64], rows: NDArray[np.intp]) -> NDArray[np.float64]:
        return self.problem.objective(x, rows) + self._penalty(x)

    def normal(self, x: NDArray[np.float64], rows: NDArray[np.intp]):
        obj, g, H = self.problem.normal(x, rows)
        g = g.copy()
        g[:, self.k:] -= self.lam * (x[:, self.k:] - 0.5)
        idx = np.arange(self.k, self.m)
        H = H.copy()
        H[:, idx, idx] += self.lam
        return obj + self._penalty(x), g, H

    def weights(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.problem.weights(x)


def _bounds(kind: str, m: int, k: int, b_max: float) -> tuple[NDArray[np.float64], ...]:
    lo = np.zeros(m)
    hi = np.ones(m)
    if kind == "ppnmm":
        lo[k], hi[k] = -b_max, b_max
    return lo, hi


def _kkt_step(H: NDArray[np.float64], g: NDArray[np.float64], free: NDArray[np.bool_], k: int,
              mu: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per pixel ``argmin ½δᵀ(H + μ diag H)δ - gᵀδ`` over the free variables with ``Σ δ_a = 0``
    (Levenberg-Marquardt damping ``μ (n,)``): ``δ (n, m)``."""
    n, m = g.shape
    ff = free[:, :, None] & free[:, None, :]
    Kb = np.zeros((n, m + 1, m + 1))
    Kb[:, :m, :m] = np.where(ff, H, 0.0)
    idx = np.arange(m)
    dH = H[:, idx, idx]
    scale = np.maximum(dH.mean(axis=1), np.finfo(float).tiny)
    Kb[:, idx, idx] += np.where(free, mu[:, None] * dH + _RIDGE * scale[:, None], 1.0)
    Kb[:, :k, m] = free[:, :k]
    Kb[:, m, :k] = free[:, :k]
    rhs = np.zeros((n, m + 1))
    rhs[:, :m] = np.where(free, g, 0.0)
    try:
        d = np.linalg.solve(Kb, rhs[:, :, None])[:, :m, 0]
    except np.linalg.LinAlgError:  # a singular bordered system: pixel by pixel least squares
        d = np.einsum("nij,nj->ni", np.linalg.pinv(Kb), rhs)[:, :m]
    return np.where(free, d, 0.0)


def _project(x: NDArray[np.float64], k: int, lo: NDArray[np.float64], hi: NDArray[np.float64]
             ) -> NDArray[np.float64]:
    out = np.empty_like(x)
    out[:, :k] = simplex_projection(x[:, :k])
    out[:, k:] = np.clip(x[:, k:], lo[k:], hi[k:])
    return out


def _gauss_newton(prob: Any, x: NDArray[np.float64], lo: NDArray[np.float64],
                  hi: NDArray[np.float64], max_iter: int, tol: float
                  ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.int16]]:
    """Projected Gauss-Newton (Levenberg-Marquardt damped) on all pixels of ``prob`` (a
    :class:`_Subspace` bound to its data, or :class:`_PpnmmMoments`) from ``x (n, m)``:
    ``(x, converged (n,), iterations (n,))``."""
    sub = prob
    k = sub.k
    n = x.shape[0]
    out = x.copy()
    converged = np.zeros(n, dtype=bool)
    iters = np.full(n, max_iter, dtype=np.int16)
    cols = np.arange(n)
    mu = np.full(n, _MU0)
    eps = 1e-12
    obj, g, H = prob.normal(x, cols)
    for it in range(max_iter):
        nu = np.einsum("ni,ni->n", x[:, :k], g[:, :k])               # multiplier estimate
        gscale = np.sqrt(H[:, np.arange(sub.m), np.arange(sub.m)].mean(axis=1)) * tol
        free = np.empty_like(g, dtype=bool)
        free[:, :k] = (x[:, :k] > eps) | (g[:, :k] > nu[:, None] + gscale[:, None])
        th, gt = x[:, k:], g[:, k:]
        free[:, k:] = ((th > lo[k:] + eps) | (gt > gscale[:, None])) & \
                      ((th < hi[k:] - eps) | (gt < -gscale[:, None]))
        d = _kkt_step(H, g, free, k, mu)
        # free variables at a bound that the step pushes outward: fix them and solve again
        # (the projected Newton step is a descent direction only without them)
        out_a = (x[:, :k] <= eps) & (d[:, :k] < 0)
        out_t = ((x[:, k:] <= lo[k:] + eps) & (d[:, k:] < 0)) | \
                ((x[:, k:] >= hi[k:] - eps) & (d[:, k:] > 0))
        outward = np.concatenate([out_a, out_t], axis=1)
        redo = np.flatnonzero(outward.any(axis=1))
        if redo.size:
            free[redo] &= ~outward[redo]
            d[redo] = _kkt_step(H[redo], g[redo], free[redo], k, mu[redo])
        alpha = np.ones(x.shape[0])
        accepted = np.zeros(x.shape[0], dtype=bool)
        x_new = x.copy()
        obj_new = obj.copy()
        todo = np.arange(x.shape[0])
        for _ in range(_BACKTRACK):
            xt = _project(x[todo] + alpha[todo, None] * d[todo], k, lo, hi)
            ot = prob.objective(xt, cols[todo])
            ok = ot <= obj[todo]
            x_new[todo[ok]], obj_new[todo[ok]] = xt[ok], ot[ok]
            accepted[todo[ok]] = True
            todo = todo[~ok]
            if todo.size == 0:
                break
            alpha[todo] *= 0.25
        w = sub.weights(x)
        step = (np.abs(x_new - x) * w).max(axis=1)
        # converged: an accepted step below tol, or no decrease possible along a step that is
        # itself below tol (the objective cannot resolve it)
        finished = (accepted & (step < tol)) | \
            (~accepted & ((np.abs(d) * w).max(axis=1) < tol))
        mu = np.where(accepted & (alpha == 1.0), np.maximum(mu * 0.1, _MU_MIN),
                      np.where(accepted, mu, np.minimum(mu * 100.0, _MU_MAX)))
        x = x_new
        obj = obj_new
        if finished.any():
            idx = cols[finished]
            out[idx] = x[finished]
            converged[idx] = True
            iters[idx] = it + 1
            keep = ~finished
            cols, x, obj, mu = cols[keep], x[keep], obj[keep], mu[keep]
            if cols.size == 0:
                break
        _, g, H = prob.normal(x, cols)
    out[cols] = x
    return out, converged, iters


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


def _reduce(Yb: NDArray[np.floating], sub: _Subspace, A0b: ArrayLike | None
            ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Pixels ``Yb (n, L)`` in the reduced space: ``z (n, r)`` (float64, so that
    ``||y||² - ||z||²`` does not cancel), the part of ``||y||²`` outside it ``(n,)`` and the
    FCLS start ``(n, k)`` (``A0b`` when the caller has it)."""
    z = Yb.astype(np.float64) @ sub.Q.T
    if not np.isfinite(z).all():
        raise InvalidSceneError("pixel matrix Y contains NaN or infinite values; remove "
                                "nodata pixels before unmixing")
    perp = np.maximum(np.einsum("nl,nl->n", Yb, Yb, dtype=np.float64)
                      - np.einsum("nr,nr->n", z, z), 0.0)
    a0 = np.asarray(A0b, dtype=np.float64) if A0b is not None else fcls(z, sub.E)
    return z, perp, a0


def _allocate(N: int, k: int, m: int) -> NonlinearFit:
    """An empty :class:`NonlinearFit` for ``N`` pixels, ``k`` endmembers, ``m`` parameters."""
    return NonlinearFit(np.empty((N, k)), np.empty((N, m - k)), np.empty(N, dtype=bool),
                        np.empty(N, dtype=np.int16), np.empty(N), np.empty(N))


def check_problem(Y: ArrayLike, M: ArrayLike, kind: str) -> tuple[NDArray[np.floating],
                                                            NDArray[np.float64]]:
    if kind not in KINDS:
        raise ConfigError(f"nonlinear model {kind!r} is not known; use one of {', '.join(KINDS)}")
    Y, M = np.asarray(Y), np.asarray(M, dtype=np.float64)
    if Y.ndim != 2:
        raise InvalidSceneError(f"pixel matrix Y must be 2-D (N pixels, L bands); got {Y.shape}")
    if M.ndim != 2 or M.shape[0] < 1:
        raise EndmemberError(f"endmember matrix M must be 2-D (k >= 1, L bands); got {M.shape}")
    k, L = M.shape
    if Y.shape[1] != L:
        raise EndmemberError(f"endmembers have {L} bands but the pixels have {Y.shape[1]}; "
                             "resample the endmembers to the scene bands first")
    if k < 2:
        raise EndmemberError(f"{kind} needs at least 2 endmembers (got {k}); use -m fcls")
    need = n_parameters(kind, k) + 1
    if need > L:
        raise EndmemberError(
            f"{kind} with {k} endmembers fits {need - 1} parameters per pixel but the scene has "
            f"only {L} bands (at least {need} needed); use fewer endmembers or -m fcls")
    if not np.isfinite(M).all():
        raise EndmemberError("endmember matrix M contains NaN or infinite values")
    if Y.dtype not in (np.float32, np.float64):
        Y = Y.astype(np.float64)
    return Y, M


def fit_nonlinear(Y: ArrayLike, M: ArrayLike, kind: str = "ppnmm", *, max_iter: int = 30,
                  tol: float = DEFAULT_TOL, b_max: float = 10.0,
                  A0: ArrayLike | None = None,
                  engine: str = "compiled", threads: int | None = None,
                  gamma_prior: float = 0.0, _moments: bool = False) -> NonlinearFit:
    """Fit ``kind`` (``ppnmm`` or ``gbm``) to every pixel of ``Y (N, L)`` with endmembers
    ``M (k, L)``; see the module docstring. ``tol`` is the step (abundance units, and units of
    ``b``/``γ``) below which a pixel has converged; ``b_max`` bounds ``|b|`` of PPNMM (a safety
    box, far outside the values of real scenes: ``b = -0.5`` already folds ``s + b s²`` back at
    reflectance 1); ``A0 (N, k)``: FCLS abundances if the caller has them (saves one solve).
    ``engine``: ``"compiled"`` (default) runs the iterations pixel by pixel in compiled code
    (:mod:`hsu_geo.unmix.classical.nonlinear_kernel`, numba; the same algorithm, 2-4x faster
    per core), on ``threads`` threads (blocks of pixels; default: every core when called from
    the main thread, 1 from any other thread, e.g. dask's chunk threads, which already keep
    the cores busy); ``"numpy"`` is the vectorised reference implementation.
    ``gamma_prior`` (GBM only): ``λ`` (units of Y²) of a Gaussian prior on the interaction
    coefficients, ``λ Σ (γ_ij - ½)²`` added to the least-squares objective (a MAP estimate; the
    reported ``rss`` stays the residual). :class:`GbmUnmixer` sets ``λ = 12 σ̂²``, the Gaussian
    with the mean and variance of GBM's U(0, 1) prior (Halimi et al. 2011): γ of pairs the data
    do not determine (``a_i a_j`` near 0, or noise-level interaction) settle at ½ instead of
    wandering between the bounds. 0 (default here): plain least squares.
    ``_moments=True`` (numpy engine) uses the moment formulation (:class:`_PpnmmMoments`,
    :class:`_GbmMoments`): the same objective and normal equations without Jacobians; in numpy
    it is no faster (measured: equal for PPNMM, 1.3x slower for GBM), and it is kept as the
    independent check of the Jacobians the tests compare against.

    Raises :class:`EndmemberError` when there are fewer bands than parameters per pixel + 1 or
    fewer than 2 endmembers, :class:`InvalidSceneError` for NaN/inf pixels.
    """
    Y, M = check_problem(Y, M, kind)
    if max_iter < 1 or not tol > 0 or not b_max > 0:
        raise ConfigError(f"max_iter must be >= 1, tol > 0 and b_max > 0 (got {max_iter}, {tol}, "
                          f"{b_max})")
    if engine not in ENGINES:
        raise ConfigError(f"nonlinear engine {engine!r} is not known; use one of "
                          f"{', '.join(ENGINES)}")
    if not (math.isfinite(gamma_prior) and gamma_prior >= 0):
        raise ConfigError(f"gamma_prior must be a finite value >= 0 (got {gamma_prior})")
    if gamma_prior > 0 and kind != "gbm":
        raise ConfigError(f"gamma_prior weights GBM's interaction coefficients; {kind} has none "
                          "(use gamma_prior=0)")
    if A0 is not None and np.shape(A0) != (Y.shape[0], M.shape[0]):
        raise ConfigError(f"A0 must be (N, k) = {(Y.shape[0], M.shape[0])}; got {np.shape(A0)}")
    if engine == "compiled" and not _moments:
        return _fit_compiled(Y, M, kind, max_iter=max_iter, tol=tol, b_max=b_max, A0=A0,
                             threads=threads, gamma_prior=gamma_prior)
    k, N = M.shape[0], Y.shape[0]
    moments = _moments
    sub = (_PpnmmMoments(M) if kind == "ppnmm" else _GbmMoments(M)) if moments \
        else _Subspace(M, kind)
    lo, hi = _bounds(kind, sub.m, k, b_max)
    out = _allocate(N, k, sub.m)
    A, theta, conv, iters, rss, rss_lin = (out.A, out.theta, out.converged, out.iterations,
                                           out.rss, out.rss_linear)
    for s in range(0, N, BATCH):
        e = min(s + BATCH, N)
        Yb = Y[s:e]
        rows = np.arange(e - s)
        if moments:
            prob = sub.bind(Yb)
            perp = np.zeros(e - s)
            a0 = np.asarray(A0[s:e] if A0 is not None else fcls(Yb, M), dtype=np.float64)
        else:
            z, perp, a0 = _reduce(Yb, sub, None if A0 is None else A0[s:e])
            prob = sub.bind(z)
        x0 = np.zeros((e - s, sub.m))
        x0[:, :k] = a0
        with threadpool_limits(limits=1, user_api="blas"):  # small products: threads only
            rss_lin[s:e] = prob.objective(x0, rows) + perp   # add contention
            if kind == "ppnmm":  # b of the FCLS abundances in closed form
                if moments:
                    b0 = prob.b_given_a(a0, rows)
                else:
                    _, g, H = prob.normal(x0, rows)
                    b0 = g[:, k] / np.maximum(H[:, k, k], 1e-300)
                x0[:, k] = np.clip(b0, lo[k], hi[k])
            else:
                x0[:, k:] = 0.5
            solved = _GammaPrior(prob, gamma_prior) if gamma_prior > 0 else prob
            x, c, it = _gauss_newton(solved, x0, lo, hi, max_iter, tol)
            rss_b = prob.objective(x, rows) + perp
        # GBM starts at γ = 1/2, not at the FCLS point (γ = 0, a valid GBM point): keep that
        # point where the fit ended worse (a poorer local minimum), so the fit never loses
        worse = rss_b > rss_lin[s:e]
        if worse.any():
            x[worse, :k], x[worse, k:] = a0[worse], 0.0
            rss_b[worse] = rss_lin[s:e][worse]
        rss[s:e] = np.maximum(rss_b, 0.0)
        A[s:e], theta[s:e], conv[s:e], iters[s:e] = x[:, :k], x[:, k:], c, it
    return out


def _default_threads(threads: int | None) -> int:
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        return int(threads)
    if threading.current_thread() is not threading.main_thread():
        return 1
    return max(os.cpu_count() or 1, 1)


def _fit_compiled(Y: NDArray[np.floating], M: NDArray[np.float64], kind: str, *, max_iter: int,
                  tol: float, b_max: float, A0: ArrayLike | None, threads: int | None,
                  gamma_prior: float = 0.0) -> NonlinearFit:
    """:func:`fit_nonlinear` with the compiled kernel: blocks of pixels on threads (the kernel
    releases the GIL); per block one BLAS projection, one FCLS start, then the kernel."""
    from hsu_geo.unmix.classical.nonlinear_kernel import fit_block

    k, N = M.shape[0], Y.shape[0]
    sub = _Subspace(M, kind)
    lo, hi = _bounds(kind, sub.m, k, b_max)
    n_threads = _default_threads(threads)
    size = BLOCK  # fixed: the result does not depend on the thread count
    out = _allocate(N, k, sub.m)

    def block(s: int) -> None:
        e = min(s + size, N)
        z, perp, a0 = _reduce(Y[s:e], sub, None if A0 is None else A0[s:e])
        x, c, it, r_b, r_l = fit_block(
            kind == "gbm", z, a0, sub.E, sub.T, sub.W, sub.pi, sub.pj, lo, hi,
            max_iter=max_iter, tol=tol, b_max=b_max, ridge=_RIDGE, backtrack=_BACKTRACK,
            mu=(_MU0, _MU_MIN, _MU_MAX), gamma_prior=gamma_prior)
        out.A[s:e], out.theta[s:e] = x[:, :k], x[:, k:]
        out.converged[s:e], out.iterations[s:e] = c, it
        out.rss[s:e] = np.maximum(r_b + perp, 0.0)
        out.rss_linear[s:e] = r_l + perp

    starts = range(0, N, size)
    with threadpool_limits(limits=1, user_api="blas"):
        if n_threads == 1 or len(starts) == 1:
            for s in starts:
                block(s)
        else:
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                for fut in [pool.submit(block, s) for s in starts]:
                    fut.result()
    return out


# --------------------------------------------------------------------------------------------
# the blind per-scene gate
# --------------------------------------------------------------------------------------------


def _null_explained(A: NDArray[np.float64], M: NDArray[np.float64], kind: str, sigma: float,
                    draws: int, rng: np.random.Generator, max_iter: int, tol: float,
                    gamma_prior: float = 0.0) -> float:
    """Mean residual decrease / σ² of the nonlinear fit on LINEAR data like the scene's: the
    FCLS abundances ``A (n, k)`` of the sample mixed with endmembers carrying white noise of
    the scene's level (as a noisy pure pixel does; 0 for exact endmembers, so this bounds the
    endmember error from above) plus white noise ``σ``, fitted with the given ``M``."""
    vals = []
    for _ in range(draws):
        Me = M + sigma * rng.standard_normal(M.shape)
        Y0 = A @ Me + sigma * rng.standard_normal((A.shape[0], M.shape[1]))
        r0 = fit_nonlinear(Y0, M, kind, max_iter=max_iter, tol=tol, gamma_prior=gamma_prior)
        vals.append(float(np.mean(r0.rss_linear - r0.rss)) / (sigma * sigma))
    return float(np.mean(vals))


def _gate_sample(Y: NDArray[np.floating], max_pixels: int, rng: np.random.Generator
                 ) -> NDArray[np.floating]:
    """At most ``max_pixels`` rows of ``Y``, drawn without replacement, in scene order."""
    N = Y.shape[0]
    if max_pixels < N:
        return np.ascontiguousarray(Y[np.sort(rng.choice(N, max_pixels, replace=False))])
    return Y


def scene_noise_std(Y: ArrayLike, *, max_pixels: int = 20_000, seed: int = 0) -> float | None:
    """The noise level the gate uses (band-regression noise per band, median over bands) from a
    pixel sample ``Y (N, L)``; None with fewer pixels than it needs."""
    from hsu_geo.endmembers.count import MIN_NOISE_DOF, signal_spectrum

    Y = np.asarray(Y)
    if Y.shape[0] < Y.shape[1] + MIN_NOISE_DOF:
        return None
    Ys = _gate_sample(Y, max_pixels, np.random.default_rng(seed))
    sigma = float(signal_spectrum(Ys)["noise_std_median"])
    return sigma if sigma > 0 else None


def linearity_gate(Y: ArrayLike, M: ArrayLike, kind: str, *, threshold: float = 5.0,
                   spatial: int = 0, max_pixels: int = 20_000, null_pixels: int = 1000,
                   null_draws: int = 3, max_iter: int = 30, tol: float = DEFAULT_TOL,
                   seed: int = 0, gamma_prior_weight: float = 0.0,
                   fit: NonlinearFit | None = None) -> tuple[bool, dict]:
    """Decide from a pixel sample ``Y (N, L)`` whether ``kind`` explains the scene better than
    the linear model by clearly more than noise does: ``(use_nonlinear, evidence)``.

    1. Noise: per-band standard deviation by band regression (the estimator of ``-k auto``,
       :func:`hsu_geo.endmembers.count.signal_spectrum`), ``σ`` = its median over bands.
    2. ``D`` = mean over the sample (at most ``max_pixels``) of (FCLS residual sum of squares −
       nonlinear one) / ``σ²``: what the nonlinear model explains beyond the linear one.
    3. ``D0``, the same on simulated LINEAR data (:func:`_null_explained`: the sample's FCLS
       abundances, the endmembers perturbed by noise of level ``σ`` — extracted endmembers are
       noisy pixels — plus noise ``σ``; ``null_draws`` x ``null_pixels`` pixels): what fitting
       noise and endmember error alone explains (about 1 for PPNMM's one extra parameter,
       less than ``k(k-1)/2`` for GBM because of the bounds on γ).
    4. With a spatial window ``w`` the data the fit sees have ``w²`` times less noise while the
       spatially smooth nonlinear signal stays, so the statistic is ``(D − D0) w² + D0``.
    5. The nonlinear model is used when the statistic exceeds ``threshold · D0``. Default 5,
       chosen on design scenes (synth seeds 100-104) as the smallest value of the grid
       1.25 … 10 that kept every linear design scene within 5 % of FCLS: with endmembers
       extracted from 10 dB scenes, ``D`` reaches 2-3 ``D0`` on linear data (the extractor
       picks extreme, noisy pixels, a larger endmember error than the simulated one). When
       the noise cannot be estimated (too few pixels) the linear model is kept and the
       reason given.

    ``gamma_prior_weight`` (GBM): every fit here uses ``gamma_prior = weight · σ²`` (see
    :func:`fit_nonlinear`), as the scene's fit will. ``fit``: the nonlinear fit of the same
    pixels (same prior) if the caller has it (with at most ``max_pixels`` pixels, else of the
    gate's subsample).
    """
    from hsu_geo.endmembers.count import MIN_NOISE_DOF, signal_spectrum

    Y, M = check_problem(Y, M, kind)
    N, L = Y.shape
    gain = float(spatial * spatial) if spatial > 1 else 1.0
    evidence: dict = {"mode": "auto", "model": kind, "threshold": threshold,
                      "spatial_noise_reduction": gain}
    if N < L + MIN_NOISE_DOF:
        evidence.update(decision="linear", reason=(
            f"{N} sample pixels are too few to estimate the noise of {L} bands (need "
            f"{L + MIN_NOISE_DOF}); the linear model is kept"))
        return False, evidence
    rng = np.random.default_rng(seed)
    Ys = _gate_sample(Y, max_pixels, rng)
    noise = signal_spectrum(Ys)
    sigma = float(noise["noise_std_median"])
    if not sigma > 0:
        evidence.update(decision="linear", reason="the noise estimate is zero; linear kept")
        return False, evidence
    var = sigma * sigma
    lam = gamma_prior_weight * var if kind == "gbm" else 0.0
    res = fit if fit is not None else fit_nonlinear(Ys, M, kind, max_iter=max_iter, tol=tol,
                                                    gamma_prior=lam)
    D = float(np.mean(res.rss_linear - res.rss)) / var
    sub = rng.choice(Ys.shape[0], min(null_pixels, Ys.shape[0]), replace=False)
    A0 = np.asarray(fcls(Ys[sub], M), dtype=np.float64)
    D0 = max(_null_explained(A0, M, kind, sigma, null_draws, rng, max_iter, tol, lam), 0.05)
    stat = (D - D0) * gain + D0
    use = bool(stat > threshold * D0)
    evidence.update(
        decision="nonlinear" if use else "linear",
        noise_std=sigma, noise_method="band regression (hsu_geo.endmembers.count)",
        gamma_prior=lam,
        pixels=int(Ys.shape[0]),
        fcls_residual_over_noise=float(np.mean(res.rss_linear) / (L * var)),
        nonlinear_residual_over_noise=float(np.mean(res.rss) / (L * var)),
        explained_over_noise=D, explained_by_noise=D0, statistic=stat, needed=threshold * D0,
        converged_share=float(np.mean(res.converged)))
    return use, evidence
