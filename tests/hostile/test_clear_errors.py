"""Bad input and hostile conditions that used to end in an internal error or a misleading
message (issue 9): malformed scale factors and band tags, too few pixels for ``-k auto``,
values near float32 overflow, a full disk, and names too long for the file system. Each must
be one ``Error:`` line naming the value and the fix, with no output file left behind."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio._err import CPLE_AppDefinedError
from rasterio.errors import RasterioIOError

import hsu_geo.ingest.scan
import hsu_geo.write.outputs
from hsu_geo.errors import OutputError
from hsu_geo.write import cog
from hsu_geo.write.outputs import check_name_lengths, output_error_for
from tests.hostile.helpers import assert_nothing_written, invoke, one_line_error
from tests.ingest.fakes import write_envi, write_geotiff
from tests.unmix.scenes import linear_scene, write_scene


@pytest.fixture
def scene():
    cube, _, _, wl = linear_scene(rows=20, cols=20, k=3)
    return cube, wl


# -- 3, 4: scale factors and band tags --------------------------------------------------------
@pytest.mark.parametrize("value", ["abc", "1,2"])
def test_non_numeric_geotiff_scale_factor(tmp_path, scene, value):
    cube, wl = scene
    path = write_geotiff(tmp_path / "s.tif", cube, wavelengths_nm=wl,
                         tags={"reflectance_scale_factor": value})
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", path, "-k", "3", "-o", out))
    assert f"reflectance_scale_factor tag {value!r} is not a single number" in msg
    assert "e.g. 10000" in msg
    assert_nothing_written(out)


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_unusable_geotiff_scale_factor_is_named(tmp_path, scene, value):
    cube, wl = scene
    path = write_geotiff(tmp_path / "s.tif", cube, wavelengths_nm=wl,
                         tags={"reflectance_scale_factor": value})
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", path, "-k", "3", "-o", out))
    assert f"reflectance_scale_factor tag is {value}," in msg
    assert "must be a positive number" in msg and "e.g. 10000" in msg
    assert "nodata" not in msg
    assert_nothing_written(out)


@pytest.mark.parametrize("value", [0, -1])
def test_unusable_envi_scale_factor_is_named(tmp_path, scene, value):
    cube, wl = scene
    hdr = write_envi(tmp_path / "s.hdr", cube, wavelengths=wl, reflectance_scale_factor=value)
    msg = one_line_error(invoke("info", hdr))
    assert f"s.hdr: reflectance scale factor is {value}," in msg
    assert "must be a positive number" in msg


@pytest.mark.parametrize("value", ["ten", "10,11"])
def test_malformed_geotiff_fwhm_tag(tmp_path, scene, value):
    cube, wl = scene
    path = write_geotiff(tmp_path / "s.tif", cube, wavelengths_nm=wl, fwhm=np.full(wl.size, 10))
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(3, fwhm=value)
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", path, "-k", "3", "-o", out))
    assert f"band 3 tag fwhm={value!r} is not a single number" in msg
    assert_nothing_written(out)


def test_malformed_envi_data_ignore_value(tmp_path, scene):
    cube, wl = scene
    hdr = write_envi(tmp_path / "s.hdr", cube, wavelengths=wl,
                     extra={"data ignore value": "none"})
    msg = one_line_error(invoke("info", hdr))
    assert "s.hdr: data ignore value holds a non-numeric value" in msg


# -- 5: -k auto on a handful of pixels -------------------------------------------------------
@pytest.mark.parametrize("n_valid", [1, 2, 3])
def test_k_auto_with_too_few_valid_pixels(tmp_path, scene, n_valid):
    cube, wl = scene
    few = np.full_like(cube, np.nan)
    few[:, 0, :n_valid] = cube[:, 0, :n_valid]
    path = write_scene(tmp_path / "few.tif", few, wl)
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", path, "-k", "auto", "-o", out, "-q"))
    assert f"few: only {n_valid} valid pixels, too few to estimate the number of endmembers" \
        in msg
    assert "larger scene" in msg and "is larger than" not in msg
    if n_valid >= 2:
        assert "-k 2" in msg or "-k N" in msg
    assert_nothing_written(out)


# -- 6: values near float32 overflow ---------------------------------------------------------
def test_values_near_float32_overflow_are_named(tmp_path, scene):
    cube, wl = scene
    path = write_scene(tmp_path / "huge.tif", cube * np.float32(1e38), wl)
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", path, "-k", "3", "-o", out, "-q"))
    assert msg.startswith("Error: huge: band ")
    assert "far beyond any reflectance or radiance" in msg
    assert "nodata" in msg and "scale factor" in msg
    assert "NaN" not in msg
    assert_nothing_written(out)


def test_undeclared_fill_pixel_and_infinity_are_named(tmp_path, scene):
    cube, wl = scene
    fill = cube.copy()
    fill[:, 3, 4] = -3.4e38
    msg = one_line_error(invoke("unmix", write_scene(tmp_path / "fill.tif", fill, wl), "-k",
                                "3", "-o", tmp_path / "o1", "-q"))
    assert "values up to -3.4e+38" in msg and "declare it as nodata" in msg
    inf = cube.copy()
    inf[:, 5, 5] = np.inf
    msg = one_line_error(invoke("unmix", write_scene(tmp_path / "inf.tif", inf, wl), "-k",
                                "3", "-o", tmp_path / "o2", "-q"))
    assert "hold infinite values" in msg


def test_a_fill_band_that_bad_band_removal_drops_still_unmixes(tmp_path, scene):
    cube, wl = scene
    one = cube.copy()
    one[5] = -3.4e38  # one band of undeclared fill: dropped as a bad band, not an error
    res = invoke("unmix", write_scene(tmp_path / "band.tif", one, wl), "-k", "3", "-o",
                 tmp_path / "out", "-q")
    assert res.exit_code == 0, res.output


# -- 7: full disk, GDAL write failures -------------------------------------------------------
def _small_scene(tmp_path: Path, scene) -> Path:
    cube, wl = scene
    return write_scene(tmp_path / "s.tif", cube, wl)


def test_enospc_writing_a_sidecar(tmp_path, scene, monkeypatch):
    def full(path, *_a, **_k):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(hsu_geo.write.outputs, "write_endmember_csv", full)
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", _small_scene(tmp_path, scene), "-k", "3", "-o", out,
                                "-q"))
    assert msg == f"Error: no space left on device writing {out}; free space or choose " \
                  "another -o"
    assert_nothing_written(out)


def _gdal_write_failure(self, key, value):
    raise RasterioIOError("Write failed. See previous exception for details.") from \
        CPLE_AppDefinedError(3, 1, "TIFFAppendToStrip:Write error at scanline 0")


def test_gdal_write_failure_on_a_full_disk(tmp_path, scene, monkeypatch):
    # what GDAL raises when the disk fills up (measured on a full tmpfs): a bare "Write failed"
    monkeypatch.setattr(cog.WindowWriter, "__setitem__", _gdal_write_failure)
    real = shutil.disk_usage
    monkeypatch.setattr(cog.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=3 * 2**20))
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", _small_scene(tmp_path, scene), "-k", "3", "-o", out,
                                "-q"))
    assert msg == f"Error: no space left on device writing {out}; free space or choose " \
                  "another -o"
    assert_nothing_written(out)


def test_gdal_write_failure_with_free_space(tmp_path, scene, monkeypatch):
    monkeypatch.setattr(cog.WindowWriter, "__setitem__", _gdal_write_failure)
    real = shutil.disk_usage
    monkeypatch.setattr(cog.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=50 * 2**30))
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", _small_scene(tmp_path, scene), "-k", "3", "-o", out,
                                "-q"))
    assert msg == (f"Error: cannot write the outputs in {out} (Write failed. See previous "
                   "exception for details.); check free space and permissions, or choose "
                   "another -o")
    assert_nothing_written(out)


def test_input_read_failures_are_not_blamed_on_the_output(tmp_path):
    read = RasterioIOError("Read failed. See previous exception for details.")
    names = ["s_fcls_abundance.tif", "s_fcls_run.json"]
    assert output_error_for(read, tmp_path, names) is None
    assert output_error_for(ValueError("a bug"), tmp_path, names) is None
    assert output_error_for(OutputError("ours"), tmp_path, names) is None
    err = output_error_for(OSError(errno.ENOSPC, "No space left on device"), tmp_path, names)
    assert isinstance(err, OutputError) and "no space left on device" in str(err)


# -- 8: names too long for the file system ---------------------------------------------------
def test_long_scene_name_is_refused_before_any_computation(tmp_path, scene, monkeypatch):
    cube, wl = scene
    path = write_scene(tmp_path / ("n" * 230 + ".tif"), cube, wl)

    def scan(*_a, **_k):
        raise AssertionError("the scene was scanned before the names were checked")

    monkeypatch.setattr(hsu_geo.ingest.scan, "scan_cube", scan)
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", path, "-k", "3", "-o", out, "-q"))
    assert "is too long" in msg and "255" in msg
    assert "rename the scene file" in msg
    assert len(msg) < 400
    assert_nothing_written(out)


def test_check_name_lengths_counts_bytes_and_working_names(tmp_path):
    check_name_lengths(tmp_path, ["a" * 200 + ".csv"])  # fits, with its staging name
    with pytest.raises(OutputError, match=r"is too long.*260 bytes"):
        check_name_lengths(tmp_path, ["é" * 128 + ".csv"])  # 128 characters, 260 bytes
    # a .tif needs a longer scratch name while it is written ("<stem>.native.tif")
    check_name_lengths(tmp_path, ["t" * 220 + ".tif"])
    with pytest.raises(OutputError, match=r"\.native\.tif of \d+ bytes") as err:
        check_name_lengths(tmp_path, ["t" * 245 + ".tif"])  # 249 bytes: fits, its scratch not
    assert "rename the scene file" in str(err.value)
    with pytest.raises(OutputError, match=r"output folder name .* has 300 bytes"):
        check_name_lengths(tmp_path / ("d" * 300), ["a.csv"])
