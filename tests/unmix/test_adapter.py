"""The adapter between cubes and models: sampling and block-wise application."""

from __future__ import annotations

import numpy as np
import pytest

from hsu_geo.ingest import open_scene
from hsu_geo.ingest.scan import scan_cube, valid_rows
from hsu_geo.unmix.adapter import apply_unmixer
from hsu_geo.unmix.classical.model import FclsUnmixer
from tests.unmix.scenes import TRANSFORM, linear_scene, write_scene


@pytest.fixture
def scene(tmp_path):
    cube, E, A, wl = linear_scene(rows=40, cols=30)
    cube[:, 5, 7] = np.nan  # NaN pixel
    cube[3, 9, 9] = np.nan  # NaN in one band only
    cube[:, 20, 20] = -9999  # nodata pixel
    path = write_scene(tmp_path / "scene.tif", cube, wl, nodata=-9999)
    return open_scene(path, chunks=16), E, A


def test_scan_samples_deterministically_and_counts_bands_exactly(scene):
    cube, _, _ = scene
    a, stats = scan_cube(cube, 500, seed=3)
    b, _ = scan_cube(cube, 500, seed=3)
    c, _ = scan_cube(cube, 500, seed=4)
    assert a.shape == (500, cube.sizes["band"])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.isfinite(valid_rows(a)).all()
    expected = np.isfinite(cube.values).sum(axis=(1, 2))
    np.testing.assert_array_equal(stats.count, expected)
    np.testing.assert_allclose(stats.maximum, np.nanmax(cube.values, axis=(1, 2)))


def test_scan_keeps_every_pixel_of_a_small_scene(scene):
    cube, _, _ = scene
    Y, _ = scan_cube(cube, 10_000)
    assert Y.shape[0] == 40 * 30 - 2  # all-NaN pixels are not sampled
    assert valid_rows(Y).shape[0] == 40 * 30 - 3


def test_apply_unmixer_recovers_abundances_and_keeps_nodata(scene):
    cube, E, A = scene
    model = FclsUnmixer()
    model.fit(np.empty((0, E.shape[1])), E)
    ds = apply_unmixer(cube, model, ["a", "b", "c", "d"])
    assert ds["abundance"].dims == ("endmember", "y", "x")
    assert list(ds["endmember"].values) == ["a", "b", "c", "d"]
    assert ds["abundance"].chunks is not None  # still lazy
    est = ds["abundance"].values
    for y, x in ((5, 7), (9, 9), (20, 20)):
        assert np.isnan(est[:, y, x]).all()
        assert np.isnan(ds["reconstruction_rmse"].values[y, x])
    ok = np.isfinite(est).all(axis=0)
    assert ok.sum() == 40 * 30 - 3
    np.testing.assert_allclose(est[:, ok], A[:, ok], atol=1e-4)
    assert np.nanmax(ds["reconstruction_rmse"].values) < 1e-4
    assert ds.rio.crs.to_epsg() == 32611
    assert ds.rio.transform() == TRANSFORM
    np.testing.assert_allclose(ds["endmember_spectrum"].values, E, rtol=1e-6)
    np.testing.assert_array_equal(ds["band"].values, cube["band"].values)


def test_kernel_gives_the_same_result_for_any_chunk_layout():
    from hsu_geo.unmix import adapter

    rng = np.random.default_rng(3)
    M = rng.random((4, 30)).astype("float32")
    A = rng.dirichlet(np.ones(4), size=(37, 23)).astype("float32")
    cube = (A @ M + rng.normal(0, 1e-3, (37, 23, 30))).astype("float32")  # (h, w, L)
    cube[5, 7] = np.nan
    cube[9, :, 3] = np.nan
    unmixer = FclsUnmixer()
    unmixer.fit(cube.reshape(-1, 30), M)
    pixel_major = adapter._unmix_block(cube, unmixer, 4)
    band_major = adapter._unmix_block(
        np.ascontiguousarray(cube.transpose(2, 0, 1)).transpose(1, 2, 0), unmixer, 4)
    np.testing.assert_array_equal(pixel_major, band_major)
    assert np.isnan(pixel_major[5, 7]).all() and np.isnan(pixel_major[9]).all()
    ok = np.isfinite(cube).all(-1)
    np.testing.assert_allclose(pixel_major[ok][:, :4], A[ok], atol=0.02)
    resid = cube[ok] - pixel_major[ok][:, :4] @ M
    np.testing.assert_allclose(pixel_major[ok][:, 4], np.sqrt((resid ** 2).mean(1)), rtol=1e-4)
