"""Dominant-endmember class raster and the RMSE / class styles written with every run."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio

from hsu_geo.errors import OutputError
from hsu_geo.write.dominant import NODATA_UINT8, class_dtype, dominant_classes
from hsu_geo.write.outputs import write_outputs
from hsu_geo.write.palette import endmember_colors, rgba


def test_dominant_classes_argmax_and_nodata() -> None:
    a = np.array([[[0.1, 0.7, np.nan]], [[0.6, 0.2, 0.5]], [[0.3, 0.1, 0.5]]], dtype="float32")
    assert dominant_classes(a).tolist() == [[1, 0, NODATA_UINT8]]
    assert class_dtype(3) == ("uint8", 255) and class_dtype(300) == ("uint16", 65535)
    with pytest.raises(OutputError, match="at least one"):
        class_dtype(0)


@pytest.mark.parametrize("georef", ["north_up", "rotated"])
def test_written_with_every_run(tmp_path: Path, fakes, georef: str) -> None:
    ds = fakes.make_result(300, 260, georef=georef)
    ramp = fakes.ramp(300, 260, 128) / 820.0  # 0..1
    ds["reconstruction_rmse"] = ds["reconstruction_rmse"] * (1.0 + ramp)  # not constant
    paths = write_outputs(ds, tmp_path, "S", "fcls")
    with rasterio.open(paths["abundance"]) as ab, rasterio.open(paths["dominant"]) as dom:
        a = ab.read()
        d = dom.read(1)
        assert (dom.crs, dom.transform, dom.shape) == (ab.crs, ab.transform, ab.shape)
        assert dom.dtypes == ("uint8",) and dom.nodata == NODATA_UINT8
        assert dom.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        cmap = dom.colormap(1)
        assert [cmap[i] for i in range(3)] == [rgba(c) for c in endmember_colors(3)]
        assert {dom.tags(1)[f"CLASS_{i}"] for i in range(3)} == set(fakes.NAMES)
        assert dom.tags()["HSU_PRODUCT"] == "dominant_endmember"
    valid = np.isfinite(a).all(axis=0)
    assert valid.any() and not valid.all()  # the fake has a nodata corner
    np.testing.assert_array_equal(d[valid], np.argmax(a, axis=0)[valid])
    assert (d[~valid] == NODATA_UINT8).all()

    root = ET.fromstring(paths["dominant_style"].read_text(encoding="utf-8"))
    entries = root.findall("pipe/rasterrenderer/colorPalette/paletteEntry")
    assert [e.get("label") for e in entries] == fakes.NAMES  # one class per endmember
    assert [e.get("color") for e in entries] == endmember_colors(3)

    rmse_qml = paths["rmse_style"]
    assert rmse_qml.name == paths["rmse"].with_suffix(".qml").name  # QGIS default style
    root = ET.fromstring(rmse_qml.read_text(encoding="utf-8"))
    shader = root.find("pipe/rasterrenderer/rastershader/colorrampshader")
    items = shader.findall("item")
    unit = "value (reflectance)"  # the fake result's units attr, no quantity
    assert all(unit in i.get("label") for i in items)
    with rasterio.open(paths["rmse"]) as src:
        rmse = src.read(1)
        assert src.units == ("reflectance",)
        assert src.tags(1)["UNITS"] == unit
    finite = rmse[np.isfinite(rmse)]
    lo, hi = float(shader.get("minimumValue")), float(shader.get("maximumValue"))
    assert finite.min() <= lo < hi <= finite.max()  # percentiles of the data
