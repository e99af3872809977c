"""The lazy window reader under every cube: indexing semantics, block-aligned band-complete
chunks, calibration inside the read, pickling, threads; and the Calibration object."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import pytest

from hsu_geo.ingest import rasterio_array as ra
from hsu_geo.ingest.calibration import Calibration
from hsu_geo.ingest.rasterio_array import WindowReader, lazy_raster
from tests.ingest.fakes import ramp, write_geotiff

NB, NY, NX = 5, 30, 26


@pytest.fixture
def tif(tmp_path):
    data = ramp(NB, NY, NX, "int16", start=-50)
    return write_geotiff(tmp_path / "r.tif", data, style=None), data


def _orthogonal(a: np.ndarray, key: tuple) -> np.ndarray:
    """``a[key]`` with each axis indexed independently (dask's and the reader's semantics)."""
    key = key + (slice(None),) * (a.ndim - len(key))
    for ax in range(a.ndim - 1, -1, -1):  # last axis first: dropping an axis shifts later ones
        a = a[(slice(None),) * ax + (key[ax],)]
    return a


@pytest.mark.parametrize("key", [
    (slice(None), slice(2, 9), slice(5, 17)),
    (slice(1, 4), slice(None), slice(None)),
    (slice(None), slice(0, 30, 3), slice(25, 0, -4)),
    (2, slice(3, 7), slice(1, 2)),
    (slice(None), 4, 7),
    (np.array([4, 0, 2]), slice(0, 5), np.array([20, 3, 3, 9])),
    (slice(None), slice(10, 10), slice(None)),
    (slice(0, 2),),
])
def test_window_reader_indexing_matches_numpy(tif, key):
    path, data = tif
    reader = WindowReader(str(path), list(range(1, NB + 1)), (NY, NX), "int16")
    out = reader[key]
    expected = _orthogonal(data, key)
    assert out.shape == expected.shape
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, expected)


def test_window_reader_band_subset_and_order(tif):
    path, data = tif
    reader = WindowReader(str(path), [5, 2, 3], (NY, NX), "int16")
    assert reader.shape == (3, NY, NX)
    np.testing.assert_array_equal(reader[:, 4:6, 7:9], data[[4, 1, 2], 4:6, 7:9])


def test_window_reader_calibration_follows_band_index(tif):
    path, data = tif
    gain = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    cal = Calibration.build(NB, gain=gain, offset=np.arange(NB), nodata=-50)
    reader = WindowReader(str(path), list(range(1, NB + 1)), (NY, NX), "int16", cal)
    assert reader.dtype == np.float32
    expected = data * gain[:, None, None] + np.arange(NB)[:, None, None]
    expected = expected.astype("float32")
    expected[data == -50] = np.nan
    np.testing.assert_array_equal(reader[:], expected)
    np.testing.assert_array_equal(reader[np.array([3, 1]), :2, :3], expected[[3, 1], :2, :3])
    np.testing.assert_array_equal(reader[4, 0, :], expected[4, 0, :])


def test_lazy_raster_chunks_and_values(tif):
    path, data = tif
    arr = lazy_raster(path, 16)
    assert arr.dtype == np.int16
    assert arr.chunks == ((NB,), (16, 14), (16, 10))
    np.testing.assert_array_equal(arr.compute(), data)


def test_lazy_raster_band_subset_with_calibration(tif):
    path, data = tif
    cal = Calibration.build(2, gain=[0.5, 0.25], scale_factor=2.0)
    arr = lazy_raster(path, 16, bands=[4, 2], calibration=cal)
    assert arr.dtype == np.float32 and arr.shape == (2, NY, NX)
    expected = data[[3, 1]] * np.array([0.25, 0.125])[:, None, None]
    np.testing.assert_array_equal(arr.compute(), expected.astype("float32"))


@pytest.mark.parametrize(("chunk", "expected"), [(100, 96), (48, 48), (40, 32), (20, 16),
                                                  (10, 10), (500, 128)])
def test_chunks_align_to_tiles(tmp_path, chunk, expected):
    data = ramp(2, 128, 112, "uint8")
    path = write_geotiff(tmp_path / "t.tif", data, style=None, tiled=True, blocksize=16)
    arr = lazy_raster(path, chunk)
    assert arr.chunks[1][0] == min(expected, 128)
    assert arr.chunks[0] == (2,)
    if expected >= 16:
        assert all(c % 16 == 0 for c in arr.chunks[1][:-1])
    np.testing.assert_array_equal(arr.compute(), data)


def test_graph_name_changes_with_file_and_options(tif, tmp_path):
    path, data = tif
    assert lazy_raster(path, 16).name == lazy_raster(path, 16).name
    assert lazy_raster(path, 16).name != lazy_raster(path, 32).name
    assert lazy_raster(path, 16).name != lazy_raster(path, 16, bands=[1]).name
    other = write_geotiff(tmp_path / "other.tif", data + 1, style=None)
    assert lazy_raster(path, 16).name != lazy_raster(other, 16).name


def test_reader_and_array_pickle(tif):
    path, _ = tif
    cal = Calibration.build(NB, gain=np.full(NB, 2.0), nodata=-50)
    arr = lazy_raster(path, 16, calibration=cal)
    clone = pickle.loads(pickle.dumps(arr))
    np.testing.assert_array_equal(clone.compute(), arr.compute())
    reader = pickle.loads(pickle.dumps(WindowReader(str(path), [1], (NY, NX), "int16", cal)))
    assert reader.calibration.nodata == -50


def test_threaded_reads(tif):
    path, data = tif
    arr = lazy_raster(path, 16)
    with dask.config.set(scheduler="threads", num_workers=4):
        np.testing.assert_array_equal(arr.sum(axis=0).compute(), data.sum(axis=0))
    reader = WindowReader(str(path), list(range(1, NB + 1)), (NY, NX), "int16")
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda r: reader[:, r:r + 3, :], range(0, NY, 3)))
    np.testing.assert_array_equal(np.concatenate(outs, axis=1), data)


def test_each_thread_has_its_own_dataset_handle(tif):
    # GDAL handles are not thread-safe: sharing one between dask threads gives short reads
    path, _ = tif
    handles = {}
    barrier = threading.Barrier(2)  # both threads alive at once: two distinct threads

    def grab(i):
        barrier.wait(timeout=10)
        handles[i] = ra._dataset(str(path))
        return ra._dataset(str(path)) is handles[i]  # and it is reused within the thread

    with ThreadPoolExecutor(2) as pool:
        reused = list(pool.map(grab, [0, 1]))
    assert all(reused)
    assert handles[0] is not handles[1]


def test_nothing_opened_until_compute(tmp_path):
    data = ramp(2, 8, 8)
    path = write_geotiff(tmp_path / "gone.tif", data, style=None)
    arr = lazy_raster(path, 16)
    path.unlink()  # the header was read; pixels are read only at compute time
    with pytest.raises(Exception, match=r"gone\.tif"):
        arr.compute()


# --- Calibration ----------------------------------------------------------------------------

def test_calibration_build_folds_scale_factor():
    cal = Calibration.build(3, gain=[1.0, 2.0, 4.0], offset=[10.0, 20.0, 40.0], scale_factor=10)
    np.testing.assert_allclose(cal.gain, [0.1, 0.2, 0.4])
    np.testing.assert_allclose(cal.offset, [1.0, 2.0, 4.0])
    only_scale = Calibration.build(2, scale_factor=4)
    np.testing.assert_allclose(only_scale.gain, [0.25, 0.25])
    assert only_scale.offset is None
    identity = Calibration.build(2)
    assert identity.gain is None and identity.offset is None
    with pytest.raises(ValueError):
        Calibration.build(3, gain=[1.0, 2.0])


def test_calibration_call():
    raw = np.array([[[1, -9999], [3, 0]], [[5, -9999], [0, 0]]], dtype="int16")
    cal = Calibration.build(2, gain=[2.0, 10.0], offset=[1.0, 0.0], nodata=-9999,
                            zero_is_nodata=True)
    out = cal(raw)
    assert out.dtype == np.float32
    expected = np.array([[[3, np.nan], [7, np.nan]], [[50, np.nan], [0, np.nan]]], "float32")
    np.testing.assert_array_equal(out, expected)
    assert raw[0, 0, 1] == -9999  # input untouched


def test_calibration_nan_nodata_propagates():
    raw = np.array([[[1.0, np.nan]]], dtype="float32")
    out = Calibration.build(1, gain=[2.0], nodata=float("nan"))(raw)
    np.testing.assert_array_equal(out, [[[2.0, np.nan]]])


# --- pixel-major reads, band push-down, GDAL options -------------------------------------------
@pytest.mark.parametrize("interleave", ["pixel", "band"])
@pytest.mark.parametrize("compress", [None, "deflate"])
@pytest.mark.parametrize("dtype", ["int16", "uint16", "int32", "float32"])
def test_reads_match_rasterio_for_layouts_types_and_gappy_subsets(tmp_path, interleave,
                                                                  compress, dtype):
    data = ramp(7, 40, 33, dtype, start=1)
    path = write_geotiff(tmp_path / "s.tif", data, style=None, interleave=interleave,
                         compress=compress, tiled=True, blocksize=16)
    cal = Calibration.build(7, gain=np.linspace(0.5, 2.0, 7), offset=np.arange(7.0),
                            nodata=float(data[2, 5, 5]))
    expected = (data * cal.gain[:, None, None] + cal.offset[:, None, None]).astype("float32")
    expected[data == data[2, 5, 5]] = np.nan
    for bands in ([1, 2, 3, 4, 5, 6, 7], [1, 2, 5, 6, 7], [7, 1, 4]):
        idx = np.array(bands) - 1
        # a reader's calibration is per reader band (lazy_raster builds it for its bands)
        reader = WindowReader(str(path), bands, (40, 33), dtype, ra._subset_calibration(cal, idx))
        out = reader[:, 3:37, 2:31]
        np.testing.assert_array_equal(out, expected[idx, 3:37, 2:31])
        raw = WindowReader(str(path), bands, (40, 33), dtype)[:, 3:37, 2:31]
        np.testing.assert_array_equal(raw, data[idx, 3:37, 2:31])
        # pixel-interleaved files come back pixel-major: (rows, cols, bands) contiguous memory
        if interleave == "pixel":
            assert out.transpose(1, 2, 0).flags.c_contiguous


def test_take_bands_reads_only_the_chosen_bands(tmp_path):
    data = ramp(6, 20, 18, "int16", start=-3)
    path = write_geotiff(tmp_path / "s.tif", data, style=None)
    cal = Calibration.build(6, gain=np.arange(1.0, 7.0), nodata=-3)
    arr = lazy_raster(path, 8, calibration=cal)
    index = [5, 0, 2, 3]
    sub = ra.take_bands(arr, index)
    assert sub.shape == (4, 20, 18) and sub.chunks[1:] == arr.chunks[1:]
    assert "getitem" not in " ".join(map(str, sub.dask.layers))  # selection is in the read
    reader = next(v for layer in sub.dask.layers.values() for v in layer.values()
                  if isinstance(v, WindowReader))
    assert reader.bands == [6, 1, 3, 4]
    np.testing.assert_array_equal(sub.compute(), arr.compute()[index])
    # arrays that did not come straight from a file are indexed by dask, same values
    derived = arr + 1
    np.testing.assert_array_equal(ra.take_bands(derived, index).compute(),
                                  arr.compute()[index] + 1)


def test_cube_take_bands_keeps_coords_and_pushes_down(tmp_path):
    from hsu_geo.cube import take_bands
    from hsu_geo.ingest import open_scene

    data = ramp(6, 12, 10, "int16", start=1)
    path = write_geotiff(tmp_path / "s.tif", data, wavelengths_nm=np.linspace(500, 1000, 6))
    cube = open_scene(path)
    sub = take_bands(cube, [4, 1])
    assert list(sub["wavelength"].values) == list(cube["wavelength"].values[[4, 1]])
    assert "getitem" not in " ".join(map(str, sub.data.dask.layers))
    np.testing.assert_array_equal(sub.values, cube.values[[4, 1]])


def test_gdal_read_options_are_set_in_every_reading_thread(tif, monkeypatch):
    import rasterio.env

    monkeypatch.delenv("GTIFF_DIRECT_IO", raising=False)
    path, _ = tif
    reader = WindowReader(str(path), list(range(1, NB + 1)), (NY, NX), "int16")
    seen = []

    def read() -> None:
        reader[:, :2, :2]
        seen.append(rasterio.env.get_gdal_config("GTIFF_DIRECT_IO"))

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["YES", "YES"]


def test_calibration_in_place_on_pixels_equals_a_copy():
    rng = np.random.default_rng(1)
    raw = rng.integers(-5, 50, size=(70, 9, 4)).astype("float32")  # (rows, cols, bands)
    raw[3, 4] = 0  # an all-zero spectrum
    cal = Calibration.build(4, gain=[1.0, 2.0, 0.5, 4.0], offset=[1, 0, 0, 2], nodata=-5,
                            zero_is_nodata=True)
    expected = cal(raw.transpose(2, 0, 1)).transpose(1, 2, 0)
    inplace = raw.copy()
    cal.apply_pixels(inplace, inplace)
    np.testing.assert_array_equal(inplace, expected)
    assert np.isnan(inplace[3, 4]).all()
    assert np.isnan(inplace[raw == -5]).all()
