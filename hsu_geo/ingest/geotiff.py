"""GeoTIFF / COG with band wavelengths (EnMAP-Box/GDAL-ENVI tags, GDAL IMAGERY, or a file).

Wavelength sources, in order: ``--wavelengths FILE``; per-band default-domain tags
``wavelength``, ``wavelength_units``, ``fwhm``, ``bbl`` (the convention EnMAP-Box's RasterWriter
and GDAL's ENVI driver use); per-band ``IMAGERY`` domain ``CENTRAL_WAVELENGTH_UM``/``FWHM_UM``
(GDAL >= 3.10). Scaling: GDAL band scale/offset, and a dataset tag
``reflectance_scale_factor`` (e.g. 10000) that the values are divided by.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import rasterio
import xarray as xr

from hsu_geo.errors import InvalidSceneError, MissingWavelengthsError, UnsupportedFormatError
from hsu_geo.ingest.assemble import cube_from_raster
from hsu_geo.ingest.base import SceneReader
from hsu_geo.ingest.spectral_meta import (
    BandInfo,
    parse_scale_factor,
    read_wavelength_file,
    resolved_units,
    to_nm,
)

SUFFIXES = (".tif", ".tiff", ".geotiff", ".gtiff")
UNSUPPORTED_DTYPES = ("complex64", "complex128", "complex_int16", "complex_int32")


def _band_floats(tags: list[dict[str, str]], key: str, source: str) -> np.ndarray | None:
    """One number per band from the per-band tag ``key``; None when no band has it."""
    present = [key in t for t in tags]
    if not any(present):
        return None
    if not all(present):
        raise InvalidSceneError(
            f"{source}: {sum(present)} of {len(tags)} bands have a {key!r} tag (band "
            f"{present.index(False) + 1} has none); tag every band, or pass --wavelengths FILE "
            "with one row per band"
        )
    values = []
    for b, t in enumerate(tags, start=1):
        try:
            values.append(float(str(t[key]).strip()))
        except ValueError:
            text = str(t[key])
            shown = text if len(text) <= 24 else text[:24] + "…"  # bounded, one line (repr)
            raise InvalidSceneError(
                f"{source}: band {b} tag {key}={shown!r} is not a single number; give one "
                "number per band, or pass --wavelengths FILE with one row per band"
            ) from None
    return np.array(values, dtype="float64")


def _band_flags(tags: list[dict[str, str]], key: str, source: str) -> list[str] | None:
    """The per-band tag ``key`` of every band (lower case); None when no band has it."""
    present = [key in t for t in tags]
    if not any(present):
        return None
    if not all(present):
        raise InvalidSceneError(
            f"{source}: {sum(present)} of {len(tags)} bands have a {key!r} tag (band "
            f"{present.index(False) + 1} has none); tag every band or remove the tag"
        )
    return [str(t[key]).strip().lower() for t in tags]


def band_info_from_tags(src: rasterio.io.DatasetReader) -> BandInfo | None:
    """Per-band wavelength/FWHM/bbl from default-domain or IMAGERY tags; None if absent.

    A tag present on some bands only, or holding something other than one number, is an
    :class:`InvalidSceneError` (never a silent partial read).
    """
    n = src.count
    tags = [src.tags(b) for b in range(1, n + 1)]
    name = src.name
    wl = _band_floats(tags, "wavelength", name)
    if wl is not None:
        units = tags[0].get("wavelength_units")
        wl_nm = to_nm(wl, units, name)
        fw = _band_floats(tags, "fwhm", name)
        fw = to_nm(fw, resolved_units(wl, units), name) if fw is not None \
            else np.full(n, np.nan)
        bbl = _band_flags(tags, "bbl", name)
        gb = (np.array([v not in ("0", "0.0", "false") for v in bbl]) if bbl is not None
              else np.ones(n, bool))
        good = _band_flags(tags, "good_band", name)
        if good is not None:
            gb &= np.array([v == "true" for v in good])
        return BandInfo(wl_nm, fw, gb)
    imagery = [src.tags(b, ns="IMAGERY") for b in range(1, n + 1)]
    wl = _band_floats(imagery, "CENTRAL_WAVELENGTH_UM", name)
    if wl is not None:
        fw = _band_floats(imagery, "FWHM_UM", name)
        return BandInfo(wl * 1000.0, fw * 1000.0 if fw is not None else np.full(n, np.nan),
                        np.ones(n, bool))
    return None


def raster_scaling(src: rasterio.io.DatasetReader) -> tuple[np.ndarray | None,
                                                          np.ndarray | None, float]:
    """GDAL per-band scale/offset (None when identity) and a reflectance scale factor."""
    scales = np.array(src.scales, dtype="float64")
    offsets = np.array(src.offsets, dtype="float64")
    gain = None if np.all(scales == 1) else scales
    offset = None if np.all(offsets == 0) else offsets
    tags = {k.lower(): v for k, v in src.tags().items()}
    factor = parse_scale_factor(tags.get("reflectance_scale_factor"), src.name,
                                "reflectance_scale_factor tag")
    return gain, offset, factor


class GeoTiffReader(SceneReader):
    """Any GeoTIFF/COG whose bands carry wavelengths (or given ``--wavelengths``)."""

    name = "geotiff"
    description = "GeoTIFF/COG with per-band wavelength tags (EnMAP-Box, GDAL IMAGERY)"
    sensors = ("any",)
    priority: ClassVar[int] = 80

    @classmethod
    def guess_can_open(cls, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in SUFFIXES

    def open(self, path: Path, *, chunk_size: int, wavelengths: Path | None = None) -> xr.DataArray:
        try:
            src = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise InvalidSceneError(f"{path}: not a readable raster ({exc})") from None
        with src:
            if src.dtypes[0] in UNSUPPORTED_DTYPES:
                raise UnsupportedFormatError(
                    f"{path}: data type {src.dtypes[0]} is not supported; convert to a real type"
                )
            info = read_wavelength_file(wavelengths, src.count) if wavelengths else \
                band_info_from_tags(src)
            if info is None:
                raise MissingWavelengthsError(
                    f"{path}: no band wavelengths found; add per-band 'wavelength' tags "
                    "(+ 'wavelength_units'), GDAL IMAGERY CENTRAL_WAVELENGTH_UM, or pass "
                    "--wavelengths FILE (CSV or ENVI .hdr)"
                )
            gain, offset, factor = raster_scaling(src)
            tags = {k.lower(): v for k, v in src.tags().items()}
            attrs = {
                "sensor": tags.get("sensor", "unknown"),
                "product_id": path.stem,
                "quantity": tags.get("quantity", "reflectance"),
                "units": tags.get("units", "1"),
                "scale_factor": factor,
                "calibration": "GDAL band scale/offset" if gain is not None or offset is not None
                else "none (values as stored)",
                "source_files": [str(path)],
                "acquisition_time": tags.get("start_time") or tags.get("acquisition_time", ""),
            }
            nodata = src.nodata
            crs = src.crs
            # GDAL reports an identity transform for rasters without georeferencing
            transform = None if crs is None and src.transform.is_identity else src.transform
            rpcs = src.rpcs.to_dict() if src.rpcs and not crs else None
        return cube_from_raster(
            path, info, chunk_size=chunk_size, attrs=attrs, nodata=nodata, gain=gain,
            offset=offset, scale_factor=factor, crs=crs, transform=None if rpcs else transform,
            rpcs=rpcs,
        )
