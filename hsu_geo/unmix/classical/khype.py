"""K-Hype: kernel-based nonlinear unmixing (Chen, Richard & Honeine, IEEE TSP 61(2), 2013),
one of the CResDAE paper's classical comparators ("VCA + K-Hype", baselines.md §C2).

Model per pixel ``r (B,)``: ``r = M α + ψ(m_λ) + n`` where ``m_λ (R,)`` is the row of the
endmember matrix ``M (B, R)`` at band λ, ``α`` lies on the simplex and ψ is a function in the
reproducing-kernel Hilbert space of a kernel κ. Problem::

    min_{α ∈ Δ, ψ}  ½ (‖α‖² + ‖ψ‖²_H) + 1 / (2μ) Σ_λ e_λ²,   e_λ = r_λ − αᵀ m_λ − ψ(m_λ)

Exact elimination of ψ [I, baselines.md]: by the representer theorem ψ = Σ β_λ κ(·, m_λ);
for a fixed α with residual ``s = r − M α`` the optimum is ``β = G s``, ``G = (K + μ I)⁻¹``
with the band Gram matrix ``K[λ, λ'] = κ(m_λ, m_λ')`` (``B x B``), and the problem becomes the
``R``-dimensional simplex-constrained QP::

    α̂ = argmin_{α ∈ Δ}  ½ ‖α‖² + ½ (r − M α)ᵀ G (r − M α)

whose Hessian ``H = I + Mᵀ G M`` is shared by all pixels and whose linear term ``−Mᵀ G r`` is
one matrix product for all of them. With ``H = Cᵀ C`` (Cholesky) the QP is the least-squares
problem ``min_{α ∈ Δ} ½ ‖C α − z‖²`` with ``z = C⁻ᵀ Mᵀ G r``, solved by the project's exact
active-set FCLS (:func:`hsu_geo.unmix.classical.lsq.fcls`), vectorised over pixels. The
modelled spectrum is ``M α̂ + K β = r − μ G s`` (since ``K G = I − μ G``), so the
reconstruction error is ``μ G s``; the extra output ``nonlinearity`` is ``‖K β‖ / ‖r̂‖``, the
share of the modelled spectrum carried by the nonlinear term.

Kernels [R]: Gaussian ``κ(u, v) = exp(−‖u − v‖² / (2σ²))``; polynomial
``κ(u, v) = (1 + (u − ½)ᵀ(v − ½) / R²)²``. Defaults [I, baselines.md]: Gaussian, ``σ = 2``,
``μ = 0.05``. The data term and ``‖α‖²`` are not scale-free: K-Hype assumes reflectances
(values around 0-1), as the paper does; scale radiance or DN scenes first (``--scale``).

Memory: three ``B x B`` float64 matrices while fitting (``K``, its factor and ``G``; 1.5 GiB
at ``B = 8192``, the :data:`MAX_BANDS` limit) and, per batch of ``n`` pixels, four ``n x B``
float64 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.linalg
from numpy.typing import NDArray

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix.base import Unmixer
from hsu_geo.unmix.classical.lsq import fcls

#: most bands the ``B x B`` kernel matrices may have (three float64 copies: 1.5 GiB)
MAX_BANDS = 8192
#: pixels per internal batch (bounds the ``n x B`` float64 work arrays)
BATCH = 16384


@dataclass(frozen=True)
class KhypeConfig:
    """``kernel`` ``gaussian`` or ``polynomial``; ``sigma`` (Gaussian width, in the units of
    the endmember rows ``m_λ``, i.e. reflectance) 2; ``mu`` (the data-fit weight 1/μ) 0.05
    [I, baselines.md §C2]."""

    kernel: str = "gaussian"
    sigma: float = 2.0
    mu: float = 0.05

    def __post_init__(self) -> None:
        if self.kernel not in ("gaussian", "polynomial"):
            raise ConfigError(f"setting kernel={self.kernel!r}: choose gaussian or polynomial")
        for key in ("sigma", "mu"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"setting {key}={getattr(self, key)!r} must be > 0")


def band_kernel(Mb: NDArray[np.float64], kernel: str, sigma: float) -> NDArray[np.float64]:
    """``K (B, B)``: the kernel between the band-wise endmember vectors, rows of ``Mb (B, R)``."""
    if kernel == "gaussian":
        sq = np.einsum("ij,ij->i", Mb, Mb)
        D = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Mb @ Mb.T), 0.0)
        return np.exp(-D / (2.0 * sigma * sigma))
    C = Mb - 0.5
    return np.square(1.0 + (C @ C.T) / Mb.shape[1] ** 2)


@dataclass
class KhypeOperator:
    """What K-Hype precomputes from the endmembers ``M0 (R, B)``: ``C (R, R)`` (upper Cholesky
    factor of ``H``), ``W (B, R)`` with ``z = r W``, ``G (B, B)`` and ``mu``."""

    M0: NDArray[np.float64]
    C: NDArray[np.float64]
    W: NDArray[np.float64]
    G: NDArray[np.float64]
    mu: float

    @classmethod
    def build(cls, M0: NDArray[np.floating], config: KhypeConfig) -> KhypeOperator:
        M0 = np.asarray(M0, dtype=np.float64)
        R, B = M0.shape
        if B > MAX_BANDS:
            raise InvalidSceneError(
                f"khype: {B} bands exceed its limit of {MAX_BANDS} (its B x B kernel matrices "
                f"would take {3 * B * B * 8 / 2**30:.1f} GiB); drop bands (--drop-bands) or use "
                "-m gbm / -m ppnmm")
        Mb = M0.T  # (B, R): row λ is m_λ
        K = band_kernel(Mb, config.kernel, config.sigma)
        K[np.diag_indices(B)] += config.mu
        factor = scipy.linalg.cho_factor(K, lower=False, overwrite_a=True, check_finite=False)
        G = scipy.linalg.cho_solve(factor, np.eye(B), check_finite=False)
        del factor, K
        G = 0.5 * (G + G.T)
        GM = G @ Mb  # (B, R)
        H = np.eye(R) + Mb.T @ GM
        C = scipy.linalg.cholesky(H, lower=False)  # H = Cᵀ C
        # z = C⁻ᵀ Mᵀ G r  ->  row form z = r (G M C⁻¹)
        W = scipy.linalg.solve_triangular(C, GM.T, trans="T", lower=False).T  # (B, R)
        return cls(M0=M0, C=C, W=W, G=G, mu=float(config.mu))

    def solve(self, Y: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                       NDArray[np.float64]]:
        """Pixels ``Y (N, B)`` -> abundances ``(N, R)``, modelled spectra ``(N, B)`` and the
        nonlinear share ``‖ψ‖ / ‖r̂‖`` ``(N,)``, in batches of :data:`BATCH` pixels."""
        Y = np.asarray(Y)
        N, B = Y.shape
        R = self.M0.shape[0]
        A = np.empty((N, R))
        rec = np.empty((N, B))
        share = np.empty(N)
        for s0 in range(0, N, BATCH):
            r = np.asarray(Y[s0:s0 + BATCH], dtype=np.float64)
            a = fcls(r @ self.W, self.C.T)
            lin = a @ self.M0
            psi = (r - lin) - self.mu * ((r - lin) @ self.G)  # K β = (I − μ G) s
            full = lin + psi
            A[s0:s0 + BATCH] = a
            rec[s0:s0 + BATCH] = full
            share[s0:s0 + BATCH] = (np.linalg.norm(psi, axis=1)
                                    / np.maximum(np.linalg.norm(full, axis=1), 1e-12))
        return A, rec, share


class KhypeUnmixer(Unmixer):
    """K-Hype on the extracted endmembers (the paper's "VCA + K-Hype": the endmembers stay
    fixed; only abundances and the nonlinear term are estimated)."""

    name = "khype"
    description = ("K-Hype (Chen et al. 2013): kernel nonlinear unmixing, linear mixture + an "
                   "RKHS term per pixel; Gaussian kernel, endmembers fixed")
    doi = "10.1109/TSP.2012.2222390"
    Config = KhypeConfig
    extra_outputs: ClassVar[tuple[str, ...]] = ("nonlinearity",)

    def __init__(self, config: KhypeConfig | None = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.operator: KhypeOperator | None = None

    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Precompute the shared QP from ``M0 (k, B)`` (``Y`` only checked for its bands)."""
        M0 = np.asarray(M0, dtype=np.float64)
        if M0.ndim != 2 or not np.isfinite(M0).all():
            raise EndmemberError("khype: endmembers must be a finite (k, bands) matrix")
        if np.ndim(Y) == 2 and np.shape(Y)[1] != M0.shape[1]:
            raise EndmemberError(f"khype: endmembers have {M0.shape[1]} bands but the pixels "
                                 f"have {np.shape(Y)[1]}; give endmembers on the scene's bands")
        self.operator = KhypeOperator.build(M0, self.config)
        self.endmembers = M0.astype("float32")
        self.fit_info["khype"] = {"kernel": self.config.kernel, "sigma": self.config.sigma,
                                  "mu": self.config.mu, "bands": int(M0.shape[1])}

    def _require(self) -> KhypeOperator:
        if self.operator is None:
            raise ConfigError("khype: fit the model before computing abundances")
        return self.operator

    def abundances_and_extras(self, Y: np.ndarray
                              ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """``(A (N, k), {"nonlinearity": (N,)}, modelled spectra (N, B))``, float32."""
        A, rec, share = self._require().solve(Y)
        return (A.astype("float32"), {"nonlinearity": share.astype("float32")},
                rec.astype("float32"))

    def abundances(self, Y: np.ndarray) -> np.ndarray:
        return self.abundances_and_extras(Y)[0]

    def reconstruct(self, A: np.ndarray) -> np.ndarray:
        """Linear part ``A M`` only: the nonlinear term depends on each pixel's own spectrum
        (the written RMSE uses the full model, see :meth:`abundances_and_extras`)."""
        return A @ self.endmembers


__all__ = ["KhypeConfig", "KhypeOperator", "KhypeUnmixer", "band_kernel"]
