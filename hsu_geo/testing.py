"""Writers of small, realistic fake sensor products for tests, examples and the sample data.

``write_gf5_delivery`` writes a GF-5 / GF-5B AHSI L1 delivery exactly as formats.md §1.3
describes it: ``<product>_VN``/``_SW`` DN GeoTIFFs in sensor geometry with RPCs (``.rpb``
sidecar or embedded), RadCal and Spectralresponse text files per detector, ``<product>.xml``
and a ``<product>.jpg`` browse image, as a folder or a ``.tar``/``.tar.gz``/``.zip`` archive.
Everything is deterministic (fixed archive timestamps, DEFLATE-compressed tiled GeoTIFFs), so
the same arguments give byte-identical files.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import tarfile
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer

from hsu_geo.errors import OutputExistsError
from hsu_geo.ingest.gf5_files import product_centre, product_match

DEFAULT_GF5_PRODUCT = "GF5B_AHSI_E113.2_N36.3_20221208_006658_L10000252104"

# Band centres (nm) of one real GF-5 scene, formats.md §1.5 (150 VNIR + 180 SWIR).
GF5_VNIR_NM = (
    390.32, 394.6, 398.88, 403.16, 407.44, 411.71, 415.99, 420.27, 424.55, 428.83, 433.11,
    437.39, 441.67, 445.95, 450.23, 454.5, 458.78, 463.06, 467.34, 471.62, 475.9, 480.18, 484.46,
    488.74, 493.01, 497.29, 501.57, 505.85, 510.13, 514.41, 518.69, 522.97, 527.25, 531.53,
    535.8, 540.14, 544.39, 548.66, 552.91, 557.17, 561.46, 565.74, 570.03, 574.31, 578.6,
    582.88, 587.17, 591.45, 595.74, 600.03, 604.31, 608.6, 612.88, 617.17, 621.45, 625.74,
    630.02, 634.31, 638.59, 642.88, 647.07, 651.3, 655.54, 659.82, 664.11, 668.44, 672.79,
    677.1, 681.39, 685.61, 689.87, 694.14, 698.36, 702.58, 706.87, 711.15, 715.42, 719.7,
    723.98, 728.26, 732.54, 736.82, 741.09, 745.37, 749.65, 753.93, 758.2, 762.48, 766.76,
    771.04, 775.32, 779.59, 783.87, 788.15, 792.43, 796.71, 800.98, 805.26, 809.54, 813.82,
    818.09, 822.37, 826.65, 830.93, 835.21, 839.48, 843.76, 848.04, 852.32, 856.6, 860.88,
    865.15, 869.43, 873.71, 877.99, 882.26, 886.54, 890.82, 895.1, 899.38, 903.65, 907.93,
    912.21, 916.49, 920.77, 925.04, 929.32, 933.6, 937.88, 942.15, 946.43, 950.71, 954.99,
    959.27, 963.54, 967.82, 972.1, 976.38, 980.66, 984.94, 989.21, 993.49, 997.95, 1002.41,
    1006.88, 1011.34, 1015.79, 1020.26, 1024.71, 1029.18,
)
GF5_SWIR_NM = (
    1004.77, 1013.2, 1021.61, 1030.05, 1038.47, 1046.91, 1055.32, 1063.76, 1072.18, 1080.61,
    1089.04, 1097.46, 1105.9, 1114.31, 1122.75, 1131.18, 1139.6, 1148.03, 1156.45, 1164.89,
    1173.31, 1181.73, 1190.17, 1198.59, 1206.8, 1215.19, 1223.59, 1232.33, 1240.76, 1249.2,
    1257.66, 1266.09, 1274.55, 1283.0, 1291.44, 1299.9, 1308.33, 1316.79, 1325.23, 1333.68,
    1342.14, 1350.57, 1359.03, 1367.47, 1375.93, 1384.36, 1392.81, 1401.27, 1409.71, 1418.17,
    1426.6, 1435.06, 1443.51, 1451.95, 1460.4, 1468.84, 1477.3, 1485.75, 1494.19, 1502.64,
    1511.08, 1519.54, 1527.98, 1536.43, 1544.88, 1553.32, 1560.93, 1569.22, 1577.6, 1586.31,
    1594.95, 1603.38, 1611.79, 1620.2, 1628.63, 1637.05, 1645.46, 1653.89, 1662.31, 1670.72,
    1679.15, 1687.56, 1695.98, 1704.41, 1712.82, 1721.25, 1729.67, 1738.07, 1746.5, 1754.92,
    1763.33, 1771.76, 1780.18, 1788.59, 1797.02, 1805.43, 1813.85, 1822.28, 1830.69, 1839.11,
    1847.54, 1855.95, 1864.38, 1872.79, 1881.2, 1889.63, 1898.05, 1906.46, 1914.89, 1923.31,
    1931.72, 1940.15, 1948.56, 1956.98, 1965.41, 1973.82, 1982.25, 1990.67, 1999.08, 2007.5,
    2015.92, 2024.33, 2032.76, 2041.18, 2049.6, 2058.02, 2066.43, 2074.86, 2083.28, 2091.69,
    2100.12, 2108.54, 2116.96, 2125.4, 2134.3, 2142.31, 2150.87, 2159.31, 2167.72, 2176.15,
    2184.59, 2193.01, 2201.43, 2209.87, 2218.3, 2226.71, 2235.14, 2243.58, 2252.01, 2260.42,
    2268.86, 2277.29, 2285.7, 2294.13, 2302.57, 2311.0, 2319.41, 2327.85, 2336.28, 2344.7,
    2353.12, 2361.56, 2369.98, 2378.4, 2386.84, 2395.27, 2403.69, 2412.12, 2420.55, 2428.97,
    2437.4, 2445.83, 2454.26, 2462.68, 2471.11, 2479.54, 2487.96, 2496.39, 2504.82, 2513.25,
)
# FWHM as a multiple of the band spacing: gives ~5 nm VNIR (nominal, formats.md §1.5, U) and
# ~8.3 nm SWIR (8.0-8.5 nm in a real header, formats.md §1.5).
_FWHM_PER_STEP = {"VNIR": 1.15, "SWIR": 0.98}
_M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class _Layout:
    """File naming of one product generation (formats.md §1.3, §1.5, §1.6)."""

    image_ext: str
    radcal: str  # format fields: sat, det
    spectral: str
    separator: str
    rpc_storage: str  # "rpb" | "embedded"


LAYOUTS = {
    "gf5b": _Layout(".tif", "{sat}_AHSI_RadCal_{det}.raw",
                    "{sat}_AHSI_Spectralresponse_{det}.raw", ",", "rpb"),
    "gf5": _Layout(".geotiff", "{sat}_AHSI_{det}_RadCal.raw",
                   "{sat}_AHSI_{det}_Spectralresponse.raw", "\t", "embedded"),
}
_ARCHIVES = {"tar": ".tar", "tar.gz": ".tar.gz", "zip": ".zip"}
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def default_ahsi_wavelengths(n_bands: int, detector: str) -> tuple[np.ndarray, np.ndarray]:
    """AHSI-like band centres and FWHM (nm), each ``(n_bands,)`` float64.

    The real GF-5 lists (formats.md §1.5) for 150 VNIR / 180 SWIR bands, else an even spacing
    over the same range (VNIR 390.32-1029.18 nm, SWIR 1004.77-2513.25 nm).
    """
    table = {"VNIR": GF5_VNIR_NM, "SWIR": GF5_SWIR_NM}[detector]
    if n_bands == len(table):
        centre = np.asarray(table, dtype="float64")
    else:
        centre = np.round(np.linspace(table[0], table[-1], n_bands), 2)
    step = (table[-1] - table[0]) / (len(table) - 1) if n_bands < 2 else np.gradient(centre)
    fwhm = np.round(np.broadcast_to(step, (n_bands,)) * _FWHM_PER_STEP[detector], 2)
    return centre, fwhm


def _centre(product: str) -> tuple[float, float]:
    centre = product_centre(product)
    if centre is None:
        raise ValueError(f"{product!r} does not follow the GF-5 AHSI product name grammar")
    return centre


def default_rpc(product: str, height: int, width: int, pixel_m: float = 30.0) -> RPC:
    """North-up linear RPC for a ``height x width`` image of ``pixel_m`` pixels at the centre.

    line = line_off - line_scale·P and sample = samp_off + samp_scale·L, with P, L the
    normalised latitude and longitude (RPC00B term order: 1, L, P, H, ...).
    """
    lon0, lat0 = _centre(product)
    dlat = pixel_m / _M_PER_DEG_LAT
    dlon = pixel_m / (_M_PER_DEG_LAT * math.cos(math.radians(lat0)))
    half_h, half_w = height / 2.0, width / 2.0
    den = [1.0] + [0.0] * 19
    line_num, samp_num = [0.0] * 20, [0.0] * 20
    line_num[2], samp_num[1] = -1.0, 1.0
    return RPC(
        height_off=0.0, height_scale=1000.0,
        lat_off=lat0, lat_scale=half_h * dlat, long_off=lon0, long_scale=half_w * dlon,
        line_off=half_h, line_scale=half_h, samp_off=half_w, samp_scale=half_w,
        line_num_coeff=line_num, line_den_coeff=den, samp_num_coeff=samp_num,
        samp_den_coeff=list(den), err_bias=1.0, err_rand=0.5,
    )


def _format_coeffs(values: Sequence[float]) -> str:
    lines = ",\n".join(f"\t\t{v:+.15E}" for v in values)
    return f"(\n{lines})"


def rpb_text(rpc: RPC, satellite: str, band_id: str) -> str:
    """An RPC00B ``.rpb`` sidecar (the DigitalGlobe keyword format GDAL reads)."""
    scalars = [
        ("errBias", rpc.err_bias or 0.0), ("errRand", rpc.err_rand or 0.0),
        ("lineOffset", rpc.line_off), ("sampOffset", rpc.samp_off),
        ("latOffset", rpc.lat_off), ("longOffset", rpc.long_off),
        ("heightOffset", rpc.height_off), ("lineScale", rpc.line_scale),
        ("sampScale", rpc.samp_scale), ("latScale", rpc.lat_scale),
        ("longScale", rpc.long_scale), ("heightScale", rpc.height_scale),
    ]
    body = [f"\t{key} = {float(value)!r};" for key, value in scalars]
    for key, values in (("lineNumCoef", rpc.line_num_coeff), ("lineDenCoef", rpc.line_den_coeff),
                        ("sampNumCoef", rpc.samp_num_coeff), ("sampDenCoef", rpc.samp_den_coeff)):
        body.append(f"\t{key} = {_format_coeffs(values)};")
    head = f'satId = "{satellite}";\nbandId = "{band_id}";\nSpecId = "RPC00B";\n'
    return head + "BEGIN_GROUP = IMAGE\n" + "\n".join(body) + "\nEND_GROUP = IMAGE\nEND;\n"


def _block(n: int) -> int:
    """Tile edge: multiple of 16, at most 256, no bigger than needed for ``n`` pixels."""
    return min(256, 16 * math.ceil(n / 16))


def _write_image(path: Path, dn: np.ndarray, rpc: RPC | None) -> None:
    """Tiled, DEFLATE-compressed, band-interleaved GeoTIFF without geotransform."""
    count, height, width = dn.shape
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": count,
        "dtype": dn.dtype.name, "tiled": True, "blockxsize": _block(width),
        "blockysize": _block(height), "compress": "deflate", "predictor": 2,
        "interleave": "band",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            if rpc is not None:
                dst.rpcs = rpc
            dst.write(dn)


def _write_browse(path: Path, dn_vnir: np.ndarray, wavelength: np.ndarray) -> None:
    """8-bit RGB ``.jpg`` quicklook from the VNIR bands nearest 650/550/470 nm."""
    bands = [int(np.argmin(np.abs(wavelength - w))) for w in (650.0, 550.0, 470.0)]
    rgb = dn_vnir[bands].astype("float64")
    hi = float(rgb.max()) or 1.0
    rgb8 = np.clip(rgb / hi * 255.0, 0, 255).astype("uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="JPEG", width=rgb8.shape[2], height=rgb8.shape[1],
                           count=3, dtype="uint8") as dst:
            dst.write(rgb8)
    aux = path.with_name(path.name + ".aux.xml")
    if aux.exists():
        aux.unlink()


def _table(columns: Sequence[np.ndarray], separator: str) -> str:
    """One line per row, values written with ``repr`` so they read back exactly."""
    rows = zip(*columns, strict=True)
    return "".join(separator.join(repr(float(v)) for v in row) + "\n" for row in rows)


def _footprint(rpc: RPC, height: int, width: int) -> list[tuple[float, float]]:
    """``(lon, lat)`` of the outer corners TL, TR, BR, BL at the RPC height offset."""
    with RPCTransformer(rpc) as tr:
        lons, lats = tr.xy([0, 0, height, height], [0, width, width, 0], offset="ul",
                           zs=[rpc.height_off] * 4)
    return [(float(lon), float(lat)) for lon, lat in zip(lons, lats, strict=True)]


def _xml_text(product: str, n_bands: int, shape: tuple[int, int], rpc: RPC,
              extra: Mapping[str, str | None]) -> bytes:
    """``<product>.xml`` with the flat ``ProductMetaData`` elements of formats.md §1.7."""
    m = product_match(product)
    if m is None:
        raise ValueError(f"{product!r} does not follow the GF-5 AHSI product name grammar")
    date = f"{m['date'][:4]}-{m['date'][4:6]}-{m['date'][6:]}"
    lon0, lat0 = _centre(product)
    fields: dict[str, str | None] = {
        "SatelliteID": m["sat"], "ReceiveStationID": "MYC", "SensorID": "AHSI",
        "ProduceTime": f"{date} 12:00:00", "ProductLevel": f"LEVEL{m['level'][1:]}",
        "ProductFormat": "GEOTIFF", "ProductID": m["pid"], "BandsCount": str(n_bands),
        "OrbitID": m["orbit"], "SolarAzimuth": "163.21", "SolarZenith": "58.61",
        "SatelliteAzimuth": "158.37", "SatelliteZenith": "0.0756",
        "StartTime": f"{date} 03:12:41", "EndTime": f"{date} 03:12:50", "ImageGSD": "30",
        "LinesInPixels": str(shape[0]), "SamplesInPixels": str(shape[1]),
        "IntegrationTime": "4.4", "CenterLatitude": repr(lat0), "CenterLongitude": repr(lon0),
    }
    for name, (lon, lat) in zip(("TopLeft", "TopRight", "BottomRight", "BottomLeft"),
                                _footprint(rpc, *shape), strict=True):
        fields[f"{name}Latitude"] = f"{lat:.6f}"
        fields[f"{name}Longitude"] = f"{lon:.6f}"
    fields.update(extra)
    root = ET.Element("ProductMetaData")
    for key, value in fields.items():
        if value is not None:
            ET.SubElement(root, key).text = value
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def _check_bands(name: str, values: np.ndarray, n_bands: int) -> np.ndarray:
    if values.shape != (n_bands,):
        raise ValueError(f"{name} has shape {values.shape}; expected ({n_bands},)")
    return values


def _detector_tables(
    detector: str, n_bands: int, gains: Sequence[float] | None, offsets: Sequence[float] | None,
    wavelengths: Sequence[float] | None, fwhm: Sequence[float] | None,
) -> tuple[np.ndarray, ...]:
    """Gains, offsets, centres (nm), FWHM (nm), each ``(n_bands,)``, defaults filled in."""
    default_wl, default_fw = default_ahsi_wavelengths(n_bands, detector)
    default_gain = np.linspace(0.08, 0.03, n_bands) if detector == "VNIR" else \
        np.linspace(0.02, 0.006, n_bands)
    out = []
    for name, given, default in (("gains", gains, default_gain),
                                 ("offsets", offsets, np.zeros(n_bands)),
                                 ("wavelengths", wavelengths, default_wl),
                                 ("fwhm", fwhm, default_fw)):
        values = default if given is None else np.asarray(given, dtype="float64")
        out.append(_check_bands(f"{detector} {name}", values, n_bands))
    return tuple(out)


def write_gf5_delivery(
    out_dir: str | os.PathLike[str],
    dn_vnir: np.ndarray,
    dn_swir: np.ndarray,
    *,
    product: str = DEFAULT_GF5_PRODUCT,
    gains_vnir: Sequence[float] | None = None,
    offsets_vnir: Sequence[float] | None = None,
    gains_swir: Sequence[float] | None = None,
    offsets_swir: Sequence[float] | None = None,
    wavelengths_vnir: Sequence[float] | None = None,
    fwhm_vnir: Sequence[float] | None = None,
    wavelengths_swir: Sequence[float] | None = None,
    fwhm_swir: Sequence[float] | None = None,
    rpcs: RPC | None = None,
    layout: str = "gf5b",
    rpc_storage: str | None = None,
    image_ext: str | None = None,
    metadata: Mapping[str, str | None] | None = None,
    archive: str | None = None,
    nested: bool = True,
) -> Path:
    """Write a fake GF-5 family AHSI L1 delivery and return its folder or archive path.

    Args:
        out_dir: parent folder; the delivery is ``out_dir/<product>/`` (or the archive
            ``out_dir/<product>.tar|.tar.gz|.zip``, without the folder).
        dn_vnir, dn_swir: integer DN (uint16 or int16), ``(bands, rows, cols)`` per detector.
        product: product name (formats.md §1.2); its centre lon/lat places the default RPCs.
        gains_*, offsets_*: RadCal per band (radiance = gain·DN + offset, W m-2 sr-1 um-1);
            defaults: gains falling 0.08->0.03 (VNIR), 0.02->0.006 (SWIR), offsets 0.
        wavelengths_*, fwhm_*: Spectralresponse per band in nm (default
            :func:`default_ahsi_wavelengths`).
        rpcs: RPCs of both images (default: :func:`default_rpc` per image, 30 m pixels).
        layout: ``"gf5b"`` (``_VN.tif``, ``GF5B_AHSI_RadCal_VNIR.raw``, comma-separated,
            ``.rpb`` sidecars) or ``"gf5"`` (``_VN.geotiff``, ``GF5_AHSI_VNIR_RadCal.raw``,
            tab-separated, RPCs embedded in the TIFF, one-column RadCal when offsets are all 0).
        rpc_storage: ``"rpb"``, ``"embedded"`` or ``"none"`` to override the layout.
        image_ext: ``".tif"``, ``".tiff"`` or ``".geotiff"`` to override the layout.
        metadata: XML ``ProductMetaData`` elements to add or replace; ``None`` values remove.
        archive: None (folder), ``"tar"``, ``"tar.gz"`` or ``"zip"``.
        nested: archives hold one top-level folder named like the product (else flat).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if archive is not None and archive not in _ARCHIVES:
        raise ValueError(f"archive {archive!r} is not one of None, {', '.join(_ARCHIVES)}")
    spec = LAYOUTS[layout]
    storage = rpc_storage or spec.rpc_storage
    if storage not in ("rpb", "embedded", "none"):
        raise ValueError(f"rpc_storage {storage!r} is not one of rpb, embedded, none")
    ext = image_ext or spec.image_ext
    cubes = {"VNIR": np.asarray(dn_vnir), "SWIR": np.asarray(dn_swir)}
    for det, dn in cubes.items():
        if dn.ndim != 3 or not np.issubdtype(dn.dtype, np.integer):
            raise ValueError(f"{det} DN must be an integer (bands, rows, cols) array")
    sat = product.split("_")[0]
    folder = Path(out_dir) / product
    target = folder if archive is None else Path(out_dir) / f"{product}{_ARCHIVES[archive]}"
    if folder.exists() or target.exists():
        raise OutputExistsError(f"{target}: already exists; choose an empty output folder")
    folder.mkdir(parents=True)
    tables = {
        "VNIR": _detector_tables("VNIR", cubes["VNIR"].shape[0], gains_vnir, offsets_vnir,
                                 wavelengths_vnir, fwhm_vnir),
        "SWIR": _detector_tables("SWIR", cubes["SWIR"].shape[0], gains_swir, offsets_swir,
                                 wavelengths_swir, fwhm_swir),
    }
    first_rpc = None
    for det, tag in (("VNIR", "VN"), ("SWIR", "SW")):
        dn = cubes[det]
        gain, offset, centre, width = tables[det]
        rpc = rpcs or default_rpc(product, dn.shape[1], dn.shape[2])
        first_rpc = first_rpc or rpc
        image = folder / f"{product}_{tag}{ext}"
        _write_image(image, dn, rpc if storage == "embedded" else None)
        if storage == "rpb":
            image.with_suffix(".rpb").write_text(rpb_text(rpc, sat, tag))
        cal = [gain] if layout == "gf5" and not offset.any() else [gain, offset]
        (folder / spec.radcal.format(sat=sat, det=det)).write_text(_table(cal, spec.separator))
        (folder / spec.spectral.format(sat=sat, det=det)).write_text(
            _table([centre, width], spec.separator))
    n_total = cubes["VNIR"].shape[0] + cubes["SWIR"].shape[0]
    (folder / f"{product}.xml").write_bytes(
        _xml_text(product, n_total, cubes["VNIR"].shape[1:], first_rpc, metadata or {}))
    _write_browse(folder / f"{product}.jpg", cubes["VNIR"], tables["VNIR"][2])
    if archive is None:
        return folder
    path = archive_delivery(folder, archive, nested=nested)
    shutil.rmtree(folder)
    return path


