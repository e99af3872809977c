"""Which files of a GF-5 AHSI delivery play which role: product name grammar and file patterns.

Works on a :class:`~hsu_geo.ingest.gf5_archive.Delivery` (folder, ``.tar``, ``.tar.gz``,
``.zip``). Every variant formats.md §1.3 lists is accepted; anything missing or ambiguous is a
one-line :class:`InvalidSceneError` naming the delivery and the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hsu_geo.errors import InvalidSceneError, UnsupportedFormatError
from hsu_geo.ingest.gf5_archive import (
    Delivery,
    archive_kind,
    first_archive_member,
    folder_members,
    open_delivery,
    strip_archive_suffix,
)

# Product name grammar, formats.md §1.2 (satellite, sensor, centre lon/lat, date, orbit, level+id).
PRODUCT_RE = re.compile(
    r"^(?P<sat>GF5|GF5A|GF5B|ZY1E|ZY1F)_(?P<sensor>AHSI)_(?P<lon>[EW]\d+(?:\.\d+)?)_"
    r"(?P<lat>[NS]\d+(?:\.\d+)?)_(?P<date>\d{8})_(?P<orbit>\d{6})_(?P<level>L1A?|L2A?)(?P<pid>\d+)$"
)

DETECTORS = ("VNIR", "SWIR")

# File name patterns per role and detector, formats.md §1.3: GF-5 `<product>_VN.geotiff` +
# `GF5_AHSI_VNIR_RadCal.raw`, GF-5B/ZY1E `<product>_VN.tif` + `GF5B_AHSI_RadCal_VNIR.raw`, the
# `_VN.tiff` fallback one reader tries, both Spectralresponse token orders. Case-insensitive.
IMAGE_SUFFIXES = {"VNIR": "_VN", "SWIR": "_SW"}
IMAGE_EXTENSIONS = (".geotiff", ".tif", ".tiff")
RADCAL_PATTERNS = {
    "VNIR": ("*RadCal*VNIR*.raw", "*VNIR*RadCal*.raw"),
    "SWIR": ("*RadCal*SWIR*.raw", "*SWIR*RadCal*.raw"),
}
SPECTRAL_PATTERNS = {
    "VNIR": ("*Spectralresponse*VNIR*.raw", "*VNIR*Spectralresponse*.raw"),
    "SWIR": ("*Spectralresponse*SWIR*.raw", "*SWIR*Spectralresponse*.raw"),
}
RPB_EXTENSION = ".rpb"  # GF-5B sidecar `<product>_VN.rpb`; GDAL reads it as RPC metadata


def product_match(name: str) -> re.Match[str] | None:
    """Match ``name`` (a product name, no extension) against the product grammar."""
    return PRODUCT_RE.match(name)


def product_centre(product: str) -> tuple[float, float] | None:
    """Scene-centre ``(lon, lat)`` in degrees from the product name (W and S negative)."""
    m = product_match(product)
    if m is None:
        return None
    lon = float(m["lon"][1:]) * (-1 if m["lon"][0] == "W" else 1)
    lat = float(m["lat"][1:]) * (-1 if m["lat"][0] == "S" else 1)
    return lon, lat


def image_product(name: str) -> tuple[str, str] | None:
    """``(product, detector)`` for a ``<product>_VN.tif``-style image name, else None."""
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if not lower.endswith(ext):
            continue
        stem = name[: -len(ext)]
        for detector, suffix in IMAGE_SUFFIXES.items():
            if stem.upper().endswith(suffix):
                return stem[: -len(suffix)], detector
    return None


def _is_product_image(name: str) -> bool:
    named = image_product(name)
    return bool(named and product_match(named[0]))


def looks_like_delivery(path: Path) -> bool:
    """Cheap check (names only, no pixels) that ``path`` is a GF-5 family AHSI delivery.

    True for a folder or archive named like a product, one holding such a product folder or
    ``_VN``/``_SW`` image, or such an image itself.
    """
    if path.is_dir():
        return bool(product_match(path.name)) or any(
            _is_product_image(c.name) if c.is_file() else bool(product_match(c.name))
            for c in path.iterdir()
        )
    if archive_kind(path) is not None:
        if product_match(strip_archive_suffix(path.name)):
            return True
        first = first_archive_member(path)
        if first is None:
            return False
        return bool(product_match(PurePosixPath(first).parts[0])) or _is_product_image(
            PurePosixPath(first).name)
    return _is_product_image(path.name)


def resolve_delivery(path: Path) -> tuple[Delivery, str | None]:
    """The delivery at ``path`` and, when ``path`` is a ``_VN``/``_SW`` image, its product.

    An image's delivery is its folder (top level only), restricted to that product's images.
    """
    if path.is_dir() or archive_kind(path) is not None or not path.exists():
        return open_delivery(path), None
    named = image_product(path.name)
    if named is None:
        raise UnsupportedFormatError(
            f"{path}: not a GF-5 delivery (expected a folder, .tar, .tar.gz, .tgz, .zip or a "
            "<product>_VN/_SW image)"
        )
    folder = path.parent
    return Delivery(folder, "folder", folder_members(folder, depth=0), root=folder), named[0]


@dataclass(frozen=True)
class Gf5Files:
    """Members of one delivery by role; per-detector dicts are keyed ``"VNIR"``/``"SWIR"``."""

    product: str
    image: dict[str, str]
    radcal: dict[str, str]
    spectral: dict[str, str]
    rpb: dict[str, str | None]
    xml: str | None


def _one(delivery: Delivery, matches: list[str], what: str) -> str:
    """The single member matching a role; a one-line error naming the files otherwise."""
    if not matches:
        raise InvalidSceneError(f"{delivery.source}: GF-5 delivery has no {what}")
    if len(matches) > 1:
        raise InvalidSceneError(
            f"{delivery.source}: GF-5 delivery has {len(matches)} candidates for the {what}: "
            f"{', '.join(matches)} (keep one product per folder/archive)"
        )
    return matches[0]


def _image(delivery: Delivery, product: str | None, detector: str) -> str:
    suffix = IMAGE_SUFFIXES[detector]
    prefix = "*" if product is None else product
    matches = delivery.find(tuple(f"{prefix}{suffix}{ext}" for ext in IMAGE_EXTENSIONS))
    return _one(delivery, matches, f"{detector} image (*{suffix}.geotiff|.tif|.tiff)")


def _sidecar(delivery: Delivery, member: str, extension: str) -> str | None:
    stem = str(PurePosixPath(member).with_suffix("")).lower()
    found = [m for m in delivery.members if m.lower() == stem + extension]
    return found[0] if found else None


def locate(delivery: Delivery, product: str | None = None) -> Gf5Files:
    """Resolve every role of a delivery (only ``product``'s images when given).

    Raises a one-line :class:`InvalidSceneError` naming the delivery and what is missing,
    ambiguous, or not named by the product grammar.
    """
    image = {det: _image(delivery, product, det) for det in DETECTORS}
    names = {det: image_product(PurePosixPath(m).name) for det, m in image.items()}
    vn_product, sw_product = (names[det][0] for det in DETECTORS)  # type: ignore[index]
    if vn_product != sw_product:
        raise InvalidSceneError(
            f"{delivery.source}: VNIR image {image['VNIR']} and SWIR image {image['SWIR']} "
            "belong to different products"
        )
    if product_match(vn_product) is None:
        raise InvalidSceneError(
            f"{delivery.label(image['VNIR'])}: {vn_product!r} does not follow the GF-5 AHSI "
            "product name grammar (e.g. GF5B_AHSI_E113.2_N36.3_20221208_006658_L10000252104)"
        )
    radcal = {det: _one(delivery, delivery.find(RADCAL_PATTERNS[det]),
                        f"{det} RadCal file ({' | '.join(RADCAL_PATTERNS[det])})")
              for det in DETECTORS}
    spectral = {det: _one(delivery, delivery.find(SPECTRAL_PATTERNS[det]),
                          f"{det} Spectralresponse file ({' | '.join(SPECTRAL_PATTERNS[det])})")
                for det in DETECTORS}
    rpb = {det: _sidecar(delivery, member, RPB_EXTENSION) for det, member in image.items()}
    xml = [m for m in delivery.members
           if PurePosixPath(m).name.lower() == f"{vn_product}.xml".lower()]
    if len(xml) > 1:
        raise InvalidSceneError(f"{delivery.source}: several metadata files: {', '.join(xml)}")
    return Gf5Files(vn_product, image, radcal, spectral, rpb, xml[0] if xml else None)
