"""ENVI rasters (.hdr + binary; BSQ/BIL/BIP, either byte order): AVIRIS-Classic, AVIRIS-NG,
EMIT-style crops and generic ENVI cubes.

The header is parsed with ``spectral`` (wavelength, fwhm, units, bbl, data ignore value,
reflectance scale factor, data gain/offset values); pixels and georeferencing (map info,
rotated grids, coordinate system string) come from GDAL's ENVI driver through rasterio.
AVIRIS-Classic radiance (int16) is divided by the per-band ``.gain`` factors (formats.md §2.1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import spectral.io.envi as envi
import xarray as xr

from hsu_geo.cube import check_band_count
from hsu_geo.errors import (
    InvalidSceneError,
    MissingWavelengthsError,
    SceneNotFoundError,
    UnsupportedFormatError,
)
from hsu_geo.ingest.assemble import cube_from_raster
from hsu_geo.ingest.base import SceneReader
from hsu_geo.ingest.rasterio_array import open_quietly
from hsu_geo.ingest.spectral_meta import (
    BandInfo,
    check_band_info,
    parse_floats,
    parse_scale_factor,
    read_wavelength_file,
    resolved_units,
    to_nm,
)
from hsu_geo.safe_io import HEADER_LIMIT, TABLE_LIMIT, check_regular_file

#: ENVI data type code -> (numpy dtype, supported); formats.md §2.3
ENVI_DTYPES: dict[int, tuple[str, bool]] = {
    1: ("uint8", True), 2: ("int16", True), 3: ("int32", True), 4: ("float32", True),
    5: ("float64", True), 6: ("complex64", False), 9: ("complex128", False),
    12: ("uint16", True), 13: ("uint32", True), 14: ("int64", True), 15: ("uint64", True),
}
INTERLEAVES = ("bsq", "bil", "bip")
DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".bin")

#: product-name patterns -> (sensor, quantity, units); formats.md §2.1, §2.2, §3
AVIRIS_CLASSIC = re.compile(r"^f\d{6}t\d{2}p\d{2}r\d{2}")
NAME_RULES: list[tuple[re.Pattern[str], str, str, str]] = [
    (re.compile(r"^ang\d{8}t\d{6}.*_rdn"), "AVIRIS-NG", "radiance", "uW nm-1 cm-2 sr-1"),
    (re.compile(r"^ang\d{8}t\d{6}"), "AVIRIS-NG", "reflectance", "1"),
    (re.compile(r"^f\d{6}t\d{2}p\d{2}r\d{2}.*rdn"), "AVIRIS-Classic", "radiance",
     "uW cm-2 sr-1 nm-1"),
    (AVIRIS_CLASSIC, "AVIRIS-Classic", "reflectance", "1"),
    (re.compile(r"^emit\d{8}t\d{6}", re.I), "EMIT", "reflectance", "1"),
    (re.compile(r"^EMIT_L1B_RAD"), "EMIT", "radiance", "uW cm-2 sr-1 nm-1"),
]
#: SeaDAS defaults when an AVIRIS-Classic radiance file has no .gain file (formats.md §2.1)
AVIRIS_DEFAULT_GAINS = ((110, 300.0), (160, 600.0), (224, 1200.0))


def find_header(path: Path) -> Path | None:
    """The ``.hdr`` belonging to ``path`` (itself, ``name.hdr`` or ``stem.hdr``), if any."""
    if path.suffix.lower() == ".hdr":
        return path
    for cand in (path.with_name(path.name + ".hdr"), path.with_suffix(".hdr")):
        if cand.is_file():
            return cand
    return None


def find_data_file(hdr: Path) -> Path:
    """The binary file next to an ENVI header (same stem, usual suffixes)."""
    stem = hdr.with_suffix("")
    for suffix in DATA_SUFFIXES:
        for cand in (stem.with_name(stem.name + suffix), stem.with_name(stem.name +
                                                                         suffix.upper())):
            if cand.is_file() and cand != hdr:
                return cand
    raise SceneNotFoundError(f"{hdr}: no binary data file next to the header "
                             f"(looked for {stem.name} with {', '.join(DATA_SUFFIXES[1:])})")


def read_header(hdr: Path) -> dict[str, Any]:
    """Parse an ENVI header with ``spectral``; a broken header is a one-line error.

    The header must be a regular file of at most :data:`hsu_geo.safe_io.HEADER_LIMIT`.
    """
    check_regular_file(hdr, HEADER_LIMIT, "ENVI header")
    try:
        return envi.read_envi_header(str(hdr))
    except Exception as exc:
        raise InvalidSceneError(f"{hdr}: not a valid ENVI header ({exc})") from None


def _int(hdr: dict[str, Any], key: str, source: Path, default: int | None = None) -> int:
    if key not in hdr:
        if default is not None:
            return default
        raise InvalidSceneError(f"{source}: header lacks required field '{key}'")
    try:
        return int(str(hdr[key]).strip())
    except ValueError:
        raise InvalidSceneError(f"{source}: header field '{key}' = {hdr[key]!r} is not an "
                                "integer") from None


def check_layout(hdr: dict[str, Any], hdr_path: Path, data: Path) -> tuple[int, int, int]:
    """Validate data type, interleave and file size; returns (bands, lines, samples)."""
    samples = _int(hdr, "samples", hdr_path)
    lines = _int(hdr, "lines", hdr_path)
    bands = _int(hdr, "bands", hdr_path)
    check_band_count(bands, str(hdr_path))
    code = _int(hdr, "data type", hdr_path)
    if code not in ENVI_DTYPES:
        raise UnsupportedFormatError(f"{hdr_path}: unknown ENVI data type {code}; expected one "
                                     f"of {sorted(ENVI_DTYPES)}")
    dtype, supported = ENVI_DTYPES[code]
    if not supported:
        raise UnsupportedFormatError(f"{hdr_path}: data type {code} ({dtype}) is not supported "
                                     "for unmixing; convert to a real-valued type")
    interleave = str(hdr.get("interleave", "bsq")).strip().lower()
    if interleave not in INTERLEAVES:
        raise UnsupportedFormatError(f"{hdr_path}: interleave {interleave!r} is not supported; "
                                     f"expected one of {', '.join(INTERLEAVES)}")
    if str(hdr.get("file type", "ENVI Standard")).strip().lower() == "envi spectral library":
        raise UnsupportedFormatError(f"{hdr_path}: this is an ENVI spectral library, not an "
                                     "image; pass it with --endmembers/--library instead")
    offset = _int(hdr, "header offset", hdr_path, default=0)
    expected = offset + samples * lines * bands * np.dtype(dtype).itemsize
    actual = data.stat().st_size
    if actual < expected:
        raise InvalidSceneError(f"{data}: truncated: {actual} bytes but the header describes "
                                f"{expected} ({bands} bands x {lines} lines x {samples} samples "
                                f"x {np.dtype(dtype).itemsize} B + {offset}); re-download it")
    if actual > expected:
        raise InvalidSceneError(f"{data}: size mismatch: {actual} bytes but the header "
                                f"describes {expected}; check samples/lines/bands/data type")
    return bands, lines, samples


def band_info(hdr: dict[str, Any], n: int, source: Path) -> BandInfo | None:
    """Wavelengths/FWHM in nm and bbl from the header; None when there are no wavelengths."""
    if "wavelength" not in hdr:
        return None
    units = hdr.get("wavelength units")
    raw_wl = parse_floats(hdr["wavelength"], "wavelength", str(source))
    wl = to_nm(raw_wl, units, str(source))
    fw = (to_nm(parse_floats(hdr["fwhm"], "fwhm", str(source)), resolved_units(raw_wl, units),
                str(source)) if "fwhm" in hdr else np.full(wl.size, np.nan))
    gb = np.ones(wl.size, bool)
    if "bbl" in hdr:
        bbl = parse_floats(hdr["bbl"], "bbl", str(source))
        if bbl.size != n:
            raise InvalidSceneError(f"{source}: bbl has {bbl.size} entries for {n} bands")
        gb = bbl != 0
    info = BandInfo(wl, fw, gb)
    check_band_info(info, n, str(source), fix="fix the header's lists, or pass --wavelengths "
                    "FILE with one row per band")
    return info


def classify_product(name: str, hdr: dict[str, Any]) -> tuple[str, str, str]:
    """(sensor, quantity, units) from the product name and header text."""
    for pattern, sensor, quantity, units in NAME_RULES:
        if pattern.search(name):
            return sensor, quantity, units
    text = " ".join(str(hdr.get(k, "")) for k in ("description", "data units")).lower()
    if "radiance" in text:
        return str(hdr.get("sensor type", "unknown")), "radiance", str(hdr.get("data units",
                                                                               "unknown"))
    return str(hdr.get("sensor type", "unknown")), "reflectance", "1"


def aviris_gains(data: Path, n: int) -> tuple[np.ndarray, str]:
    """AVIRIS-Classic per-band radiance gains: the flight's ``.gain`` file or SeaDAS defaults.

    Radiance = DN / gain in uW cm-2 sr-1 nm-1. The ``.gain`` file has two columns
    (factor, channel number).
    """
    flight = AVIRIS_CLASSIC.match(data.name)
    prefix = flight.group(0) if flight else data.stem
    cands = sorted(p for p in data.parent.glob("*.gain") if p.name.startswith(prefix))
    if cands:
        check_regular_file(cands[0], TABLE_LIMIT, "AVIRIS gain file")
        table = np.loadtxt(cands[0], ndmin=2)
        if table.shape[0] < n:
            raise InvalidSceneError(f"{cands[0]}: {table.shape[0]} gains for {n} bands")
        return table[:n, 0], f"AVIRIS gain file {cands[0].name}"
    gains = np.empty(n)
    start = 0
    for last, gain in AVIRIS_DEFAULT_GAINS:
        gains[start:last] = gain
        start = last
    gains[start:] = AVIRIS_DEFAULT_GAINS[-1][1]
    return gains, "SeaDAS default AVIRIS gains 300/600/1200 (no .gain file found)"


class EnviReader(SceneReader):
    """ENVI standard images: AVIRIS-Classic/NG, EMIT crops, any ENVI cube with wavelengths."""

    name = "envi"
    description = "ENVI .hdr + binary (AVIRIS-Classic, AVIRIS-NG, EMIT, generic)"
    sensors = ("AVIRIS-Classic", "AVIRIS-NG", "EMIT", "any")
    priority: ClassVar[int] = 60

    @classmethod
    def guess_can_open(cls, path: Path) -> bool:
        if not path.is_file():
            return False
        hdr = find_header(path)
        if hdr is None:
            return False
        with open(hdr, "rb") as fh:
            return fh.read(4) == b"ENVI"

    def open(self, path: Path, *, chunk_size: int, wavelengths: Path | None = None) -> xr.DataArray:
        hdr_path = find_header(path)
        if hdr_path is None:
            raise SceneNotFoundError(f"{path}: no ENVI header (.hdr) next to this file")
        hdr = read_header(hdr_path)
        data = path if path != hdr_path else find_data_file(hdr_path)
        bands, _, _ = check_layout(hdr, hdr_path, data)
        info = read_wavelength_file(wavelengths, bands) if wavelengths else \
            band_info(hdr, bands, hdr_path)
        if info is None:
            raise MissingWavelengthsError(
                f"{hdr_path}: the header has no 'wavelength' field; add it, or pass "
                "--wavelengths FILE (CSV or ENVI .hdr)"
            )
        sensor, quantity, units = classify_product(data.name, hdr)
        scale = parse_scale_factor(hdr.get("reflectance scale factor"), str(hdr_path))
        gain = parse_floats(hdr["data gain values"], "data gain values", str(hdr_path)) \
            if "data gain values" in hdr else None
        offset = parse_floats(hdr["data offset values"], "data offset values",
                              str(hdr_path)) if "data offset values" in hdr else None
        calibration = "header data gain/offset values" if gain is not None else "none"
        dtype = ENVI_DTYPES[_int(hdr, "data type", hdr_path)][0]
        if sensor == "AVIRIS-Classic" and quantity == "radiance" and gain is None:
            gains, calibration = aviris_gains(data, bands)
            gain = 1.0 / gains
        elif sensor == "AVIRIS-Classic" and quantity == "reflectance" and scale == 1.0 \
                and dtype == "int16":
            scale = 10000.0  # ATREM reflectance x 10000 (formats.md §2.1)
        if scale != 1.0:
            calibration = f"divided by reflectance scale factor {scale:g}"
        nodata = float(parse_floats([hdr["data ignore value"]], "data ignore value",
                                    str(hdr_path))[0]) if "data ignore value" in hdr else None
        with open_quietly(str(data)) as src:
            crs = src.crs
            transform = src.transform if not src.transform.is_identity else None
        attrs = {
            "sensor": sensor,
            "product_id": data.stem if data.suffix.lower() in DATA_SUFFIXES else data.name,
            "quantity": quantity,
            "units": units,
            "scale_factor": scale,
            "calibration": calibration,
            "source_files": [str(hdr_path), str(data)],
            "interleave": str(hdr.get("interleave", "bsq")).lower(),
            "byte_order": int(str(hdr.get("byte order", 0)).strip() or 0),
        }
        return cube_from_raster(
            data, info, chunk_size=chunk_size, attrs=attrs, nodata=nodata, gain=gain,
            offset=offset, scale_factor=scale, crs=crs, transform=transform,
        )
