"""``--co KEY=VALUE``: GDAL creation options for the COG rasters hsu-geo writes.

Only options of GDAL's COG driver that change how the pixels are stored are accepted
(compression, its level, predictor, block size, overviews, BigTIFF, threads, statistics).
Options that would reproject or re-grid (``TILING_SCHEME``, ``TARGET_SRS``, ``EXTENT``,
``RES``, ``RESAMPLING``) are refused: the grid is hsu-geo's (the scene's, or its
orthorectification), and the style, tables and run record describe that grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hsu_geo.errors import ConfigError

__all__ = ["ALLOWED", "check_creation_options"]

#: COG driver creation options a user may set (GDAL's COG driver documentation)
ALLOWED = frozenset({
    "BLOCKSIZE", "COMPRESS", "LEVEL", "MAX_Z_ERROR", "QUALITY", "PREDICTOR", "BIGTIFF",
    "NUM_THREADS", "OVERVIEWS", "OVERVIEW_COUNT", "OVERVIEW_RESAMPLING", "OVERVIEW_COMPRESS",
    "OVERVIEW_QUALITY", "OVERVIEW_PREDICTOR", "STATISTICS", "SPARSE_OK", "GEOTIFF_VERSION",
})
#: options that would change the grid the outputs are written on
REGRID = frozenset({"TILING_SCHEME", "TARGET_SRS", "EXTENT", "RES", "RESAMPLING",
                    "ALIGNED_LEVELS", "ZOOM_LEVEL", "ZOOM_LEVEL_STRATEGY", "ADD_ALPHA"})


def check_creation_options(values: Iterable[str] | Mapping[str, object] | None
                           ) -> dict[str, str]:
    """``["COMPRESS=DEFLATE", "LEVEL=9"]`` (or a mapping) -> ``{"COMPRESS": "DEFLATE", ...}``.

    Keys are upper-cased; an unknown key, a grid-changing key or a malformed item is a
    one-line :class:`ConfigError` naming it and the valid keys.
    """
    if not values:
        return {}
    items: list[tuple[str, str]] = []
    if isinstance(values, Mapping):
        items = [(str(k), str(v)) for k, v in values.items()]
    else:
        for item in values:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConfigError(f"--co {item!r}: expected KEY=VALUE, e.g. --co COMPRESS=DEFLATE")
            items.append((key, value))
    out: dict[str, str] = {}
    for key, value in items:
        k = key.strip().upper()
        if k in REGRID:
            raise ConfigError(f"--co {k}: would change the output grid, which hsu-geo sets "
                              "(the scene's grid or its orthorectification); reproject the "
                              "outputs afterwards, e.g. with gdalwarp")
        if k not in ALLOWED:
            raise ConfigError(f"--co {k}: not a COG creation option hsu-geo passes on; "
                              f"choose from {', '.join(sorted(ALLOWED))}")
        out[k] = value.strip()
    return out
