"""Small synthetic unmixing results for the writer tests (lazy, georeferenced three ways)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from affine import Affine
from rasterio.rpc import RPC

NORTH_UP = Affine(30.0, 0.0, 500_000.0, 0.0, -30.0, 4_000_000.0)
#: AVIRIS-NG style 5.2 m grid rotated ~42 degrees (ornldaac AVIRIS-NG rotated-grid README)
ROTATED = Affine(3.864, 3.479, 581_226.67, 3.479, -3.864, 7_916_192.56)
NAMES = ["kaolinite", "alunite", "vegetation"]


def fake_rpc(height: int, width: int, lon: float = 102.59, lat: float = 24.38,
             gsd_m: float = 30.0) -> RPC:
    """RPCs of a north-up, linear sensor geometry of ``gsd_m`` pixels centred at lon/lat."""
    zeros = [0.0] * 20
    line_num, samp_num, den = list(zeros), list(zeros), list(zeros)
    line_num[2] = -1.0  # row grows southwards with latitude (P term)
    samp_num[1] = 1.0  # column grows eastwards with longitude (L term)
    den[0] = 1.0
    deg_lat = gsd_m / 111_320.0
    deg_lon = gsd_m / (111_320.0 * math.cos(math.radians(lat)))
    return RPC(
        height_off=500.0, height_scale=500.0,
        lat_off=lat, lat_scale=deg_lat * height / 2, long_off=lon,
        long_scale=deg_lon * width / 2,
        line_off=height / 2, line_scale=height / 2, samp_off=width / 2, samp_scale=width / 2,
        line_num_coeff=line_num, line_den_coeff=den, samp_num_coeff=samp_num,
        samp_den_coeff=den,
    )


def ramp(height: int, width: int, chunk: int) -> da.Array:
    """(y, x) float32 ramp value = col + 2*row, linear so bilinear warps are exact inside."""
    rows = da.arange(height, chunks=chunk, dtype="float32")[:, None]
    cols = da.arange(width, chunks=chunk, dtype="float32")[None, :]
    return cols + 2 * rows


def make_result(
    height: int = 300,
    width: int = 260,
    *,
    names: list[str] | None = None,
    n_bands: int = 12,
    chunk: int = 128,
    georef: str = "north_up",
    abundance: da.Array | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """A result Dataset per the contract; ``georef`` is north_up | rotated | rpc | none."""
    names = names or NAMES
    k = len(names)
    if abundance is None:
        raw = da.random.RandomState(seed).random_sample((k, height, width),
                                                        chunks=(k, chunk, chunk))
        abundance = (raw / raw.sum(axis=0, keepdims=True)).astype("float32")
        nodata = da.zeros((height, width), chunks=chunk, dtype=bool)
        nodata[: height // 10, : width // 10] = True  # a nodata corner
        abundance = da.where(nodata[None], np.float32(np.nan), abundance)
    rmse = (abundance.sum(axis=0) * np.float32(0.01)).astype("float32")
    wl = np.linspace(450.0, 2400.0, n_bands)
    band = np.arange(1, n_bands + 1) * 2 + 3  # non-contiguous original band numbers
    spectra = np.stack([0.1 + 0.05 * i + 0.3 * np.sin(wl / (300 + 90 * i)) for i in range(k)])
    coords: dict[str, Any] = {
        "endmember": names,
        "band": ("band", band.astype("int32")),
        "wavelength": ("band", wl),
        "fwhm": ("band", np.full(n_bands, 10.0)),
    }
    attrs: dict[str, Any] = {"model": "fcls", "scene_id": "SCENE", "config": {"k": k},
                             "seed": seed, "device": "cpu", "sensor": "test",
                             "product_id": "SCENE_L1", "units": "reflectance"}
    if georef == "north_up":
        coords["x"] = ("x", NORTH_UP.c + NORTH_UP.a * (np.arange(width) + 0.5))
        coords["y"] = ("y", NORTH_UP.f + NORTH_UP.e * (np.arange(height) + 0.5))
    ds = xr.Dataset(
        {
            "abundance": (("endmember", "y", "x"), abundance),
            "reconstruction_rmse": (("y", "x"), rmse),
            "endmember_spectrum": (("endmember", "band"), spectra.astype("float32")),
        },
        coords=coords,
        attrs=attrs,
    )
    if georef == "north_up":
        ds = ds.rio.write_crs("EPSG:32650").rio.write_transform(NORTH_UP)
    elif georef == "rotated":
        ds = ds.rio.write_crs("EPSG:32611").rio.write_transform(ROTATED)
    elif georef == "rpc":
        ds.attrs["rpcs"] = fake_rpc(height, width).to_dict()
    return ds


@pytest.fixture
def fakes() -> SimpleNamespace:
    """The helpers above, for tests (conftest modules are not importable by name)."""
    return SimpleNamespace(make_result=make_result, fake_rpc=fake_rpc, ramp=ramp,
                           NORTH_UP=NORTH_UP, ROTATED=ROTATED, NAMES=NAMES)
