"""Score written unmixing outputs against reference endmembers and abundances.

Reads ``S_M_abundance.tif`` and ``S_M_endmembers.csv`` as a user would get them, matches the
estimated endmembers to the reference ones by the Hungarian assignment on the SAD matrix
(models/README.md "Metrics") over the bands the run kept, and returns the project metrics.
:func:`match_bands` pairs a run's bands with reference bands; :func:`reconstruction_scores`
computes the reconstruction metrics block by block (used by ``hsu-geo evaluate``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix.metrics import UnmixingScores, evaluate, recon_re, recon_rmse
from hsu_geo.write.tables import read_endmember_csv


def score_outputs(
    abundance_tif: str | Path,
    endmembers_csv: str | Path,
    ref_endmembers: np.ndarray,
    ref_band: np.ndarray,
    ref_abundances: np.ndarray | None = None,
) -> UnmixingScores:
    """Metrics of one run's outputs.

    Args:
        ref_endmembers: (k, bands) reference spectra on the original bands ``ref_band``.
        ref_abundances: (k, rows, cols) reference maps on the output grid, or None.
    """
    table = read_endmember_csv(endmembers_csv)
    pos = {int(b): i for i, b in enumerate(ref_band)}
    missing = [int(b) for b in table.band if int(b) not in pos]
    if missing:
        raise InvalidSceneError(f"{endmembers_csv}: bands {missing[:5]} are not in the reference")
    rows = [pos[int(b)] for b in table.band]
    M_ref = np.asarray(ref_endmembers)[:, rows]
    M_est = np.asarray(table.spectra)
    A_est = A_ref = None
    if ref_abundances is not None:
        with rasterio.open(abundance_tif) as src:
            est = src.read()
        ok = np.isfinite(est).all(axis=0)
        A_est = est[:, ok].T
        A_ref = np.asarray(ref_abundances)[:, ok].T
    return evaluate(M_ref, M_est, A_ref, A_est)


#: largest centre difference (nm) at which two bands count as the same band
BAND_TOLERANCE_NM = 0.5


@dataclass(frozen=True)
class BandMatch:
    """Rows ``ref_index (L,)`` of the reference bands that match each estimated band, and how
    they were found (``"band number"`` or ``"wavelength"``)."""

    ref_index: np.ndarray
    method: str


def match_bands(est_band: np.ndarray | None, est_wl: np.ndarray, ref_band: np.ndarray | None,
                ref_wl: np.ndarray, tol_nm: float = BAND_TOLERANCE_NM) -> BandMatch:
    """Reference band of every estimated band.

    By band number when both sides carry band numbers (their wavelengths must then agree
    within ``tol_nm``), else by the nearest reference wavelength within ``tol_nm`` (nm).
    Raises :class:`~hsu_geo.errors.EndmemberError` naming the first band that has no match.
    """
    est_wl, ref_wl = np.asarray(est_wl, float), np.asarray(ref_wl, float)
    if est_band is not None and ref_band is not None:
        pos = {int(b): i for i, b in enumerate(ref_band)}
        missing = [int(b) for b in est_band if int(b) not in pos]
        if missing:
            raise EndmemberError(f"bands {missing[:5]} of the run are not in the reference "
                                 "endmembers; the truth is on another band grid")
        idx = np.array([pos[int(b)] for b in est_band], dtype=np.intp)
        off = np.abs(ref_wl[idx] - est_wl)
        if np.any(off > tol_nm):
            j = int(np.argmax(off))
            raise EndmemberError(
                f"band {int(est_band[j])} is at {est_wl[j]:g} nm in the run but "
                f"{ref_wl[idx[j]]:g} nm in the reference; the truth is on another band grid"
            )
        return BandMatch(idx, "band number")
    idx = np.abs(est_wl[:, None] - ref_wl[None, :]).argmin(axis=1)
    off = np.abs(ref_wl[idx] - est_wl)
    if np.any(off > tol_nm):
        j = int(np.argmax(off))
        raise EndmemberError(f"no reference band within {tol_nm:g} nm of {est_wl[j]:g} nm "
                             "(a band the run kept); the truth is on another band grid")
    return BandMatch(idx.astype(np.intp), "wavelength")


@dataclass(frozen=True)
class ReconstructionScores:
    """RMSE_rec (units of Y), PSNR (dB, MAX = ``max_value``), RE (radians) over ``n_pixels``
    pixels and ``n_bands`` bands (models/README.md "Metrics")."""

    rmse: float
    psnr: float
    re: float
    max_value: float
    n_pixels: int
    n_bands: int


def reconstruction_scores(blocks: Iterable[tuple[np.ndarray, np.ndarray]],
                          max_value: float | None = None) -> ReconstructionScores:
    """Reconstruction metrics accumulated over pixel blocks ``(Y (n, L), Y_hat (n, L))``.

    Equal to :func:`~hsu_geo.unmix.metrics.recon_rmse`, ``recon_psnr`` and ``recon_re`` on all
    blocks stacked, without holding the whole image. MAX defaults to the largest Y.
    """
    sse = angle_sum = 0.0
    n = 0
    bands = 0
    peak = -np.inf
    for Y, Y_hat in blocks:
        if Y.shape[0] == 0:
            continue
        bands = Y.shape[1]
        sse += recon_rmse(Y, Y_hat) ** 2 * Y.size
        angle_sum += recon_re(Y, Y_hat) * Y.shape[0]
        peak = max(peak, float(np.max(Y)))
        n += Y.shape[0]
    if n == 0:
        raise InvalidSceneError("no valid pixel to compare the reconstruction with")
    mse = sse / (n * bands)
    top = peak if max_value is None else float(max_value)
    psnr = float("inf") if mse == 0 else float(10 * np.log10(top**2 / mse))
    return ReconstructionScores(float(np.sqrt(mse)), psnr, angle_sum / n, top, n, bands)


# --------------------------------------------------------------------------------------------
# Abundance conventions

#: abundance convention -> its definition (``hsu-geo evaluate --abundance-convention``)
ABUNDANCE_CONVENTIONS: dict[str, str] = {
    "physical": "abundances as written by the run (the model's own estimate), no re-derivation",
    "reference": "re-derived from the run's estimated endmembers M (k, L) and the scene Y on "
                 "the run's kept bands: a = NNLS(y; M_r / max_b M_rb for every endmember r), "
                 "then a / sum(a) per pixel (pixels whose NNLS solution is all zero are "
                 "excluded); the rule of the Samson and Jasper Ridge reference abundances",
    "fcls": "re-derived from the run's estimated endmembers M (k, L) and the scene Y on the "
            "run's kept bands: a = FCLS(y; M) (a >= 0, sum(a) = 1), endmembers as written; the "
            "rule of the Moffett reference abundances",
}


def convention_abundances(Y: np.ndarray, M: np.ndarray, convention: str) -> np.ndarray:
    """Abundances ``(N, k)`` of pixels ``Y (N, L)`` for endmembers ``M (k, L)`` under an
    abundance ``convention`` of :data:`ABUNDANCE_CONVENTIONS` other than ``physical``.

    ``reference``: NNLS on the endmembers each divided by its maximum, then each pixel divided
    by its sum; a pixel whose NNLS solution is all zero (e.g. a zero or negative spectrum) gets
    NaN. ``fcls``: FCLS on ``M`` as given. Non-finite pixels give NaN rows.
    """
    from hsu_geo.unmix.classical import fcls, nnls

    if convention not in ABUNDANCE_CONVENTIONS or convention == "physical":
        other = ", ".join(c for c in ABUNDANCE_CONVENTIONS if c != "physical")
        raise ConfigError(f"abundance convention {convention!r}: re-derivation needs one of "
                          f"{other}")
    Y = np.asarray(Y, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    A = np.full((Y.shape[0], M.shape[0]), np.nan)
    ok = np.isfinite(Y).all(axis=1)
    if not ok.any():
        return A
    if convention == "fcls":
        A[ok] = fcls(Y[ok], M)
        return A
    peak = M.max(axis=1, keepdims=True)
    if not (np.isfinite(peak).all() and np.all(peak > 0)):
        raise EndmemberError("the reference convention divides each endmember by its maximum; "
                             "an estimated endmember has no positive value")
    raw = np.asarray(nnls(Y[ok], M / peak), dtype=np.float64)
    total = raw.sum(axis=1, keepdims=True)
    A[ok] = np.where(total > 0, raw / np.where(total > 0, total, 1.0), np.nan)
    return A
