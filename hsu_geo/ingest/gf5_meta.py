"""Parse the text sidecars of a GF-5 AHSI delivery: RadCal, Spectralresponse and the XML.

The ``.raw`` calibration files are text despite the extension (formats.md §1.3): one line per
band, fields separated by commas (GF-5B) or tabs/spaces (GF-5). Every parser takes the file's
display name (``label``) and raises a one-line :class:`InvalidSceneError` naming it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import numpy as np

from hsu_geo.errors import InvalidSceneError

_FIELD_SPLIT = re.compile(r"[,\s]+")  # formats.md §1.5/§1.6: "," (GF-5B) or tab/space (GF-5)
_XML_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9_.:-]+)[\"'][^>]*\?>")
_WAVELENGTH_RANGE_NM = (300.0, 2600.0)  # AHSI spans ~390-2513 nm (formats.md §1.1)

# XML `ProductMetaData` scalar elements -> cube attrs, formats.md §1.7 (angles in degrees).
XML_NUMBERS = {
    "SolarZenith": "solar_zenith_deg",
    "SolarAzimuth": "solar_azimuth_deg",
    "SatelliteZenith": "satellite_zenith_deg",
    "SatelliteAzimuth": "satellite_azimuth_deg",
}
XML_STRINGS = {
    "SatelliteID": "satellite",
    "SensorID": "sensor_id",
    "ProductID": "product_number",
    "ProductLevel": "product_level",
}
XML_TIMES = {"StartTime": "acquisition_time", "EndTime": "acquisition_end_time"}
# Footprint ring order TL -> TR -> BR -> BL (formats.md §1.7, STAC geometry).
XML_CORNERS = ("TopLeft", "TopRight", "BottomRight", "BottomLeft")


def decode_text(raw: bytes, label: str) -> str:
    """Bytes of a text sidecar as str (UTF-8, BOM tolerated)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidSceneError(f"{label}: not a UTF-8 text file") from None


def numeric_table(text: str, label: str) -> np.ndarray:
    """Rows of numbers as a float64 array ``(rows, columns)``; blank lines skipped."""
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = [f for f in _FIELD_SPLIT.split(line.strip()) if f]
        if not fields:
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            # the line itself is not echoed: a misnamed or linked file may hold anything
            raise InvalidSceneError(
                f"{label}: line {lineno} is not numeric (expected numbers separated by commas, "
                "tabs or spaces); check that this is the right file"
            ) from None
        if not all(np.isfinite(values)):
            raise InvalidSceneError(f"{label}: line {lineno} holds a non-finite value")
        if rows and len(values) != len(rows[0]):
            raise InvalidSceneError(
                f"{label}: line {lineno} has {len(values)} fields, earlier lines {len(rows[0])}"
            )
        rows.append(values)
    if not rows:
        raise InvalidSceneError(f"{label}: file is empty")
    return np.asarray(rows, dtype="float64")


def _check_length(table: np.ndarray, label: str, n_bands: int, image: str) -> None:
    if table.shape[0] != n_bands:
        raise InvalidSceneError(
            f"{label}: {table.shape[0]} lines but {image} has {n_bands} bands"
        )


def parse_radcal(text: str, label: str, n_bands: int, image: str) -> tuple[np.ndarray, np.ndarray]:
    """Gains and offsets, each ``(n_bands,)`` float64: radiance = gain·DN + offset.

    One column = gains only (offset 0); two columns = ``gain, offset`` (formats.md §1.6).
    """
    table = numeric_table(text, label)
    if table.shape[1] not in (1, 2):
        raise InvalidSceneError(
            f"{label}: expected 1 or 2 columns (gain[, offset]), found {table.shape[1]}"
        )
    _check_length(table, label, n_bands, image)
    offset = table[:, 1] if table.shape[1] == 2 else np.zeros(n_bands)
    return table[:, 0].copy(), offset.copy()


