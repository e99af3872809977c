"""Small synthetic scenes with known endmembers and abundances, written as GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from hsu_geo.endmembers.library import load_usgs_library, resample_to_bands

MINERALS = ("alunite", "kaolinite", "calcite", "hematite")
CRS = "EPSG:32611"
TRANSFORM = from_origin(538000.0, 4142000.0, 15.0, 15.0)


def mineral_endmembers(wl: np.ndarray, names=MINERALS) -> np.ndarray:
    """USGS spectra ``(k, bands)`` on bands centred at ``wl`` (10 nm FWHM)."""
    return resample_to_bands(load_usgs_library(list(names)), wl, np.full(wl.size, 10.0))


def linear_scene(rows: int = 40, cols: int = 30, k: int = 4, seed: int = 0,
                 wl: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         np.ndarray]:
    """Noise-free linear mixture with one pure pixel per endmember.

    Returns ``(cube (bands, rows, cols), E (k, bands), A (k, rows, cols), wl)``.
    """
    wl = np.arange(400.0, 2401.0, 20.0) if wl is None else wl
    E = mineral_endmembers(wl, MINERALS[:k])
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.full(k, 0.5), size=rows * cols).T.reshape(k, rows, cols)
    for i in range(k):
        A[:, 2 + 3 * i, 2] = 0.0
        A[i, 2 + 3 * i, 2] = 1.0
    cube = np.einsum("kb,kyx->byx", E, A)
    return cube.astype("float32"), E, A, wl


def write_scene(path: Path, cube: np.ndarray, wl: np.ndarray, *, nodata: float | None = None,
                crs: str | None = CRS) -> Path:
    """Float32 GeoTIFF with per-band wavelength tags (EnMAP-Box convention)."""
    nb, rows, cols = cube.shape
    profile = {"driver": "GTiff", "dtype": "float32", "count": nb, "height": rows,
               "width": cols, "interleave": "pixel", "nodata": nodata}
    if crs:
        profile.update(crs=crs, transform=TRANSFORM)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(cube.astype("float32"))
        for b in range(nb):
            dst.update_tags(b + 1, wavelength=f"{wl[b]:.3f}", wavelength_units="Nanometers",
                            fwhm="10")
    return path
