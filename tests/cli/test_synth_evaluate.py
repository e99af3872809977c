"""`hsu-geo synth` -> `hsu-geo unmix` -> `hsu-geo evaluate` round trip, refusals, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio
import scipy.io
from affine import Affine
from click.testing import CliRunner

from hsu_geo.cli.main import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """A tiny linear 30 dB dataset, unmixed with FCLS (VCA endmembers, k = 5)."""
    root = tmp_path_factory.mktemp("rt")
    res = invoke("synth", root / "bench", "--size", 20, 20, "--mixing", "linear", "--snr", 30,
                 "-q")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(root / "bench" / "linear_snr30")
    dataset = root / "bench" / "linear_snr30"
    res = invoke("unmix", dataset / "scene.tif", "-m", "fcls", "-k", 5, "-o", root / "out", "-q")
    assert res.exit_code == 0, res.output
    return root, dataset


def test_synth_unmix_evaluate_round_trip(round_trip):
    root, dataset = round_trip
    res = invoke("evaluate", root / "out", "--truth", dataset, "--json")
    assert res.exit_code == 0, res.output
    (run,) = json.loads(res.stdout)["runs"]
    assert run["run_id"] == "scene_fcls" and run["band_matching"] == "band number"
    assert run["n_pixels"] == 400
    assert run["mean_sad_rad"] < 0.1
    assert run["mean_rmse"] < 0.1 and run["armse"] < 0.1
    assert sorted(e["reference"] for e in run["endmembers"]) == sorted(
        ["alunite", "calcite", "hematite", "olivine", "gypsum"])
    assert len({e["estimate_band"] for e in run["endmembers"]}) == 5
    rec = run["reconstruction"]
    assert rec is not None and rec["psnr_db"] > 20
    # FCLS reconstructs linearly: A·M on the scene equals the model's own rmse.tif value
    assert rec["rmse"] == pytest.approx(run["model_recon_rmse"], rel=1e-3)


def test_text_report(round_trip):
    root, dataset = round_trip
    res = invoke("evaluate", root / "out", "--truth", dataset / "truth")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "SAD rad" in out and "RMSE" in out and "aRMSE" in out and "PSNR" in out
    assert out.count("\n") >= 9


def test_synth_refuses_to_overwrite(round_trip):
    root, dataset = round_trip
    before = (dataset / "scene.tif").read_bytes()
    msg = one_line_error(invoke("synth", root / "bench", "--size", 20, 20, "--mixing", "linear",
                                "--snr", 30, "--seed", 1, "-q"))
    assert "--overwrite" in msg
    assert (dataset / "scene.tif").read_bytes() == before


def test_evaluate_bad_inputs(round_trip, tmp_path):
    root, dataset = round_trip
    assert "does not exist" in one_line_error(
        invoke("evaluate", tmp_path / "nope", "--truth", dataset))
    assert "does not exist" in one_line_error(
        invoke("evaluate", root / "out", "--truth", tmp_path / "nope"))
    truth = tmp_path / "truth"
    truth.mkdir()
    shutil.copy(dataset / "truth" / "scene_abundance.tif", truth)
    assert "missing" in one_line_error(invoke("evaluate", root / "out", "--truth", truth))
    # same truth, shifted by one pixel
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    shutil.copy(dataset / "truth" / "scene_endmembers.csv", shifted)
    with rasterio.open(dataset / "truth" / "scene_abundance.tif") as src:
        profile, data = src.profile, src.read()
    t = profile["transform"]
    profile["transform"] = Affine(t.a, t.b, t.c + t.a, t.d, t.e, t.f)
    with rasterio.open(shifted / "scene_abundance.tif", "w", **profile) as dst:
        dst.write(data)
    assert "grids differ" in one_line_error(
        invoke("evaluate", root / "out", "--truth", shifted, "--no-scene"))
    assert "--truth" in one_line_error(invoke("evaluate", root / "out"))


@pytest.mark.parametrize("args, text", [
    (("--mixing", "quadratic"), "mixing"),
    (("--snr", "ten"), "--snr"),
    (("--bands", "400-2500"), "--bands"),
    (("--library", "usgs:unobtainium"), "unobtainium"),
    (("--library", "ecostress:x"), "unknown library"),
    (("--bands", "2000:2800:50"), "--bands"),
])
def test_synth_bad_inputs(tmp_path, args, text):
    res = invoke("synth", tmp_path / "bench", "--size", 4, 4, *args, "-q")
    assert text in one_line_error(res)
    assert not list(tmp_path.rglob("*.tif"))


def test_synth_from_a_csv_library_on_a_file_grid(tmp_path):
    wl = np.arange(400.0, 1001.0, 5.0)
    csv = tmp_path / "lib.csv"
    rows = [f"{w},{0.2 + w / 5000},{0.8 - w / 2000},{0.5 + 0.1 * np.sin(w / 50)}" for w in wl]
    csv.write_text("wavelength_nm,dark,bright,wavy\n" + "\n".join(rows) + "\n")
    grid = tmp_path / "bands.csv"
    grid.write_text("wavelength_nm,fwhm_nm\n450,10\n500,10\n600,12\n700,12\n800,15\n900,15\n")
    res = invoke("synth", tmp_path / "bench", "--endmembers", csv, "--wavelengths", grid,
                 "--mixing", "bilinear", "--snr", "25", "--bilinear", "fan", "--size", 6, 5, "-q")
    assert res.exit_code == 0, res.output
    m = scipy.io.loadmat(tmp_path / "bench" / "bilinear_snr25" / "bilinear_snr25.mat",
                         squeeze_me=True)
    assert list(m["mineral_names"]) == ["dark", "bright", "wavy"]
    assert m["hyperspectral_cube"].shape == (6, 5, 6)
    np.testing.assert_allclose(m["wavelengths"], [450, 500, 600, 700, 800, 900])
    assert m["nonlinearity_params"].size == 0  # Fan: no per-pixel parameters
