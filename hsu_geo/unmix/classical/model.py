"""Classical least-squares unmixing as an :class:`Unmixer`: endmembers fixed, abundances by
FCLS / NNLS / UCLS / SCLS (baselines.md B1-B4)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from hsu_geo.unmix.base import Unmixer
from hsu_geo.unmix.classical import estimate_abundances


class LeastSquaresUnmixer(Unmixer):
    """Linear mixing model with endmembers from extraction or a library; no training."""

    method: ClassVar[str] = "fcls"

    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        self.endmembers = np.asarray(M0, dtype="float32")

    def abundances(self, Y: np.ndarray) -> np.ndarray:
        return estimate_abundances(Y, self.endmembers, self.method).astype("float32")


class FclsUnmixer(LeastSquaresUnmixer):
    name = "fcls"
    method = "fcls"
    description = "Fully constrained least squares (non-negative, sum-to-one)"
    doi = "10.1109/36.911111"


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
