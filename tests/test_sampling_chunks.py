"""The pixel sample (and so every result) depends on the scene and the seed only: not on the
chunk size or the dask scheduler (issue 14). The sample is the valid pixels with the smallest
hash of (global pixel index, seed)."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio

from hsu_geo.config import UnmixOptions
from hsu_geo.ingest import open_scene
from hsu_geo.ingest.scan import pixel_keys, scan_cube
from hsu_geo.pipeline import run_unmix
from tests.unmix.scenes import linear_scene, write_scene


def _scene(tmp_path: Path, rows: int = 60, cols: int = 50, nodata_rows: int = 0) -> Path:
    cube, _, _, wl = linear_scene(rows=rows, cols=cols, seed=1)
    cube = cube + np.random.default_rng(2).normal(0, 0.002, cube.shape).astype("float32")
    cube[:, rows - nodata_rows:, :] = -9999  # a nodata block (a rotated flight line's corner)
    return write_scene(tmp_path / "scene.tif", cube, wl, nodata=-9999)


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_sample_is_the_same_for_every_chunk_size_and_scheduler(tmp_path: Path,
                                                               scheduler: str) -> None:
    path = _scene(tmp_path)
    with dask.config.set(scheduler="threads"):
        reference, stats = scan_cube(open_scene(path, chunks=512), 300, seed=7)
    assert reference.shape[0] == 300  # 3000 pixels: the sample is smaller than the scene
    for chunks in (16, 24, 48):
        with dask.config.set(scheduler=scheduler):
            sample, other = scan_cube(open_scene(path, chunks=chunks), 300, seed=7)
        np.testing.assert_array_equal(sample, reference)
        np.testing.assert_array_equal(other.count, stats.count)
        if chunks % 16 == 0:  # noise pairs never cross a chunk border (PAIR_ALIGN)
            np.testing.assert_array_equal(other.diff_count, stats.diff_count)
            np.testing.assert_allclose(other.snr, stats.snr, rtol=1e-5)


def test_sample_is_a_seeded_uniform_draw_of_valid_pixels(tmp_path: Path) -> None:
    path = _scene(tmp_path, nodata_rows=10)
    cube = open_scene(path, chunks=16)
    full = cube.values.reshape(cube.sizes["band"], -1).T  # (pixels, bands)
    a, _ = scan_cube(cube, 400, seed=0)
    b, _ = scan_cube(cube, 400, seed=1)
    assert a.shape[0] == b.shape[0] == 400
    assert not np.array_equal(a, b)
    # every sampled row is a distinct valid pixel of the scene, in row-major order
    lookup = {row.tobytes(): i for i, row in enumerate(full)}
    where = np.array([lookup[row.tobytes()] for row in a])
    assert np.unique(where).size == 400 and np.all(np.diff(where) > 0)
    assert np.isfinite(full[where]).all()
    # uniform over the 50 x 50 valid pixels: each half holds about half the sample
    top = np.count_nonzero(where < 25 * 50)
    assert 150 < top < 250  # binomial(400, 0.5): mean 200, sd 10


def test_a_mostly_nodata_scene_still_gets_the_whole_sample(tmp_path: Path) -> None:
    path = _scene(tmp_path, rows=100, cols=50, nodata_rows=85)  # 85 % nodata
    samples = [scan_cube(open_scene(path, chunks=c), 500, seed=3)[0] for c in (16, 64)]
    assert samples[0].shape[0] == 500  # 750 valid pixels: a second read finds enough
    np.testing.assert_array_equal(samples[0], samples[1])


def test_pixel_keys_are_distinct_and_seeded() -> None:
    index = np.arange(200_000, dtype=np.int64)
    keys = pixel_keys(index, 0)
    assert np.unique(keys).size == index.size  # a bijection: no ties to break
    assert not np.array_equal(keys, pixel_keys(index, 1))
    np.testing.assert_array_equal(keys[5:9], pixel_keys(index[5:9].reshape(2, 2), 0).ravel())
    # keys spread over the whole 64-bit range (the sample threshold is a fraction of it)
    assert abs(np.mean(keys / 2.0**64) - 0.5) < 0.01


@pytest.mark.parametrize("extractor", ["vca", "nfindr"])
def test_abundances_do_not_depend_on_chunk_size_or_scheduler(tmp_path: Path,
                                                              extractor: str) -> None:
    path = _scene(tmp_path, rows=40, cols=40)
    results, endmembers = [], []
    for chunks, scheduler in ((512, "threads"), (16, "synchronous")):
        opts = UnmixOptions(model="fcls", k="4", extractor=extractor, chunk_size=chunks,
                            sample_size=300, seed=5)
        out = tmp_path / f"out_{chunks}_{scheduler}"
        with dask.config.set(scheduler=scheduler):
            result = run_unmix(path, out, opts)
        with rasterio.open(result["outputs"]["abundance"]) as src:
            results.append(src.read())
        endmembers.append(Path(result["outputs"]["endmembers_csv"]).read_text())
    # the same endmembers in the same order (before: other endmembers, differences up to 1.0)
    assert endmembers[1] == endmembers[0]
    # per pixel, the float32 band-space product rounds differently for another block shape
    # (OpenBLAS 0.3.31 sums blocks of <= 256 pixels in another order: a few ulp, measured), and
    # FCLS amplifies that by the endmembers' condition number: 8e-5 here, <= 1e-6 on the
    # previous install of this machine
    np.testing.assert_allclose(results[1], results[0], rtol=0, atol=5e-4)