def archive_delivery(folder: str | os.PathLike[str], kind: str, *, nested: bool = True) -> Path:
    """Pack a delivery folder as ``<folder>.tar|.tar.gz|.zip`` next to it, deterministically.

    ``nested`` puts the files under one top-level folder named like ``folder`` (the CRESDA
    convention, formats.md §1.3); otherwise they sit at the archive root.
    """
    folder = Path(folder)
    if kind not in _ARCHIVES:
        raise ValueError(f"archive kind {kind!r} is not one of {', '.join(_ARCHIVES)}")
    path = folder.with_name(folder.name + _ARCHIVES[kind])
    if path.exists():
        raise OutputExistsError(f"{path}: already exists")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    prefix = f"{folder.name}/" if nested else ""
    if kind == "zip":
        _write_zip(path, files, prefix)
        return path
    with open(path, "wb") as raw:
        if kind == "tar.gz":
            with gzip.GzipFile(filename=folder.name + ".tar", mode="wb", fileobj=raw,
                               mtime=0) as gz:
                _write_tar(gz, files, prefix)
        else:
            _write_tar(raw, files, prefix)
    return path


def _tar_info(name: str, size: int, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0, 0, 0, "", ""
    info.mode = 0o755 if is_dir else 0o644
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    return info


def _write_tar(fileobj, files: list[Path], prefix: str) -> None:
    # GNU format (GNU tar's default, "././@LongLink" for names over 100 characters): GDAL's
    # /vsitar/ reads it, but not the PAX "path" records Python's default format writes.
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.GNU_FORMAT) as tf:
        if prefix:
            tf.addfile(_tar_info(prefix.rstrip("/"), 0, is_dir=True))
        for file in files:
            with open(file, "rb") as fh:
                tf.addfile(_tar_info(prefix + file.name, file.stat().st_size), fh)


def _write_zip(path: Path, files: list[Path], prefix: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        if prefix:
            info = zipfile.ZipInfo(prefix, date_time=_FIXED_TIME)
            info.external_attr = (0o40755 << 16) | 0x10
            zf.writestr(info, b"")
        for file in files:
            info = zipfile.ZipInfo(prefix + file.name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            stored = file.suffix.lower() in (".tif", ".tiff", ".geotiff", ".jpg")
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(info, file.read_bytes())
