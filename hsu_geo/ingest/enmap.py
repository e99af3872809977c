"""EnMAP L2A products: ``*-SPECTRAL_IMAGE.TIF`` + ``*-METADATA.XML`` (folder or .zip).

Band centres, FWHM, gain and offset come from ``specific/bandCharacterisation/bandID``;
reflectance = DN * gain + offset. Bands whose product statistics say "no data" (std 0 and
mean -1e6) are flagged bad. In the 900-1000 nm detector overlap the SWIR bands are kept, as
EnMAP-Box does by default (formats.md §3, EnMAP-Box ``importenmapl2aalgorithm.py``).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import ClassVar
from xml.etree import ElementTree

import numpy as np
import rasterio
import xarray as xr

from hsu_geo.errors import InvalidSceneError, SceneNotFoundError
from hsu_geo.ingest.assemble import cube_from_raster
from hsu_geo.ingest.base import SceneReader
from hsu_geo.ingest.gf5_archive import check_archive_content
from hsu_geo.ingest.spectral_meta import OVERLAP_REASON, BandInfo, read_wavelength_file
from hsu_geo.safe_io import XML_LIMIT, link_leaves, read_capped, read_small_file, too_large

PRODUCT = re.compile(r"^ENMAP01-_*L2A-", re.I)
METADATA_SUFFIX = "-METADATA.XML"
IMAGE_SUFFIX = "-SPECTRAL_IMAGE"


def _locate(path: Path) -> tuple[str, str, bytes]:
    """(GDAL path of the spectral image, product id, metadata XML bytes) for any entry point."""
    if path.is_file() and path.suffix.lower() == ".zip":
        check_archive_content(path)
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            xml = [n for n in names if n.upper().endswith(METADATA_SUFFIX)]
            img = [n for n in names if IMAGE_SUFFIX in n.upper() and
                   n.lower().endswith((".tif", ".tiff"))]
            if not xml or not img:
                raise InvalidSceneError(f"{path}: EnMAP zip lacks *{METADATA_SUFFIX} or "
                                        f"*{IMAGE_SUFFIX}.TIF")
            info = zf.getinfo(xml[0])
            label = f"{path}/{xml[0]}"
            if info.file_size > XML_LIMIT:
                raise too_large(label, "metadata XML", info.file_size, XML_LIMIT)
            with zf.open(info) as fh:
                raw = read_capped(fh, XML_LIMIT, label, "metadata XML")
            return f"/vsizip/{path}/{img[0]}", Path(xml[0]).name[:-len(METADATA_SUFFIX)], raw
    folder = path if path.is_dir() else path.parent
    entries = [p for p in folder.iterdir() if not link_leaves(p, folder)]
    xml_files = [p for p in entries if p.name.upper().endswith(METADATA_SUFFIX)]
    img_files = [p for p in entries if IMAGE_SUFFIX in p.name.upper()
                 and p.suffix.lower() in (".tif", ".tiff")]
    if not xml_files:
        raise SceneNotFoundError(f"{folder}: no *{METADATA_SUFFIX} file in this EnMAP product")
    if not img_files:
        raise SceneNotFoundError(f"{folder}: no *{IMAGE_SUFFIX}.TIF file in this EnMAP product")
    product = xml_files[0].name[:-len(METADATA_SUFFIX)]
    return str(img_files[0]), product, read_small_file(xml_files[0], XML_LIMIT, "metadata XML")


def parse_metadata(xml: bytes, source: str) -> dict:
    """Per-band arrays (wavelength, fwhm, gain, offset, no-data flag) and channel lists."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise InvalidSceneError(f"{source}: metadata XML is malformed ({exc})") from None

    def floats(xpath: str) -> np.ndarray:
        try:
            return np.array([float(e.text or "nan") for e in root.findall(xpath)])
        except ValueError as exc:
            raise InvalidSceneError(f"{source}: non-numeric value at {xpath} ({exc})") from None

    bands = "specific/bandCharacterisation/bandID/"
    out = {
        "wavelength": floats(bands + "wavelengthCenterOfBand"),
        "fwhm": floats(bands + "FWHMOfBand"),
        "gain": floats(bands + "GainOfBand"),
        "offset": floats(bands + "OffsetOfBand"),
        "std": floats("product/bandStatistics/bandID/stdDeviation"),
        "mean": floats("product/bandStatistics/bandID/mean"),
    }
    if out["wavelength"].size == 0:
        raise InvalidSceneError(f"{source}: no bandCharacterisation/bandID entries")
    for key in ("fwhm", "gain", "offset"):
        if out[key].size != out["wavelength"].size:
            raise InvalidSceneError(f"{source}: {out[key].size} {key} values for "
                                    f"{out['wavelength'].size} bands")
    for det in ("vnir", "swir"):
        node = root.find(f"specific/{det}ProductQuality/expectedChannelsList")
        out[det] = [int(t) for t in node.text.split(",")] if node is not None and node.text \
            else []
    for key in ("startTime", "datatake"):
        node = root.find(f".//{key}")
        out[key] = node.text if node is not None else ""
    return out


