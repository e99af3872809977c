"""Sparse unmixing with a total-variation prior: SUnSAL-TV (Iordache, Bioucas-Dias & Plaza
2012, doi:10.1109/TGRS.2012.2191590), block by block with a halo.

Problem, for the abundance maps ``X (k, H, W)`` of an image ``Y (L, H, W)`` and library
``M (k, L)`` (rows scaled to unit norm, as in :mod:`hsu_geo.unmix.classical.sunsal`)::

    min_X  1/2 ||MᵀX - Y||² + λ ||X||₁ + λ_TV Σ |∇X|₁   s.t.  X >= 0

with ``∇`` the forward differences between horizontal and vertical neighbours of each map
(anisotropic TV; Neumann boundary: no difference across the image edge). ADMM with the splits
``U1 = X`` (ℓ1 + non-negativity: a one-sided shrinkage) and ``U2 = ∇X`` (soft threshold). The
``X``-step solves ``(G + μI + μ ∇ᵀ∇) X = R`` exactly: ``G = M Mᵀ`` is diagonalised by its
eigenvectors and the Neumann Laplacian ``∇ᵀ∇`` by the 2-D DCT-II, so one step is a ``(k, k)``
rotation, a DCT, a division and the inverse DCT — no large linear system. ``μ`` is rebalanced
every 10 iterations (primal against dual residual) and the loop stops when both, relative to
the abundances, are below ``tol``.

TV couples every pixel of a block with every other: the level of a flat region depends on the
whole region. The spatial engine solves each block with ``halo`` pixels of true neighbours on
each side (reflected at the scene edge, where the Neumann boundary of the solver applies too)
and keeps the interior, so chunk edges are approximate, not exact as for the convolutional
models: on a scene of three large flat regions at 3 % noise, 16 x 16 and 64 x 64 chunks differ
by at most 0.015 / 0.005 / 0.0024 in abundance with a halo of 4 / 8 / 16 pixels (the default
is 16; the ADMM tolerance does not change these).

The library members are selected first, exactly as ``-m sunsal`` does (sparse regression on the
pixel sample, backward elimination); SUnSAL-TV then unmixes the scene with the selected
members. Abundances are written as fractions (each pixel divided by its sum: the sum carries
the brightness, which this spatial model does not write as a raster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.fft import dctn, idctn

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix.classical.sunsal import (
    CHECK_EVERY,
    MU_BALANCE,
    SunsalConfig,
    SunsalUnmixer,
    noise_sigma,
)

__all__ = ["SunsalTVConfig", "SunsalTVInfo", "SunsalTVUnmixer", "sunsal_tv"]


@dataclass
class SunsalTVInfo:
    """Convergence record of one :func:`sunsal_tv` call."""

    iterations: int
    converged: bool
    mu: float


def _grad(X: NDArray[np.float64]) -> NDArray[np.float64]:
    """Forward differences ``(2, k, H, W)`` of ``X (k, H, W)``; zero across the last row /
    column (Neumann boundary)."""
    G = np.zeros((2, *X.shape))
    G[0, :, :, :-1] = X[:, :, 1:] - X[:, :, :-1]
    G[1, :, :-1, :] = X[:, 1:, :] - X[:, :-1, :]
    return G


def _grad_t(U: NDArray[np.float64]) -> NDArray[np.float64]:
    """Adjoint of :func:`_grad`: ``(k, H, W)``."""
    out = np.zeros(U.shape[1:])
    out[:, :, :-1] -= U[0, :, :, :-1]
    out[:, :, 1:] += U[0, :, :, :-1]
    out[:, :-1, :] -= U[1, :, :-1, :]
    out[:, 1:, :] += U[1, :, :-1, :]
    return out


def _laplacian_eigenvalues(H: int, W: int) -> NDArray[np.float64]:
    """Eigenvalues ``(H, W)`` of the Neumann Laplacian ``∇ᵀ∇`` in the DCT-II basis."""
    ey = 2.0 - 2.0 * np.cos(np.pi * np.arange(H) / H)
    ex = 2.0 - 2.0 * np.cos(np.pi * np.arange(W) / W)
    return ey[:, None] + ex[None, :]


def sunsal_tv(cube: ArrayLike, M: ArrayLike, lam: float, lam_tv: float, *,
              max_iter: int = 300, tol: float = 1e-4
              ) -> tuple[NDArray[np.float64], SunsalTVInfo]:
    """Non-negative sparse abundances ``A (k, H, W)`` of ``cube (L, H, W)`` (finite) on library
    ``M (k, L)`` with a TV prior; ``lam`` and ``lam_tv`` (>= 0) in the units of the cube, on
    unit-norm library rows (module docstring). ``A`` is on the library's own scale
    (``cube ≈ Σ_j A_j m_j``). ``lam_tv = 0`` gives per-pixel SUnSAL (without sum-to-one)."""
    Y = np.asarray(cube, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    if Y.ndim != 3:
        raise InvalidSceneError(f"sunsal_tv needs a (bands, rows, cols) image; got {Y.shape}")
    if M.ndim != 2 or M.shape[1] != Y.shape[0]:
        raise EndmemberError(f"library spectra have shape {M.shape} but the image has "
                             f"{Y.shape[0]} bands; resample the library to the scene bands")
    if not np.isfinite(Y).all():
        raise InvalidSceneError("image contains NaN or infinite values; fill nodata first")
    for name, value in (("lambda", lam), ("lambda_tv", lam_tv)):
        if not (np.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
    if max_iter < 1 or not (np.isfinite(tol) and tol > 0):
        raise ConfigError(f"max_iter must be >= 1 and tol > 0 (got {max_iter}, {tol})")
    norms = np.linalg.norm(M, axis=1)
    if not (norms > 0).all():
        raise EndmemberError(f"library spectrum {int(np.argmin(norms)) + 1} is all zeros")
    L, H, W = Y.shape
    k = M.shape[0]
    ys = float(np.sqrt(np.mean(np.square(Y)))) or 1.0  # unit-RMS pixels: scale-free μ, tol
    Mn = M / norms[:, None]
    s, V = np.linalg.eigh(Mn @ Mn.T)
    s = np.maximum(s, 0.0)
    B = (Mn @ Y.reshape(L, -1) / ys).reshape(k, H, W)
    lap = _laplacian_eigenvalues(H, W)
    l1, ltv = lam / ys, lam_tv / ys

    def solve(R: NDArray[np.float64], mu: float) -> NDArray[np.float64]:
        Rt = dctn(np.einsum("ji,jhw->ihw", V, R), axes=(1, 2), type=2, norm="ortho")
        Rt /= s[:, None, None] + mu + mu * lap[None]
        return np.einsum("ij,jhw->ihw", V, idctn(Rt, axes=(1, 2), type=2, norm="ortho"))

    mu = 0.05  # as sunsal: where the balancing settles on unit-norm rows, unit-RMS pixels
    X = solve(B, mu)
    U1, U2 = np.maximum(X, 0.0), _grad(X)
    d1, d2 = np.zeros_like(U1), np.zeros_like(U2)
    it, converged = 0, False
    for it in range(1, max_iter + 1):
        X = solve(B + mu * (U1 - d1) + mu * _grad_t(U2 - d2), mu)
        GX = _grad(X)
        U1_old, U2_old = U1, U2
        U1 = np.maximum(X + d1 - l1 / mu, 0.0)
        V2 = GX + d2
        U2 = np.sign(V2) * np.maximum(np.abs(V2) - ltv / mu, 0.0)
        d1 += X - U1
        d2 += GX - U2
        if it % CHECK_EVERY and it != max_iter:
            continue
        scale = max(float(np.sqrt(np.sum(U1 * U1) + np.sum(U2 * U2))), 1e-12)
        rp = float(np.sqrt(np.sum((X - U1) ** 2) + np.sum((GX - U2) ** 2))) / scale
        rd = mu * float(np.sqrt(np.sum((U1 - U1_old) ** 2)
                                + np.sum(_grad_t(U2 - U2_old) ** 2))) / scale
        if rp < tol and rd < tol:
            converged = True
            break
        if rp > MU_BALANCE * rd:
            mu *= 2.0
            d1 *= 0.5
            d2 *= 0.5
        elif rd > MU_BALANCE * rp:
            mu *= 0.5
            d1 *= 2.0
            d2 *= 2.0
    return U1 * (ys / norms)[:, None, None], SunsalTVInfo(it, converged, mu)


@dataclass(frozen=True)
class SunsalTVConfig(SunsalConfig):
    """Settings of sunsal_tv: those of sunsal (the member selection) plus

    Attributes:
        tv: λ_TV in the units of the scene; 0 (default) = ``tv_noise`` × the noise σ
            estimated from the pixel sample.
        tv_noise: λ_TV in units of the noise σ. 0.1, chosen on development scenes (seeds
            100-104 of ``benchmarks/sunsal_tv.py``, smooth and piecewise-constant abundances,
            10-30 dB; best of the grid 0.03 / 0.1 / 0.3 / 1 in every row); 1 (sunsal's
            λ rule) over-smooths smooth fields.
        halo: pixels of context solved with each block on every side (16; chunk edges then
            agree to about 2.5e-3 in abundance, see the module docstring).
        tv_iter, tv_tol: ADMM iteration limit and relative residual per block.
    """

    tv: float = 0.0
    tv_noise: float = 0.1
    halo: int = 16
    tv_iter: int = 300
    tv_tol: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("tv", "tv_noise"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"setting {key}={value}: give a number >= 0")
        if not 0 <= self.halo <= 64:
            raise ConfigError(f"setting halo={self.halo}: use 0 to 64 pixels")
        if self.tv_iter < 1 or not (np.isfinite(self.tv_tol) and self.tv_tol > 0):
            raise ConfigError("settings tv_iter must be >= 1 and tv_tol > 0")


class SunsalTVUnmixer(SunsalUnmixer):
    """SUnSAL-TV: the library members present in the scene (selected as ``sunsal`` does, on
    the pixel sample), then abundances with a total-variation prior, block by block with a
    halo through the spatial engine (module docstring)."""

    name = "sunsal_tv"
    description = ("Sparse unmixing against the whole library with a total-variation prior "
                   "(SUnSAL-TV, ADMM with a DCT solver), block by block with a halo")
    doi = "10.1109/TGRS.2012.2191590"
    Config = SunsalTVConfig
    input: ClassVar[str] = "image"
    halo = 16  # the default config's; set per config
    #: the member selection runs on the pipeline's pixel sample, not on patches
    trains_on_pixels: ClassVar[bool] = True

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.halo = int(self.config.halo)
        #: λ_TV in scene units (set by :meth:`fit`)
        self.lam_tv: float | None = None

    @property
    def fits_brightness(self) -> bool:
        return False  # the spatial engine writes abundances and RMSE only

    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        super().fit(Y, M0)
        cfg = self.config
        sigma = self.fit_info["sunsal"].get("noise_sigma")
        if cfg.tv == 0 and sigma is None:
            sigma = noise_sigma(np.asarray(Y)[: cfg.fit_pixels])
        self.lam_tv = float(cfg.tv) if cfg.tv > 0 else cfg.tv_noise * float(sigma)
        self.fit_info["sunsal"].update(lambda_tv=self.lam_tv, halo=self.halo)

    def abundances_image(self, block: np.ndarray, valid: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Finite ``block (L, h + 2 halo, w + 2 halo)`` -> fractions ``(k, h, w)`` and the
        reconstruction RMSE ``(h, w)`` of the raw abundances, both of the interior."""
        info = self.fit_info.get("sunsal", {})  # a fitted model read back from disk has these
        lam = self.lam if self.lam is not None else info.get("lambda")
        lam_tv = self.lam_tv if self.lam_tv is not None else info.get("lambda_tv")
        if self.endmembers is None or lam is None or lam_tv is None:
            raise ConfigError("sunsal_tv: fit the model before computing abundances")
        cfg = self.config
        M = np.asarray(self.endmembers, dtype=np.float64)
        A, _ = sunsal_tv(block, M, lam, lam_tv, max_iter=cfg.tv_iter, tol=cfg.tv_tol)
        d = self.halo
        A = A[:, d:A.shape[1] - d, d:A.shape[2] - d]
        Y = np.asarray(block, dtype=np.float64)[:, d:block.shape[1] - d, d:block.shape[2] - d]
        rec = np.einsum("kl,khw->lhw", M, A)
        rmse = np.sqrt(np.mean(np.square(rec - Y), axis=0))
        tot = A.sum(axis=0)
        frac = np.where(tot > 0, A / np.where(tot > 0, tot, 1.0), 1.0 / A.shape[0])
        return frac.astype(np.float32), rmse.astype(np.float32)
