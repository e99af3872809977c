"""Open an output COG + .qml in PyQGIS (offscreen), render it, print a JSON report.

Pseudocolour styles (abundance, RMSE) report their ramp items, paletted ones (dominant
endmember) their classes; both report the legend QGIS draws.

Run by ``test_qgis.py`` with a Python that has PyQGIS (often the system ``/usr/bin/python3``,
not the one running the tests), so it imports nothing but the standard library and qgis:

    QT_QPA_PLATFORM=offscreen python3 qgis_check.py ABUNDANCE.tif STYLE.qml OUT.png
"""

from __future__ import annotations

import json
import math
import sys


def inspect(tif: str, qml: str, png: str) -> dict:
    """Report on the layer. Every QGIS object dies with this frame, before exitQgis()."""
    from qgis.core import (
        Qgis,
        QgsMapRendererSequentialJob,
        QgsMapSettings,
        QgsRasterLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    layer = QgsRasterLayer(tif, "abundance", "gdal")  # loads the sidecar .qml by default
    report: dict = {"valid": layer.isValid(), "qgis_version": Qgis.QGIS_VERSION}
    if not layer.isValid():
        return report
    default_renderer = layer.renderer()
    report["default_style_renderer"] = default_renderer.type()
    message, ok = layer.loadNamedStyle(qml)
    renderer = layer.renderer()
    if renderer.type() == "singlebandpseudocolor":
        shader = renderer.shader().rasterShaderFunction()
        report["ramp_items"] = [[i.value, i.color.name(), i.label]
                                for i in shader.colorRampItemList()]
        report["classification"] = [renderer.classificationMin(), renderer.classificationMax()]
    elif renderer.type() == "paletted":
        report["classes"] = [[c.value, c.color.name(), c.label] for c in renderer.classes()]
    ext = layer.extent()
    provider = layer.dataProvider()
    report.update(
        load_style_ok=bool(ok),
        load_style_message=message,
        renderer=renderer.type(),
        renderer_band=renderer.band() if hasattr(renderer, "band") else renderer.inputBand(),
        legend=[[str(label), color.name()] for label, color in renderer.legendSymbologyItems()],
        crs=layer.crs().authid(),
        extent=[ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum()],
        width=layer.width(),
        height=layer.height(),
        band_count=layer.bandCount(),
        band_names=[layer.bandName(i) for i in range(1, layer.bandCount() + 1)],
        has_nodata=provider.sourceHasNoDataValue(1),
        nodata_is_nan=math.isnan(provider.sourceNoDataValue(1)),
        data_type=int(provider.dataType(1)),
    )
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(480, 480))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    report["png_saved"] = bool(image.save(png, "PNG"))
    colors = set()
    non_white = 0
    total = 0
    for y in range(0, image.height(), 4):
        for x in range(0, image.width(), 4):
            rgb = image.pixel(x, y) & 0xFFFFFF
            colors.add(rgb)
            non_white += rgb != 0xFFFFFF
            total += 1
    report["distinct_colors"] = len(colors)
    report["non_white_fraction"] = non_white / total
    return report


def main(tif: str, qml: str, png: str) -> None:
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    try:
        report = inspect(tif, qml, png)
    finally:
        app.exitQgis()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
