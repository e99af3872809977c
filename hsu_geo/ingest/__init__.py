"""Open imaging-spectrometer products as lazy, band-complete cubes.

``open_scene(path)`` picks a reader by asking each registered reader ``guess_can_open``
(specific formats first); ``sensor="NAME"`` forces one, ``sensor="A,B"`` detects among
A and B only. Readers live one per module and are
registered below; third-party readers come in through the ``hsu_geo.readers`` entry point.
"""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from hsu_geo.cube import DEFAULT_CHUNK, validate_cube
from hsu_geo.errors import ConfigError, SceneNotFoundError, UnsupportedFormatError
from hsu_geo.ingest.base import SceneReader
from hsu_geo.ingest.gf5_archive import archive_kind, check_archive_content
from hsu_geo.registry import Registry

READERS: Registry[type[SceneReader]] = Registry("reader", group="hsu_geo.readers")


def _lazy(module: str, cls: str):
    def load() -> type[SceneReader]:
        import importlib

        return getattr(importlib.import_module(module), cls)

    return load


READERS.register_lazy("geotiff", _lazy("hsu_geo.ingest.geotiff", "GeoTiffReader"))
READERS.register_lazy("envi", _lazy("hsu_geo.ingest.envi", "EnviReader"))
READERS.register_lazy("gf5", _lazy("hsu_geo.ingest.gf5", "Gf5AhsiReader"))
READERS.register_lazy("enmap", _lazy("hsu_geo.ingest.enmap", "EnmapL2aReader"))
READERS.register_lazy("emit", _lazy("hsu_geo.ingest.emit", "EmitL2aReader"))


def reader_candidates(sensor: str = "auto") -> list[tuple[str, type[SceneReader]]]:
    """The readers ``sensor`` allows, in detection order (priority, then name).

    ``"auto"``: every installed reader. ``"NAME"``: that reader alone (forced: it opens the
    path even if its guess does not match). ``"NAME,NAME,..."``: those readers only, each
    path going to the first whose guess matches (a preset for a sensor names the readers of
    its product formats, e.g. ``enmap,geotiff`` for EnMAP L2A products and EnMAP GeoTIFFs).
    Unknown names are a ConfigError listing the installed readers.
    """
    if sensor.strip() == "auto":
        chosen = list(READERS.items())
    else:
        names = [n.strip() for n in sensor.split(",") if n.strip()]
        if not names:
            raise ConfigError(f"--sensor {sensor!r}: give 'auto', a reader name or a comma-"
                              f"separated list of them ({', '.join(READERS.names())})")
        chosen = [(n, READERS.get(n)) for n in dict.fromkeys(names)]
    return sorted(chosen, key=lambda item: (item[1].priority, item[0]))


def find_reader(path: Path, sensor: str = "auto") -> type[SceneReader]:
    """The reader class for ``path``: the named one, or the first of ``sensor``'s readers
    (:func:`reader_candidates`) whose guess matches."""
    candidates = reader_candidates(sensor)
    if sensor.strip() != "auto" and len(candidates) == 1:
        return candidates[0][1]
    for _, reader in candidates:
        if reader.guess_can_open(path):
            return reader
    names = ", ".join(name for name, _ in candidates)
    if sensor.strip() != "auto":
        raise UnsupportedFormatError(
            f"{path}: none of the readers {names} (--sensor {sensor}) recognises this file; "
            "use --sensor auto, or add the right reader to the list")
    raise UnsupportedFormatError(
        f"{path}: no reader recognises this file; installed readers: {names} "
        "(force one with --sensor NAME)"
    )


def open_scene(
    path: str | os.PathLike[str],
    sensor: str = "auto",
    chunks: int = DEFAULT_CHUNK,
    wavelengths: str | os.PathLike[str] | None = None,
    scale: float | None = None,
) -> xr.DataArray:
    """Open a scene lazily as a cube (dims band, y, x; float32; band-complete dask chunks).

    Args:
        path: a GeoTIFF, an ENVI header or data file, a GF-5 delivery (folder/.tar/.zip), ...
        sensor: reader name, or "auto" to detect.
        chunks: tile edge T in pixels; chunks are ``{"band": -1, "y": T, "x": T}``.
        wavelengths: optional CSV or ENVI .hdr giving band wavelengths (nm) for rasters that
            lack them.
        scale: reflectance = stored value x ``scale`` (``--scale``), replacing the file's
            reflectance scale factor (:func:`hsu_geo.ingest.scale.apply_scale`); None keeps it.

    Opening reads headers only, never pixel data.
    """
    p = Path(path)
    if not p.exists():
        raise SceneNotFoundError(f"{p}: no such file or folder")
    if p.is_file() and archive_kind(p) is not None:
        check_archive_content(p)  # a misnamed archive never reaches a reader (or GDAL)
    wl = Path(wavelengths) if wavelengths is not None else None
    if wl is not None and not wl.exists():
        raise SceneNotFoundError(f"{wl}: wavelength file not found")
    reader = find_reader(p, sensor)
    cube = reader().open(p, chunk_size=chunks, wavelengths=wl)
    cube.attrs.setdefault("reader", reader.name)
    if scale is not None:
        from hsu_geo.ingest.scale import apply_scale

        cube = apply_scale(cube, scale)
    validate_cube(cube)
    return cube


__all__ = ["READERS", "SceneReader", "find_reader", "open_scene", "reader_candidates"]
