"""The cube contract: the one object that flows from ingest to unmixing.

A cube is an ``xarray.DataArray`` with dims exactly ``("band", "y", "x")``, float32, dask-backed,
chunked ``{"band": -1, "y": T, "x": T}`` so every chunk holds whole spectra. Coordinates on
``band``: ``band`` (original 1-based band number), ``wavelength`` (nm), ``fwhm`` (nm, NaN when
unknown), ``good_band`` (bool). Georeferencing is a CRS + affine transform written with rioxarray
(``cube.rio.crs``, ``cube.rio.transform()``), or RPCs in ``attrs["rpcs"]`` for sensor-geometry
products. Nodata pixels are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from hsu_geo.errors import InvalidSceneError

DIMS = ("band", "y", "x")
DEFAULT_CHUNK = 512
QUANTITIES = ("reflectance", "radiance", "dn")
REQUIRED_ATTRS = ("sensor", "product_id", "quantity", "units", "scale_factor", "calibration",
                  "source_files")


#: most bands a cube may have. Endmember counting (HySime) and extraction form bands x bands
#: covariance matrices and eigen-decompositions (O(bands^3)), chunks hold whole spectra and the
#: pixel sample is sample_size x bands floats: at 2,000 bands that is 32 MB per matrix and
#: 0.8 GB of sample (100,000 pixels), at 20,000 bands 3.2 GB per matrix, 8 GB of sample and
#: hours of eigen-decomposition. Imaging spectrometers have at most ~650 bands (AVIRIS-NG 425,
#: EMIT 285, EnMAP 224, GF-5 AHSI 330), so 2,000 leaves room for any of them.
MAX_BANDS = 2000


def check_band_count(bands: int, source: str) -> None:
    """:class:`InvalidSceneError` unless ``1 <= bands <= MAX_BANDS`` (checked from headers,
    before any pixel is read)."""
    if bands < 1:
        raise InvalidSceneError(f"{source}: declares {bands} bands; a cube needs at least one")
    if bands > MAX_BANDS:
        raise InvalidSceneError(
            f"{source}: declares {bands} bands, more than the {MAX_BANDS} hsu-geo unmixes "
            "(endmember search forms bands x bands matrices); check the header's 'bands', or "
            "subset the bands (e.g. gdal_translate -b) before unmixing")


def cube_chunks(chunk_size: int = DEFAULT_CHUNK) -> dict[str, int]:
    """Band-complete chunking for a tile edge of ``chunk_size`` pixels."""
    if chunk_size < 16:
        raise InvalidSceneError(f"chunk size {chunk_size} is too small; use at least 16 pixels")
    return {"band": -1, "y": chunk_size, "x": chunk_size}


def is_rectilinear(transform: Affine) -> bool:
    """True when the transform has no rotation or shear (north-up grid)."""
    return transform.b == 0 and transform.d == 0


def make_cube(
    data: da.Array,
    *,
    band: Sequence[int],
    wavelength: Sequence[float],
    fwhm: Sequence[float] | None = None,
    good_band: Sequence[bool] | None = None,
    crs: CRS | str | None = None,
    transform: Affine | None = None,
    rpcs: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any],
) -> xr.DataArray:
    """Wrap a lazy ``(band, y, x)`` array and its metadata into a validated cube.

    Args:
        data: dask array, shape (bands, rows, cols); cast to float32.
        band: original 1-based band numbers, length bands.
        wavelength: band centres in nm, length bands.
        fwhm: band widths in nm (None = unknown, stored as NaN).
        good_band: product bad-band flags (True = good); None = all good.
        crs, transform: map georeferencing; x/y coords are pixel centres for north-up grids.
        rpcs: rational polynomial coefficients (dict) for sensor-geometry products.
        attrs: sensor, product_id, quantity, units, scale_factor, calibration, source_files, ...
    """
    nb, ny, nx = data.shape
    check_band_count(nb, str(attrs.get("product_id", "scene")))
    wl = np.asarray(wavelength, dtype="float64")
    fw = np.full(nb, np.nan) if fwhm is None else np.asarray(fwhm, dtype="float64")
    gb = np.ones(nb, bool) if good_band is None else np.asarray(good_band, dtype=bool)
    coords: dict[str, Any] = {
        "band": ("band", np.asarray(band, dtype="int32")),
        "wavelength": ("band", wl),
        "fwhm": ("band", fw),
        "good_band": ("band", gb),
    }
    if transform is not None and is_rectilinear(transform):
        coords["x"] = ("x", transform.c + transform.a * (np.arange(nx) + 0.5))
        coords["y"] = ("y", transform.f + transform.e * (np.arange(ny) + 0.5))
    cube = xr.DataArray(data.astype("float32"), dims=DIMS, coords=coords, attrs=dict(attrs),
                        name=str(attrs.get("quantity", "cube")))
    if rpcs is not None:
        cube.attrs["rpcs"] = dict(rpcs)
    if crs is not None:
        cube = cube.rio.write_crs(CRS.from_user_input(crs))
    if transform is not None:
        cube = cube.rio.write_transform(transform)
    cube = cube.rio.write_nodata(np.nan, encoded=False)
    validate_cube(cube)
    return cube


def validate_cube(cube: xr.DataArray) -> None:
    """Raise :class:`InvalidSceneError` if ``cube`` breaks the contract (never asserts)."""
    if not isinstance(cube, xr.DataArray):
        raise InvalidSceneError(f"a cube must be an xarray.DataArray, got {type(cube).__name__}")
    if cube.dims != DIMS:
        raise InvalidSceneError(
            f"cube dims are {cube.dims}; expected {DIMS} (use .transpose('band', 'y', 'x'))"
        )
    if cube.dtype != np.float32:
        raise InvalidSceneError(f"cube dtype is {cube.dtype}; expected float32")
    if not isinstance(cube.data, da.Array):
        raise InvalidSceneError("cube is not dask-backed; open scenes with hsu_geo.ingest")
    if len(cube.data.chunks[0]) != 1:
        raise InvalidSceneError(
            "cube chunks split the band axis; re-chunk with {'band': -1} so chunks hold whole "
            "spectra"
        )
    for name in ("band", "wavelength", "fwhm", "good_band"):
        if name not in cube.coords or cube.coords[name].dims != ("band",):
            raise InvalidSceneError(f"cube lacks the per-band coordinate {name!r}")
    wl = cube["wavelength"].values
    if not np.all(np.isfinite(wl)):
        raise InvalidSceneError("cube wavelengths contain NaN; every band needs a wavelength")
    if wl.size > 1 and not np.all(np.diff(wl) > 0):
        raise InvalidSceneError("cube wavelengths are not strictly increasing")
    missing = [a for a in REQUIRED_ATTRS if a not in cube.attrs]
    if missing:
        raise InvalidSceneError(f"cube attrs lack {', '.join(missing)}")
    if cube.attrs["quantity"] not in QUANTITIES:
        raise InvalidSceneError(
            f"cube quantity {cube.attrs['quantity']!r} is not one of {', '.join(QUANTITIES)}"
        )


def cube_transform(cube: xr.DataArray) -> Affine | None:
    """The cube's affine transform (possibly rotated), or None for RPC/ungeoreferenced cubes."""
    gt = cube.coords["spatial_ref"].attrs.get("GeoTransform") if "spatial_ref" in cube.coords \
        else None
    if gt is None:
        return None
    return Affine.from_gdal(*[float(v) for v in str(gt).split()])


