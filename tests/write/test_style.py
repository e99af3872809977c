"""QGIS style: well-formed QML, pseudocolour on band 1 over 0-1, names in the legend."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hsu_geo.errors import OutputError
from hsu_geo.write.style import VIRIDIS, abundance_qml, write_abundance_qml


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
    assert "kaolinite" in items[0].get("label") and "kaolinite" in items[-1].get("label")
    props = {o.get("name"): o.get("value") for o in root.iter("Option")}
    assert props["hsu_geo/endmembers"] == "kaolinite;alunite"


def test_other_band_and_escaping() -> None:
    root = ET.fromstring(abundance_qml(['a<b & "c"', "second"], band=2))
    r = root.find("pipe/rasterrenderer")
    assert r.get("band") == "2"
    label = r.findall("rastershader/colorrampshader/item")[-1].get("label")
    assert "second" in label
    assert ET.fromstring(abundance_qml(['a<b & "c"'])).find(
        "pipe/rasterrenderer/rastershader/colorrampshader/item").get("label").endswith(
        '(no a<b & "c")')


def test_invalid_arguments() -> None:
    with pytest.raises(OutputError, match="band 3"):
        abundance_qml(["a", "b"], band=3)
    with pytest.raises(OutputError, match="vmin < vmax"):
        abundance_qml(["a"], vmin=1, vmax=0)
