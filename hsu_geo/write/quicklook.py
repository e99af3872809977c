"""Quicklook PNG: one small map per endmember (0–1 viridis), RMSE, and the endmember spectra.

Each map is framed in its endmember's colour (:mod:`hsu_geo.write.palette`, the colours of the
spectra and of the dominant-endmember QGIS style); spectra break at dropped bands
(:func:`spectrum_breaks`); at most :data:`MAX_MAPS` maps are drawn and the figure never exceeds
:data:`MAX_FIG_IN` inches (1600 x 1600 px at the default 100 dpi), whatever k.

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
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from rasterio.enums import Resampling

from hsu_geo.errors import OutputError
from hsu_geo.write.palette import NODATA_COLOR, display_range, endmember_colors

MAX_SIDE = 400
#: most abundance maps in one quicklook; beyond, those with the largest mean abundance
MAX_MAPS = 24
#: most map columns
MAX_COLS = 6
#: largest figure (width, height) in inches
MAX_FIG_IN = (16.0, 16.0)
#: preferred width of one map in inches
CELL_IN = 2.4
#: a wavelength step this many times the median step is a gap in the drawn spectra
GAP_FACTOR = 2.5
#: colour map of the RMSE panel (also used by the RMSE QGIS style)
RMSE_CMAP = "magma"


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


def spectrum_breaks(wavelength_nm: np.ndarray, band: np.ndarray | None = None,
                    factor: float = GAP_FACTOR) -> np.ndarray:
    """Where a spectrum's line must break: (bands - 1,) bool, True between band i and i + 1.

    A break falls where the wavelength step is more than ``factor`` times the median step
    (dropped water-vapour windows), where wavelength does not increase (a second detector
    starting over, e.g. GF-5 VNIR/SWIR), or where the original band numbers ``band`` skip more
    than their median step (dropped bands, even single ones).
    """
    wl = np.asarray(wavelength_nm, dtype="float64")
    if wl.size < 2:
        return np.zeros(max(wl.size - 1, 0), dtype=bool)
    step = np.diff(wl)
    positive = step[step > 0]
    typical = float(np.median(positive)) if positive.size else 0.0
    breaks = ~(step > 0) | (step > factor * typical)
    if band is not None and len(band) == wl.size:
        b = np.asarray(band, dtype="float64")
        bstep = np.diff(b)
        if np.all(np.isfinite(bstep)) and np.any(bstep > 0):
            breaks |= bstep > np.median(bstep[bstep > 0])
    return breaks


def with_gaps(wavelength_nm: np.ndarray, spectra: np.ndarray, band: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(x (m,), y (k, m))``: wavelength and spectra (k, bands) with a NaN inserted at every
    :func:`spectrum_breaks` position, so matplotlib draws no line across the gap."""
    x = np.asarray(wavelength_nm, dtype="float64")
    y = np.atleast_2d(np.asarray(spectra, dtype="float64"))
    at = np.flatnonzero(spectrum_breaks(x, band)) + 1
    return np.insert(x, at, np.nan), np.insert(y, at, np.nan, axis=1)


def shown_endmembers(abundance: np.ndarray, max_maps: int = MAX_MAPS) -> np.ndarray:
    """Indices (ascending) of the endmembers to draw: all, or the ``max_maps`` with the largest
    mean abundance over valid pixels of ``abundance`` (k, h, w)."""
    k = abundance.shape[0]
    if k <= max_maps:
        return np.arange(k)
    flat = abundance.reshape(k, -1)
    valid = np.isfinite(flat)
    total = np.where(valid, flat, 0.0).sum(axis=1)
    mean = total / np.maximum(valid.sum(axis=1), 1)
    top = np.argsort(-mean, kind="stable")[:max_maps]
    return np.sort(top)


def value_label(quantity: str | None, units: str | None) -> str:
    """Axis label for values in the cube's units, e.g. ``reflectance (unitless)``."""
    what = quantity or "value"
    if units is None:
        return f"{what} (input units)" if quantity is None else what
    unit = str(units).strip()
    return f"{what} (unitless)" if unit in ("", "1") else f"{what} ({unit})"


def _grid_columns(n: int) -> int:
    if n <= MAX_COLS:
        return max(n, 1)
    # fewest empty cells, then the most columns (a wider, shorter figure)
    return min(range(4, MAX_COLS + 1), key=lambda c: (-n % c, -c))


