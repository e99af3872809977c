"""Quicklook PNG from decimated data."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine
from matplotlib.image import imread

from hsu_geo.write.cog import write_cog
from hsu_geo.write.quicklook import decimate, read_decimated, write_quicklook


def test_quicklook_png(tmp_path: Path, fakes) -> None:
    ds = fakes.make_result(300, 260)
    ab = decimate(ds["abundance"], max_side=100)
    assert ab.shape == (3, 100, 87)
    path = write_quicklook(tmp_path / "q.png", ab, fakes.NAMES, ds["wavelength"].values,
                           ds["endmember_spectrum"].values, rmse=decimate(
                               ds["reconstruction_rmse"], 100), title="SCENE fcls")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 600
    assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 50  # not blank


def test_read_decimated_uses_small_reads(tmp_path: Path) -> None:
    arr = da.ones((2, 1500, 1200), chunks=(2, 512, 512), dtype="float32") * 0.5
    path = write_cog(arr, tmp_path / "a.tif", crs="EPSG:32650",
                     transform=Affine(30, 0, 0, 0, -30, 0))
    small = read_decimated(path, max_side=200)
    assert small.shape == (2, 188, 150)  # integer step 8 keeps the aspect
    np.testing.assert_allclose(small, 0.5)


def test_decimate_computes_only_strided_chunks() -> None:
    calls = []

    def block(x: np.ndarray) -> np.ndarray:
        if x.size > 1:  # not dask's meta probes
            calls.append(x.shape)
        return x

    arr = da.zeros((1, 2048, 2048), chunks=(1, 512, 512), dtype="float32").map_blocks(block)
    with dask.config.set(scheduler="sync"):
        out = decimate(xr.DataArray(arr, dims=("endmember", "y", "x")), max_side=2)
    assert out.shape == (1, 2, 2)
    assert len(calls) <= 4  # only the chunks holding the 2 x 2 sampled pixels
