"""Tiny fake sensor products for the ingest tests, written on the fly into ``tmp_path``.

Every generator writes a small file set in the real product's layout and returns the path a
user would pass to ``hsu-geo``. Pixel values are whatever the test passes in, so tests can
compare the cube with the source values exactly.

- :func:`write_geotiff`: a GeoTIFF whose bands carry wavelengths the EnMAP-Box way (per-band
  default-domain tags ``wavelength``, ``wavelength_units``, ``fwhm``, ``bbl``), the GDAL way
  (per-band ``IMAGERY`` domain ``CENTRAL_WAVELENGTH_UM``/``FWHM_UM``), or not at all.
- :func:`write_envi`: an ENVI ``.hdr`` + binary pair (any interleave, byte order, data type),
  written by ``spectral.envi.save_image`` or, for layouts spectral cannot express (header
  offset, extra raw header lines), by numpy plus a hand-written header.
- :func:`write_envi_header`: just a header from a dict (for malformed-input tests).
- :func:`write_enmap_l2a`: an EnMAP L2A product folder (or .zip): ``…-SPECTRAL_IMAGE.TIF`` with
  raw DN plus ``…-METADATA.XML`` holding band characterisation (centre, FWHM, gain, offset),
  band statistics and the VNIR/SWIR expected-channel lists, as parsed by
  :mod:`hsu_geo.ingest.enmap`.
- :func:`enmap_like_wavelengths`: a 2-detector band table whose wavelengths fall back at the
  join (VNIR bands 1..n_vnir, then SWIR), like EnMAP's VNIR 1-91 / SWIR 92-224.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import rasterio
import spectral.io.envi as envi
from affine import Affine

DEFAULT_TRANSFORM = Affine(30.0, 0.0, 364095.0, 0.0, -30.0, 5809965.0)
ENMAP_PRODUCT = "ENMAP01-____L2A-DT0000001867_20220724T104526Z_008_V010302_20230628T165614Z"

#: numpy dtype -> ENVI data type code
ENVI_CODES = {"uint8": 1, "int16": 2, "int32": 3, "float32": 4, "float64": 5, "complex64": 6,
              "complex128": 9, "uint16": 12, "uint32": 13, "int64": 14, "uint64": 15}


def linear_wavelengths(n: int, start: float = 400.0, stop: float = 2500.0) -> np.ndarray:
    """``n`` evenly spaced band centres in nm (strictly increasing)."""
    return np.linspace(start, stop, n)


def enmap_like_wavelengths(n_vnir: int, n_swir: int, *, vnir=(420.0, 1000.0),
                           swir=(900.0, 2450.0)) -> np.ndarray:
    """Band centres (nm) of two stacked detectors: VNIR ascending, then SWIR ascending,
    with SWIR starting below the VNIR end, so the table falls back at the join."""
    return np.concatenate([np.linspace(*vnir, n_vnir), np.linspace(*swir, n_swir)])


def ramp(bands: int, rows: int, cols: int, dtype: str = "int16", start: int = 1) -> np.ndarray:
    """Distinct, exactly representable values ``start, start+1, …`` shaped (bands, rows, cols)
    (wrapped into uint8's range when ``dtype`` is uint8)."""
    vals = np.arange(start, start + bands * rows * cols, dtype="int64")
    if np.dtype(dtype) == np.uint8:
        vals = vals % 251 + 1
    return vals.reshape(bands, rows, cols).astype(dtype)


def write_geotiff(
    path: str | Path,
    data: np.ndarray,
    *,
    wavelengths_nm: Sequence[float] | None = None,
    fwhm: Sequence[float] | None = None,
    bbl: Sequence[int] | None = None,
    units: str = "Nanometers",
    style: str | None = "tags",
    nodata: float | None = None,
    crs: str | None = "EPSG:32633",
    transform: Affine | None = DEFAULT_TRANSFORM,
    scale: float | Sequence[float] | None = None,
    offset: float | Sequence[float] | None = None,
    dtype: str | None = None,
    tags: Mapping[str, Any] | None = None,
    tiled: bool = False,
    blocksize: int = 256,
    interleave: str = "pixel",
    compress: str | None = None,
) -> Path:
    """Write ``data`` (bands, rows, cols) as a GeoTIFF with band wavelength metadata.

    Args:
        wavelengths_nm, fwhm: band centres / widths in nm. They are stored in ``units``
            (``"Micrometers"`` divides by 1000) for ``style="tags"``; ``style="imagery"``
            stores µm in the IMAGERY domain; ``style=None`` stores no wavelengths.
        bbl: per-band bad-band list (1 good, 0 bad), tag ``bbl`` (``style="tags"`` only).
        nodata, crs, transform: the usual GeoTIFF georeferencing/nodata.
        scale, offset: GDAL band scale/offset (one value for all bands, or one per band).
        dtype: storage type (default ``data.dtype``).
        tags: extra dataset-level tags (e.g. ``reflectance_scale_factor``, ``quantity``).
        tiled, blocksize, interleave, compress: GeoTIFF layout options.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    data = np.asarray(data)
    nb, ny, nx = data.shape
    dtype = dtype or str(data.dtype)
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": nx, "height": ny, "count": nb, "dtype": dtype,
        "interleave": interleave,
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if compress:
        profile["compress"] = compress
    factor = 1000.0 if units.lower().startswith("micro") else 1.0
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
        for b in range(1, nb + 1):
            if style == "tags" and wavelengths_nm is not None:
                t = {"wavelength": f"{wavelengths_nm[b - 1] / factor:.10g}",
                     "wavelength_units": units}
                if fwhm is not None:
                    t["fwhm"] = f"{fwhm[b - 1] / factor:.10g}"
                if bbl is not None:
                    t["bbl"] = str(int(bbl[b - 1]))
                dst.update_tags(b, **t)
            elif style == "imagery" and wavelengths_nm is not None:
                t = {"CENTRAL_WAVELENGTH_UM": f"{wavelengths_nm[b - 1] / 1000.0:.10g}"}
                if fwhm is not None:
                    t["FWHM_UM"] = f"{fwhm[b - 1] / 1000.0:.10g}"
                dst.update_tags(b, ns="IMAGERY", **t)
        if scale is not None:
            dst.scales = tuple(np.broadcast_to(np.asarray(scale, float), nb).tolist())
        if offset is not None:
            dst.offsets = tuple(np.broadcast_to(np.asarray(offset, float), nb).tolist())
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
    return path


def _envi_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return "{" + ", ".join(str(v) for v in value) + "}"
    return str(value)


def write_envi_header(path: str | Path, fields: Mapping[str, Any]) -> Path:
    """Write an ENVI header (``ENVI`` line then ``key = value``) from ``fields`` verbatim;
    lists become ``{a, b, …}``. Returns the header path."""
    path = Path(path)
    lines = ["ENVI"] + [f"{k} = {_envi_value(v)}" for k, v in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_envi(
    path: str | Path,
    data: np.ndarray,
    *,
    interleave: str = "bsq",
    byte_order: int = 0,
    dtype: str | None = None,
    wavelengths: Sequence[float] | None = None,
    units: str | None = "Nanometers",
    fwhm: Sequence[float] | None = None,
    bbl: Sequence[int] | None = None,
    data_ignore_value: float | None = None,
    reflectance_scale_factor: float | None = None,
    map_info: str | None = None,
    extra: Mapping[str, Any] | None = None,
    ext: str = ".img",
    writer: str = "spectral",
    header_offset: int = 0,
) -> Path:
    """Write ``data`` (bands, rows, cols) as an ENVI image; returns the ``.hdr`` path.

    Args:
        path: the header path (``name.hdr``); the binary is ``name`` + ``ext``.
        interleave: ``bsq``, ``bil`` or ``bip``; byte_order: 0 little, 1 big endian.
        dtype: storage type (default ``data.dtype``).
        wavelengths, fwhm: values written as given, labelled ``wavelength units = units``
            (``units=None`` writes no units field).
        bbl, data_ignore_value, reflectance_scale_factor, map_info: the header fields of the
            same name (``map_info`` verbatim, e.g. ``"{UTM, 1, 1, …, rotation=30}"``).
        extra: more header fields, written verbatim.
        writer: ``"spectral"`` (``spectral.envi.save_image``) or ``"numpy"`` (binary via
            ``ndarray.tofile`` and a hand-written header; needed for ``header_offset``).
        header_offset: bytes of zeros before the pixels (numpy writer only).
    """
    hdr = Path(path)
    if hdr.suffix != ".hdr":
        hdr = hdr.with_name(hdr.name + ".hdr")
    dtype = np.dtype(dtype or np.asarray(data).dtype)
    arr = np.asarray(data).astype(dtype)
    nb, ny, nx = arr.shape
    meta: dict[str, Any] = {}
    if wavelengths is not None:
        meta["wavelength"] = [f"{w:.10g}" for w in wavelengths]
        if units is not None:
            meta["wavelength units"] = units
    if fwhm is not None:
        meta["fwhm"] = [f"{w:.10g}" for w in fwhm]
    if bbl is not None:
        meta["bbl"] = [str(int(b)) for b in bbl]
    if data_ignore_value is not None:
        meta["data ignore value"] = data_ignore_value
    if reflectance_scale_factor is not None:
        meta["reflectance scale factor"] = reflectance_scale_factor
    if map_info is not None:
        meta["map info"] = map_info
    meta.update(extra or {})
    binary = hdr.with_name(hdr.stem + ext)
    if writer == "spectral" and header_offset == 0:
        envi.save_image(str(hdr), arr.transpose(1, 2, 0), dtype=dtype, force=True, ext=ext,
                        interleave=interleave, byteorder=byte_order,
                        metadata={k: _envi_value(v) if not isinstance(v, list) else v
                                  for k, v in meta.items()})
        return hdr
    axes = {"bsq": (0, 1, 2), "bil": (1, 0, 2), "bip": (1, 2, 0)}[interleave]
    on_disk = arr.transpose(axes).astype(dtype.newbyteorder(">" if byte_order else "<"))
    with open(binary, "wb") as fh:
        fh.write(b"\0" * header_offset)
        on_disk.tofile(fh)
    fields = {"samples": nx, "lines": ny, "bands": nb, "header offset": header_offset,
              "file type": "ENVI Standard", "data type": ENVI_CODES[dtype.name],
              "interleave": interleave, "byte order": byte_order, **meta}
    return write_envi_header(hdr, fields)


def _sub(parent: ET.Element, tag: str, text: Any = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = str(text)
    return el


def enmap_metadata_xml(
    wavelengths: Sequence[float],
    fwhm: Sequence[float],
    gain: Sequence[float],
    offset: Sequence[float],
    *,
    std: Sequence[float] | None = None,
    mean: Sequence[float] | None = None,
    vnir: Sequence[int] = (),
    swir: Sequence[int] = (),
    start_time: str = "2022-07-24T10:45:26.000000Z",
) -> bytes:
    """EnMAP ``METADATA.XML`` bytes with the elements hsu_geo's EnMAP reader parses:
    ``specific/bandCharacterisation/bandID/{wavelengthCenterOfBand,FWHMOfBand,GainOfBand,
    OffsetOfBand}``, ``product/bandStatistics/bandID/{stdDeviation,mean}``,
    ``specific/{vnir,swir}ProductQuality/expectedChannelsList`` and ``base/…/startTime``."""
    root = ET.Element("level_X")
    base = _sub(root, "base")
    _sub(_sub(base, "temporalCoverage"), "startTime", start_time)
    specific = _sub(root, "specific")
    bc = _sub(specific, "bandCharacterisation")
    for i, (w, f, g, o) in enumerate(zip(wavelengths, fwhm, gain, offset, strict=True)):
        b = _sub(bc, "bandID", number=str(i + 1))
        _sub(b, "wavelengthCenterOfBand", f"{w:.6f}")
        _sub(b, "FWHMOfBand", f"{f:.6f}")
        _sub(b, "GainOfBand", f"{g:.10g}")
        _sub(b, "OffsetOfBand", f"{o:.10g}")
    for det, chans in (("vnir", vnir), ("swir", swir)):
        q = _sub(specific, f"{det}ProductQuality")
        _sub(q, "expectedChannelsList", ",".join(str(c) for c in chans))
    product = _sub(root, "product")
    stats = _sub(product, "bandStatistics")
    if std is not None and mean is not None:
        for i, (s, m) in enumerate(zip(std, mean, strict=True)):
            b = _sub(stats, "bandID", number=str(i + 1))
            _sub(b, "mean", f"{m:.6f}")
            _sub(b, "stdDeviation", f"{s:.6f}")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_enmap_l2a(
    folder: str | Path,
    data: np.ndarray,
    *,
    wavelengths: Sequence[float],
    fwhm: Sequence[float] | None = None,
    gain: float | Sequence[float] = 1e-4,
    offset: float | Sequence[float] = 0.0,
    std: Sequence[float] | None = None,
    mean: Sequence[float] | None = None,
    vnir: Sequence[int] = (),
    swir: Sequence[int] = (),
    nodata: float | None = -32768,
    crs: str = "EPSG:32633",
    transform: Affine = DEFAULT_TRANSFORM,
    product: str = ENMAP_PRODUCT,
    zipped: bool = False,
) -> Path:
    """Write a fake EnMAP L2A product: ``<product>-SPECTRAL_IMAGE.TIF`` (DN, int16 by default)
    and ``<product>-METADATA.XML`` in ``folder/<product>/``.

    ``gain``/``offset`` (scalars or per band) go into the XML (reflectance = DN * gain +
    offset); ``std``/``mean`` are band statistics (std 0 and mean -1e6 marks a no-data band);
    ``vnir``/``swir`` are the expected channel lists (1-based). ``zipped=True`` packs both
    files into ``folder/<product>.ZIP`` (in a ``<product>/`` folder, as DLR delivers) and
    returns the zip; otherwise the product folder is returned.
    """
    nb = np.asarray(data).shape[0]
    fw = np.full(nb, 8.0) if fwhm is None else np.asarray(fwhm, float)
    g = np.broadcast_to(np.asarray(gain, float), nb)
    o = np.broadcast_to(np.asarray(offset, float), nb)
    prod_dir = Path(folder) / product
    prod_dir.mkdir(parents=True, exist_ok=True)
    image = write_geotiff(prod_dir / f"{product}-SPECTRAL_IMAGE.TIF", data, style=None,
                          nodata=nodata, crs=crs, transform=transform, interleave="band")
    xml = prod_dir / f"{product}-METADATA.XML"
    xml.write_bytes(enmap_metadata_xml(wavelengths, fw, g, o, std=std, mean=mean,
                                       vnir=vnir, swir=swir))
    if not zipped:
        return prod_dir
    zpath = Path(folder) / f"{product}.ZIP"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:
        for f in (image, xml):
            zf.write(f, f"{product}/{f.name}")
    return zpath


def check_cube_contract(cube, *, chunk: int, n_bands: int | None = None) -> None:
    """Assert the cube contract (ARCHITECTURE.md §1) on ``cube`` opened with ``chunks=chunk``:
    dims, float32, dask-backed, band-complete chunks of edge ``chunk`` (or the full size
    when smaller), per-band coords (1-based ``band``, nm ``wavelength`` strictly increasing,
    ``fwhm``, bool ``good_band``) and the required attrs. Reads no pixels."""
    import dask.array as da

    from hsu_geo.cube import QUANTITIES, REQUIRED_ATTRS

    assert cube.dims == ("band", "y", "x")
    assert cube.dtype == np.float32
    assert isinstance(cube.data, da.Array)
    nb, ny, nx = cube.shape
    if n_bands is not None:
        assert nb == n_bands
    assert cube.data.chunks[0] == (nb,), "chunks must hold every band"
    assert cube.data.chunks[1][0] == min(chunk, ny)
    assert cube.data.chunks[2][0] == min(chunk, nx)
    assert max(cube.data.chunks[1]) <= chunk and max(cube.data.chunks[2]) <= chunk
    for name in ("band", "wavelength", "fwhm", "good_band"):
        assert cube.coords[name].dims == ("band",)
    band = cube["band"].values
    assert np.issubdtype(band.dtype, np.integer) and band.min() >= 1
    assert np.all(np.diff(band) > 0)
    wl = cube["wavelength"].values
    assert np.all(np.isfinite(wl)) and np.all(np.diff(wl) > 0)
    assert wl.min() > 300 and wl.max() < 2600, "wavelengths must be nm"
    assert cube["good_band"].dtype == bool
    for key in REQUIRED_ATTRS:
        assert key in cube.attrs, key
    assert cube.attrs["quantity"] in QUANTITIES
    assert isinstance(cube.attrs["source_files"], list) and cube.attrs["source_files"]