def _short(name: str, limit: int = 26) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _frame(ax: Axes, color: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(2.5)


def quicklook_figure(abundance: np.ndarray, names: Sequence[str], wavelength_nm: np.ndarray,
                     spectra: np.ndarray, *, rmse: np.ndarray | None = None, title: str = "",
                     band: np.ndarray | None = None, quantity: str | None = None,
                     units: str | None = None, max_maps: int = MAX_MAPS) -> Figure:
    """Abundance maps (abundance (k, h, w), 0-1) framed in each endmember's colour, the RMSE
    (h, w) map and the spectra (k, bands) against ``wavelength_nm`` with gaps at dropped bands.

    At most ``max_maps`` endmembers are drawn (those with the largest mean abundance; the
    figure says so); the figure is at most :data:`MAX_FIG_IN` inches for any k and aspect.
    """
    k = abundance.shape[0]
    shown = shown_endmembers(abundance, max_maps)
    n = len(shown)
    colors = endmember_colors(k)
    h, w = abundance.shape[1:] if abundance.ndim == 3 else (1, 1)
    aspect = float(np.clip(h / max(w, 1), 0.25, 2.5))
    ncols = _grid_columns(n)
    nrows = math.ceil(n / ncols) if n else 1
    cell_w = CELL_IN
    bottom_h = 3.4
    head = 0.7 if (title or n < k) else 0.0
    # shrink the cells until the whole figure fits MAX_FIG_IN
    max_w, max_h = MAX_FIG_IN
    cell_w = min(cell_w, (max_w - 1.2) / ncols,
                 (max_h - bottom_h - head) / nrows / aspect - 0.35 / aspect)
    maps_h = nrows * (cell_w * aspect + 0.35)
    fig_w = float(np.clip(ncols * cell_w + 1.2, 9.0, max_w))
    fig = Figure(figsize=(fig_w, min(maps_h + bottom_h + head, max_h)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[maps_h, bottom_h])
    axes = list(top.subplots(nrows, ncols, squeeze=False).ravel())
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=NODATA_COLOR)
    image = None
    chars = max(8, int(cell_w * 11))  # title characters that fit a map's width at 9 pt
    for ax, i in zip(axes, shown, strict=False):
        image = ax.imshow(abundance[i], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(_short(f"{i + 1}. {names[i]}", chars), fontsize=9)
        _frame(ax, colors[i])
    for ax in axes[n:]:
        ax.set_axis_off()
    if image is not None:
        top.colorbar(image, ax=axes, shrink=0.9 if nrows <= 2 else 0.6, aspect=12 + 8 * nrows,
                     label="abundance (fraction)")
    rmse_w = 3.0 / aspect if rmse is not None else 0.0
    if rmse is not None:
        ax_r, ax_s = bottom.subplots(1, 2, width_ratios=[max(rmse_w, 2.2), fig_w - 4.0])
        vmin, vmax = display_range(rmse)  # the RMSE QGIS style's range too
        im = ax_r.imshow(rmse, cmap=matplotlib.colormaps[RMSE_CMAP].with_extremes(
            bad=NODATA_COLOR), vmin=vmin, vmax=vmax, interpolation="nearest")
        ax_r.set_title("reconstruction RMSE (2–98 %)", fontsize=9)
        _frame(ax_r, "#444444")
        bottom.colorbar(im, ax=ax_r, shrink=0.9,
                        label=f"RMSE, {value_label(quantity, units)}")
    else:
        ax_s = bottom.subplots(1, 1)
    x, y = with_gaps(wavelength_nm, spectra, band)
    for i in shown:
        ax_s.plot(x, y[i], lw=1.2, color=colors[i], label=f"{i + 1}. {_short(str(names[i]))}")
    ax_s.set_xlabel("wavelength (nm)")
    ax_s.set_ylabel(value_label(quantity, units))
    ax_s.set_title("endmember spectra (gaps: dropped bands)", fontsize=9)
    ax_s.grid(alpha=0.3)
    if n:
        ax_s.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
                    ncols=math.ceil(n / 12), frameon=False, handlelength=1.5)
    heading = [title] if title else []
    if n < k:
        heading.append(f"showing {n} of {k} endmembers (largest mean abundance); "
                       f"all {k} are in the abundance raster")
    if heading:
        fig.suptitle("\n".join(heading), fontsize=11)
    return fig


def write_quicklook(path: str | os.PathLike[str], abundance: np.ndarray, names: Sequence[str],
                    wavelength_nm: np.ndarray, spectra: np.ndarray, *,
                    rmse: np.ndarray | None = None, title: str = "", dpi: int = 100,
                    band: np.ndarray | None = None, quantity: str | None = None,
                    units: str | None = None) -> Path:
    """Render :func:`quicklook_figure` to a PNG at ``path`` (arrays already decimated)."""
    path = Path(path)
    fig = quicklook_figure(abundance, names, wavelength_nm, spectra, rmse=rmse, title=title,
                           band=band, quantity=quantity, units=units)
    try:
        fig.savefig(path, dpi=dpi, format="png")
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); check the directory") \
            from exc
    return path
