"""Quicklook PNG: one small map per endmember (0–1 viridis), RMSE, and the endmember spectra.

Maps are drawn from decimated arrays only: from a written COG's overviews
(:func:`read_decimated`, no recomputation and cheap for any scene size) or by striding a lazy
array (:func:`decimate`, which computes only the chunks the stride touches). The full-resolution
data is never materialised for the picture. Figures are built without pyplot (Agg canvas, no
global backend switch, safe in threads and headless runs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import rasterio
import xarray as xr
from matplotlib.figure import Figure
from rasterio.enums import Resampling

from hsu_geo.errors import OutputError

MAX_SIDE = 400


def _decimated_shape(height: int, width: int, max_side: int) -> tuple[int, int, int]:
    step = max(1, math.ceil(max(height, width) / max_side))
    return step, math.ceil(height / step), math.ceil(width / step)


def read_decimated(path: str | os.PathLike[str], max_side: int = MAX_SIDE) -> np.ndarray:
    """Read a raster at most ``max_side`` pixels a side, (bands, h, w) float32, NaN = nodata.

    GDAL serves the read from the COG's overviews (average resampling).
    """
    with rasterio.open(path) as src:
        _, h, w = _decimated_shape(src.height, src.width, max_side)
        data = src.read(out_shape=(src.count, h, w), masked=True,
                        resampling=Resampling.average)
    return np.ma.filled(data.astype("float32"), np.nan)


def decimate(arr: xr.DataArray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Stride a lazy (..., y, x) array to at most ``max_side`` pixels a side and compute that."""
    step, _, _ = _decimated_shape(arr.sizes["y"], arr.sizes["x"], max_side)
    return np.asarray(arr.isel(y=slice(None, None, step), x=slice(None, None, step)).values,
                      dtype="float32")


def quicklook_figure(abundance: np.ndarray, names: Sequence[str], wavelength_nm: np.ndarray,
                     spectra: np.ndarray, *, rmse: np.ndarray | None = None,
                     title: str = "") -> Figure:
    """Figure with one map per endmember (abundance (k, h, w), 0–1), optional RMSE (h, w)
    map, and the spectra (k, bands) against ``wavelength_nm``."""
    k = abundance.shape[0]
    panels = k + (rmse is not None) + 1
    ncols = min(4, panels)
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(axes.ravel())
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = None
    for i in range(k):
        ax = flat[i]
        image = ax.imshow(abundance[i], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(str(names[i]), fontsize=10)
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=flat[:k], shrink=0.8, label="abundance (fraction)")
    pos = k
    if rmse is not None:
        ax = flat[pos]
        finite = rmse[np.isfinite(rmse)]
        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
        im = ax.imshow(rmse, cmap=matplotlib.colormaps["magma"].with_extremes(bad="#d9d9d9"),
                       vmin=0.0, vmax=vmax or 1.0, interpolation="nearest")
        ax.set_title("reconstruction RMSE", fontsize=10)
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, shrink=0.8)
        pos += 1
    ax = flat[pos]
    colors = matplotlib.colormaps["tab10"]
    for i in range(k):
        ax.plot(wavelength_nm, spectra[i], lw=1.2, color=colors(i % 10), label=str(names[i]))
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel("endmember value")
    ax.set_title("endmember spectra", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    for extra in flat[pos + 1:]:
        extra.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def write_quicklook(path: str | os.PathLike[str], abundance: np.ndarray, names: Sequence[str],
                    wavelength_nm: np.ndarray, spectra: np.ndarray, *,
                    rmse: np.ndarray | None = None, title: str = "", dpi: int = 100) -> Path:
    """Render :func:`quicklook_figure` to a PNG at ``path`` (arrays already decimated)."""
    path = Path(path)
    fig = quicklook_figure(abundance, names, wavelength_nm, spectra, rmse=rmse, title=title)
    try:
        fig.savefig(path, dpi=dpi, format="png")
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); check the directory") \
            from exc
    return path
