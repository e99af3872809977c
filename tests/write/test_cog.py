"""COG writer: layout, metadata, georeferencing (north-up, rotated, RPC), streaming memory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import RPCTransformer
from rasterio.warp import transform as warp_points

from hsu_geo.errors import OutputExistsError
from hsu_geo.write.cog import (
    SourceGrid,
    rpc_utm_grid,
    source_grid,
    utm_crs,
    write_cog,
)

REPO = Path(__file__).resolve().parents[2]


def assert_cog(src: rasterio.io.DatasetReader) -> None:
    """The checks `rio cogeo validate` would make that rasterio exposes."""
    assert src.driver == "GTiff"
    assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "ZSTD"
    assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
    assert src.profile["tiled"] and src.block_shapes[0] == (512, 512)
    assert set(src.dtypes) == {"float32"}
    assert math.isnan(src.nodata)
    if max(src.width, src.height) > 512:
        ovr = src.overviews(1)
        assert ovr and ovr[0] == 2
        assert max(src.width, src.height) / ovr[-1] <= 512  # smallest overview < one tile


def test_north_up_cog_layout_metadata_and_pixels(tmp_path: Path, fakes) -> None:
    ds = fakes.make_result(1100, 1300, chunk=512)
    path = tmp_path / "ab.tif"
    write_cog(ds["abundance"], path, units="fraction", tags={"HSU_MODEL": "fcls"},
              band_tags=[{"ENDMEMBER": n, "ENDMEMBER_INDEX": i + 1}
                         for i, n in enumerate(fakes.NAMES)])
    with rasterio.open(path) as src:
        assert_cog(src)
        assert src.count == 3
        assert src.descriptions == tuple(fakes.NAMES)
        assert src.units == ("fraction",) * 3
        assert src.tags()["HSU_MODEL"] == "fcls"
        assert src.tags(2)["ENDMEMBER"] == "alunite" and src.tags(2)["ENDMEMBER_INDEX"] == "2"
        assert "STATISTICS_MEAN" in src.tags(1)
        assert src.crs == CRS.from_epsg(32650)
        assert src.transform == fakes.NORTH_UP
        data = src.read()
    expected = ds["abundance"].values
    np.testing.assert_array_equal(np.isnan(data), np.isnan(expected))
    np.testing.assert_array_equal(data[~np.isnan(data)], expected[~np.isnan(expected)])


def test_2d_numpy_input_and_refusal_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "one.tif"
    arr = np.arange(200 * 100, dtype="float32").reshape(200, 100)
    write_cog(arr, path, band_names=["rmse"], crs="EPSG:4326",
              transform=Affine(0.001, 0, 10, 0, -0.001, 50))
    with rasterio.open(path) as src:
        assert_cog(src)
        assert src.descriptions == ("rmse",)
        np.testing.assert_array_equal(src.read(1), arr)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match=r"one\.tif.*--overwrite"):
        write_cog(arr + 1, path, band_names=["rmse"])
    assert path.read_bytes() == before
    write_cog(arr + 1, path, band_names=["rmse"], overwrite=True, crs="EPSG:4326",
              transform=Affine(0.001, 0, 10, 0, -0.001, 50))
    with rasterio.open(path) as src:
        assert src.read(1)[0, 0] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.tif"]


def test_rotated_grid_is_written_north_up(tmp_path: Path, fakes) -> None:
    h, w = 300, 240
    ds = fakes.make_result(h, w, georef="rotated",
                           abundance=fakes.ramp(h, w, 128)[None].astype("float32"),
                           names=["ramp"])
    t = fakes.ROTATED
    path = tmp_path / "rot.tif"
    write_cog(ds["abundance"].assign_attrs(ds.attrs), path)
    with rasterio.open(path) as src:
        assert_cog(src)
        out_t, data = src.transform, src.read(1)
        assert src.crs == CRS.from_epsg(32611)
        bounds = src.bounds
    assert out_t.b == 0 and out_t.d == 0
    assert out_t.a == pytest.approx(math.hypot(t.a, t.d))
    assert out_t.e == pytest.approx(-math.hypot(t.b, t.e))
    corners = np.array([t @ (c, r) for c in (0, w) for r in (0, h)])
    px = out_t.a
    assert bounds.left == pytest.approx(corners[:, 0].min())
    assert bounds.top == pytest.approx(corners[:, 1].max())
    assert corners[:, 0].max() <= bounds.right < corners[:, 0].max() + px
    assert corners[:, 1].min() - px < bounds.bottom <= corners[:, 1].min()
    # every finite pixel holds the ramp value at its position in the rotated source grid
    rows, cols = np.nonzero(np.isfinite(data))
    xs, ys = out_t @ (cols + 0.5, rows + 0.5)
    u, v = ~t @ (xs, ys)  # fractional source column/row
    inner = (u > 1) & (u < w - 1) & (v > 1) & (v < h - 1)
    assert inner.sum() > 0.4 * h * w
    expected = (u - 0.5) + 2 * (v - 0.5)
    np.testing.assert_allclose(data[rows, cols][inner], expected[inner], atol=1e-3)
    outside = (u < -1) | (u > w + 1) | (v < -1) | (v > h + 1)
    assert outside.sum() == 0  # no values invented outside the footprint
    assert np.isfinite(data).sum() == pytest.approx(h * w, rel=0.02)  # rotation keeps area


def test_rpc_scene_is_orthorectified_to_utm(tmp_path: Path, fakes) -> None:
    h, w = 400, 300
    ds = fakes.make_result(h, w, georef="rpc", names=["ramp"],
                           abundance=fakes.ramp(h, w, 128)[None].astype("float32"))
    rpc = fakes.fake_rpc(h, w)
    grid = source_grid(ds)
    assert grid.rpcs is not None and grid.crs is None
    path = tmp_path / "ortho.tif"
    write_cog(ds["abundance"].assign_attrs(ds.attrs), path)
    with rasterio.open(path) as src:
        assert_cog(src)
        assert src.crs == CRS.from_epsg(32648)  # lon 102.59 E -> zone 48 N
        assert src.res == (30.0, 30.0)
        assert src.rpcs is None
        bounds, out_t, data = src.bounds, src.transform, src.read(1)
    for v in bounds:
        assert v % 30 == 0  # snapped to the pixel size
    with RPCTransformer(rpc, RPC_HEIGHT=rpc.height_off) as tr:
        lon, lat = tr.xy([0, 0, h, h], [0, w, 0, w], offset="ul")
    cx, cy = warp_points("EPSG:4326", "EPSG:32648", lon, lat)
    assert bounds.left <= min(cx) < bounds.left + 30 and bounds.right - 30 < max(cx) <= bounds.right
    assert bounds.bottom <= min(cy) < bounds.bottom + 30 and bounds.top - 30 < max(cy) <= bounds.top
    # same ground area as the scene (the box is larger: UTM grid convergence tilts the scene)
    assert np.isfinite(data).sum() == pytest.approx(h * w, rel=0.02)
    # pixel values follow the RPC model: ramp at the RPC-inverted source position
    rows, cols = np.nonzero(np.isfinite(data))
    sel = slice(None, None, 97)
    xs, ys = out_t @ (cols[sel] + 0.5, rows[sel] + 0.5)
    lon, lat = warp_points("EPSG:32648", "EPSG:4326", xs, ys)
    with RPCTransformer(rpc, RPC_HEIGHT=rpc.height_off) as tr:
        r, c = tr.rowcol(lon, lat, op=lambda a: a)
    r, c = np.asarray(r, float), np.asarray(c, float)
    inner = (c > 1) & (c < w - 2) & (r > 1) & (r < h - 2)
    assert inner.sum() > 100
    expected = (c - 0.5) + 2 * (r - 0.5)  # pixel (i, j) holds j + 2i at its centre
    # GDAL approximates the RPC transform to 0.125 px; |gradient| of the ramp is sqrt(5)
    np.testing.assert_allclose(data[rows[sel], cols[sel]][inner], expected[inner], atol=0.3)


def test_utm_zone_formula() -> None:
    assert utm_crs(102.59, 24.38).to_epsg() == 32648
    assert utm_crs(-102.8, 32.3).to_epsg() == 32613  # GF5B W102.8 (Permian Basin)
    assert utm_crs(151.2, -33.9).to_epsg() == 32756
    assert utm_crs(180.0, 0.0).to_epsg() == 32660


def test_rpc_grid_resolution_rounds_to_metres(fakes) -> None:
    grid = SourceGrid(rpcs=fakes.fake_rpc(500, 400, gsd_m=29.6))
    target = rpc_utm_grid(grid, 500, 400)
    assert target.transform.a == 30.0 and target.transform.e == -30.0


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import dask.array as da
    from affine import Affine
    import hsu_geo.write.cog as cog
    from hsu_geo.write.cog import write_cog

    # GDAL's block cache is a fixed budget (cog.GDAL_CACHE_MB, 256 MB by default) that fills
    # with any large write; pin it small so what is measured is whether the array is buffered
    cog.GDAL_CACHE_MB = 32

    def status(key):  # MiB from /proc/self/status
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) / 1024

    def write(height, path):
        arr = da.fromfunction(lambda b, i, j: ((b + 1) * 0.37 + i * 1e-3 + j * 7e-4) % 1,
                              shape=(3, height, 4000), chunks=(3, 512, 512), dtype="float32")
        write_cog(arr, path, band_names=["a", "b", "c"], crs="EPSG:32650",
                  transform=Affine(30, 0, 500000, 0, -30, 4000000))

    write(1024, sys.argv[1] + ".warm.tif")  # pay one-off costs: imports, pools, GDAL init
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak-RSS high-water mark (Linux >= 4.0)
    t0 = time.perf_counter()
    write(4000, sys.argv[1])
    print(json.dumps({"grow_mib": status("VmHWM") - base, "seconds": time.perf_counter() - t0}))
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_large_lazy_array_is_streamed_not_buffered(tmp_path: Path) -> None:
    """Peak RSS grows far less than the 183 MiB array while writing 3 x 4000 x 4000 float32.

    Measured in a fresh process, after a small warm-up write, from a reset high-water mark
    (typically ~50 MiB: dask chunks in flight plus GDAL's 512-row overview strips).
    """
    path = tmp_path / "big.tif"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path)], env=env,
                         capture_output=True, text=True, check=True, timeout=600)
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    array_mib = 3 * 4000 * 4000 * 4 / 2**20
    assert stats["grow_mib"] < array_mib / 2, stats
    with rasterio.open(path) as src:
        assert_cog(src)
        assert src.shape == (4000, 4000) and src.overviews(1) == [2, 4, 8]


def test_dask_chunks_not_aligned_to_tiles(tmp_path: Path) -> None:
    arr = da.arange(3 * 700 * 650, dtype="float32").reshape(3, 700, 650).rechunk((2, 300, 333))
    path = tmp_path / "odd.tif"
    write_cog(arr, path, crs="EPSG:32650", transform=Affine(10, 0, 0, 0, -10, 7000))
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), arr.compute())
