"""ATGP — Automatic Target Generation Process (Ren & Chang 2003; baselines.md A4).

Also holds :func:`validate_pixels`, the input check shared by all extractors.

Shapes: pixels are rows, ``Y (N, L)``; endmembers ``M (k, L)``; indices ``idx (k,)`` into Y.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError

__all__ = ["atgp", "validate_pixels"]


def validate_pixels(
    Y: ArrayLike, k: int | None, *, what: str = "endmembers", as_float64: bool = True
) -> NDArray[np.floating]:
    """Check ``Y (N, L)`` (finite, 2-D) and ``1 <= k <= min(N, L)``; return Y as float64.

    ``k=None`` skips the k checks (subspace estimation); ``as_float64=False`` keeps a
    floating dtype as it is (no copy). Raises InvalidSceneError for a bad
    pixel matrix (NaN/inf: remove nodata first), ConfigError for a non-integer k and
    EndmemberError for a k the data cannot support.
    """
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise InvalidSceneError(
            f"pixel matrix Y must be 2-D (N pixels, L bands); got shape {Y.shape}"
        )
    N, L = Y.shape
    if N == 0 or L == 0:
        raise InvalidSceneError(f"pixel matrix Y is empty (shape {Y.shape})")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise ConfigError(f"number of {what} must be an integer, got {k!r}")
        if k < 1:
            raise EndmemberError(f"number of {what} must be >= 1, got {k}")
        if k > L:
            raise EndmemberError(
                f"cannot extract {k} {what} from {L} bands: k must not exceed the band count"
            )
        if k > N:
            raise EndmemberError(
                f"cannot extract {k} {what} from only {N} pixels: k must not exceed the "
                "number of (valid) pixels"
            )
    if as_float64 or not np.issubdtype(Y.dtype, np.floating):
        Y = np.asarray(Y, dtype=np.float64)
    if not np.isfinite(Y).all():
        raise InvalidSceneError(
            "pixel matrix Y contains NaN or infinite values; remove nodata pixels first"
        )
    return Y


def atgp(Y: ArrayLike, k: int, *, seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """ATGP endmembers: ``M (k, L)`` (rows of Y) and their pixel indices ``idx (k,)``.

    t₁ = argmax ‖y‖²; then t_j = argmax ‖P⊥ y‖² with P⊥ the projector onto the orthogonal
    complement of the pixels chosen so far (modified Gram–Schmidt on all pixels, vectorised).
    Deterministic; ``seed`` is accepted for a uniform extractor signature and ignored.
    Raises EndmemberError when the pixels span fewer than k dimensions.
    """
    del seed
    Y = validate_pixels(Y, k)
    R = Y.copy()  # residuals of every pixel after projecting out the chosen targets
    res2 = np.einsum("ij,ij->i", R, R)
    scale = float(res2.max())
    if scale == 0.0:
        raise EndmemberError("all pixels are zero: no endmembers can be extracted")
    idx = np.empty(k, dtype=np.intp)
    for j in range(k):
        t = int(np.argmax(res2))
        if j > 0 and res2[t] <= 1e-24 * scale:
            raise EndmemberError(
                f"the pixels span only {j} linearly independent directions; "
                f"cannot extract {k} endmembers with ATGP"
            )
        idx[j] = t
        q = R[t] / np.sqrt(res2[t])
        R -= np.outer(R @ q, q)
        res2 = np.einsum("ij,ij->i", R, R)
        res2[idx[: j + 1]] = -1.0  # never pick a pixel twice
    return Y[idx].copy(), idx
