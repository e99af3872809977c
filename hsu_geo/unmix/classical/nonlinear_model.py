"""Nonlinear classical unmixing as :class:`Unmixer`: ``ppnmm`` and ``gbm`` with a blind
per-scene linearity gate and an optional spatial prior (solvers in
:mod:`hsu_geo.unmix.classical.nonlinear`).

Extra per-pixel outputs (``extra_outputs``, written as ``S_M_nonlinearity.tif`` and
``S_M_fit_quality.tif``):

- ``nonlinearity``: PPNMM ``b`` (unitless; 0 = linear), GBM the mean of the ``γ_ij`` weighted
  by ``a_i a_j`` (the share of each pair in the pixel; 0 for a pure pixel, where no ``γ`` is
  defined). 0 where the gate kept the linear model.
- ``fit_quality``: 0 = nonlinear fit converged, 1 = not converged within ``max_iter`` (the
  abundances are the last feasible iterate, on the simplex), 2 = linear (FCLS) result kept by
  the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hsu_geo.errors import ConfigError
from hsu_geo.unmix.base import Unmixer
from hsu_geo.unmix.classical.lsq import fcls
from hsu_geo.unmix.classical.nonlinear import (
    CONVERGED,
    DEFAULT_TOL,
    LINEAR_KEPT,
    NOT_CONVERGED,
    check_problem,
    fit_nonlinear,
    forward,
    linearity_gate,
    scene_noise_std,
)

GATE_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class NonlinearConfig:
    """Settings of ppnmm / gbm.

    Attributes:
        gate: ``auto`` (default) fits the nonlinear model on the pixel sample and keeps FCLS
            for the whole scene unless the nonlinear fit explains clearly more than fitting
            noise would (see :func:`~hsu_geo.unmix.classical.nonlinear.linearity_gate`);
            ``always`` uses the nonlinear fit, ``never`` FCLS (for comparisons).
        gate_threshold: the nonlinear model is kept when its mean residual decrease per pixel
            exceeds ``gate_threshold`` times what it explains on simulated linear data with
            the scene's noise and noisy endmembers. 5: the smallest value of the grid
            1.25-10 that kept every linear design scene (synth seeds 100-104, true and
            extracted endmembers, 10/20/30 dB) within 5 % of FCLS; reported seeds 0-4 were not
            used (sensitivity table in benchmarks/nonlinear.py).
        spatial: odd window (pixels) of a neighbourhood mean of the data before the fit, a
            spatial prior for low SNR; 0 or 1 = off (default). Computed with a halo of
            ``spatial // 2`` pixels across chunk edges (the result does not depend on
            ``--chunk-size``); at the scene edge the mean is over the neighbours inside it.
        max_iter: Gauss-Newton iterations per pixel before a pixel is flagged not converged.
        tol: convergence step (abundance units).
    """

    gate: str = "auto"
    gate_threshold: float = 5.0
    spatial: int = 0
    max_iter: int = 30
    tol: float = DEFAULT_TOL

    def __post_init__(self) -> None:
        mode = str(self.gate).strip().lower()
        if mode not in GATE_MODES:
            raise ConfigError(f"setting gate={self.gate!r}: choose one of {', '.join(GATE_MODES)}")
        object.__setattr__(self, "gate", mode)
        if not self.gate_threshold > 1:
            raise ConfigError(f"setting gate_threshold={self.gate_threshold}: use a value > 1 "
                              "(1 = what fitting noise alone explains)")
        if self.spatial < 0 or (self.spatial > 1 and self.spatial % 2 == 0) or self.spatial > 15:
            raise ConfigError(f"setting spatial={self.spatial}: use 0 (off) or an odd window "
                              "of 3 to 15 pixels")
        if self.max_iter < 1 or not self.tol > 0:
            raise ConfigError(f"settings max_iter={self.max_iter}, tol={self.tol}: use "
                              "max_iter >= 1 and tol > 0")


@dataclass(frozen=True)
class GbmConfig(NonlinearConfig):
    """:class:`NonlinearConfig` plus GBM's prior on the interaction coefficients.

    Attributes:
        gamma_prior: weight ``w`` of the Gaussian prior ``w σ̂² Σ (γ_ij - ½)²`` added to the
            least squares (``σ̂``: the scene's noise, as the gate estimates it; divided by the
            spatial window's ``w²`` when ``spatial`` averages the data). 12 (default) = 1 / Var
            of U(0, 1): the Gaussian with the mean and variance of GBM's uniform prior on γ
            (Halimi et al. 2011), fixed a priori. It settles γ the data do not determine at
            ½; measured on synthetic USGS mixtures (not the benchmark sets): 9-19 → 5-6
            Gauss-Newton iterations, every pixel converged, abundance error unchanged or lower.
            0 = plain least squares (the previous estimator).
    """

    gamma_prior: float = 12.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.isfinite(self.gamma_prior) and self.gamma_prior >= 0):
            raise ConfigError(f"setting gamma_prior={self.gamma_prior}: use a finite value >= 0 "
                              "(0 = plain least squares)")


class NonlinearUnmixer(Unmixer):
    """Fixed endmembers (extracted or library), abundances of a nonlinear mixing model."""

    kind: ClassVar[str] = "ppnmm"
    Config = NonlinearConfig
    #: per-pixel outputs beyond abundances and RMSE (see the module docstring)
    extra_outputs: ClassVar[tuple[str, ...]] = ("nonlinearity", "fit_quality")

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.nonlinear = True
        #: λ of GBM's γ prior for the scene's fit (set by :meth:`fit`; 0 = none)
        self.gamma_prior = 0.0

    @property
    def spatial_window(self) -> int:
        """Window of the neighbourhood mean applied to each chunk before the fit (0 = off)."""
        w = int(self.config.spatial)
        return w if w > 1 else 0

    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        self.endmembers = np.asarray(M0, dtype="float32")
        check_problem(Y, self.endmembers, self.kind)
        cfg = self.config
        weight = float(getattr(cfg, "gamma_prior", GbmConfig.gamma_prior))
        if cfg.gate == "auto":
            self.nonlinear, evidence = linearity_gate(
                Y, self.endmembers, self.kind, threshold=cfg.gate_threshold,
                spatial=self.spatial_window, max_iter=cfg.max_iter, tol=cfg.tol,
                gamma_prior_weight=weight)
        else:
            self.nonlinear = cfg.gate == "always"
            evidence = {"mode": cfg.gate, "decision": "nonlinear" if self.nonlinear else "linear"}
        self.fit_info["nonlinear_gate"] = evidence
        if self.kind == "gbm":
            self._set_gamma_prior(Y, weight, evidence.get("noise_std"))

    def restore_fit_info(self) -> None:
        """Re-apply the fit's decisions from ``fit_info`` (a fitted model read back from its
        npz: the gate's decision and GBM's ``λ``), so a reloaded model unmixes as it did."""
        gate = self.fit_info.get("nonlinear_gate") or {}
        self.nonlinear = gate.get("decision", "nonlinear") == "nonlinear"
        self.gamma_prior = float((self.fit_info.get("gamma_prior") or {}).get("lam") or 0.0)

    def _set_gamma_prior(self, Y: np.ndarray, weight: float, sigma: float | None) -> None:
        """``λ = weight σ̂² / w²`` for the scene's GBM fit (``w``: the spatial window)."""
        info: dict[str, Any] = {"weight": weight}
        if weight > 0 and sigma is None:
            sigma = scene_noise_std(Y)
        if weight > 0 and sigma is None:
            info["reason"] = ("too few sample pixels to estimate the noise; γ fitted by plain "
                              "least squares")
        gain = float(self.spatial_window ** 2) if self.spatial_window else 1.0
        self.gamma_prior = weight * sigma * sigma / gain if weight > 0 and sigma else 0.0
        info.update(noise_std=sigma, spatial_noise_reduction=gain, lam=self.gamma_prior)
        self.fit_info["gamma_prior"] = info

    def abundances_and_extras(self, Y: np.ndarray
                              ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """``(A (N, k), {"nonlinearity": (N,), "fit_quality": (N,)}, modelled spectra (N, L))``,
        float32."""
        M = self.endmembers
        N = Y.shape[0]
        if not self.nonlinear:
            A = fcls(Y, M).astype("float32")
            extras = {"nonlinearity": np.zeros(N, "float32"),
                      "fit_quality": np.full(N, LINEAR_KEPT, "float32")}
            return A, extras, A @ M
        res = fit_nonlinear(Y, M, self.kind, max_iter=self.config.max_iter, tol=self.config.tol,
                            gamma_prior=self.gamma_prior)
        A = res.A.astype("float32")
        theta = res.theta.astype("float32")
        if self.kind == "ppnmm":
            summary = theta[:, 0]
        else:
            i, j = np.triu_indices(M.shape[0], 1)
            w = A[:, i] * A[:, j]
            tot = w.sum(axis=1)
            summary = np.where(tot > 1e-6, (w * theta).sum(axis=1) / np.maximum(tot, 1e-6), 0.0)
        quality = np.where(res.converged, CONVERGED, NOT_CONVERGED).astype("float32")
        extras = {"nonlinearity": summary.astype("float32"), "fit_quality": quality}
        return A, extras, forward(self.kind, A, M, theta)

    def abundances(self, Y: np.ndarray) -> np.ndarray:
        return self.abundances_and_extras(Y)[0]


class PpnmmUnmixer(NonlinearUnmixer):
    name = "ppnmm"
    kind = "ppnmm"
    description = ("Polynomial post-nonlinear mixing y = s + b s⊙s (s = Mᵀa), least squares per "
                   "pixel; b per pixel in an extra raster; blind linear/nonlinear gate")
    doi = "10.1109/TIP.2012.2187668"


class GbmUnmixer(NonlinearUnmixer):
    name = "gbm"
    kind = "gbm"
    description = ("Generalized bilinear model y = Mᵀa + Σ γ_ij a_i a_j m_i⊙m_j, 0 <= γ <= 1, "
                   "least squares per pixel with a weak Gaussian prior on γ; mean γ in an "
                   "extra raster; blind gate")
    doi = "10.1109/TGRS.2011.2140119"
    Config = GbmConfig
