"""Bad-band detection: absorption windows, product flags, data checks on a pixel sample (empty,
constant, low-SNR bands), user --drop-bands/--keep-bands, and that only small windows are read."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from hsu_geo.cube import make_cube
from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.ingest import open_scene
from hsu_geo.ingest import rasterio_array as ra
from hsu_geo.ingest.badbands import (
    BadBandConfig,
    find_bad_bands,
    parse_band_selection,
    preprocess,
    sample_windows,
)
from tests.ingest.fakes import linear_wavelengths, write_geotiff

ATTRS = {"sensor": "FAKE", "product_id": "fake", "quantity": "reflectance", "units": "1",
         "scale_factor": 1.0, "calibration": "none", "source_files": ["memory"]}
NO_DATA_CHECKS = BadBandConfig(data_checks=False)


def _cube(values: np.ndarray, wavelength, good_band=None, chunk: int = 32):
    nb = values.shape[0]
    data = da.from_array(values.astype("float32"), chunks=(-1, chunk, chunk))
    return make_cube(data, band=np.arange(1, nb + 1), wavelength=wavelength,
                     good_band=good_band, attrs=ATTRS)


def _smooth_scene(nb: int, size: int = 64, noise=None, seed: int = 0) -> np.ndarray:
    """Smooth spatial patterns (different per band) plus white noise of std ``noise[b]``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([1000 + 200 * b + 50 * np.sin(2 * y + b) * np.cos(3 * x - b)
                     for b in range(nb)])
    sigma = np.ones(nb) if noise is None else np.asarray(noise, float)
    return base + rng.normal(size=base.shape) * sigma[:, None, None]


def _reasons(report) -> dict[int, str]:
    return {d["band"]: d["reason"] for d in report.dropped}


def test_absorption_windows():
    wl = np.array([450.0, 1000.0, 1339.0, 1340.0, 1400.0, 1460.0, 1500.0, 1850.0, 2000.0,
                   2450.0, 2480.0])
    cube = _cube(np.ones((wl.size, 4, 4)), wl)
    reasons = _reasons(find_bad_bands(cube, NO_DATA_CHECKS))
    assert reasons == {
        4: "absorption window 1340-1460 nm", 5: "absorption window 1340-1460 nm",
        6: "absorption window 1340-1460 nm", 8: "absorption window 1790-1960 nm",
        10: "beyond 2450 nm (detector edge, low SNR)",
        11: "beyond 2450 nm (detector edge, low SNR)",
    }


def test_custom_windows_and_product_flags():
    wl = linear_wavelengths(6, 500.0, 1000.0)
    cube = _cube(np.ones((6, 4, 4)), wl, good_band=[True, False, True, True, True, True])
    cfg = BadBandConfig(data_checks=False, windows_nm=((880.0, 920.0),))
    reasons = _reasons(find_bad_bands(cube, cfg))
    assert reasons == {2: "product bad-band list (bbl)", 5: "absorption window 880-920 nm"}
    ignore_flags = BadBandConfig(data_checks=False, windows_nm=(), use_product_flags=False)
    assert find_bad_bands(cube, ignore_flags).dropped == []


def test_report_entries_carry_band_and_wavelength():
    wl = np.array([500.0, 600.0, 1400.0, 700.0 + 1000])
    cube = _cube(np.ones((4, 4, 4)), wl)
    (entry,) = find_bad_bands(cube, NO_DATA_CHECKS).dropped
    assert entry == {"band": 3, "wavelength_nm": 1400.0,
                     "reason": "absorption window 1340-1460 nm"}


def test_data_checks_empty_constant_and_noisy_bands():
    nb = 12
    noise = np.ones(nb)
    noise[6] = 40.0  # band 7: far noisier than its neighbours
    values = _smooth_scene(nb, noise=noise)
    values[2] = 5.0  # band 3 constant
    values[9] = np.nan  # band 10 empty
    cube = _cube(values, linear_wavelengths(nb, 450.0, 1300.0))
    report = find_bad_bands(cube)
    reasons = _reasons(report)
    assert set(reasons) == {3, 7, 10}, reasons
    assert reasons[3] == "constant over the pixel sample"
    assert reasons[10].startswith("no valid value in")
    assert reasons[7].startswith("low SNR (")
    assert report.sample_pixels > 0


def test_snr_check_flags_nothing_on_uniform_noise():
    nb = 12
    cube = _cube(_smooth_scene(nb), linear_wavelengths(nb, 450.0, 1300.0))
    assert find_bad_bands(cube).dropped == []


def test_single_pixel_scene_is_not_constant():
    # one pixel cannot show that a band is constant; a 1x1 crop must keep its bands
    values = np.arange(1.0, 7.0).reshape(6, 1, 1)
    cube = _cube(values, linear_wavelengths(6, 450.0, 1300.0))
    assert find_bad_bands(cube).dropped == []


def test_nodata_pixels_do_not_make_bands_bad():
    nb = 8
    values = _smooth_scene(nb)
    values[:, :10, :] = np.nan  # a nodata margin
    values[3, 40, 40] = np.nan
    cube = _cube(values, linear_wavelengths(nb, 450.0, 1300.0))
    assert find_bad_bands(cube).dropped == []


def test_all_nodata_scene_is_an_error():
    cube = _cube(np.full((5, 16, 16), np.nan), linear_wavelengths(5, 450.0, 1300.0))
    with pytest.raises(InvalidSceneError, match="every pixel is nodata"):
        find_bad_bands(cube)


