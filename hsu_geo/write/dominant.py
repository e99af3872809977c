"""Dominant-endmember class raster: the argmax of the written abundance COG, as a paletted COG.

Value ``i`` (0-based) means endmember ``i`` (abundance band ``i + 1``) has the largest
abundance; :data:`NODATA_UINT8` (255; 65535 when there are more than 255 endmembers) marks
pixels without a valid abundance (any band NaN). It is computed from the abundance output
after it is written, block by block (memory: one 512 x 512 block of all bands), so it is on
the output grid already (north-up, orthorectified) and costs one read of that file. The COG
carries a GDAL colour table in the quicklook's colours (:mod:`hsu_geo.write.palette`), so QGIS
shows classes even without the ``.qml``; class names are in the band metadata
(``CLASS_<value>=<name>``) and in the ``.qml`` legend. Overviews use nearest neighbour, so
zooming out never invents a class.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil

from hsu_geo.errors import OutputError
from hsu_geo.write.cog import BLOCK, COG_OPTIONS, _quiet_gdal, _scratch
from hsu_geo.write.palette import endmember_colors, rgba

NODATA_UINT8 = 255
NODATA_UINT16 = 65535
DOMINANT_COG_OPTIONS = {**COG_OPTIONS, "OVERVIEW_RESAMPLING": "NEAREST"}


def class_dtype(k: int) -> tuple[str, int]:
    """(dtype, nodata) of a class raster for ``k`` endmembers."""
    if k < 1:
        raise OutputError("a dominant-endmember raster needs at least one endmember")
    if k < NODATA_UINT8:
        return "uint8", NODATA_UINT8
    if k < NODATA_UINT16:
        return "uint16", NODATA_UINT16
    raise OutputError(f"{k} endmembers are too many for a class raster (at most "
                      f"{NODATA_UINT16 - 1}); unmix with fewer endmembers")


def dominant_classes(abundance: np.ndarray, nodata: int = NODATA_UINT8,
                     dtype: str = "uint8") -> np.ndarray:
    """(h, w) index of the largest of ``abundance`` (k, h, w); ``nodata`` where any band is
    not finite. Ties go to the lower index (numpy argmax)."""
    finite = np.isfinite(abundance)
    classes = np.argmax(np.where(finite, abundance, -np.inf), axis=0).astype(dtype)
    classes[~finite.all(axis=0)] = nodata
    return classes


def write_dominant(abundance_path: str | os.PathLike[str], path: str | os.PathLike[str],
                   names: Sequence[str], *, colors: Sequence[str] | None = None,
                   tags: Mapping[str, Any] | None = None) -> Path:
    """Write the class raster of the abundance COG ``abundance_path`` (one band per name) to
    ``path`` as a COG with a colour table. Scratch file next to ``path``, removed after."""
    path = Path(path)
    k = len(names)
    dtype, nodata = class_dtype(k)
    colors = list(colors) if colors is not None else endmember_colors(k)
    colormap = {i: rgba(c) for i, c in enumerate(colors)}
    colormap[nodata] = (0, 0, 0, 0)
    scratch = _scratch(path, "native")
    try:
        with _quiet_gdal(), rasterio.open(abundance_path) as src:
            if src.count != k:
                raise OutputError(f"{abundance_path} has {src.count} bands for {k} endmember "
                                  "names; write the abundance raster first")
            profile: dict[str, Any] = {
                "driver": "GTiff", "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK,
                "compress": "NONE", "width": src.width, "height": src.height, "count": 1,
                "dtype": dtype, "nodata": nodata, "crs": src.crs, "transform": src.transform,
            }
            with rasterio.open(scratch, "w", **profile) as dst:
                dst.update_tags(**{str(a): str(b) for a, b in (tags or {}).items()})
                dst.set_band_description(1, "dominant endmember (argmax of abundance)")
                dst.update_tags(1, **{f"CLASS_{i}": str(n) for i, n in enumerate(names)})
                dst.write_colormap(1, colormap)  # GTiff: Byte and UInt16 colour tables
                for _, window in dst.block_windows(1):
                    dst.write(dominant_classes(src.read(window=window), nodata, dtype), 1,
                              window=window)
            rasterio.shutil.copy(scratch, path, driver="COG", **DOMINANT_COG_OPTIONS)
    finally:
        for f in (scratch, scratch.with_name(scratch.name + ".aux.xml")):
            with contextlib.suppress(OSError):
                f.unlink()
    return path
