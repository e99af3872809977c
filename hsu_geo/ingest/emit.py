"""EMIT L2A surface reflectance NetCDF-4 products (``EMIT_L2A_RFL_001_<time>_<orbit>_<scene>.nc``).

Layout of the public LP DAAC product (EMIT L2A RFL V001):

* root variable ``reflectance(downtrack, crosstrack, bands)`` float32, ``_FillValue`` -9999;
* group ``sensor_band_parameters``: ``wavelengths`` (nm), ``fwhm`` (nm), ``good_wavelengths``
  (1 good, 0 bad: the deep water-vapour windows);
* group ``location``: ``glt_x``/``glt_y`` ``(ortho_y, ortho_x)`` int, the geometry lookup table
  (GLT): for each pixel of the orthorectified grid the 1-based crosstrack (x) and downtrack (y)
  index of the sensor pixel it shows, 0 = no data (negative = filled from a neighbour, used by
  absolute value); ``lat``/``lon``/``elev`` per sensor pixel;
* global attributes ``geotransform`` (GDAL 6-tuple of the GLT grid), ``spatial_ref`` (WKT,
  EPSG:4326), ``time_coverage_start``/``time_coverage_end``.

The cube stays in SENSOR geometry (y = downtrack, x = crosstrack): unmixing runs on the
sensor pixels and the writer orthorectifies every output through the GLT
(:mod:`hsu_geo.write.glt`; nearest neighbour, as the EMIT project's own tools do), the way GF-5
outputs are orthorectified through their RPCs. The acquisition time comes from the granule id
(``YYYYMMDDTHHMMSS`` in the name, UTC), else from ``time_coverage_start``. Opening reads the
file's structure and the per-band tables only; pixels are read lazily, chunk by chunk.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from hsu_geo.cube import check_band_count, make_cube
from hsu_geo.errors import InvalidSceneError, UnsupportedFormatError
from hsu_geo.ingest.base import SceneReader
from hsu_geo.ingest.spectral_meta import BandInfo, check_wavelengths, read_wavelength_file

log = logging.getLogger(__name__)

#: EMIT granule ids: product, collection version, start time (UTC), orbit, scene in the orbit
GRANULE = re.compile(
    r"^EMIT_(?P<level>L[0-9][A-Z]?)_(?P<product>[A-Z]+)_(?P<version>\d{3})_"
    r"(?P<time>\d{8}T\d{6})_(?P<orbit>\d{7})_(?P<scene>\d{3})", re.I)
NETCDF_SUFFIXES = (".nc", ".nc4", ".h5")
FILL_VALUE = -9999.0  # EMIT's documented fill for reflectance
REFLECTANCE = "reflectance"
BAND_GROUP = "sensor_band_parameters"
LOCATION_GROUP = "location"
GLT_VARS = ("glt_x", "glt_y")
GLT_CRS = "EPSG:4326"  # the EMIT product's spatial_ref; used only when the attribute is absent
FIX = "hsu-geo reads the EMIT L2A reflectance product as distributed by the LP DAAC"


def granule_time(name: str) -> str | None:
    """ISO-8601 UTC acquisition start from an EMIT granule id or file name, else None.

    ``EMIT_L2A_RFL_001_20230123T004529_2302216_001.nc`` -> ``2023-01-23T00:45:29Z``.
    """
    from hsu_geo.acquisition import time_from_id  # the parser of all scene-id conventions

    base = Path(name).name
    found = time_from_id(base) if GRANULE.match(base) else None
    return found[0] if found else None  # None also for digits that are no date (month 13)


def _iso_utc(text: str) -> str:
    """``time_coverage_start`` (e.g. ``2023-01-23T00:45:29+0000``) as ``...Z`` UTC; text that
    does not parse is returned as it is (empty when absent)."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return text
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value)


def _open_h5(path: Path) -> Any:
    """The file as an :class:`h5netcdf.File` (structure only), or a one-line error."""
    import h5netcdf

    try:
        return h5netcdf.File(path, "r")
    except (OSError, ValueError) as exc:
        raise InvalidSceneError(
            f"{path}: not a readable NetCDF-4/HDF5 file ({str(exc).splitlines()[0]}); {FIX}"
        ) from None


def _group(nc: Any, name: str, path: Path) -> Any:
    if name not in nc.groups:
        raise InvalidSceneError(f"{path}: no group '{name}'; {FIX} (it has the groups "
                                f"{', '.join(sorted(nc.groups)) or 'none'})")
    return nc.groups[name]


def _variable(group: Any, name: str, path: Path, where: str) -> Any:
    if name not in group.variables:
        raise InvalidSceneError(f"{path}: no variable '{where}{name}'; {FIX}")
    return group.variables[name]


