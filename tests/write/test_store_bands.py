"""Banded storing of the COG writer (:func:`hsu_geo.write.cog.store_in_bands`): same pixels as
one store, each block of a shared (stacked) kernel computed once, bands only for halo graphs
with several chunk rows."""

from __future__ import annotations

import threading
from pathlib import Path
from unittest import mock

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio

from hsu_geo.write import cog
from hsu_geo.write.cog import RasterSpec, SourceGrid, store_in_bands, write_cogs


def counted_stack(shape: tuple[int, int], chunks: int, k: int = 3,
                  halo: int = 2) -> tuple[da.Array, list[tuple[int, ...]]]:
    """A ``(k + 1, y, x)`` map_overlap output whose kernel records each block it computes."""
    calls: list[tuple[int, ...]] = []
    lock = threading.Lock()
    rng = np.random.default_rng(0)
    cube = da.from_array(rng.random((5, *shape), dtype=np.float32), chunks=(5, chunks, chunks))

    def kernel(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None:
            with lock:
                calls.append(tuple(block_info[None]["chunk-location"]))
        inner = block[:, halo:-halo, halo:-halo]
        smooth = block[:, 2 * halo:, 2 * halo:] + block[:, :-2 * halo, :-2 * halo]  # uses halo
        out = np.concatenate([inner[:k] + smooth[:k], inner.std(axis=0, keepdims=True)])
        return out.astype(np.float32)

    out = da.map_overlap(kernel, cube, depth={0: 0, 1: halo, 2: halo},
                         boundary={0: "none", 1: "reflect", 2: "reflect"}, trim=False,
                         dtype=np.float32, chunks=((k + 1,), cube.chunks[1], cube.chunks[2]))
    return out, calls


def test_bands_write_same_pixels_and_compute_each_block_once(tmp_path: Path) -> None:
    stacked, calls = counted_stack((70, 45), chunks=16)  # 5 chunk rows (last one short)
    with dask.config.set(scheduler="threads", num_workers=2):
        expected = stacked.compute()
        calls.clear()
        specs = [RasterSpec(stacked[:3], ["a", "b", "c"]), RasterSpec(stacked[3:], ["rmse"])]
        paths = [tmp_path / "abundance.tif", tmp_path / "rmse.tif"]
        with mock.patch.object(cog, "store_in_bands", wraps=store_in_bands) as spy, \
                mock.patch.object(da, "store", wraps=da.store) as store:
            write_cogs(list(zip(specs, paths, strict=True)), SourceGrid())
    assert spy.call_count == 1 and store.call_count == 5  # one store per chunk row
    # abundance and RMSE share the kernel: each of the 5 x 3 blocks is computed exactly once
    assert len(calls) == 15 and len(set(calls)) == 15
    with rasterio.open(paths[0]) as a, rasterio.open(paths[1]) as r:
        np.testing.assert_array_equal(a.read(), expected[:3])
        np.testing.assert_array_equal(r.read(), expected[3:])


@pytest.mark.parametrize(("rows", "band_rows", "halo", "stores"), [
    (16, 1, True, 1), (70, 1, True, 5), (70, 2, True, 3), (70, 5, True, 1), (70, 1, False, 1)])
def test_band_count(rows: int, band_rows: int, halo: bool, stores: int) -> None:
    arr = da.arange(rows * 9, dtype="float32").reshape(1, rows, 9).rechunk((1, 16, 4))
    if halo:
        arr = da.map_overlap(lambda b: b, arr, depth={0: 0, 1: 1, 2: 1}, boundary="reflect")
    target = np.zeros(arr.shape, np.float32)
    with mock.patch.object(da, "store", wraps=da.store) as store:
        store_in_bands([arr], [target], band_rows=band_rows)
    assert store.call_count == stores  # per-pixel (no halo) graphs keep one store
    np.testing.assert_array_equal(target, arr.compute())