def test_too_few_bands_left_is_an_error():
    nb = 6
    cube = _cube(_smooth_scene(nb, 16), linear_wavelengths(nb, 450.0, 1300.0))
    with pytest.raises(InvalidSceneError, match=r"only 2 usable bands are left.*--keep-bands"):
        preprocess(cube, BadBandConfig(drop="1-4"))
    kept, _ = preprocess(cube, BadBandConfig(drop="1-3"))
    assert kept.sizes["band"] == 3


def test_drop_and_keep_bands():
    nb = 10
    wl = linear_wavelengths(nb, 1000.0, 1900.0)  # 1000, 1100, ..., 1900
    cube = _cube(_smooth_scene(nb, 16), wl, good_band=[True] * 8 + [False, True])
    cfg = BadBandConfig(data_checks=False, drop="1,2-3,1580-1620nm", keep="4,9,1400nm")
    reasons = _reasons(find_bad_bands(cube, cfg))
    # band 5 (1400 nm) sits in a water window but is forced back by "1400nm"; band 9 is
    # product-flagged but kept; band 4 is in no list so "4" in keep changes nothing
    assert reasons == {1: "user --drop-bands", 2: "user --drop-bands", 3: "user --drop-bands",
                       7: "user --drop-bands", 10: "absorption window 1790-1960 nm"}


def test_drop_bands_keeps_original_numbers_and_report():
    nb = 8
    values = _smooth_scene(nb, 16)
    cube = _cube(values, linear_wavelengths(nb, 1200.0, 1900.0), good_band=[False] + [True] * 7)
    cube.attrs["dropped_at_ingest"] = [{"band": 99, "wavelength_nm": 1.0, "reason": "x"}]
    kept, report = preprocess(cube, NO_DATA_CHECKS)
    # 1200, 1300, ..., 1900 nm: band 1 flagged, 3 (1400) and 7-8 (1800, 1900) in windows
    np.testing.assert_array_equal(kept["band"], [2, 4, 5, 6])
    np.testing.assert_allclose(kept["wavelength"], [1300.0, 1500.0, 1600.0, 1700.0])
    assert kept["good_band"].values.all()
    np.testing.assert_array_equal(kept.values, values[[1, 3, 4, 5]].astype("float32"))
    assert [d["band"] for d in kept.attrs["dropped_bands"]] == [99, 1, 3, 7, 8]
    assert [d["band"] for d in report.dropped] == [1, 3, 7, 8]


@pytest.mark.parametrize(("spec", "expected"), [
    ("3", [3]),
    ("1-3", [1, 2, 3]),
    ("3-1", [1, 2, 3]),
    (" 2 , 5-6 ", [2, 5, 6]),
    ("1340-1460nm", [5, 6]),
    ("1460-1340 NM", [5, 6]),
    ("1390nm", [5]),  # a single wavelength picks the nearest band
    ("1, 1000-1100nm, 8", [1, 2, 8]),
    ("", []),
])
def test_parse_band_selection(spec, expected):
    band = np.array([1, 2, 3, 5, 6, 8, 9])  # original numbers with gaps
    wl = np.array([1000.0, 1100.0, 1200.0, 1400.0, 1450.0, 1600.0, 1700.0])
    mask = parse_band_selection(spec, band, wl)
    assert band[mask].tolist() == expected


@pytest.mark.parametrize("spec", ["abc", "1-", "1..5", "5-7um", "-3", "1-2-3"])
def test_parse_band_selection_errors(spec):
    with pytest.raises(ConfigError, match="is not understood"):
        parse_band_selection(spec, np.arange(1, 5), np.arange(500.0, 900.0, 100.0))


def test_sample_windows_are_real_windows_and_seeded():
    values = np.random.default_rng(1).normal(size=(3, 100, 90))
    cube = _cube(values, [500.0, 600.0, 700.0])
    wins = sample_windows(cube, 9, 10, seed=0)
    assert len(wins) == 9
    again = sample_windows(cube, 9, 10, seed=0)
    flat = values.astype("float32")
    for win, win2 in zip(wins, again, strict=True):
        assert win.shape == (3, 10, 10)
        np.testing.assert_array_equal(win, win2)
        # every sampled window is a real window of the scene
        (y, x), = np.argwhere(flat[0] == win[0, 0, 0])
        np.testing.assert_array_equal(flat[:, y:y + 10, x:x + 10], win)
    big = sample_windows(cube, 4, 500, seed=0)  # windows never exceed the scene
    assert all(w.shape[0] == 3 and w.shape[1] <= 100 and w.shape[2] <= 90 for w in big)


def test_sampling_reads_only_small_windows(tmp_path, monkeypatch):
    nb, size, chunk = 4, 512, 256
    rng = np.random.default_rng(0)
    data = rng.integers(100, 1000, size=(nb, size, size)).astype("int16")
    path = write_geotiff(tmp_path / "big.tif", data, wavelengths_nm=[500, 600, 700, 800],
                         tiled=True, blocksize=256)
    cube = open_scene(path, chunks=chunk)
    reads: list[tuple[int, ...]] = []
    original = ra.WindowReader.__getitem__

    def spy(self, key):
        out = original(self, key)
        reads.append(out.shape)
        return out

    monkeypatch.setattr(ra.WindowReader, "__getitem__", spy)
    cfg = BadBandConfig()
    report = find_bad_bands(cube, cfg)
    assert report.sample_pixels == cfg.sample_windows * cfg.window ** 2
    pixels = [r[1] * r[2] for r in reads]
    assert reads and max(pixels) <= cfg.window ** 2, reads
    assert sum(pixels) <= cfg.sample_windows * cfg.window ** 2
    assert sum(pixels) / size ** 2 < 0.1
