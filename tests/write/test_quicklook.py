"""Quicklook PNG from decimated data: gaps at dropped bands, distinct colours, bounded size."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import matplotlib
import numpy as np
import xarray as xr
from affine import Affine
from matplotlib.image import imread

from hsu_geo.write.cog import write_cog
from hsu_geo.write.palette import endmember_colors
from hsu_geo.write.quicklook import (
    MAX_FIG_IN,
    MAX_MAPS,
    decimate,
    quicklook_figure,
    read_decimated,
    spectrum_breaks,
    value_label,
    write_quicklook,
)


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


def _lines(fig) -> list:
    return [line for ax in fig.axes for line in ax.get_lines()]


def test_spectra_break_at_dropped_bands() -> None:
    wl = np.arange(400.0, 2501.0, 10.0)
    band = np.arange(1, wl.size + 1)
    keep = ~((wl > 1340) & (wl < 1460)) & (band != 20)  # a water window and one single band
    breaks = spectrum_breaks(wl[keep], band[keep])
    assert breaks.sum() == 2  # one across the window, one across the single dropped band
    assert spectrum_breaks(wl[keep]).sum() == 1  # wavelength alone misses the 10 nm hole
    assert spectrum_breaks(np.array([400, 410, 420, 415, 425.0])).tolist() == \
        [False, False, True, False]  # second detector starting over
    k = 3
    fig = quicklook_figure(np.full((k, 20, 20), 1 / k, dtype="float32"), ["a", "b", "c"],
                           wl[keep], np.ones((k, keep.sum())), band=band[keep],
                           quantity="reflectance", units="1")
    lines = _lines(fig)
    assert len(lines) == k
    for line in lines:
        x = np.asarray(line.get_xdata(), dtype=float)
        assert np.isnan(x).sum() == 2  # the drawn line has two gaps
        i, j = np.flatnonzero(np.isnan(x))
        assert (x[i - 1], x[i + 1]) == (580, 600)  # band 20 (590 nm) dropped
        assert (x[j - 1], x[j + 1]) == (1340, 1460)
    spectra_ax = lines[0].axes
    assert spectra_ax.get_xlabel() == "wavelength (nm)"
    assert spectra_ax.get_ylabel() == "reflectance (unitless)"
    assert value_label("radiance", "W m-2 sr-1 um-1") == "radiance (W m-2 sr-1 um-1)"


def test_evenly_skipped_band_numbers_are_no_gap() -> None:
    wl = np.linspace(450, 2400, 12)
    assert not spectrum_breaks(wl, np.arange(12) * 2 + 5).any()


def test_many_endmembers_distinct_colours_bounded_size(tmp_path: Path) -> None:
    k = 84
    rng = np.random.default_rng(0)
    ab = rng.random((k, 60, 50)).astype("float32")
    ab[7] += 5.0  # the largest mean abundance: must be among the maps shown
    ab /= ab.sum(axis=0)
    wl = np.linspace(400, 2500, 50)
    names = [f"endmember {i}" for i in range(k)]
    fig = quicklook_figure(ab, names, wl, rng.random((k, 50)), rmse=ab[0])
    width, height = fig.get_size_inches()
    assert width <= MAX_FIG_IN[0] and height <= MAX_FIG_IN[1]
    lines = _lines(fig)
    assert len(lines) == MAX_MAPS
    colors = {matplotlib.colors.to_hex(line.get_color()) for line in lines}
    assert len(colors) == MAX_MAPS  # no repeats after 10
    titles = [ax.get_title() for ax in fig.axes]
    assert "8. endmember 7" in titles
    assert f"showing {MAX_MAPS} of {k} endmembers" in fig.get_suptitle()
    path = write_quicklook(tmp_path / "q84.png", ab, names, wl, rng.random((k, 50)), rmse=ab[0])
    h, w = imread(path).shape[:2]
    assert w <= 1600 and h <= 1600  # was 1440 x 7260 px


def test_twelve_endmembers_all_shown_with_distinct_colours() -> None:
    k = 12
    ab = np.full((k, 30, 30), 1 / k, dtype="float32")
    fig = quicklook_figure(ab, [f"m{i}" for i in range(k)], np.linspace(400, 2500, 20),
                           np.ones((k, 20)))
    colors = [matplotlib.colors.to_hex(line.get_color()) for line in _lines(fig)]
    assert colors == endmember_colors(k) and len(set(colors)) == k > 10
    assert not fig.get_suptitle()  # nothing hidden, nothing to say
