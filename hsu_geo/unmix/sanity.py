"""Degenerate fits: refuse the meaningless ones, warn about the suspicious ones.

:func:`hsu_geo.pipeline.fit_model` calls :func:`check_sample` before endmembers are found (a
scene without variance has nothing to unmix), :func:`check_endmembers` before the fit (all
endmembers zero) and :func:`check_fit` after it (zero or duplicate endmembers, abundances that
are the same at every sampled pixel). Warnings are logged and appended to
``unmixer.fit_info["warnings"]`` (run.json ``extra.fit.warnings``).
"""

from __future__ import annotations

import logging

import numpy as np

from hsu_geo.errors import EndmemberError, InvalidSceneError
from hsu_geo.unmix.base import Unmixer

log = logging.getLogger(__name__)

#: a spread or norm below this fraction of the data's magnitude counts as zero
REL_TOL = 1e-6
#: endmembers closer than this spectral angle (rad; 0.06 degrees) are duplicates
DUPLICATE_ANGLE_RAD = 1e-3
#: at most this many sampled pixels are unmixed for the abundance check
CHECK_PIXELS = 2000
#: abundance maps whose spread over the checked pixels is below this are constant
CONSTANT_SPREAD = 1e-4


def check_sample(Y: np.ndarray, scene_id: str) -> None:
    """Refuse a pixel sample ``Y (N, L)`` without variance (e.g. an all-zero scene)."""
    if Y.size == 0:
        return
    peak = float(np.max(np.abs(Y)))
    if peak == 0.0:
        raise InvalidSceneError(
            f"{scene_id}: every valid pixel is 0 in every kept band, so there is nothing to "
            "unmix; check the file, its nodata value and scale factor (bands forced in with "
            "--keep-bands may be empty)")
    spread = float(np.max(Y.max(axis=0) - Y.min(axis=0)))
    if Y.shape[0] > 1 and spread <= REL_TOL * peak:
        raise InvalidSceneError(
            f"{scene_id}: all {Y.shape[0]} sampled valid pixels have the same spectrum, so "
            "there is nothing to unmix; check the file and its nodata value (an undeclared "
            "constant fill value?)")


def _zero_rows(M: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Rows of ``M (k, L)`` whose norm is negligible next to a typical pixel of ``Y``."""
    scale = float(np.median(np.linalg.norm(Y, axis=1))) if Y.size else 0.0
    return np.linalg.norm(M, axis=1) <= REL_TOL * max(scale, np.finfo("float64").tiny)


def check_endmembers(M: np.ndarray, Y: np.ndarray, scene_id: str) -> None:
    """Refuse endmembers ``M (k, L)`` that are all zero: every fit with them is meaningless."""
    M = np.asarray(M, dtype="float64")
    if M.size and bool(_zero_rows(M, Y).all()):
        raise EndmemberError(
            f"{scene_id}: every endmember spectrum is zero, so any abundance is meaningless; "
            "check the --endmembers file or --library names, or extract endmembers from the "
            "scene (omit --endmembers/--library)")


def fit_warnings(Y: np.ndarray, unmixer: Unmixer, names: list[str], scene_id: str) -> list[str]:
    """Warnings about a fitted ``unmixer``: zero or duplicate endmembers, constant abundances.

    Raises :class:`EndmemberError` when the fitted endmembers are all zero.
    """
    if unmixer.endmembers is None:
        return []
    M = np.asarray(unmixer.endmembers, dtype="float64")
    check_endmembers(M, Y, scene_id)
    found: list[str] = []
    zero = _zero_rows(M, Y)
    for i in np.flatnonzero(zero):
        found.append(f"{scene_id}: endmember {names[i]} is (near) zero; its abundance map is "
                     "meaningless")
    live = np.flatnonzero(~zero)
    unit = M[live] / np.linalg.norm(M[live], axis=1, keepdims=True)
    angles = np.arccos(np.clip(unit @ unit.T, -1.0, 1.0))
    for a, b in zip(*np.triu_indices(live.size, k=1), strict=True):
        i, j = live[a], live[b]
        if np.array_equal(M[i], M[j]) or angles[a, b] < DUPLICATE_ANGLE_RAD:
            found.append(
                f"{scene_id}: endmembers {names[i]} and {names[j]} have the same spectrum "
                f"(spectral angle {angles[a, b]:.2g} rad), so their abundances cannot be told "
                "apart; use fewer endmembers (-k) or another endmember set")
    if Y.shape[0] > 1:
        pick = np.unique(np.linspace(0, Y.shape[0] - 1, min(Y.shape[0], CHECK_PIXELS))
                         .astype(int))
        A = np.asarray(unmixer.abundances(np.ascontiguousarray(Y[pick])), dtype="float64")
        if A.size and np.all(np.isfinite(A)) and \
                float(np.max(A.max(axis=0) - A.min(axis=0))) <= CONSTANT_SPREAD:
            found.append(
                f"{scene_id}: the abundances are the same at all {pick.size} checked pixels "
                f"({', '.join(f'{n}={v:.3g}' for n, v in zip(names, A[0], strict=False))}), "
                "so the maps carry no information; check the endmembers and the kept bands")
    return found


def check_fit(Y: np.ndarray, unmixer: Unmixer, names: list[str], scene_id: str) -> None:
    """Log :func:`fit_warnings` and append them to ``unmixer.fit_info["warnings"]``."""
    found = fit_warnings(Y, unmixer, names, scene_id)
    if not found:
        return
    unmixer.fit_info["warnings"] = list(unmixer.fit_info.get("warnings", [])) + found
    for msg in found:
        log.warning("%s", msg)