def _vector(group: Any, name: str, path: Path, n: int) -> np.ndarray:
    var = _variable(group, name, path, f"{BAND_GROUP}/")
    values = np.asarray(var[...], dtype="float64").reshape(-1)
    if values.size != n:
        raise InvalidSceneError(f"{path}: '{BAND_GROUP}/{name}' has {values.size} values for "
                                f"the {n} bands of '{REFLECTANCE}'; the file is inconsistent")
    return values


def _geotransform(nc: Any, path: Path) -> Affine:
    if "geotransform" not in nc.attrs:
        raise InvalidSceneError(f"{path}: no global attribute 'geotransform' (the GLT grid); "
                                f"{FIX}")
    gt = np.asarray(nc.attrs["geotransform"], dtype="float64").reshape(-1)
    if gt.size != 6 or not np.all(np.isfinite(gt)) or gt[1] == 0 or gt[5] == 0:
        raise InvalidSceneError(f"{path}: global attribute 'geotransform' is "
                                f"{gt.tolist()}; expected 6 finite numbers (GDAL order) with "
                                "non-zero pixel sizes")
    return Affine.from_gdal(*gt.tolist())


def _crs(nc: Any, path: Path) -> CRS:
    if "spatial_ref" not in nc.attrs:
        log.warning("%s: no global attribute 'spatial_ref'; assuming %s as in every EMIT "
                    "product", path.name, GLT_CRS)
        return CRS.from_user_input(GLT_CRS)
    try:
        return CRS.from_user_input(_text(nc.attrs["spatial_ref"]))
    except CRSError:
        raise InvalidSceneError(f"{path}: global attribute 'spatial_ref' is not a CRS GDAL "
                                "understands (expected WKT of EPSG:4326)") from None


def read_structure(path: Path) -> dict[str, Any]:
    """Check the layout and read everything but pixels: band tables, GLT grid, attributes.

    Returns a dict with ``shape`` (downtrack, crosstrack, bands), ``dims``, ``fill``,
    ``wavelength``/``fwhm`` (nm) and ``good`` (bool) per band, ``glt_shape`` (rows, cols),
    ``transform`` (:class:`~affine.Affine` of the GLT grid), ``crs`` and ``attrs`` (global
    attributes as text).
    """
    with _open_h5(path) as nc:
        refl = _variable(nc, REFLECTANCE, path, "")
        if refl.ndim != 3:
            raise InvalidSceneError(f"{path}: '{REFLECTANCE}' has dims {refl.dimensions}; "
                                    "expected (downtrack, crosstrack, bands)")
        if not np.issubdtype(refl.dtype, np.floating):
            raise UnsupportedFormatError(f"{path}: '{REFLECTANCE}' holds {refl.dtype} values; "
                                         "expected float reflectance (EMIT L2A RFL)")
        rows, cols, n = (int(s) for s in refl.shape)
        check_band_count(n, str(path))
        bands = _group(nc, BAND_GROUP, path)
        wavelength = _vector(bands, "wavelengths", path, n)
        fwhm = _vector(bands, "fwhm", path, n)
        good = _vector(bands, "good_wavelengths", path, n)
        loc = _group(nc, LOCATION_GROUP, path)
        glt = [_variable(loc, v, path, f"{LOCATION_GROUP}/") for v in GLT_VARS]
        if glt[0].shape != glt[1].shape or len(glt[0].shape) != 2:
            raise InvalidSceneError(f"{path}: '{LOCATION_GROUP}/glt_x' is {glt[0].shape} but "
                                    f"'glt_y' is {glt[1].shape}; both must be one 2-D grid")
        if not all(np.issubdtype(g.dtype, np.integer) for g in glt):
            raise InvalidSceneError(f"{path}: the GLT ('{LOCATION_GROUP}/glt_x', 'glt_y') must "
                                    "hold integer pixel indices")
        fill = refl.attrs.get("_FillValue", FILL_VALUE)
        packing = [float(np.ravel(refl.attrs.get(k, d))[0])
                   for k, d in (("scale_factor", 1.0), ("add_offset", 0.0))]
        info = {
            "shape": (rows, cols, n),
            "dims": tuple(refl.dimensions),
            "fill": float(np.asarray(fill).reshape(-1)[0]),
            "packing": tuple(packing),
            "wavelength": wavelength,
            "fwhm": fwhm,
            "good": good != 0,
            "glt_shape": tuple(int(s) for s in glt[0].shape),
            "transform": _geotransform(nc, path),
            "crs": _crs(nc, path),
            "attrs": {k: _text(v) for k, v in nc.attrs.items()
                      if k not in ("geotransform", "spatial_ref")},
        }
    check_wavelengths(wavelength, n, f"{path}: '{BAND_GROUP}/wavelengths'")
    return info


