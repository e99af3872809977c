"""Build a cube from one raster file plus its spectral metadata (shared by file readers)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from hsu_geo.cube import make_cube
from hsu_geo.errors import InvalidSceneError
from hsu_geo.ingest.calibration import Calibration
from hsu_geo.ingest.rasterio_array import lazy_raster, open_quietly
from hsu_geo.ingest.spectral_meta import (
    OVERLAP_REASON,
    BandInfo,
    check_band_info,
    check_wavelengths,
    parse_scale_factor,
    resolve_detector_overlap,
)


def cube_from_raster(
    path: str | Path,
    info: BandInfo,
    *,
    chunk_size: int,
    attrs: Mapping[str, Any],
    nodata: float | None = None,
    gain: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    scale_factor: float = 1.0,
    crs: Any = None,
    transform: Affine | None = None,
    rpcs: Mapping[str, Any] | None = None,
    exclude: Mapping[int, str] | None = None,
) -> xr.DataArray:
    """Lazy calibrated cube of one raster; detector-overlap bands are never read.

    Args:
        path: raster path GDAL can open (the pixel file, not an ENVI header).
        info: wavelengths (nm), FWHM, product bad-band flags, one per file band.
        gain, offset: per-file-band calibration; ``scale_factor`` divides the result.
        exclude: 0-based file bands not to read, with the reason reported for each.
    """
    with open_quietly(str(path)) as src:
        n = src.count
    check_band_info(info, n, str(path))
    check_wavelengths(info.wavelength, n, str(path), increasing=False)
    for what, values in (("gain", gain), ("offset", offset)):
        if values is not None and np.size(values) != n:
            raise InvalidSceneError(f"{path}: {np.size(values)} {what} values for {n} bands; "
                                    "give exactly one per band")
    scale_factor = parse_scale_factor(scale_factor, str(path))
    exclude = dict(exclude or {})
    candidates = np.array([i for i in range(n) if i not in exclude], dtype=int)
    keep_c, dropped_c = resolve_detector_overlap(info.wavelength[candidates], str(path))
    keep = candidates[keep_c]
    reasons = {**exclude, **{int(candidates[i]): OVERLAP_REASON for i in dropped_c}}
    calibration = Calibration.build(
        keep.size,
        gain=None if gain is None else np.asarray(gain)[keep],
        offset=None if offset is None else np.asarray(offset)[keep],
        scale_factor=scale_factor,
        nodata=nodata,
    )
    data = lazy_raster(path, chunk_size, bands=(keep + 1).tolist(), calibration=calibration)
    attrs = dict(attrs)
    attrs["dropped_at_ingest"] = [
        {"band": i + 1, "wavelength_nm": float(info.wavelength[i]), "reason": reason}
        for i, reason in sorted(reasons.items())
    ]
    return make_cube(
        data,
        band=keep + 1,
        wavelength=info.wavelength[keep],
        fwhm=info.fwhm[keep],
        good_band=info.good_band[keep],
        crs=crs,
        transform=transform,
        rpcs=rpcs,
        attrs=attrs,
    )
