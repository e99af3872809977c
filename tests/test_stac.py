"""``hsu_geo.stac``: the batch's STAC catalog, checked against the STAC 1.0 Catalog/Item
required fields and the projection/raster/file extension fields it uses (a hand-written
structural check: the JSON schemas would need network access)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from hsu_geo.batch import run_batch
from hsu_geo.ingest import open_scene
from hsu_geo.stac import _datetime, build_item
from hsu_geo.write.provenance import sha256_file
from tests.test_batch import GF5_B, OPTS, write_gf5, write_scene

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
EXTENSION_OF = {"proj": "/projection/", "raster": "/raster/", "file": "/file/"}


def check_links(doc: dict[str, Any], where: Path) -> None:
    assert isinstance(doc["links"], list) and doc["links"]
    for link in doc["links"]:
        assert isinstance(link["rel"], str) and isinstance(link["href"], str)
        assert (where.parent / link["href"]).resolve().is_file(), link


def check_catalog(doc: dict[str, Any], path: Path) -> None:
    assert doc["type"] == "Catalog"
    assert doc["stac_version"] in ("1.0.0", "1.1.0")
    assert isinstance(doc["id"], str) and doc["id"]
    assert isinstance(doc["description"], str) and doc["description"]
    check_links(doc, path)


def _prefixes(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        found = {k.split(":")[0] for k in obj if ":" in k}
        for v in obj.values():
            found |= _prefixes(v)
        return found
    if isinstance(obj, list):
        return set().union(*(_prefixes(v) for v in obj)) if obj else set()
    return set()


def check_item(doc: dict[str, Any], path: Path) -> None:
    assert doc["type"] == "Feature"
    assert doc["stac_version"] in ("1.0.0", "1.1.0")
    assert isinstance(doc["id"], str) and doc["id"]
    for prefix in _prefixes(doc) & set(EXTENSION_OF):  # every extension field is declared
        assert any(EXTENSION_OF[prefix] in url for url in doc["stac_extensions"]), prefix
    geometry = doc["geometry"]
    if geometry is not None:
        assert geometry["type"] == "Polygon"
        ring = geometry["coordinates"][0]
        assert len(ring) >= 4 and ring[0] == ring[-1]
        lons, lats = [p[0] for p in ring], [p[1] for p in ring]
        assert all(-180 <= x <= 180 for x in lons) and all(-90 <= y <= 90 for y in lats)
        assert doc["bbox"] == [min(lons), min(lats), max(lons), max(lats)]
    props = doc["properties"]
    assert RFC3339.match(props["datetime"]), props["datetime"]
    assert len(props["proj:shape"]) == 2 and len(props["proj:transform"]) in (6, 9)
    assert props["proj:epsg"] is None or isinstance(props["proj:epsg"], int)
    check_links(doc, path)
    assert {"abundance", "rmse", "endmembers"} <= set(doc["assets"])
    for asset in doc["assets"].values():
        target = path.parent / asset["href"]
        assert isinstance(asset["type"], str) and asset["roles"]
        assert asset["file:size"] == target.stat().st_size
        assert asset["file:checksum"] == "1220" + sha256_file(target)
    with rasterio.open(path.parent / doc["assets"]["abundance"]["href"]) as src:
        assert [b["name"] for b in doc["assets"]["abundance"]["raster:bands"]] == \
            list(src.descriptions)
        assert props["proj:shape"] == [src.height, src.width]
        assert props["proj:epsg"] == src.crs.to_epsg()
    assert "data" in doc["assets"]["abundance"]["roles"]
    assert doc["assets"]["abundance"]["type"].startswith("image/tiff; application=geotiff")
    assert doc["assets"]["endmembers"]["type"] == "text/csv"


@pytest.fixture(scope="module")
def batch_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    write_scene(src / "geo.tif", acquired="2023-06-15T18:30:00Z")
    write_gf5(src, GF5_B)
    out = tmp_path_factory.mktemp("out")
    record = run_batch(src, out, OPTS)
    assert record["summary"]["done"] == 2, record["scenes"]
    return out


def test_catalog_and_items_are_valid_stac(batch_out: Path) -> None:
    catalog = json.loads((batch_out / "catalog.json").read_text())
    check_catalog(catalog, batch_out / "catalog.json")
    items = [link["href"] for link in catalog["links"] if link["rel"] == "item"]
    assert items == [f"./{GF5_B}/{GF5_B}.json", "./geo/geo.json"]
    for href in items:
        path = (batch_out / href).resolve()
        check_item(json.loads(path.read_text()), path)


def test_item_footprint_time_and_platform(batch_out: Path) -> None:
    geo = json.loads((batch_out / "geo" / "geo.json").read_text())
    assert geo["properties"]["datetime"] == "2023-06-15T18:30:00Z"
    with rasterio.open(next((batch_out / "geo").glob("*_abundance.tif"))) as src:
        expected = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    np.testing.assert_allclose(geo["bbox"], expected, atol=1e-6)

    gf5 = json.loads((batch_out / GF5_B / f"{GF5_B}.json").read_text())
    attrs = open_scene(Path(json.loads((batch_out / "batch.json").read_text())["archive"])
                       / GF5_B).attrs
    ring = gf5["geometry"]["coordinates"][0]
    assert ring[:-1] == attrs["footprint_lonlat"]  # the XML corners, TL TR BR BL
    assert gf5["properties"]["datetime"] == attrs["acquisition_time"] + "Z"  # UTC assumed
    assert gf5["properties"]["platform"] == "gf5b"
    assert gf5["properties"]["instruments"] == ["ahsi"]


def test_datetime_fallbacks_and_ungeoreferenced_item() -> None:
    assert _datetime({"acquisition_time": "2022-12-08T03:12:41"}) == \
        ("2022-12-08T03:12:41Z", "acquisition_time")
    assert _datetime({"acquisition_time": "2022-12-08T11:12:41+08:00"}) == \
        ("2022-12-08T03:12:41Z", "acquisition_time")
    assert _datetime({"acquisition_time": "", "acquisition_date": "2022-12-08"}) == \
        ("2022-12-08T00:00:00Z", "acquisition_date")
    when, source = _datetime({})
    assert source == "processing" and RFC3339.match(when)
    entry = {"scene_id": "x", "model": "fcls", "endmembers": ["a"], "finished_utc": None,
             "outputs": [{"key": "abundance", "name": "x_fcls_abundance.tif", "bytes": 1,
                          "sha256": "00"}],
             "stac": {"datetime": when, "datetime_source": source, "geometry": None,
                      "proj:epsg": None, "proj:wkt2": None, "proj:shape": [2, 2],
                      "proj:transform": [1, 0, 0, 0, -1, 0], "proj:bbox": [0, 0, 2, 2],
                      "bands": [{"name": "a", "data_type": "float32", "nodata": "nan"}]}}
    item = build_item(entry)
    assert item["geometry"] is None and "bbox" not in item
    assert item["assets"]["abundance"]["raster:bands"][0]["name"] == "a"