def parse_spectral_response(
    text: str, label: str, n_bands: int, image: str
) -> tuple[np.ndarray, np.ndarray]:
    """Band centres and FWHM, each ``(n_bands,)`` float64 in nm (formats.md §1.5)."""
    table = numeric_table(text, label)
    if table.shape[1] != 2:
        raise InvalidSceneError(
            f"{label}: expected 2 columns (centre nm, fwhm nm), found {table.shape[1]}"
        )
    _check_length(table, label, n_bands, image)
    centre, fwhm = table[:, 0].copy(), table[:, 1].copy()
    bad = np.flatnonzero(np.diff(centre) <= 0)
    if bad.size:
        i = int(bad[0])
        raise InvalidSceneError(
            f"{label}: wavelengths not increasing at band {i + 2} "
            f"({centre[i]:g} nm then {centre[i + 1]:g} nm)"
        )
    lo, hi = _WAVELENGTH_RANGE_NM
    if centre[0] < lo or centre[-1] > hi:
        raise InvalidSceneError(
            f"{label}: wavelengths {centre[0]:g}-{centre[-1]:g} are outside {lo:g}-{hi:g} nm "
            "(expected nanometres)"
        )
    if np.any(fwhm <= 0):
        raise InvalidSceneError(f"{label}: FWHM values must be positive nm")
    return centre, fwhm


def _xml_root(raw: bytes, label: str) -> ET.Element:
    try:
        return ET.fromstring(raw)
    except ET.ParseError as exc:
        declared = _XML_ENCODING.match(raw)
        if declared is None:
            raise InvalidSceneError(f"{label}: not well-formed XML ({exc})") from None
        try:  # encodings expat lacks (e.g. GB2312): decode in Python, parse the text
            text = raw[declared.end():].decode(declared.group(1).decode("ascii"))
            return ET.fromstring(text)
        except (LookupError, UnicodeDecodeError, ET.ParseError) as exc2:
            raise InvalidSceneError(f"{label}: not well-formed XML ({exc2})") from None


def _number(meta: dict[str, str], key: str, label: str) -> float | None:
    value = meta.get(key)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidSceneError(f"{label}: <{key}> is not a number: {value!r}") from None


def _iso_time(value: str, key: str, label: str) -> str:
    text = value.strip().replace("/", "-")
    frac = re.match(r"^(.*\.\d{6})\d+$", text)  # keep microseconds of longer fractions
    if frac:
        text = frac.group(1)
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidSceneError(f"{label}: <{key}> is not a date-time: {value!r}") from None


def parse_product_xml(raw: bytes, label: str) -> dict[str, Any]:
    """Cube attrs from ``ProductMetaData`` (missing elements are simply absent).

    Returns satellite, sensor_id, product_number, product_level, acquisition_time and
    acquisition_end_time (ISO-8601, time zone as written in the XML), solar/satellite
    zenith/azimuth (degrees), ``footprint_lonlat`` (TL, TR, BR, BL as [lon, lat]) and
    ``centre_lonlat`` ([lon, lat]).
    """
    root = _xml_root(raw, label)
    node = root if root.tag == "ProductMetaData" else next(root.iter("ProductMetaData"), None)
    if node is None:
        raise InvalidSceneError(f"{label}: no <ProductMetaData> element")
    meta = {child.tag: (child.text or "").strip() for child in node}
    attrs: dict[str, Any] = {}
    for key, name in XML_STRINGS.items():
        if meta.get(key):
            attrs[name] = meta[key]
    for key, name in XML_TIMES.items():
        if meta.get(key):
            attrs[name] = _iso_time(meta[key], key, label)
    for key, name in XML_NUMBERS.items():
        value = _number(meta, key, label)
        if value is not None:
            attrs[name] = value
    corners = [(_number(meta, f"{c}Longitude", label), _number(meta, f"{c}Latitude", label))
               for c in XML_CORNERS]
    if all(lon is not None and lat is not None for lon, lat in corners):
        attrs["footprint_lonlat"] = [[lon, lat] for lon, lat in corners]
    centre = (_number(meta, "CenterLongitude", label), _number(meta, "CenterLatitude", label))
    if centre[0] is not None and centre[1] is not None:
        attrs["centre_lonlat"] = [centre[0], centre[1]]
    return attrs
