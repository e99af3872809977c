"""A STAC catalog of a batch's results: ``DIR/catalog.json`` + one Item per done scene.

Plain JSON (STAC 1.0.0, self-contained: relative links, no ``self`` links), so QGIS's STAC
browser or any STAC client can load it from disk. Items live next to their outputs as
``DIR/<scene_id>/<scene_id>.json``, with the projection, raster and file extensions: the
footprint in EPSG:4326 (the GF-5 XML corners when the product has them, else the corners of
the abundance COG transformed), ``datetime`` from the product (the time its id encodes, else
its metadata, UTC assumed when the product gives no zone; the processing time when it gives
none; ``hsu:datetime_source`` says which), and assets with roles and media types.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_geom

from hsu_geo.write.atomic import atomic_path

STAC_VERSION = "1.0.0"
EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
}
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
#: output key -> (asset key, media type, roles, title)
ASSETS: dict[str, tuple[str, str, list[str], str]] = {
    "abundance": ("abundance", COG, ["data"], "Endmember abundances (one band per endmember)"),
    "rmse": ("rmse", COG, ["data", "quality"], "Reconstruction RMSE"),
    "endmembers_csv": ("endmembers", "text/csv", ["metadata"], "Endmember spectra"),
    "endmembers_sli": ("endmembers_sli", "application/octet-stream", ["metadata"],
                       "Endmember spectra (ENVI spectral library)"),
    "endmembers_hdr": ("endmembers_hdr", "text/plain", ["metadata"],
                       "ENVI header of the spectral library"),
    "style": ("style", "application/xml", ["style"], "QGIS style of the abundance raster"),
    "rmse_style": ("rmse_style", "application/xml", ["style"], "QGIS style of the RMSE raster"),
    "dominant": ("dominant", COG, ["data"], "Dominant endmember (argmax of abundances)"),
    "dominant_style": ("dominant_style", "application/xml", ["style"],
                       "QGIS style of the dominant-endmember raster"),
    "quicklook": ("quicklook", "image/png", ["overview"], "Quicklook"),
    "run": ("run", "application/json", ["metadata"], "Run record (hsu-geo run.json)"),
}


def _iso_utc(value: str) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _datetime(meta: Mapping[str, Any], ids: Sequence[str] = ()) -> tuple[str, str]:
    """``(datetime, source)`` for the item, the first of: a time of day encoded in the product
    id, ``meta["scene_id"]`` or ``ids`` (AVIRIS-NG, EMIT, EnMAP: source ``scene_id``,
    :func:`hsu_geo.acquisition.time_from_id`); the reader's ``acquisition_time``; a date
    encoded in an id (AVIRIS-Classic, GF-5: ``scene_id_date``); the reader's
    ``acquisition_date``; the processing time (``processing``)."""
    from hsu_geo.acquisition import time_from_id

    names = [str(n) for n in (meta.get("product_id"), meta.get("scene_id"), *ids) if n]
    parsed = [found for found in map(time_from_id, names) if found is not None]
    timed = next((when for when, has_time in parsed if has_time), None)
    if timed is not None:
        return timed, "scene_id"
    value = _iso_utc(meta.get("acquisition_time") or "")
    if value is not None:
        return value, "acquisition_time"
    if parsed:
        return parsed[0][0], "scene_id_date"
    value = _iso_utc(meta.get("acquisition_date") or "")
    if value is not None:
        return value, "acquisition_date"
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "processing"


def _footprint(src: Any, meta: Mapping[str, Any]) -> dict[str, Any] | None:
    corners = meta.get("footprint_lonlat")
    if corners and len(corners) >= 3:
        ring = [[float(lon), float(lat)] for lon, lat in corners]
        return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    if src.crs is None:
        return None
    t, w, h = src.transform, src.width, src.height
    ring = [[t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f]
            for c, r in ((0, 0), (w, 0), (w, h), (0, h), (0, 0))]
    geom = transform_geom(src.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    return {"type": "Polygon",
            "coordinates": [[[round(x, 7), round(y, 7)] for x, y in geom["coordinates"][0]]]}


def _bbox(geometry: Mapping[str, Any]) -> list[float]:
    ring = geometry["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return [min(xs), min(ys), max(xs), max(ys)]


def scene_properties(abundance: str | Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """What the Item needs from a scene, read from its abundance COG and product ``meta``."""
    with rasterio.open(abundance) as src:
        epsg = src.crs.to_epsg() if src.crs is not None else None
        res = abs(src.transform.a) if src.transform.b == 0 else None
        band: dict[str, Any] = {"data_type": src.dtypes[0],
                                "nodata": "nan" if src.nodata is None or src.nodata != src.nodata
                                else src.nodata}
        if src.units[0]:
            band["unit"] = src.units[0]
        if res:
            band["spatial_resolution"] = res
        when, when_source = _datetime(meta, [Path(abundance).name])
        return {
            "datetime": when, "datetime_source": when_source,
            "geometry": _footprint(src, meta),
            "proj:epsg": epsg,
            "proj:wkt2": None if epsg is not None or src.crs is None else src.crs.to_wkt(),
            "proj:shape": [src.height, src.width],
            "proj:transform": list(src.transform)[:6],
            "proj:bbox": list(src.bounds),
            "bands": [{"name": name or f"band_{i}", **band}
                      for i, name in enumerate(src.descriptions, start=1)],
            "platform": meta.get("satellite"), "instrument": meta.get("sensor"),
            "product_id": meta.get("product_id"),
        }


def build_item(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The STAC Item of one done scene of the batch record."""
    props = entry["stac"]
    properties: dict[str, Any] = {
        "datetime": props["datetime"],
        "created": entry.get("finished_utc"),
        "proj:epsg": props["proj:epsg"], "proj:shape": props["proj:shape"],
        "proj:transform": props["proj:transform"], "proj:bbox": props["proj:bbox"],
        "hsu:model": entry.get("model"), "hsu:endmembers": entry.get("endmembers"),
        "hsu:datetime_source": props["datetime_source"],
    }
    if props.get("proj:wkt2"):
        properties["proj:wkt2"] = props["proj:wkt2"]
    if props.get("platform"):
        properties["platform"] = str(props["platform"]).lower()
    if props.get("instrument"):
        properties["instruments"] = [str(props["instrument"]).lower()]
    if props.get("product_id"):
        properties["hsu:product_id"] = props["product_id"]
    assets = {}
    for out in entry["outputs"]:
        key, media, roles, title = ASSETS.get(out["key"], (out["key"], "application/octet-stream",
                                                           ["metadata"], out["key"]))
        asset: dict[str, Any] = {"href": f"./{out['name']}", "type": media, "roles": roles,
                                 "title": title, "file:size": out["bytes"],
                                 "file:checksum": "1220" + out["sha256"]}
        if out["key"] == "abundance":
            asset["raster:bands"] = props["bands"]
        elif out["key"] == "rmse":
            rmse = {k: v for k, v in props["bands"][0].items() if k != "unit"}
            asset["raster:bands"] = [{**rmse, "name": "reconstruction_rmse"}]
        assets[key] = asset
    geometry = props["geometry"]
    item: dict[str, Any] = {
        "type": "Feature", "stac_version": STAC_VERSION,
        "stac_extensions": list(EXTENSIONS.values()),
        "id": entry["scene_id"], "geometry": geometry,
        "properties": properties,
        "links": [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
                  {"rel": "parent", "href": "../catalog.json", "type": "application/json"}],
        "assets": assets,
    }
    if geometry is not None:
        item["bbox"] = _bbox(geometry)
    return item


def build_catalog(catalog_id: str, description: str, item_ids: Sequence[str]) -> dict[str, Any]:
    """The root Catalog linking ``<id>/<id>.json`` for every item id."""
    links = [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
    links += [{"rel": "item", "href": f"./{i}/{i}.json", "type": "application/geo+json",
               "title": i} for i in item_ids]
    return {"type": "Catalog", "stac_version": STAC_VERSION, "id": catalog_id,
            "title": f"hsu-geo batch {catalog_id}", "description": description,
            "links": links}


def _dump(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_catalog(out_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``catalog.json`` and the Item of every done scene of ``record``."""
    out = Path(out_dir)
    done = [e for e in record["scenes"] if e["status"] == "done" and e.get("stac")]
    for entry in done:
        _dump(out / entry["scene_id"] / f"{entry['scene_id']}.json", build_item(entry))
    model = record.get("settings", {}).get("model", "")
    description = (f"hsu-geo {model} unmixing results of {Path(record['archive']).name}: "
                   f"{len(done)} scenes")
    path = out / "catalog.json"
    _dump(path, build_catalog(out.resolve().name or "batch", description,
                              [e["scene_id"] for e in done]))
    return path
