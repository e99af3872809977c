"""GF-5 / GF-5B / ZY1-02D / ZY1-02E AHSI L1 deliveries as a radiance cube (formats.md §1.11).

One delivery = a VNIR and a SWIR GeoTIFF of DN in sensor geometry (RPCs), RadCal and
Spectralresponse text files per detector, and ``<product>.xml``. The cube stacks VNIR then
SWIR (cube band numbers VNIR 1..nV, SWIR nV+1..nV+nS, the ENVI convention), drops the VNIR
bands at or beyond the first SWIR wavelength (the SWIR detector is kept in the overlap, reported
in ``attrs["dropped_at_ingest"]``) and calibrates lazily: L = gain·DN + offset in
W m-2 sr-1 um-1. A pixel whose DN is 0 in every band of a detector is NaN in that detector's
bands.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from hsu_geo.cube import make_cube
from hsu_geo.errors import ConfigError, InvalidSceneError, UnsupportedFormatError
from hsu_geo.ingest.base import SceneReader
from hsu_geo.ingest.gf5_archive import Delivery
from hsu_geo.ingest.gf5_files import (
    DETECTORS,
    Gf5Files,
    locate,
    looks_like_delivery,
    product_centre,
    product_match,
    resolve_delivery,
)
from hsu_geo.ingest.gf5_meta import (
    decode_text,
    parse_product_xml,
    parse_radcal,
    parse_spectral_response,
)
from hsu_geo.ingest.rasterio_array import lazy_raster

RADIANCE_UNITS = "W m-2 sr-1 um-1"  # CRESDA Le = Gain·DN + Bias (formats.md §1.6)
OVERLAP_REASON = "VNIR/SWIR overlap"


@dataclass(frozen=True)
class Detector:
    """One detector's image and calibration.

    ``gain``, ``offset``, ``wavelength`` (nm), ``fwhm`` (nm) are ``(count,)`` float64 arrays.
    """

    name: str
    path: str
    label: str
    count: int
    shape: tuple[int, int]
    rpcs: dict[str, Any] | None
    gain: np.ndarray
    offset: np.ndarray
    wavelength: np.ndarray
    fwhm: np.ndarray


def _read_detector(delivery: Delivery, files: Gf5Files, name: str) -> Detector:
    """Header, RPCs, RadCal and Spectralresponse of one detector (no pixels read)."""
    path, label = delivery.gdal_path(files.image[name]), delivery.label(files.image[name])
    if files.rpb.get(name) is not None:  # GDAL reads it with the image: bound its size first
        delivery.read_bytes(files.rpb[name], "RPC file (.rpb)")
    try:
        with warnings.catch_warnings():  # no RPCs is reported below, more precisely
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            count, shape, dtypes = src.count, (src.height, src.width), sorted(set(src.dtypes))
            rpcs = src.rpcs.to_dict() if src.rpcs is not None else None
    except RasterioIOError:
        hint = (" (GDAL's /vsitar/ cannot read PAX long file names; repack with GNU tar "
                "'tar -H gnu' or open the extracted folder)" if delivery.kind == "tar" else "")
        raise InvalidSceneError(f"{label}: GDAL cannot open the {name} image{hint}") from None
    if len(dtypes) != 1 or not np.issubdtype(np.dtype(dtypes[0]), np.integer):
        raise UnsupportedFormatError(
            f"{label}: {name} image holds {', '.join(dtypes)} data; expected integer L1 digital "
            "numbers"
        )
    radcal = delivery.label(files.radcal[name])
    radcal_text = decode_text(delivery.read_bytes(files.radcal[name], "RadCal file"), radcal)
    gain, offset = parse_radcal(radcal_text, radcal, count, label)
    srf = delivery.label(files.spectral[name])
    srf_text = decode_text(delivery.read_bytes(files.spectral[name], "Spectralresponse file"),
                           srf)
    wavelength, fwhm = parse_spectral_response(srf_text, srf, count, label)
    return Detector(name, path, label, count, shape, rpcs, gain, offset, wavelength, fwhm)


def _radiance_block(dn: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``(bands, rows, cols)`` DN -> float32 radiance; all-zero spectra -> NaN.

    The result keeps the memory layout of ``dn`` (pixel-major for pixel-interleaved files);
    the float64 products are formed a slab of rows at a time.
    """
    out = np.empty_like(dn, dtype="float32")
    g, o = gain[:, None, None], offset[:, None, None]
    for r0 in range(0, dn.shape[1], 32):
        rows = slice(r0, r0 + 32)
        out[:, rows] = dn[:, rows] * g + o
    out.transpose(1, 2, 0)[~dn.any(axis=0)] = np.nan
    return out


def _radiance(det: Detector, bands: np.ndarray, chunk_size: int) -> da.Array:
    """Lazy radiance of the 1-based file ``bands`` of one detector, band-complete chunks."""
    dn = lazy_raster(det.path, chunk_size, bands=bands.tolist())
    idx = bands - 1
    return dn.map_blocks(
        _radiance_block, gain=det.gain[idx], offset=det.offset[idx], dtype="float32",
        meta=np.empty((0, 0, 0), "float32"),
    )


