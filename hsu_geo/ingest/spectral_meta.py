"""Band wavelength metadata: unit normalisation, validation and override files.

Wavelengths are always stored in nm. Override files (``--wavelengths FILE``) may be a CSV with a
header naming a wavelength column (``wavelength``, ``wavelength_nm``, ``wavelength_um``; optional
``fwhm``/``fwhm_nm``/``fwhm_um``), a headerless text table (``wavelength [fwhm]`` or
``index wavelength fwhm``, as ISOFIT's ``wavelengths.txt``), or an ENVI ``.hdr``.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import spectral.io.envi as envi

from hsu_geo.errors import InvalidSceneError
from hsu_geo.safe_io import HEADER_LIMIT, TABLE_LIMIT, check_regular_file, read_small_text

_UM_UNITS = {"micrometers", "micrometer", "microns", "micron", "um", "µm"}
_NM_UNITS = {"nanometers", "nanometer", "nm"}
#: below this, unlabelled wavelength values are taken to be micrometres (no imaging
#: spectrometer samples below 30 nm; none samples beyond 30 µm)
_UM_THRESHOLD = 30.0


@dataclass(frozen=True)
class BandInfo:
    """Per-band spectral metadata, all arrays of length ``bands``; nm."""

    wavelength: np.ndarray
    fwhm: np.ndarray
    good_band: np.ndarray


def resolved_units(wavelength: Sequence[float] | np.ndarray, units: str | None) -> str | None:
    """``units``, or for unknown units ("", "Unknown", None) the unit :func:`to_nm` guesses
    from the *wavelength* values ("um" below 30, else "nm"). FWHM take their wavelengths'
    unit: converted on their own, 10 nm widths beside nm centres would be read as 10 µm."""
    u = (units or "").strip().lower()
    if u not in {"", "unknown", "index"}:
        return units
    arr = np.asarray(wavelength, dtype="float64")
    finite = arr[np.isfinite(arr)]
    return "um" if finite.size and np.nanmax(finite) < _UM_THRESHOLD else "nm"


def to_nm(values: Sequence[float] | np.ndarray, units: str | None, source: str) -> np.ndarray:
    """Convert wavelengths (or FWHM) to nm given a units string (ENVI/GDAL spelling).

    ``units`` None/"Unknown" guesses from magnitude: values < 30 are micrometres.
    """
    arr = np.asarray(values, dtype="float64")
    u = (units or "").strip().lower()
    if u in _UM_UNITS:
        return arr * 1000.0
    if u in _NM_UNITS:
        return arr
    if u in {"millimeters", "mm"}:
        return arr * 1e6
    if u in {"", "unknown", "index"}:
        finite = arr[np.isfinite(arr)]
        if finite.size and np.nanmax(finite) < _UM_THRESHOLD:
            return arr * 1000.0
        return arr
    raise InvalidSceneError(f"{source}: unsupported wavelength units {units!r}; use nm or µm")


def parse_floats(values: Sequence[str] | str, what: str, source: str) -> np.ndarray:
    """Parse a list (or ENVI ``{a, b}`` string) of numbers, with a clear error."""
    if isinstance(values, str):
        values = values.strip().strip("{}").split(",")
    out = np.empty(len(values), dtype="float64")
    for i, v in enumerate(values):
        try:
            out[i] = float(str(v).strip())
        except ValueError:
            # the value is not echoed: a mistaken or linked file may hold anything
            raise InvalidSceneError(f"{source}: {what} holds a non-numeric value (entry "
                                    f"{i + 1}); give numbers only") from None
    return out


def check_wavelengths(wl: np.ndarray, n_bands: int, source: str, increasing: bool = True) -> None:
    """Fail unless there is one finite, positive wavelength per band (strictly increasing
    unless ``increasing=False``, for multi-detector products resolved later)."""
    if wl.size != n_bands:
        raise InvalidSceneError(
            f"{source}: {wl.size} wavelengths for {n_bands} bands; give one per band"
        )
    if not np.all(np.isfinite(wl)) or np.any(wl <= 0):
        raise InvalidSceneError(f"{source}: wavelengths are missing, non-finite or not positive")
    if increasing and n_bands > 1 and not np.all(np.diff(wl) > 0):
        i = int(np.flatnonzero(np.diff(wl) <= 0)[0])
        raise InvalidSceneError(
            f"{source}: wavelengths are not increasing (band {i + 1}: {wl[i]:g} nm, band "
            f"{i + 2}: {wl[i + 1]:g} nm)"
        )


def check_band_info(info: BandInfo, n_bands: int, source: str,
                    fix: str = "fix the metadata, or pass --wavelengths FILE with one row "
                               "per band") -> None:
    """Fail unless wavelengths, FWHM and bad-band flags each have exactly ``n_bands`` entries."""
    for what, values in (("wavelengths", info.wavelength), ("fwhm values", info.fwhm),
                         ("bad-band (bbl) entries", info.good_band)):
        if np.size(values) != n_bands:
            raise InvalidSceneError(
                f"{source}: {np.size(values)} {what} for {n_bands} bands; give exactly one per "
                f"band ({fix})"
            )


def parse_scale_factor(value: object, source: str,
                       name: str = "reflectance scale factor") -> float:
    """A reflectance scale factor (values are divided by it) as a positive finite number.

    ``None`` or an empty value means 1; anything else that is not one positive finite number
    is an :class:`InvalidSceneError` naming the value and the fix.
    """
    if value is None or str(value).strip() == "":
        return 1.0
    text = str(value).strip()
    fix = ("set it to the one number the values were multiplied by (e.g. 10000), or remove "
           "it if they are stored unscaled")
    try:
        factor = float(text)
    except ValueError:
        shown = text if len(text) <= 24 else text[:24] + "…"  # bounded, one line (repr)
        raise InvalidSceneError(f"{source}: {name} {shown!r} is not a single number; "
                                f"{fix}") from None
    if not math.isfinite(factor) or factor <= 0:
        raise InvalidSceneError(f"{source}: {name} is {text}, but values are divided by it so "
                                f"it must be a positive number; {fix}")
    return factor


def read_wavelength_file(path: Path, n_bands: int) -> BandInfo:
    """Read a ``--wavelengths`` override file (CSV, text table or ENVI .hdr) for ``n_bands``.

    The file must be a regular file within :data:`hsu_geo.safe_io.HEADER_LIMIT` (``.hdr``) or
    :data:`~hsu_geo.safe_io.TABLE_LIMIT` (tables), checked before it is read.
    """
    if path.suffix.lower() == ".hdr":
        check_regular_file(path, HEADER_LIMIT, "wavelength file (--wavelengths)")
        info = _from_envi_header(path)
    else:
        info = _from_table(path)
    check_wavelengths(info.wavelength, n_bands, str(path), increasing=False)
    check_band_info(info, n_bands, str(path), fix="give one row per band")
    return info


def _from_envi_header(path: Path) -> BandInfo:
    try:
        hdr = envi.read_envi_header(str(path))
    except Exception as exc:
        raise InvalidSceneError(f"{path}: not a readable ENVI header ({exc})") from None
    if "wavelength" not in hdr:
        raise InvalidSceneError(f"{path}: the header has no 'wavelength' field")
    units = hdr.get("wavelength units")
    raw_wl = parse_floats(hdr["wavelength"], "wavelength", str(path))
    wl = to_nm(raw_wl, units, str(path))
    fw = (to_nm(parse_floats(hdr["fwhm"], "fwhm", str(path)), resolved_units(raw_wl, units),
                str(path)) if "fwhm" in hdr else np.full(wl.size, np.nan))
    gb = (parse_floats(hdr["bbl"], "bbl", str(path)) != 0) if "bbl" in hdr \
        else np.ones(wl.size, bool)
    return BandInfo(wl, fw, gb)


def _from_table(path: Path) -> BandInfo:
    text = read_small_text(path, TABLE_LIMIT, "wavelength file (--wavelengths)"
                           ).strip().splitlines()
    if not text:
        raise InvalidSceneError(f"{path}: the wavelength file is empty")
    first = text[0].replace(",", " ").split()
    has_header = any(not _is_number(tok) for tok in first)
    if has_header:
        rows = list(csv.DictReader(text))
        cols = {c.strip().lower(): c for c in rows[0]} if rows else {}
        wl_key = next((k for k in ("wavelength_nm", "wavelength", "wavelength_um", "wl")
                       if k in cols), None)
        if wl_key is None:
            raise InvalidSceneError(
                f"{path}: no wavelength column; name one 'wavelength_nm' (or 'wavelength_um')"
            )
        units = "um" if wl_key.endswith("_um") else ("nm" if wl_key.endswith("_nm") else None)
        raw_wl = parse_floats([r[cols[wl_key]] for r in rows], "wavelength", str(path))
        wl = to_nm(raw_wl, units, str(path))
        in_um = not np.allclose(wl, raw_wl)
        fw_key = next((k for k in ("fwhm_nm", "fwhm", "fwhm_um") if k in cols), None)
        if fw_key is None:
            fw = np.full(wl.size, np.nan)
        else:
            fw_units = "um" if fw_key.endswith("_um") or (fw_key == "fwhm" and in_um) else "nm"
            fw = to_nm(parse_floats([r[cols[fw_key]] for r in rows], "fwhm", str(path)),
                       fw_units, str(path))
        gb_key = next((k for k in ("good_band", "bbl") if k in cols), None)
        gb = (parse_floats([r[cols[gb_key]] for r in rows], gb_key, str(path)) != 0
              if gb_key else np.ones(wl.size, bool))
        return BandInfo(wl, fw, gb)
    table = np.array([parse_floats(line.replace(",", " ").split(), "row", str(path))
                      for line in text if line.strip()], dtype=object)
    try:
        table = np.vstack(table.tolist()).astype("float64")
    except ValueError:
        raise InvalidSceneError(f"{path}: rows have different numbers of columns") from None
    if table.shape[1] >= 3 and np.allclose(table[:, 0], np.round(table[:, 0])) \
            and np.all(np.diff(table[:, 0]) == 1):
        table = table[:, 1:]  # leading band index column (ISOFIT layout)
    wl = to_nm(table[:, 0], None, str(path))
    wl_units = "um" if np.nanmax(table[:, 0]) < _UM_THRESHOLD else "nm"
    fw = to_nm(table[:, 1], wl_units, str(path)) if table.shape[1] > 1 \
        else np.full(wl.size, np.nan)
    return BandInfo(wl, fw, np.ones(wl.size, bool))


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


OVERLAP_REASON = "detector overlap (kept the longer-wavelength detector)"
#: fewest bands a spectrometer contributes; shorter "segments" are disordered metadata
#: (real ones have far more: AVIRIS-Classic 32+, EnMAP 91+, AHSI 150+)
MIN_DETECTOR_BANDS = 4


def resolve_detector_overlap(wl: np.ndarray, source: str) -> tuple[np.ndarray, list[int]]:
    """Split band order at detector joins and drop the earlier detector's overlapping bands.

    Products that stack two spectrometers (EnMAP VNIR+SWIR, GF-5 VN+SW) list bands per
    detector, so wavelengths fall back at each join. Within the overlap the earlier
    (shorter-wavelength) detector's bands are dropped, keeping the later detector — EnMAP-Box's
    default for EnMAP ("SWIR only") and the common AHSI choice (formats.md §1.8).

    Args:
        wl: wavelengths in nm in file order, shape (bands,).

    Returns:
        ``(keep, dropped)``: 0-based indexes kept (increasing wavelength) and dropped.

    Raises:
        InvalidSceneError: a detector segment is not strictly increasing (not an overlap
        but disordered metadata).
    """
    joins = np.flatnonzero(np.diff(wl) <= 0) + 1
    bounds = [0, *joins.tolist(), wl.size]
    segments = [np.arange(a, b) for a, b in itertools.pairwise(bounds)]
    if len(segments) > 4:
        raise InvalidSceneError(
            f"{source}: wavelengths are not increasing ({len(segments) - 1} reversals); "
            "bands must be ordered by wavelength within each detector"
        )
    if len(segments) > 1 and min(seg.size for seg in segments) < MIN_DETECTOR_BANDS:
        i = int(joins[0])
        raise InvalidSceneError(
            f"{source}: wavelengths are not increasing (band {i}: {wl[i - 1]:g} nm, band "
            f"{i + 1}: {wl[i]:g} nm) and this is not a detector join (a detector contributes "
            f">= {MIN_DETECTOR_BANDS} bands); fix the band order"
        )
    keep: list[int] = []
    dropped: list[int] = []
    for seg in segments:
        if keep:
            start = wl[seg[0]]
            overlap = [i for i in keep if wl[i] >= start]
            dropped.extend(overlap)
            keep = [i for i in keep if wl[i] < start]
        keep.extend(seg.tolist())
    return np.asarray(keep, dtype=int), sorted(dropped)
