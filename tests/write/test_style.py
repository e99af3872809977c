"""QGIS styles: abundance (0-1, generic legend), RMSE (percentile range, unit), dominant classes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from hsu_geo.errors import OutputError
from hsu_geo.write.palette import display_range, endmember_colors
from hsu_geo.write.style import (
    MAGMA,
    VIRIDIS,
    abundance_qml,
    dominant_qml,
    rmse_qml,
    write_abundance_qml,
    write_rmse_qml,
)


def test_qml_structure(tmp_path: Path) -> None:
    path = write_abundance_qml(tmp_path / "a.qml", ["kaolinite", "alunite"])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE qgis")
    root = ET.fromstring(text)  # well-formed
    assert root.tag == "qgis"
    assert root.get("styleCategories") == "AllStyleCategories"
    assert root.get("version", "").startswith("3.")
    pipe = root.find("pipe")
    assert pipe is not None
    for tag in ("rasterrenderer", "brightnesscontrast", "huesaturation", "rasterresampler"):
        assert pipe.find(tag) is not None, tag
    assert root.findtext("blendMode") == "0"
    r = pipe.find("rasterrenderer")
    assert r.get("type") == "singlebandpseudocolor" and r.get("band") == "1"
    assert float(r.get("classificationMin")) == 0 and float(r.get("classificationMax")) == 1
    assert r.findtext("minMaxOrigin/limits") == "None"  # keep 0-1, do not stretch
    shader = r.find("rastershader/colorrampshader")
    assert shader.get("colorRampType") == "INTERPOLATED"
    assert (float(shader.get("minimumValue")), float(shader.get("maximumValue"))) == (0, 1)
    items = shader.findall("item")
    values = [float(i.get("value")) for i in items]
    assert values[0] == 0 and values[-1] == 1 and values == sorted(values)
    assert [i.get("color") for i in items] == list(VIRIDIS)
    # generic labels: still true after switching the band in QGIS (issue 14)
    assert items[0].get("label") == "0 (absent)" and items[-1].get("label") == "1 (pure)"
    assert not any("kaolinite" in i.get("label") for i in items)
    props = {o.get("name"): o.get("value") for o in root.iter("Option")}
    assert props["hsu_geo/endmembers"] == "kaolinite;alunite"


def test_other_band_and_escaping() -> None:
    root = ET.fromstring(abundance_qml(['a<b & "c"', "second"], band=2))
    r = root.find("pipe/rasterrenderer")
    assert r.get("band") == "2"
    label = r.findall("rastershader/colorrampshader/item")[-1].get("label")
    assert label == "1 (pure)"
    props = {o.get("name"): o.get("value") for o in root.iter("Option")}
    assert props["hsu_geo/endmembers"] == 'a<b & "c";second'  # escaped, round-trips
    assert props["hsu_geo/style_band"] == "2"


def test_invalid_arguments() -> None:
    with pytest.raises(OutputError, match="band 3"):
        abundance_qml(["a", "b"], band=3)
    with pytest.raises(OutputError, match="vmin < vmax"):
        abundance_qml(["a"], vmin=1, vmax=0)


def test_rmse_qml_range_and_unit(tmp_path: Path) -> None:
    path = write_rmse_qml(tmp_path / "r.qml", 0.0012, 0.0345, "reflectance (unitless)")
    root = ET.fromstring(path.read_text(encoding="utf-8"))
    r = root.find("pipe/rasterrenderer")
    assert r.get("type") == "singlebandpseudocolor" and r.get("band") == "1"
    assert float(r.get("classificationMin")) == pytest.approx(0.0012)
    assert float(r.get("classificationMax")) == pytest.approx(0.0345)
    items = r.findall("rastershader/colorrampshader/item")
    assert [i.get("color") for i in items] == list(MAGMA)
    assert all("reflectance (unitless)" in i.get("label") for i in items)
    assert items[0].get("label").startswith("0.0012")
    legend = r.find("rastershader/colorrampshader/rampLegendSettings")
    assert legend.get("suffix") == " reflectance (unitless)"
    with pytest.raises(OutputError, match="vmin < vmax"):
        rmse_qml(0.1, 0.1, "x")


def test_display_range_percentiles() -> None:
    values = np.concatenate([np.linspace(0, 1, 1001), [np.nan, 50.0]])
    lo, hi = display_range(values)
    assert lo == pytest.approx(np.percentile(values[np.isfinite(values)], 2))
    assert hi < 1.0  # the outlier 50 is above the 98th percentile
    assert display_range(np.full(5, np.nan)) == (0.0, 1.0)
    lo, hi = display_range(np.full(10, 0.02))
    assert lo < 0.02 < hi


def test_dominant_qml_one_class_per_endmember() -> None:
    names = [f"m{i}" for i in range(30)]
    root = ET.fromstring(dominant_qml(names))
    r = root.find("pipe/rasterrenderer")
    assert r.get("type") == "paletted" and r.get("band") == "1"
    entries = r.findall("colorPalette/paletteEntry")
    assert [e.get("label") for e in entries] == names
    assert [int(e.get("value")) for e in entries] == list(range(30))
    assert [e.get("color") for e in entries] == endmember_colors(30)  # the quicklook's colours
    assert len({e.get("color") for e in entries}) == 30


def test_endmember_colors_distinct() -> None:
    for k in (3, 10, 11, 20, 40, 84, 300):
        colors = endmember_colors(k)
        assert len(colors) == k == len(set(colors))
    assert endmember_colors(10) == [matplotlib.colors.to_hex(c)
                                    for c in matplotlib.colormaps["tab10"].colors]
