"""Classical least-squares unmixing as an :class:`Unmixer`: endmembers fixed, abundances by
FCLS / NNLS / UCLS / SCLS (baselines.md B1-B4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hsu_geo.errors import ConfigError
from hsu_geo.unmix.base import Unmixer
from hsu_geo.unmix.classical import estimate_abundances, scaled_fcls

#: ``--set brightness=...`` values of fcls
BRIGHTNESS_MODES = ("auto", "scaled", "none")


class LeastSquaresUnmixer(Unmixer):
    """Linear mixing model with endmembers from extraction or a library; no training."""

    method: ClassVar[str] = "fcls"

    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        self.endmembers = np.asarray(M0, dtype="float32")

    def abundances(self, Y: np.ndarray) -> np.ndarray:
        return estimate_abundances(Y, self.endmembers, self.method).astype("float32")


@dataclass(frozen=True)
class FclsConfig:
    """Settings of fcls.

    Attributes:
        brightness: ``scaled`` fits a per-pixel brightness ``s`` with the fractions,
            ``y ~ s * sum_i f_i m_i`` with ``f >= 0``, ``sum f = 1``, ``s >= 0`` (as MESMA does
            with its shade/scale term): library spectra measured in a lab rarely match the
            scene's overall brightness (illumination, topography, grain size). ``none`` is
            plain FCLS at the endmembers' own brightness. ``auto`` (default): ``scaled`` when
            the endmembers come from ``--library``/``--endmembers``, ``none`` when they are
            extracted from the scene (they already carry its brightness).
    """

    brightness: str = "auto"

    def __post_init__(self) -> None:
        mode = str(self.brightness).strip().lower()
        if mode not in BRIGHTNESS_MODES:
            raise ConfigError(f"setting brightness={self.brightness!r}: choose one of "
                              f"{', '.join(BRIGHTNESS_MODES)}")
        object.__setattr__(self, "brightness", mode)


class FclsUnmixer(LeastSquaresUnmixer):
    name = "fcls"
    method = "fcls"
    description = ("Fully constrained least squares (non-negative, sum-to-one); with "
                   "brightness=scaled also a per-pixel brightness factor")
    doi = "10.1109/36.911111"
    Config = FclsConfig

    @property
    def fits_brightness(self) -> bool:
        """Whether :meth:`abundances_and_brightness` returns a per-pixel brightness."""
        return getattr(self.config, "brightness", "none") == "scaled"

    def abundances_and_brightness(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(A (N, k), s (N,))``; ``s`` is None unless ``brightness=scaled``. The modelled
        spectra are ``s[:, None] * (A @ M)``."""
        if not self.fits_brightness:
            return super().abundances(Y), None
        A, s = scaled_fcls(Y, self.endmembers)
        return A.astype("float32"), s.astype("float32")

    def abundances(self, Y: np.ndarray) -> np.ndarray:
        return self.abundances_and_brightness(Y)[0]


class NnlsUnmixer(LeastSquaresUnmixer):
    name = "nnls"
    method = "nnls"
    description = "Non-negative least squares (no sum-to-one)"
    doi = "10.1137/1.9781611971217"


class UclsUnmixer(LeastSquaresUnmixer):
    name = "ucls"
    method = "ucls"
    description = "Unconstrained least squares"


class SclsUnmixer(LeastSquaresUnmixer):
    name = "scls"
    method = "scls"
    description = "Sum-to-one constrained least squares"
