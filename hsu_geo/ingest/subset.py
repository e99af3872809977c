"""Unmix part of a scene: ``--window`` (pixels) and ``--bounds`` (map coordinates).

A window is GDAL's ``-srcwin`` order, ``COL,ROW,WIDTH,HEIGHT`` (rasterio's ``Window``), in the
scene's own pixel grid; bounds are ``LEFT,BOTTOM,RIGHT,TOP`` in the scene's CRS (``rio``'s
order) and select every pixel whose centre lies inside. The subset keeps the georeferencing:
the geotransform is shifted by the window's offset; an RPC model (GF-5 sensor geometry) has its
line/sample offsets shifted, so outputs are still orthorectified correctly. Bounds need a map
grid (a CRS and a geotransform); on sensor-geometry scenes use a window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from hsu_geo.errors import ConfigError

__all__ = ["PixelWindow", "parse_bounds", "parse_window", "subset_cube"]


@dataclass(frozen=True)
class PixelWindow:
    """``col_off, row_off, width, height`` in pixels of the full scene."""

    col_off: int
    row_off: int
    width: int
    height: int

    def as_list(self) -> list[int]:
        return [self.col_off, self.row_off, self.width, self.height]


def _numbers(text: str | Sequence[float], what: str, fix: str) -> list[float]:
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", ",").split(",") if p]
    else:
        parts = list(text)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {text!r}: expected four numbers, {fix}") from None
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ConfigError(f"{what} {text!r}: expected four finite numbers, {fix}")
    return values


def parse_window(text: str | Sequence[int]) -> PixelWindow:
    """``"COL,ROW,WIDTH,HEIGHT"`` -> :class:`PixelWindow` (whole numbers, size >= 1)."""
    fix = "e.g. --window 100,200,512,512 (COL,ROW,WIDTH,HEIGHT in pixels)"
    values = _numbers(text, "--window", fix)
    if any(v != int(v) for v in values):
        raise ConfigError(f"--window {text!r}: pixel offsets and sizes must be whole numbers; "
                          f"{fix}")
    col, row, width, height = (int(v) for v in values)
    if col < 0 or row < 0 or width < 1 or height < 1:
        raise ConfigError(f"--window {text!r}: offsets must be >= 0 and sizes >= 1; {fix}")
    return PixelWindow(col, row, width, height)


def parse_bounds(text: str | Sequence[float]) -> tuple[float, float, float, float]:
    """``"LEFT,BOTTOM,RIGHT,TOP"`` (scene CRS units) -> a tuple with left < right, bottom < top."""
    fix = "e.g. --bounds 538000,4141000,539000,4142000 (LEFT,BOTTOM,RIGHT,TOP in the scene's CRS)"
    left, bottom, right, top = _numbers(text, "--bounds", fix)
    if not (left < right and bottom < top):
        raise ConfigError(f"--bounds {text!r}: need LEFT < RIGHT and BOTTOM < TOP; {fix}")
    return left, bottom, right, top


def _window_of_bounds(cube: xr.DataArray, bounds: tuple[float, float, float, float]
                      ) -> PixelWindow:
    if cube.attrs.get("rpcs") is not None or cube.attrs.get("glt") is not None \
            or cube.rio.crs is None:
        raise ConfigError("--bounds needs a scene on a map grid (CRS and geotransform); this "
                          "scene is in sensor geometry or has no CRS: use --window "
                          "COL,ROW,WIDTH,HEIGHT instead")
    left, bottom, right, top = bounds
    h, w = cube.sizes["y"], cube.sizes["x"]
    fwd = cube.rio.transform()
    # pixel range spanned by the bounds' corners (any grid rotation), clipped to the scene:
    # only the pixels in it are tested, so a small subset of a huge scene stays cheap
    corners = [~fwd @ (x, y) for x in (left, right) for y in (bottom, top)]
    c0 = max(0, math.floor(min(c for c, _ in corners)) - 1)
    c1 = min(w, math.ceil(max(c for c, _ in corners)) + 1)
    r0 = max(0, math.floor(min(r for _, r in corners)) - 1)
    r1 = min(h, math.ceil(max(r for _, r in corners)) + 1)
    rows, cols = np.mgrid[r0:max(r0, r1), c0:max(c0, c1)]
    # pixel centres in map coordinates, then the ones inside the bounds
    xs = fwd.a * (cols + 0.5) + fwd.b * (rows + 0.5) + fwd.c
    ys = fwd.d * (cols + 0.5) + fwd.e * (rows + 0.5) + fwd.f
    inside = (xs >= left) & (xs <= right) & (ys >= bottom) & (ys <= top)
    if not inside.any():
        b = cube.rio.bounds()
        raise ConfigError(f"--bounds {list(bounds)} do not overlap the scene, whose bounds are "
                          f"{[round(v, 6) for v in b]} in {cube.rio.crs}")
    r = r0 + np.flatnonzero(inside.any(axis=1))
    c = c0 + np.flatnonzero(inside.any(axis=0))
    return PixelWindow(int(c[0]), int(r[0]), int(c[-1] - c[0] + 1), int(r[-1] - r[0] + 1))


def _shift_rpcs(rpcs: Any, window: PixelWindow) -> Any:
    """RPCs of the window: image line/sample offsets move by the window's origin."""
    if hasattr(rpcs, "to_dict"):
        from rasterio.rpc import RPC

        d = rpcs.to_dict()
        d["line_off"] = float(d["line_off"]) - window.row_off
        d["samp_off"] = float(d["samp_off"]) - window.col_off
        return RPC(**d)
    d = dict(rpcs)
    keys = {k.lower(): k for k in d}
    for name, off in (("line_off", window.row_off), ("samp_off", window.col_off)):
        key = keys.get(name)
        if key is None:
            raise ConfigError(f"the scene's RPC model has no {name.upper()}: --window cannot "
                              "keep its orthorectification; unmix the whole scene")
        d[key] = float(d[key]) - off
    return d


