"""Score written unmixing outputs against reference endmembers and abundances.

Reads ``S_M_abundance.tif`` and ``S_M_endmembers.csv`` as a user would get them, matches the
estimated endmembers to the reference ones by the Hungarian assignment on the SAD matrix
(models/README.md "Metrics") over the bands the run kept, and returns the project metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from hsu_geo.errors import InvalidSceneError
from hsu_geo.unmix.metrics import UnmixingScores, evaluate
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
