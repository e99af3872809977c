"""--window / --bounds: the subset keeps its georeferencing and bad values are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from hsu_geo.errors import ConfigError
from hsu_geo.ingest.subset import PixelWindow, parse_bounds, parse_window, subset_cube
from hsu_geo.pipeline import open_scene

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "minerals_aviris_like.tif"


@pytest.fixture(scope="module")
def cube():
    return open_scene(SAMPLE, sensor="auto", chunks=512, wavelengths=None, scale=None)


def test_window_shifts_the_geotransform_and_keeps_values(cube) -> None:
    sub = subset_cube(cube, window=parse_window("3,5,7,15"))
    assert sub.sizes["y"] == 15 and sub.sizes["x"] == 7
    assert sub.rio.transform() == cube.rio.transform() @ Affine.translation(3, 5)
    assert sub.rio.crs == cube.rio.crs
    np.testing.assert_array_equal(sub.values, cube.values[:, 5:20, 3:10])
    assert sub.attrs["window"] == [3, 5, 7, 15]


def test_window_is_clipped_to_the_scene(cube) -> None:
    h, w = cube.sizes["y"], cube.sizes["x"]
    sub = subset_cube(cube, window=PixelWindow(w - 4, h - 2, 100, 100))
    assert (sub.sizes["x"], sub.sizes["y"]) == (4, 2)


def test_bounds_select_the_pixels_whose_centres_are_inside(cube) -> None:
    t = cube.rio.transform()
    # pixel columns 2..5 and rows 4..8: centres at c + (col + 0.5) * a
    left, right = t.c + 2 * t.a + 1, t.c + 6 * t.a - 1
    top, bottom = t.f + 4 * t.e - 1, t.f + 9 * t.e + 1
    sub = subset_cube(cube, bounds=parse_bounds(f"{left},{bottom},{right},{top}"))
    assert sub.attrs["window"] == [2, 4, 4, 5]
    x0, y0 = sub.rio.transform() @ (0, 0)
    assert (x0, y0) == t @ (2, 4)


def test_rpc_offsets_follow_the_window(cube) -> None:
    rpcs = {"line_off": 100.0, "samp_off": 50.0, "height_off": 0.0, "lat_off": 41.0}
    c = cube.copy()
    c.attrs = {**cube.attrs, "rpcs": rpcs}
    sub = subset_cube(c, window=PixelWindow(10, 20, 5, 5))
    assert sub.attrs["rpcs"]["line_off"] == 80.0 and sub.attrs["rpcs"]["samp_off"] == 40.0
    assert c.attrs["rpcs"]["line_off"] == 100.0  # the input is not changed
    with pytest.raises(ConfigError, match="sensor geometry"):
        subset_cube(c, bounds=(0.0, 0.0, 1.0, 1.0))


@pytest.mark.parametrize(("text", "match"), [
    ("1,2,3", "four"), ("a,b,c,d", "four"), ("-1,0,5,5", ">= 0"), ("0,0,0,5", ">= 1"),
    ("0.5,0,5,5", "whole numbers"),
])
def test_bad_windows_are_one_line_config_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_window(text)


def test_bad_bounds_and_misses_are_refused(cube) -> None:
    with pytest.raises(ConfigError, match="LEFT < RIGHT"):
        parse_bounds("10,0,5,5")
    with pytest.raises(ConfigError, match="do not overlap"):
        subset_cube(cube, bounds=(0.0, 0.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="starts outside"):
        subset_cube(cube, window=PixelWindow(10_000, 0, 5, 5))
    with pytest.raises(ConfigError, match="choose one"):
        subset_cube(cube, window=PixelWindow(0, 0, 5, 5), bounds=(0.0, 0.0, 1.0, 1.0))
