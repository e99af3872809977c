"""QGIS ``.qml`` styles: abundance (0–1 viridis), RMSE (magma, unit in the legend) and the
dominant-endmember classes (paletted, the quicklook's colours).

A ``<raster basename>.qml`` next to the raster is QGIS's default style, loaded when the layer is
added; without it QGIS shows bands 1-2-3 as RGB, which means nothing for abundances. The layout
follows what QGIS 3.x writes with "Save Style… / All style categories"; ``limits=None`` keeps
the fixed range instead of stretching to the data. Abundance legend labels are generic ("0
(absent)", "1 (pure)") so they stay true when the band is switched; endmember names are in the
band names and the layer's custom properties (``hsu_geo/endmembers``).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from hsu_geo.errors import OutputError
from hsu_geo.write.palette import endmember_colors

QGIS_VERSION = "3.28.0-Firenze"
#: matplotlib's viridis sampled at 0, 0.1, ..., 1 (matplotlib.colormaps["viridis"])
VIRIDIS = ("#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884",
           "#44bf70", "#7ad151", "#bddf26", "#fde725")
#: matplotlib's magma sampled at 0, 0.1, ..., 1 (the quicklook's RMSE colours)
MAGMA = ("#000004", "#140e36", "#3b0f70", "#641a80", "#8c2981", "#b73779", "#de4968",
         "#f7705c", "#fe9f6d", "#fecf92", "#fcfdbf")


def _rgba(hex_color: str) -> str:
    h = hex_color.lstrip("#")
    return ",".join(str(int(h[i:i + 2], 16)) for i in (0, 2, 4)) + ",255"


def _option(parent: ET.Element, name: str, value: str, type_: str = "QString") -> None:
    ET.SubElement(parent, "Option", {"name": name, "type": type_, "value": value})


def _fmt(v: float, digits: int = 6) -> str:
    return f"{v:.{digits}g}"


def _document(custom: dict[str, str]) -> tuple[ET.Element, ET.Element]:
    """The ``<qgis>`` root with flags, temporal, custom properties; returns (root, pipe)."""
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
    props = ET.SubElement(ET.SubElement(root, "customproperties"), "Option", {"type": "Map"})
    for key, value in custom.items():
        _option(props, key, value)
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
    return root, pipe


def _min_max_origin(renderer: ET.Element) -> None:
    mmo = ET.SubElement(renderer, "minMaxOrigin")
    for tag, val in (("limits", "None"), ("extent", "WholeRaster"),
                     ("statAccuracy", "Estimated"), ("cumulativeCutLower", "0.02"),
                     ("cumulativeCutUpper", "0.98"), ("stdDevFactor", "2")):
        ET.SubElement(mmo, tag).text = val


def _finish(root: ET.Element, pipe: ET.Element) -> str:
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


def _pseudocolor(pipe: ET.Element, band: int, vmin: float, vmax: float, ramp: Sequence[str],
                 labels: Sequence[str], *, min_label: str, max_label: str, suffix: str = "",
                 precision: int = 2, digits: int = 6) -> None:
    """A ``singlebandpseudocolor`` renderer: ``ramp`` colours evenly over vmin..vmax (values
    written with ``digits`` significant digits)."""
    renderer = ET.SubElement(pipe, "rasterrenderer", {
        "type": "singlebandpseudocolor", "band": str(band), "opacity": "1", "alphaBand": "-1",
        "classificationMin": _fmt(vmin, digits), "classificationMax": _fmt(vmax, digits),
        "nodataColor": "",
    })
    ET.SubElement(renderer, "rasterTransparency")
    _min_max_origin(renderer)
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader", {
        "colorRampType": "INTERPOLATED", "classificationMode": "1", "clip": "0",
        "minimumValue": _fmt(vmin, digits), "maximumValue": _fmt(vmax, digits),
        "labelPrecision": str(precision),
    })
    color_ramp = ET.SubElement(shader, "colorramp", {"name": "[source]", "type": "gradient"})
    ramp_opts = ET.SubElement(color_ramp, "Option", {"type": "Map"})
    _option(ramp_opts, "color1", _rgba(ramp[0]))
    _option(ramp_opts, "color2", _rgba(ramp[-1]))
    _option(ramp_opts, "discrete", "0")
    _option(ramp_opts, "rampType", "gradient")
    n = len(ramp) - 1
    stops = ":".join(f"{i / n:g};{_rgba(c)}" for i, c in enumerate(ramp[1:-1], start=1))
    _option(ramp_opts, "stops", stops)
    for i, (color, label) in enumerate(zip(ramp, labels, strict=True)):
        value = vmin + (vmax - vmin) * i / n
        ET.SubElement(shader, "item", {"value": _fmt(value, digits), "color": color,
                                       "alpha": "255", "label": label})
    ET.SubElement(shader, "rampLegendSettings", {
        "minimumLabel": min_label, "maximumLabel": max_label, "prefix": "", "suffix": suffix,
        "direction": "0", "useContinuousLegend": "1", "orientation": "2",
    })


def abundance_qml(names: Sequence[str], *, band: int = 1, vmin: float = 0.0,
                  vmax: float = 1.0) -> str:
    """QML text styling ``band`` (1-based) of an abundance raster with ``names`` per band.

    The legend labels are generic ("0 (absent)" ... "1 (pure)"): the style stays right when the
    user switches the band in QGIS (the band's name shows in the layer tree as "Band 03: name").
    """
    if not 1 <= band <= max(1, len(names)):
        raise OutputError(f"style band {band} is outside 1..{len(names)}; pick an existing band")
    if not vmin < vmax:
        raise OutputError(f"style range {vmin}..{vmax} is empty; use vmin < vmax")
    root, pipe = _document({"hsu_geo/endmembers": ";".join(str(n) for n in names),
                            "hsu_geo/style_band": str(band)})
    n = len(VIRIDIS) - 1
    labels = [_fmt(vmin + (vmax - vmin) * i / n) for i in range(n + 1)]
    labels[0] += " (absent)"
    labels[-1] += " (pure)"
    _pseudocolor(pipe, band, vmin, vmax, VIRIDIS, labels, min_label=labels[0],
                 max_label=labels[-1], suffix=" fraction")
    return _finish(root, pipe)


def rmse_qml(vmin: float, vmax: float, unit: str) -> str:
    """QML text for the RMSE raster: magma ramp over vmin..vmax (the caller takes them from the
    data's percentiles), the unit (e.g. ``reflectance (unitless)``) in every legend label."""
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmin < vmax):
        raise OutputError(f"RMSE style range {vmin}..{vmax} is empty; use vmin < vmax")
    root, pipe = _document({"hsu_geo/unit": unit, "hsu_geo/product": "reconstruction_rmse"})
    n = len(MAGMA) - 1
    precision = max(2, 2 - math.floor(math.log10(vmax - vmin)))
    values = [vmin + (vmax - vmin) * i / n for i in range(n + 1)]
    labels = [f"{v:.{precision}f} {unit}" for v in values]
    labels[0] += ", 2nd percentile"
    labels[-1] += ", 98th percentile"
    _pseudocolor(pipe, 1, vmin, vmax, MAGMA, labels, min_label=labels[0],
                 max_label=labels[-1], suffix=f" {unit}", precision=precision, digits=9)
    return _finish(root, pipe)


def dominant_qml(names: Sequence[str], colors: Sequence[str] | None = None) -> str:
    """QML text for the dominant-endmember class raster (value i = endmember i + 1's band):
    a paletted renderer with one class per endmember, labelled with its name, coloured as in
    the quicklook."""
    if not names:
        raise OutputError("a dominant-endmember style needs at least one endmember name")
    colors = list(colors) if colors is not None else endmember_colors(len(names))
    if len(colors) != len(names):
        raise OutputError(f"{len(colors)} colours for {len(names)} endmembers; give one each")
    root, pipe = _document({"hsu_geo/endmembers": ";".join(str(n) for n in names),
                            "hsu_geo/product": "dominant_endmember"})
    renderer = ET.SubElement(pipe, "rasterrenderer", {
        "type": "paletted", "band": "1", "opacity": "1", "alphaBand": "-1", "nodataColor": "",
    })
    ET.SubElement(renderer, "rasterTransparency")
    _min_max_origin(renderer)
    palette = ET.SubElement(renderer, "colorPalette")
    for value, (name, color) in enumerate(zip(names, colors, strict=True)):
        ET.SubElement(palette, "paletteEntry", {"value": str(value), "color": color,
                                                "alpha": "255", "label": str(name)})
    ET.SubElement(renderer, "colorramp", {"name": "[source]", "type": "randomcolors"})
    return _finish(root, pipe)


def _write(path: str | os.PathLike[str], text: str) -> Path:
    path = Path(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); check the directory") \
            from exc
    return path


def write_rmse_qml(path: str | os.PathLike[str], vmin: float, vmax: float, unit: str) -> Path:
    """Write :func:`rmse_qml` to ``path`` (UTF-8)."""
    return _write(path, rmse_qml(vmin, vmax, unit))


def write_dominant_qml(path: str | os.PathLike[str], names: Sequence[str],
                       colors: Sequence[str] | None = None) -> Path:
    """Write :func:`dominant_qml` to ``path`` (UTF-8)."""
    return _write(path, dominant_qml(names, colors))


def write_abundance_qml(path: str | os.PathLike[str], names: Sequence[str], *, band: int = 1,
                        vmin: float = 0.0, vmax: float = 1.0) -> Path:
    """Write :func:`abundance_qml` to ``path`` (UTF-8)."""
    return _write(path, abundance_qml(names, band=band, vmin=vmin, vmax=vmax))