def _name_attrs(product: str) -> dict[str, Any]:
    """Attrs read from the product name (formats.md §1.2); the XML overrides where present."""
    m, centre = product_match(product), product_centre(product)
    if m is None or centre is None:
        return {}
    return {
        "satellite": m["sat"], "product_level": m["level"], "product_number": m["pid"],
        "orbit": m["orbit"], "centre_lonlat": list(centre),
        "acquisition_date": f"{m['date'][:4]}-{m['date'][4:6]}-{m['date'][6:]}",
    }


class Gf5AhsiReader(SceneReader):
    """GF-5 family AHSI L1 delivery (folder, .tar, .tar.gz/.tgz, .zip, or a _VN/_SW image)."""

    name: ClassVar[str] = "gf5"
    description: ClassVar[str] = (
        "GF-5/GF-5B/ZY1-02D/ZY1-02E AHSI L1 delivery: VNIR+SWIR DN -> radiance, RPCs"
    )
    sensors: ClassVar[tuple[str, ...]] = ("GF5 AHSI", "GF5A AHSI", "GF5B AHSI", "ZY1E AHSI",
                                          "ZY1F AHSI")
    priority: ClassVar[int] = 10

    @classmethod
    def guess_can_open(cls, path: Path) -> bool:
        """True for a folder/archive/image named (or holding files named) like an AHSI product."""
        return looks_like_delivery(Path(path))

    def open(self, path: Path, *, chunk_size: int, wavelengths: Path | None = None) -> xr.DataArray:
        """The delivery as a lazy radiance cube ``(band, y, x)`` float32; reads headers only."""
        if wavelengths is not None:
            raise ConfigError(
                f"{wavelengths}: GF-5 deliveries carry their own Spectralresponse files; "
                "drop the wavelength override"
            )
        delivery, product = resolve_delivery(Path(path))
        files = locate(delivery, product)
        vn, sw = (_read_detector(delivery, files, name) for name in DETECTORS)
        if vn.shape != sw.shape:
            raise InvalidSceneError(
                f"{vn.label} is {vn.shape[0]}x{vn.shape[1]} (rows x cols) but {sw.label} is "
                f"{sw.shape[0]}x{sw.shape[1]}; VNIR and SWIR must share one sensor grid"
            )
        rpcs = vn.rpcs if vn.rpcs is not None else sw.rpcs
        if rpcs is None:
            raise InvalidSceneError(
                f"{vn.label}: no RPCs (neither a .rpb sidecar nor embedded) in the VNIR or SWIR "
                "image; GF-5 L1 needs them for georeferencing"
            )
        keep = vn.wavelength < sw.wavelength[0]
        if not keep.any():
            raise InvalidSceneError(
                f"{delivery.label(files.spectral['VNIR'])}: every VNIR band lies in the SWIR "
                f"range (from {sw.wavelength[0]:g} nm)"
            )
        vn_bands = np.flatnonzero(keep) + 1
        sw_bands = np.arange(1, sw.count + 1)
        data = da.concatenate(
            [_radiance(vn, vn_bands, chunk_size), _radiance(sw, sw_bands, chunk_size)], axis=0
        ).rechunk({0: -1})
        dropped = [
            {"band": int(i + 1), "wavelength_nm": float(vn.wavelength[i]), "reason": OVERLAP_REASON}
            for i in np.flatnonzero(~keep)
        ]
        attrs = self._attrs(delivery, files, vn, sw, dropped)
        return make_cube(
            data,
            band=np.concatenate([vn_bands, vn.count + sw_bands]),
            wavelength=np.concatenate([vn.wavelength[keep], sw.wavelength]),
            fwhm=np.concatenate([vn.fwhm[keep], sw.fwhm]),
            rpcs=rpcs,
            attrs=attrs,
        )

    @staticmethod
    def _attrs(delivery: Delivery, files: Gf5Files, vn: Detector, sw: Detector,
               dropped: list[dict[str, Any]]) -> dict[str, Any]:
        radcal = [PurePosixPath(files.radcal[d]).name for d in DETECTORS]
        sources = [vn.label, sw.label]
        sources += [delivery.label(m) for m in files.rpb.values() if m is not None]
        sources += [delivery.label(files.radcal[d]) for d in DETECTORS]
        sources += [delivery.label(files.spectral[d]) for d in DETECTORS]
        attrs: dict[str, Any] = {
            "sensor": "AHSI",
            "product_id": files.product,
            "quantity": "radiance",
            "units": RADIANCE_UNITS,
            "scale_factor": 1.0,
            "calibration": f"RadCal files {', '.join(radcal)}",
            "source_files": sources,
            "dropped_at_ingest": dropped,
            "vnir_band_count": vn.count,
            "swir_band_count": sw.count,
            "geometry": "sensor (RPC)",
            **_name_attrs(files.product),
        }
        if vn.rpcs is not None and sw.rpcs is not None and sw.rpcs != vn.rpcs:
            attrs["rpcs_swir"] = sw.rpcs
        if files.xml is not None:
            xml = delivery.label(files.xml)
            raw = delivery.read_bytes(files.xml, "product XML")
            attrs.update(parse_product_xml(raw, xml))
            sources.append(xml)
        return attrs
