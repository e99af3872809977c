"""Classical abundance estimators (baselines.md B1–B4) and their registry.

Shapes: ``Y (N, L)`` pixels as rows, ``M (k, L)`` endmembers as rows → ``A (N, k)``.
"""

from __future__ import annotations

from numpy.typing import ArrayLike

from hsu_geo.errors import ConfigError
from hsu_geo.unmix.classical.lsq import (
    Estimator,
    FloatArray,
    fcls,
    fcls_kkt_residual,
    nnls,
    nnls_kkt_residual,
    reconstruction_rmse,
    scaled_fcls,
    scls,
    ucls,
)

#: Name → estimator ``f(Y (N, L), M (k, L)) -> A (N, k)``.
ESTIMATORS: dict[str, Estimator] = {"fcls": fcls, "nnls": nnls, "ucls": ucls, "scls": scls}


def estimate_abundances(Y: ArrayLike, M: ArrayLike, method: str = "fcls") -> FloatArray:
    """Abundances ``A (N, k)`` of pixels ``Y (N, L)`` for endmembers ``M (k, L)``.

    ``method`` is one of :data:`ESTIMATORS` (case-insensitive); anything else → ConfigError.
    """
    key = method.lower() if isinstance(method, str) else method
    if key not in ESTIMATORS:
        raise ConfigError(
            f"unknown abundance estimator {method!r}; valid: {', '.join(sorted(ESTIMATORS))}"
        )
    return ESTIMATORS[key](Y, M)


__all__ = [
    "ESTIMATORS",
    "estimate_abundances",
    "fcls",
    "fcls_kkt_residual",
    "nnls",
    "nnls_kkt_residual",
    "reconstruction_rmse",
    "scaled_fcls",
    "scls",
    "ucls",
]
