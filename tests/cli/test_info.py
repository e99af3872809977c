"""``hsu-geo info``: text and JSON reports on fake and real scenes, band options, and the
error contract (exit 1, one ``Error:`` line on stderr, no traceback unless -v)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.ingest.spectral_meta import OVERLAP_REASON
from tests.ingest.fakes import (
    enmap_like_wavelengths,
    write_enmap_l2a,
    write_envi,
    write_geotiff,
)

WL = np.array([450.0, 700.0, 1000.0, 1400.0, 1600.0, 1850.0, 2200.0, 2480.0])
BBL = [1, 0, 1, 1, 1, 1, 1, 1]
NY, NX = 20, 24


def _noisy(nb: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(1000, 10, size=(nb, NY, NX)).astype("int16")


@pytest.fixture
def scene(tmp_path):
    return write_geotiff(tmp_path / "scene.tif", _noisy(WL.size), wavelengths_nm=WL, bbl=BBL,
                         tags={"sensor": "FAKE", "quantity": "reflectance", "units": "1"})


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _assert_user_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_text_report(scene):
    result = _run("info", scene)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = result.stdout
    assert "Scene        scene  (geotiff reader, FAKE)" in out
    assert f"Size         8 bands x {NY} rows x {NX} cols" in out
    assert "CRS          EPSG:32633" in out
    assert "Quantity     reflectance [1]" in out
    assert "Bands        4 of 8 kept, 450.0-2200.0 nm" in out
    assert "Dropped      4 bands:" in out
    assert "band    2     700.0 nm  product bad-band list (bbl)" in out
    assert "band    4    1400.0 nm  absorption window 1340-1460 nm" in out
    assert "band    8    2480.0 nm  beyond 2450 nm" in out


def test_json_report(scene):
    result = _run("info", scene, "--json", "--chunk-size", "16")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec["reader"] == "geotiff"
    assert rec["shape"] == [8, NY, NX]
    assert rec["crs"] == "EPSG:32633"
    assert rec["bands_total"] == 8 and rec["bands_kept"] == 4
    assert rec["wavelength_nm"] == [450.0, 2200.0]
    assert rec["quantity"] == "reflectance" and rec["units"] == "1"
    assert rec["chunks"] == {"band": -1, "y": 16, "x": 16}
    assert rec["transform"] == [30.0, 0.0, 364095.0, 0.0, -30.0, 5809965.0]
    assert rec["sample_pixels"] > 0
    assert [d["band"] for d in rec["dropped"]] == [2, 4, 6, 8]
    for d in rec["dropped"]:
        assert set(d) == {"band", "wavelength_nm", "reason"}
        assert d["wavelength_nm"] == WL[d["band"] - 1]
        assert isinstance(d["reason"], str) and d["reason"]


def test_band_options(scene):
    result = _run("info", scene, "--json", "--drop-bands", "1", "--keep-bands", "1400nm,2")
    rec = json.loads(result.stdout)
    assert [d["band"] for d in rec["dropped"]] == [1, 6, 8]
    assert rec["dropped"][0]["reason"] == "user --drop-bands"
    assert rec["bands_kept"] == 5 and rec["wavelength_nm"] == [700.0, 2200.0]


def test_detector_overlap_counts_in_totals(tmp_path):
    wl = enmap_like_wavelengths(5, 6)
    folder = write_enmap_l2a(tmp_path, _noisy(11), wavelengths=wl, gain=1e-4, vnir=range(1, 6),
                             swir=range(6, 12))
    rec = json.loads(_run("info", folder, "--json").stdout)
    assert rec["reader"] == "enmap"
    assert rec["bands_total"] == 11 and rec["shape"][0] == 11
    overlap = [d for d in rec["dropped"] if d["reason"] == OVERLAP_REASON]
    assert [d["band"] for d in overlap] == [5]
    assert rec["bands_kept"] == 11 - len(rec["dropped"])


def test_wavelengths_option(tmp_path):
    path = write_geotiff(tmp_path / "bare.tif", _noisy(3), style=None)
    csv = tmp_path / "wl.csv"
    csv.write_text("wavelength_nm\n500\n600\n700\n")
    result = _run("info", path, "--json", "--wavelengths", csv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["wavelength_nm"] == [500.0, 700.0]


def test_ungeoreferenced_envi_is_quiet(tmp_path):
    # a real process: pytest would swallow Python warnings that a user sees on stderr
    hdr = write_envi(tmp_path / "plain.hdr", _noisy(4).astype("float32"),
                     wavelengths=[500.0, 600.0, 700.0, 800.0])
    proc = subprocess.run(
        [sys.executable, "-c", "from hsu_geo.cli.main import cli; cli()", "info", str(hdr),
         "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no NotGeoreferencedWarning on a valid scene without a map
    rec = json.loads(proc.stdout)
    assert rec["crs"] is None and rec["transform"] is None and rec["reader"] == "envi"


# --- user errors ------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    _assert_user_error(_run("info", tmp_path / "nope.tif"), "nope.tif", "no such file")


def test_truncated_envi(tmp_path):
    hdr = write_envi(tmp_path / "cut.hdr", _noisy(4), wavelengths=[500, 600, 700, 800])
    img = tmp_path / "cut.img"
    img.write_bytes(img.read_bytes()[:-10])
    _assert_user_error(_run("info", hdr), "truncated", "re-download")


def test_no_wavelengths(tmp_path):
    path = write_geotiff(tmp_path / "bare.tif", _noisy(3), style=None)
    _assert_user_error(_run("info", path), "no band wavelengths", "--wavelengths")


def test_unknown_sensor(scene):
    line = _assert_user_error(_run("info", scene, "--sensor", "avhrr"), "unknown reader 'avhrr'")
    for name in ("envi", "enmap", "geotiff"):
        assert name in line


def test_bad_band_spec(scene):
    _assert_user_error(_run("info", scene, "--drop-bands", "1..3"), "'1..3' is not understood")


def test_too_few_bands_left(scene):
    _assert_user_error(_run("info", scene, "--drop-bands", "1-7"), "usable bands")


def test_verbose_shows_the_traceback(tmp_path):
    result = _run("info", "-v", tmp_path / "nope.tif")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_usage_error_is_exit_2(scene):
    assert _run("info").exit_code == 2
    assert _run("info", scene, "--chunk-size", "4").exit_code == 2


def test_readers_command():
    result = _run("readers", "--json")
    assert result.exit_code == 0
    names = {r["name"] for r in json.loads(result.stdout)}
    assert {"geotiff", "envi", "enmap"} <= names
    assert "geotiff" in _run("readers").stdout


# --- real scenes -------------------------------------------------------------------------------

def test_real_enmap_tile(shared_data):
    tif = shared_data / "scenes/enmap_potsdam_tiles/enmap_potsdam_tile_64_0.tif"
    result = _run("info", tif, "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec["shape"] == [224, 32, 32] and rec["bands_total"] == 224
    assert rec["crs"] == "EPSG:32633"
    bbl = {d["band"] for d in rec["dropped"] if d["reason"] == "product bad-band list (bbl)"}
    assert bbl == set(range(130, 136))
    assert 418 < rec["wavelength_nm"][0] < rec["wavelength_nm"][1] < 2450


def test_real_single_pixel_aviris_classic(shared_data):
    hdr = shared_data / ("scenes/aviris_classic_pycoal/"
                         "f080702t01p00r08rdn_c_sc01_ort_img_123_456.hdr")
    result = _run("info", hdr, "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec["quantity"] == "radiance" and rec["bands_total"] == 224
    assert rec["bands_kept"] > 150  # a 1x1 crop: no band is "constant"
