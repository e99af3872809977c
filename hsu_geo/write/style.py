"""QGIS ``.qml`` style for the abundance COG: band 1 as a 0–1 viridis pseudocolour ramp.

A ``<raster basename>.qml`` next to the raster is QGIS's default style, loaded when the layer is
added; without it QGIS shows bands 1-2-3 as RGB, which means nothing for abundances. The layout
follows what QGIS 3.x writes with "Save Style… / All style categories"; ``limits=None`` keeps
the fixed 0–1 range instead of stretching to the data. Endmember names go into the legend
labels of the shown band and into the layer's custom properties (``hsu_geo/endmembers``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from hsu_geo.errors import OutputError

QGIS_VERSION = "3.28.0-Firenze"
#: matplotlib's viridis sampled at 0, 0.1, ..., 1 (matplotlib.colormaps["viridis"])
VIRIDIS = ("#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884",
           "#44bf70", "#7ad151", "#bddf26", "#fde725")


def _rgba(hex_color: str) -> str:
    h = hex_color.lstrip("#")
    return ",".join(str(int(h[i:i + 2], 16)) for i in (0, 2, 4)) + ",255"


def _option(parent: ET.Element, name: str, value: str, type_: str = "QString") -> None:
    ET.SubElement(parent, "Option", {"name": name, "type": type_, "value": value})


def _fmt(v: float) -> str:
    return f"{v:g}"


def abundance_qml(names: Sequence[str], *, band: int = 1, vmin: float = 0.0,
                  vmax: float = 1.0) -> str:
    """QML text styling ``band`` (1-based) of an abundance raster with ``names`` per band."""
    if not 1 <= band <= max(1, len(names)):
        raise OutputError(f"style band {band} is outside 1..{len(names)}; pick an existing band")
    if not vmin < vmax:
        raise OutputError(f"style range {vmin}..{vmax} is empty; use vmin < vmax")
    name = str(names[band - 1]) if names else f"band {band}"
    root = ET.Element("qgis", {
        "version": QGIS_VERSION, "styleCategories": "AllStyleCategories",
        "hasScaleBasedVisibilityFlag": "0", "minScale": "1e+08", "maxScale": "0",
    })
    flags = ET.SubElement(root, "flags")
    for tag, val in (("Identifiable", "1"), ("Removable", "1"), ("Searchable", "1"),
                     ("Private", "0")):
        ET.SubElement(flags, tag).text = val
    temporal = ET.SubElement(root, "temporal", {"enabled": "0", "fetchMode": "0", "mode": "0"})
    fixed = ET.SubElement(temporal, "fixedRange")
    ET.SubElement(fixed, "start")
    ET.SubElement(fixed, "end")
    custom = ET.SubElement(ET.SubElement(root, "customproperties"), "Option", {"type": "Map"})
    _option(custom, "hsu_geo/endmembers", ";".join(str(n) for n in names))
    _option(custom, "hsu_geo/style_band", str(band))
    ddp = ET.SubElement(ET.SubElement(root, "pipe-data-defined-properties"), "Option",
                        {"type": "Map"})
    _option(ddp, "name", "")
    ET.SubElement(ddp, "Option", {"name": "properties"})
    _option(ddp, "type", "collection")

    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(provider, "resampling", {
        "enabled": "false", "maxOversampling": "2",
        "zoomedInResamplingMethod": "nearestNeighbour",
        "zoomedOutResamplingMethod": "nearestNeighbour",
    })
    renderer = ET.SubElement(pipe, "rasterrenderer", {
        "type": "singlebandpseudocolor", "band": str(band), "opacity": "1", "alphaBand": "-1",
        "classificationMin": _fmt(vmin), "classificationMax": _fmt(vmax), "nodataColor": "",
    })
    ET.SubElement(renderer, "rasterTransparency")
    mmo = ET.SubElement(renderer, "minMaxOrigin")
    for tag, val in (("limits", "None"), ("extent", "WholeRaster"),
                     ("statAccuracy", "Estimated"), ("cumulativeCutLower", "0.02"),
                     ("cumulativeCutUpper", "0.98"), ("stdDevFactor", "2")):
        ET.SubElement(mmo, tag).text = val
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader", {
        "colorRampType": "INTERPOLATED", "classificationMode": "1", "clip": "0",
        "minimumValue": _fmt(vmin), "maximumValue": _fmt(vmax), "labelPrecision": "2",
    })
    ramp = ET.SubElement(shader, "colorramp", {"name": "[source]", "type": "gradient"})
    ramp_opts = ET.SubElement(ramp, "Option", {"type": "Map"})
    _option(ramp_opts, "color1", _rgba(VIRIDIS[0]))
    _option(ramp_opts, "color2", _rgba(VIRIDIS[-1]))
    _option(ramp_opts, "discrete", "0")
    _option(ramp_opts, "rampType", "gradient")
    n = len(VIRIDIS) - 1
    stops = ":".join(f"{i / n:g};{_rgba(c)}" for i, c in enumerate(VIRIDIS[1:-1], start=1))
    _option(ramp_opts, "stops", stops)
    for i, color in enumerate(VIRIDIS):
        value = vmin + (vmax - vmin) * i / n
        label = _fmt(value)
        if i == 0:
            label = f"{label} (no {name})"
        elif i == n:
            label = f"{label} (pure {name})"
        ET.SubElement(shader, "item", {"value": _fmt(value), "color": color, "alpha": "255",
                                       "label": label})
    ET.SubElement(shader, "rampLegendSettings", {
        "minimumLabel": f"{_fmt(vmin)} (no {name})", "maximumLabel": f"{_fmt(vmax)} (pure {name})",
        "prefix": "", "suffix": "", "direction": "0", "useContinuousLegend": "1",
        "orientation": "2",
    })
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {
        "saturation": "0", "grayscaleMode": "0", "invertColors": "0", "colorizeOn": "0",
        "colorizeRed": "255", "colorizeGreen": "128", "colorizeBlue": "128",
        "colorizeStrength": "100",
    })
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(pipe, "resamplingStage").text = "resamplingFilter"
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + body + "\n"


def write_abundance_qml(path: str | os.PathLike[str], names: Sequence[str], *, band: int = 1,
                        vmin: float = 0.0, vmax: float = 1.0) -> Path:
    """Write :func:`abundance_qml` to ``path`` (UTF-8)."""
    path = Path(path)
    try:
        path.write_text(abundance_qml(names, band=band, vmin=vmin, vmax=vmax), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); check the directory") \
            from exc
    return path