def subset_cube(cube: xr.DataArray, *, window: PixelWindow | None = None,
                bounds: tuple[float, float, float, float] | None = None) -> xr.DataArray:
    """The part of ``cube (band, y, x)`` inside ``window`` or ``bounds`` (not both), lazily.

    The window is clipped to the scene; one that lies outside it is refused. The result keeps
    its georeferencing (shifted geotransform or RPC offsets) and records the window in
    ``attrs["window"]``.
    """
    if window is None and bounds is None:
        return cube
    if window is not None and bounds is not None:
        raise ConfigError("--window and --bounds both given: choose one")
    if cube.attrs.get("glt") is not None:
        raise ConfigError("--window/--bounds are not supported on scenes orthorectified "
                          "through a geometry lookup table (EMIT): unmix the whole scene")
    if window is None:
        assert bounds is not None
        window = _window_of_bounds(cube, bounds)
    h, w = cube.sizes["y"], cube.sizes["x"]
    if window.col_off >= w or window.row_off >= h:
        raise ConfigError(f"--window {','.join(map(str, window.as_list()))} starts outside the "
                          f"scene, which is {w} columns x {h} rows")
    win = PixelWindow(window.col_off, window.row_off, min(window.width, w - window.col_off),
                      min(window.height, h - window.row_off))
    out = cube.isel(y=slice(win.row_off, win.row_off + win.height),
                    x=slice(win.col_off, win.col_off + win.width))
    out.attrs = dict(cube.attrs)
    if cube.attrs.get("rpcs") is not None:
        out.attrs["rpcs"] = _shift_rpcs(cube.attrs["rpcs"], win)
    elif cube.rio.crs is not None or "spatial_ref" in cube.coords:
        try:
            transform = cube.rio.transform(recalc=False)
        except Exception:  # no geotransform: pixel grid only
            transform = None
        if transform is not None and transform != Affine.identity():
            out = out.rio.write_transform(transform @ Affine.translation(win.col_off,
                                                                         win.row_off))
    out.attrs["window"] = win.as_list()
    return out