def cube_crs(cube: xr.DataArray) -> CRS | None:
    """The cube's CRS, or None."""
    crs = cube.rio.crs
    return CRS.from_user_input(crs) if crs is not None else None


def take_bands(cube: xr.DataArray, index: Sequence[int] | np.ndarray) -> xr.DataArray:
    """``cube.isel(band=index)``, with the band selection pushed into the file read when the
    pixels come straight from a raster file (the other bands are then never read)."""
    from hsu_geo.ingest.rasterio_array import take_bands as take_array_bands

    out = cube.isel(band=index)
    if isinstance(cube.data, da.Array):
        out = out.copy(data=take_array_bands(cube.data, index))
    return out


def valid_mask(cube: xr.DataArray) -> xr.DataArray:
    """Lazy ``(y, x)`` bool mask: True where every good band is finite."""
    good = take_bands(cube, np.flatnonzero(cube["good_band"].values))
    return np.isfinite(good).all("band")


def band_table(cube: xr.DataArray) -> list[dict[str, Any]]:
    """One dict per band: original number, wavelength (nm), fwhm (nm), good flag."""
    return [
        {"band": int(b), "wavelength_nm": float(w), "fwhm_nm": float(f), "good_band": bool(g)}
        for b, w, f, g in zip(
            cube["band"].values, cube["wavelength"].values, cube["fwhm"].values,
            cube["good_band"].values, strict=True,
        )
    ]