def _mask_fill(block: np.ndarray, fill: float, packing: tuple[float, float] = (1.0, 0.0)
               ) -> np.ndarray:
    """A ``(rows, cols, bands)`` block read from the file, float32, with the fill value set
    to NaN and CF ``scale_factor``/``add_offset`` (``packing``; EMIT has none) applied, in
    place (the block is a fresh read; no copy of the pixels is made)."""
    out = np.asarray(block, dtype="float32")
    if not out.flags.writeable:
        out = out.copy()
    out[out == np.float32(fill)] = np.nan
    scale, offset = packing
    if scale != 1.0:
        out *= np.float32(scale)
    if offset != 0.0:
        out += np.float32(offset)
    return out


class EmitL2aReader(SceneReader):
    """EMIT L2A surface reflectance NetCDF-4 (sensor geometry + geometry lookup table)."""

    name: ClassVar[str] = "emit"
    description: ClassVar[str] = (
        "EMIT L2A reflectance NetCDF (EMIT_L2A_RFL_*.nc): sensor geometry, outputs "
        "orthorectified through the GLT"
    )
    sensors: ClassVar[tuple[str, ...]] = ("EMIT",)
    priority: ClassVar[int] = 20

    @classmethod
    def guess_can_open(cls, path: Path) -> bool:
        """True for an EMIT-named NetCDF file (``EMIT_*.nc``), or a renamed one whose
        structure (header only) has ``reflectance`` and the EMIT groups."""
        path = Path(path)
        if not path.is_file() or path.suffix.lower() not in NETCDF_SUFFIXES:
            return False
        if path.name.upper().startswith("EMIT_"):
            return True
        try:
            import h5py

            with h5py.File(path, "r") as f:
                return (REFLECTANCE in f and BAND_GROUP in f and LOCATION_GROUP in f)
        except (OSError, ValueError):
            return False

    def open(self, path: Path, *, chunk_size: int, wavelengths: Path | None = None) -> xr.DataArray:
        """The product as a lazy reflectance cube ``(band, y=downtrack, x=crosstrack)``."""
        path = Path(path)
        m = GRANULE.match(path.name)
        if m is not None and m["product"].upper() != "RFL":
            raise UnsupportedFormatError(
                f"{path}: an EMIT {m['level']} {m['product']} product; hsu-geo unmixes the "
                "L2A surface reflectance product (EMIT_L2A_RFL_*.nc)")
        meta = read_structure(path)
        rows, cols, n = meta["shape"]
        info = read_wavelength_file(wavelengths, n) if wavelengths is not None else \
            BandInfo(meta["wavelength"], meta["fwhm"], meta["good"])
        y_dim, x_dim, band_dim = meta["dims"]
        chunks = {y_dim: chunk_size, x_dim: chunk_size, band_dim: -1}
        ds = xr.open_dataset(path, engine="h5netcdf", chunks=chunks, mask_and_scale=False,
                             decode_times=False, decode_coords=False)
        # masked in the file's (downtrack, crosstrack, bands) order, then transposed lazily:
        # each chunk stays pixel-major in memory (whole spectra contiguous, as unmixing reads
        # them) instead of being copied into band-major order
        data = ds[REFLECTANCE].data.map_blocks(
            _mask_fill, fill=meta["fill"], packing=meta["packing"], dtype="float32",
            meta=np.empty((0, 0, 0), "float32"),
        ).transpose(2, 0, 1)
        attrs: dict[str, Any] = {
            "sensor": "EMIT",
            "product_id": path.stem,
            "quantity": "reflectance",
            "units": "1",
            "scale_factor": 1.0,
            "calibration": "none (L2A surface reflectance as delivered)"
            if meta["packing"] == (1.0, 0.0) else
            "CF scale_factor {:g}, add_offset {:g}".format(*meta["packing"]),
            "source_files": [str(path)],
            "acquisition_time": granule_time(path.name)
            or _iso_utc(meta["attrs"].get("time_coverage_start", "")),
            "satellite": "ISS",
            "geometry": "sensor (GLT)",
            "dropped_at_ingest": [],
            "glt": {
                "path": str(path.resolve()),
                "x": f"{LOCATION_GROUP}/glt_x",
                "y": f"{LOCATION_GROUP}/glt_y",
                "crs": meta["crs"].to_wkt(),
                "transform": list(meta["transform"])[:6],
                "shape": list(meta["glt_shape"]),
                "sensor_shape": [rows, cols],
            },
        }
        for key in ("time_coverage_start", "time_coverage_end"):
            if meta["attrs"].get(key):
                attrs[key] = meta["attrs"][key]
        if m is not None:
            attrs.update(orbit=m["orbit"], orbit_scene=m["scene"],
                         collection_version=m["version"])
        return make_cube(
            data,
            band=np.arange(1, n + 1),
            wavelength=info.wavelength,
            fwhm=info.fwhm,
            good_band=info.good_band,
            attrs=attrs,
        )