class EnmapL2aReader(SceneReader):
    """EnMAP L2A surface reflectance (GeoTIFF + METADATA.XML)."""

    name = "enmap"
    description = "EnMAP L2A product folder/zip (SPECTRAL_IMAGE.TIF + METADATA.XML)"
    sensors = ("EnMAP",)
    priority: ClassVar[int] = 20

    @classmethod
    def guess_can_open(cls, path: Path) -> bool:
        if path.is_dir():
            return any(PRODUCT.match(p.name) and p.name.upper().endswith(METADATA_SUFFIX)
                       for p in path.iterdir())
        if path.suffix.lower() == ".zip":
            return bool(PRODUCT.match(path.name))
        return bool(PRODUCT.match(path.name)) and (
            path.name.upper().endswith(METADATA_SUFFIX) or IMAGE_SUFFIX in path.name.upper())

    def open(self, path: Path, *, chunk_size: int, wavelengths: Path | None = None) -> xr.DataArray:
        image, product, xml = _locate(path)
        meta = parse_metadata(xml, str(path))
        n = meta["wavelength"].size
        try:
            with rasterio.open(image) as src:
                count, nodata, crs, transform = src.count, src.nodata, src.crs, src.transform
        except rasterio.errors.RasterioIOError as exc:
            raise InvalidSceneError(f"{image}: not a readable raster ({exc})") from None
        if count != n:
            raise InvalidSceneError(f"{image}: {count} bands but the metadata describes {n}")
        good = np.ones(n, bool)
        if meta["std"].size == n:
            good &= ~((meta["std"] == 0) & (meta["mean"] == -1e6))
        wl = meta["wavelength"]
        info = read_wavelength_file(wavelengths, n) if wavelengths else \
            BandInfo(wl, meta["fwhm"], good)
        exclude: dict[int, str] = {}
        if meta["vnir"] and meta["swir"] and np.all(np.diff(wl) > 0):
            # wavelength-ordered file: VNIR channels inside the SWIR range are dropped
            swir_start = wl[meta["swir"][0] - 1]
            exclude = {b - 1: OVERLAP_REASON for b in meta["vnir"] if wl[b - 1] >= swir_start}
        attrs = {
            "sensor": "EnMAP",
            "product_id": product,
            "quantity": "reflectance",
            "units": "1",
            "scale_factor": 1.0,
            "calibration": "METADATA.XML GainOfBand/OffsetOfBand",
            "source_files": [str(path)],
            "acquisition_time": meta["startTime"],
        }
        return cube_from_raster(
            image, info, chunk_size=chunk_size, attrs=attrs, nodata=nodata,
            gain=meta["gain"], offset=meta["offset"], crs=crs, transform=transform,
            exclude=exclude,
        )
