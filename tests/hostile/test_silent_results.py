"""Inputs that used to give a wrong answer with exit code 0 (issue 9): band metadata whose
count does not match the raster, and degenerate fits (zero scenes, duplicate endmembers,
constant abundances). Each is now refused with one line, or warned about on stderr and in
run.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio

from hsu_geo.errors import EndmemberError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.sanity import check_endmembers, fit_warnings
from tests.hostile.helpers import assert_nothing_written, invoke, one_line_error
from tests.ingest.fakes import linear_wavelengths, write_envi, write_envi_header, write_geotiff
from tests.unmix.scenes import linear_scene, write_scene


@pytest.fixture
def cube60() -> np.ndarray:
    return np.random.default_rng(0).random((60, 12, 10)).astype("float32")


# -- band metadata counts --------------------------------------------------------------------
@pytest.mark.parametrize("n_wl", [10, 80])
def test_envi_wavelength_count_must_equal_band_count(tmp_path, cube60, n_wl):
    hdr = write_envi(tmp_path / "scene.hdr", cube60, wavelengths=linear_wavelengths(n_wl))
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", hdr, "-k", "3", "-o", out, "-q"))
    assert f"scene.hdr: {n_wl} wavelengths for 60 bands" in msg
    assert "--wavelengths" in msg
    assert_nothing_written(out)


def test_envi_fwhm_count_must_equal_band_count(tmp_path, cube60):
    hdr = write_envi(tmp_path / "scene.hdr", cube60, wavelengths=linear_wavelengths(60),
                     fwhm=np.full(59, 10.0))
    msg = one_line_error(invoke("info", hdr))
    assert "59 fwhm values for 60 bands" in msg


def test_wavelength_sidecar_header_counts_are_checked(tmp_path, cube60):
    scene = write_geotiff(tmp_path / "bare.tif", cube60, style=None)
    side = write_envi_header(tmp_path / "bands.hdr", {
        "wavelength units": "Nanometers", "wavelength": list(linear_wavelengths(60)),
        "bbl": [1] * 10})
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", scene, "--wavelengths", side, "-k", "3", "-o", out))
    assert "bands.hdr: 10 bad-band (bbl) entries for 60 bands" in msg
    assert_nothing_written(out)


def test_geotiff_wavelength_tag_on_some_bands_only(tmp_path, cube60):
    path = write_geotiff(tmp_path / "partial.tif", cube60, wavelengths_nm=linear_wavelengths(60))
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(60, wavelength="")  # GDAL drops empty tags: band 60 has none
    msg = one_line_error(invoke("unmix", path, "-k", "3", "-o", tmp_path / "out"))
    assert "59 of 60 bands have a 'wavelength' tag (band 60 has none)" in msg


def test_geotiff_fwhm_tag_on_some_bands_only_is_not_dropped_silently(tmp_path, cube60):
    path = write_geotiff(tmp_path / "fw.tif", cube60, wavelengths_nm=linear_wavelengths(60),
                         fwhm=np.full(60, 10.0))
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(7, fwhm="")
    msg = one_line_error(invoke("info", path))
    assert "59 of 60 bands have a 'fwhm' tag (band 7 has none)" in msg


# -- degenerate fits -------------------------------------------------------------------------
@pytest.fixture
def scene():
    cube, E, _, wl = linear_scene(rows=20, cols=20, k=3)
    return cube, E, wl


def test_all_zero_scene_forced_through_keep_bands_is_refused(tmp_path, scene):
    cube, _, wl = scene
    path = write_scene(tmp_path / "zero.tif", np.zeros_like(cube), wl)
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", path, "-k", "3", "--keep-bands", f"1-{wl.size}",
                                "-o", out, "-q"))
    assert "zero: every valid pixel is 0 in every kept band" in msg
    assert "nothing to unmix" in msg
    assert_nothing_written(out)


def test_constant_scene_is_refused(tmp_path, scene):
    cube, _, wl = scene
    flat = np.broadcast_to(cube[:, :1, :1], cube.shape).copy()
    path = write_scene(tmp_path / "flat.tif", flat, wl)
    out = tmp_path / "out"
    msg = one_line_error(invoke("unmix", path, "-k", "3", "--keep-bands", f"1-{wl.size}",
                                "-o", out, "-q"))
    assert "have the same spectrum" in msg and "nothing to unmix" in msg
    assert_nothing_written(out)


def _endmember_csv(path: Path, wl: np.ndarray, spectra: list[np.ndarray]) -> Path:
    rows = ["wavelength_nm," + ",".join(f"m{i}" for i in range(len(spectra)))]
    rows += [f"{w}," + ",".join(f"{s[j]:.8g}" for s in spectra) for j, w in enumerate(wl)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_duplicate_endmembers_warn_on_stderr_and_in_run_json(tmp_path, scene, caplog):
    cube, E, wl = scene
    path = write_scene(tmp_path / "s.tif", cube, wl)
    csv = _endmember_csv(tmp_path / "em.csv", wl, [E[0], E[0], E[1]])
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        res = invoke("unmix", path, "--endmembers", csv, "-o", out, "-q")
    assert res.exit_code == 0, res.output
    expected = "s: endmembers m0 and m1 have the same spectrum"
    assert any(expected in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    record = json.loads((out / "s_fcls_run.json").read_text())
    assert any(expected in w for w in record["extra"]["fit"]["warnings"])


def test_distinct_endmembers_give_no_degeneracy_warning(tmp_path, scene):
    cube, _, wl = scene
    path = write_scene(tmp_path / "s.tif", cube, wl)
    out = tmp_path / "out"
    assert invoke("unmix", path, "-k", "3", "-o", out, "-q").exit_code == 0
    record = json.loads((out / "s_fcls_run.json").read_text())
    warnings = record["extra"]["fit"].get("warnings", [])
    assert not [w for w in warnings if "same spectrum" in w or "are the same at all" in w
                or "(near) zero" in w]


def _nnls():
    return MODELS.get("nnls")()


def test_constant_abundances_are_reported():
    # the scene varies only along e3, which neither endmember contains: every pixel unmixes
    # to the same 0.5 / 0.5 although the pixels differ
    e1, e2, e3 = np.eye(3, 20)
    t = np.linspace(0.0, 1.0, 50)[:, None]
    Y = (0.5 * e1 + 0.5 * e2 + t * e3).astype("float32")
    unmixer = _nnls()
    unmixer.fit(Y, np.stack([e1, e2]))
    found = fit_warnings(Y, unmixer, ["a", "b"], "scene")
    assert len(found) == 1
    assert "the abundances are the same at all 50 checked pixels (a=0.5, b=0.5)" in found[0]


def test_varying_abundances_and_a_zero_endmember():
    e1, e2, _ = np.eye(3, 20)
    f = np.linspace(0.0, 1.0, 50)[:, None]
    Y = (f * e1 + (1 - f) * e2).astype("float32")
    unmixer = _nnls()
    unmixer.fit(Y, np.stack([e1, e2]))
    assert fit_warnings(Y, unmixer, ["a", "b"], "scene") == []
    unmixer.fit(Y, np.stack([e1, e2, np.zeros(20)]))
    found = fit_warnings(Y, unmixer, ["a", "b", "c"], "scene")
    assert found == ["scene: endmember c is (near) zero; its abundance map is meaningless"]


def test_all_zero_endmembers_are_refused():
    Y = np.random.default_rng(1).random((30, 20)).astype("float32")
    with pytest.raises(EndmemberError, match="scene: every endmember spectrum is zero"):
        check_endmembers(np.zeros((3, 20)), Y, "scene")
    check_endmembers(np.eye(3, 20), Y, "scene")  # not all zero: no error
