"""The scan's window cut-outs (``scan_cube_with_windows``): equal to slicing the cube at any
chunking, NaN kept, the sample and band statistics unchanged, bad requests refused."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from hsu_geo.errors import ConfigError
from hsu_geo.ingest.scan import WindowRequest, scan_cube, scan_cube_with_windows


def cube(chunk: int, arr: np.ndarray) -> xr.DataArray:
    return xr.DataArray(da.from_array(arr, chunks=(-1, chunk, chunk)), dims=("band", "y", "x"),
                        coords={"band": np.arange(1, arr.shape[0] + 1)})


@pytest.fixture(scope="module")
def arr() -> np.ndarray:
    a = np.random.default_rng(0).random((7, 45, 38)).astype(np.float32)
    a[:, 10:14, 5:9] = np.nan  # nodata inside some windows
    return a


@pytest.mark.parametrize("chunk", [8, 16, 64])
def test_windows_equal_slices_at_any_chunking(arr, chunk):
    rng = np.random.default_rng(1)
    req = WindowRequest(rng.integers(0, 45 - 12 + 1, 25), rng.integers(0, 38 - 12 + 1, 25),
                        12, 12)
    sample, stats, win = scan_cube_with_windows(cube(chunk, arr), 300, seed=2, windows=req)
    assert win.shape == (25, 7, 12, 12) and win.dtype == np.float32
    for i, (r, c) in enumerate(zip(req.rows, req.cols, strict=True)):
        np.testing.assert_array_equal(win[i], arr[:, r:r + 12, c:c + 12])
    s0, st0 = scan_cube(cube(chunk, arr), 300, seed=2)
    np.testing.assert_array_equal(sample, s0)
    np.testing.assert_array_equal(stats.count, st0.count)
    np.testing.assert_array_equal(stats.total, st0.total)


def test_no_request_returns_none_and_bad_requests_are_refused(arr):
    assert scan_cube_with_windows(cube(16, arr), 10)[2] is None
    for rows, cols in (([40], [0]), ([0], [30]), ([-1], [0])):
        with pytest.raises(ConfigError, match="window request outside the 45 x 38 scene"):
            scan_cube_with_windows(cube(16, arr), 10,
                                   windows=WindowRequest(np.array(rows), np.array(cols), 9, 9))
