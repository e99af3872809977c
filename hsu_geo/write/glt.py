"""Orthorectification through a geometry lookup table (GLT), as EMIT products deliver it.

A GLT is two integer rasters on the output (ortho) grid, ``glt_x`` and ``glt_y``: for output
pixel ``(r, c)`` they give the 1-based column (crosstrack) and row (downtrack) of the sensor
pixel it shows; 0 (or the variable's ``_FillValue``) means no sensor pixel. EMIT marks pixels
filled from a neighbour with negative indices, which are used by absolute value (as the EMIT
project's own tools do). Orthorectifying is then a nearest-neighbour lookup::

    ortho[r, c] = sensor[|glt_y[r, c]| - 1, |glt_x[r, c]| - 1]   (nodata where the GLT is 0)

on the grid given by the product's GDAL geotransform and CRS (EPSG:4326 for EMIT). Values are
copied, never interpolated, so a fraction or RMSE stays exactly what was computed for the
sensor pixel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from hsu_geo.errors import InvalidSceneError, OutputError


@dataclass(frozen=True)
class GltLookup:
    """Where each ortho pixel takes its value: ``valid`` ``(rows, cols)`` bool on the ortho
    grid and ``index`` ``(valid.sum(),)`` int64 flat (row-major) indices into the sensor grid."""

    valid: np.ndarray
    index: np.ndarray

    def apply(self, band: np.ndarray, nodata: float) -> np.ndarray:
        """One sensor-geometry band ``(rows, cols)`` -> float32 ortho band (``nodata`` where
        the GLT has no pixel)."""
        out = np.full(self.valid.shape, nodata, dtype="float32")
        out[self.valid] = np.asarray(band, dtype="float32").reshape(-1)[self.index]
        return out


@dataclass(frozen=True)
class GltGrid:
    """A GLT stored as two integer variables of a NetCDF-4/HDF5 file, and its ortho grid.

    ``shape`` is the ortho grid (rows, cols), ``transform`` its affine (pixel corner),
    ``sensor_shape`` the (downtrack, crosstrack) size of the sensor grid it indexes.
    """

    path: str
    x_var: str
    y_var: str
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    sensor_shape: tuple[int, int]

    @classmethod
    def from_attrs(cls, value: Mapping[str, Any] | None) -> GltGrid | None:
        """The grid described by a cube's ``attrs["glt"]`` (see :mod:`hsu_geo.ingest.emit`)."""
        if value is None:
            return None
        if isinstance(value, GltGrid):
            return value
        try:
            return cls(
                path=str(value["path"]), x_var=str(value["x"]), y_var=str(value["y"]),
                crs=CRS.from_user_input(value["crs"]),
                transform=Affine(*[float(v) for v in value["transform"]]),
                shape=(int(value["shape"][0]), int(value["shape"][1])),
                sensor_shape=(int(value["sensor_shape"][0]), int(value["sensor_shape"][1])),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise OutputError(f"the scene's GLT description is incomplete ({exc!r}); reopen the "
                              "scene with hsu_geo.ingest.open_scene") from None

    def _read(self, name: str) -> tuple[np.ndarray, float | None]:
        import h5netcdf

        try:
            with h5netcdf.File(self.path, "r") as nc:
                node: Any = nc
                *groups, var = name.strip("/").split("/")
                for g in groups:
                    node = node.groups[g]
                v = node.variables[var]
                fill = v.attrs.get("_FillValue")
                return np.asarray(v[...]), None if fill is None else float(np.ravel(fill)[0])
        except (OSError, KeyError) as exc:
            raise InvalidSceneError(f"{self.path}: cannot read the GLT variable '{name}' "
                                    f"({exc}); the product must stay in place until its outputs "
                                    "are written") from None

    def lookup(self, height: int, width: int) -> GltLookup:
        """Read the GLT and check it against sensor-geometry data of ``height`` x ``width``."""
        if (height, width) != self.sensor_shape:
            raise OutputError(
                f"the outputs cover {height} x {width} sensor pixels but the GLT of {self.path} "
                f"indexes the whole {self.sensor_shape[0]} x {self.sensor_shape[1]} scene; "
                "unmix the whole scene to write outputs orthorectified through the GLT")
        (gx, fx), (gy, fy) = self._read(self.x_var), self._read(self.y_var)
        if gx.shape != self.shape or gy.shape != self.shape:
            raise InvalidSceneError(f"{self.path}: the GLT is {gx.shape} / {gy.shape}, "
                                    f"expected {self.shape}")
        gx, gy = gx.astype("int64"), gy.astype("int64")
        valid = (gx != 0) & (gy != 0)
        for g, f in ((gx, fx), (gy, fy)):
            if f is not None:
                valid &= g != int(f)
        col, row = np.abs(gx[valid]) - 1, np.abs(gy[valid]) - 1
        outside = (row >= height) | (col >= width)
        if outside.any():
            raise InvalidSceneError(
                f"{self.path}: {int(outside.sum())} GLT entries point outside the {height} x "
                f"{width} sensor grid (largest glt_y {int(row.max()) + 1}, glt_x "
                f"{int(col.max()) + 1}); the GLT does not belong to this reflectance")
        return GltLookup(valid, row * width + col)
