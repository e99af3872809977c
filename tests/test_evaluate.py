"""Scoring unmix outputs against synth truth: matching, exact numbers, reconstruction, errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine

from hsu_geo.endmembers.library import SpectralLibrary, load_usgs_library
from hsu_geo.endmembers.library import write_endmember_csv as write_library_csv
from hsu_geo.errors import EndmemberError, InvalidSceneError, SceneNotFoundError
from hsu_geo.evaluate import evaluate_folder, find_truth
from hsu_geo.scoring import match_bands, reconstruction_scores
from hsu_geo.synth.datasets import DEFAULT_MINERALS, SynthConfig, parse_band_spec, write_datasets
from hsu_geo.unmix.metrics import recon_psnr, recon_re, recon_rmse, sid
from hsu_geo.write.tables import EndmemberTable, read_endmember_csv, write_endmember_csv

ROWS, COLS = 12, 10
SHUFFLE = [3, 0, 4, 1, 2]  # estimate j holds reference SHUFFLE[j]
KEPT = np.r_[1:20, 25:40]  # 0-based rows of the truth bands the "run" kept


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    (d,) = write_datasets(out, load_usgs_library(DEFAULT_MINERALS), parse_band_spec("400:2500:50"),
                          SynthConfig(mixings=("linear",), snrs_db=(60.0,), size=(ROWS, COLS)))
    with rasterio.open(d.truth_abundance) as src:
        A, profile = src.read().astype(float), src.profile
    return d, A, read_endmember_csv(d.truth_endmembers), profile


def write_run(folder, A, names, table, profile, *, run_id="scene_fake", scene=None):
    """Fake unmix outputs: abundance (k, H, W) GeoTIFF + endmember CSV (+ run.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    prof = {**profile, "count": A.shape[0], "dtype": "float32", "nodata": float("nan")}
    with rasterio.open(folder / f"{run_id}_abundance.tif", "w", **prof) as dst:
        dst.write(A.astype("float32"))
        for i, n in enumerate(names, 1):
            dst.set_band_description(i, n)
    write_endmember_csv(folder / f"{run_id}_endmembers.csv", table)
    if scene is not None:
        record = {"scene_id": "scene", "extra": {"scene": str(scene), "reader": "geotiff"},
                  "inputs": [], "config": {"options": {}}}
        (folder / f"{run_id}_run.json").write_text(json.dumps(record))
    return folder


def shuffled(dataset, spectra=None, A=None):
    """The truth in output naming, endmembers in SHUFFLE order, on the KEPT bands only."""
    _, A_true, table, _ = dataset
    M = table.spectra if spectra is None else spectra
    A = A_true if A is None else A
    names = [f"em_{j + 1}" for j in range(5)]
    out = EndmemberTable(tuple(names), table.band[KEPT], table.wavelength_nm[KEPT],
                         M[SHUFFLE][:, KEPT])
    return A[SHUFFLE], names, out


def test_perfect_output_scores_zero_and_finds_the_permutation(dataset, tmp_path):
    d, _, _, profile = dataset
    A, names, em = shuffled(dataset)
    write_run(tmp_path / "out", A, names, em, profile, scene=d.scene)
    (ev,) = evaluate_folder(tmp_path / "out", truth=str(d.scene.parent))
    assert ev.run_id == "scene_fake" and ev.band_matching == "band number"
    assert ev.n_bands == KEPT.size and ev.n_pixels == ROWS * COLS
    assert [e.reference for e in ev.endmembers] == list(DEFAULT_MINERALS)
    expected = [SHUFFLE.index(r) for r in range(5)]
    assert [e.estimate_band - 1 for e in ev.endmembers] == expected
    assert [e.estimate for e in ev.endmembers] == [names[j] for j in expected]
    assert ev.mean_sad_rad < 1e-6 and ev.mean_sid < 1e-9
    assert ev.mean_rmse < 1e-7 and ev.armse < 1e-7
    # 60 dB noise: the reconstruction error is the noise, PSNR ~ 60 dB + 10 log10(max²/mean²)
    rec = ev.reconstruction
    assert rec is not None and ev.reconstruction_scene == str(d.scene)
    assert rec.n_pixels == ROWS * COLS and rec.n_bands == KEPT.size
    sigma = d.info["noise_sigma"]
    assert rec.rmse == pytest.approx(sigma, rel=0.1)
    assert rec.psnr == pytest.approx(20 * math.log10(rec.max_value / rec.rmse))
    assert ev.model_recon_rmse is None  # no rmse.tif in this fake run


def test_perturbed_output_gives_the_expected_numbers(dataset, tmp_path):
    d, A_true, table, profile = dataset
    M = table.spectra.astype(float).copy()
    # reference 1 (calcite): rotated by exactly 0.1 rad on the kept bands
    m = M[1, KEPT] / np.linalg.norm(M[1, KEPT])
    u = M[0, KEPT] - (M[0, KEPT] @ m) * m
    u /= np.linalg.norm(u)
    M[1, KEPT] = 0.5 * (np.cos(0.1) * m + np.sin(0.1) * u)
    M[3] *= 2.0  # scaling leaves SAD at 0
    A = A_true.copy()
    A[0] += 0.1  # abundance error of 0.1 on reference 0 everywhere
    A_est, names, em = shuffled(dataset, spectra=M.astype("float32"), A=A)
    write_run(tmp_path / "out", A_est, names, em, profile)
    (ev,) = evaluate_folder(tmp_path / "out", truth_abundance=str(d.truth_abundance),
                            truth_endmembers=str(d.truth_endmembers), reconstruct=False)
    sad = [e.sad_rad for e in ev.endmembers]
    np.testing.assert_allclose(sad, [0, 0.1, 0, 0, 0], atol=2e-6)
    assert ev.mean_sad_rad == pytest.approx(0.02, abs=1e-6)
    rmse = [e.rmse for e in ev.endmembers]
    np.testing.assert_allclose(rmse, [0.1, 0, 0, 0, 0], atol=1e-6)
    assert ev.mean_rmse == pytest.approx(0.02, abs=1e-6)
    assert ev.armse == pytest.approx(math.sqrt(0.1**2 / 5), abs=1e-6)
    expected_sid = sid(table.spectra[1:2, KEPT], M[1:2, KEPT].astype("float32"))[0]
    assert ev.endmembers[1].sid == pytest.approx(expected_sid, rel=1e-4)
    assert ev.reconstruction is None
    payload = ev.to_dict()
    json.dumps(payload, allow_nan=False)
    assert payload["endmembers"][1]["sad_deg"] == pytest.approx(math.degrees(0.1), abs=1e-3)


def test_rmse_tif_and_scene_reconstruction(dataset, tmp_path):
    d, _, _, profile = dataset
    A, names, em = shuffled(dataset)
    out = write_run(tmp_path / "out", A, names, em, profile, scene=d.scene)
    with rasterio.open(out / "scene_fake_rmse.tif", "w",
                       **{**profile, "count": 1, "dtype": "float32"}) as dst:
        dst.write(np.full((1, ROWS, COLS), 0.02, "float32"))
    (ev,) = evaluate_folder(out, truth=str(d.scene.parent / "truth"))
    assert ev.model_recon_rmse == pytest.approx(0.02)
    assert ev.reconstruction is not None


def test_library_style_truth_csv_is_matched_by_wavelength(dataset, tmp_path):
    d, _, table, profile = dataset
    A, names, em = shuffled(dataset)
    write_run(tmp_path / "out", A, names, em, profile)
    lib = SpectralLibrary(list(table.names), table.wavelength_nm, table.spectra, None, "truth")
    truth = tmp_path / "truth"
    truth.mkdir()
    shutil.copy(d.truth_abundance, truth / "x_abundance.tif")
    write_library_csv(lib, truth / "x_endmembers.csv")
    (ev,) = evaluate_folder(tmp_path / "out", truth=str(truth), reconstruct=False)
    assert ev.band_matching == "wavelength" and ev.mean_sad_rad < 1e-6
    lib.wavelength_nm = lib.wavelength_nm + 1.0  # 1 nm off: no longer the same bands
    write_library_csv(lib, truth / "x_endmembers.csv")
    with pytest.raises(EndmemberError, match="another band grid"):
        evaluate_folder(tmp_path / "out", truth=str(truth), reconstruct=False)


def test_several_runs_are_each_evaluated_or_chosen(dataset, tmp_path):
    d, _, _, profile = dataset
    A, names, em = shuffled(dataset)
    write_run(tmp_path / "out", A, names, em, profile, run_id="scene_a")
    write_run(tmp_path / "out", A, names, em, profile, run_id="scene_b")
    evs = evaluate_folder(tmp_path / "out", truth=str(d.scene.parent), reconstruct=False)
    assert [e.run_id for e in evs] == ["scene_a", "scene_b"]
    (ev,) = evaluate_folder(tmp_path / "out", truth=str(d.scene.parent), run="scene_b",
                            reconstruct=False)
    assert ev.run_id == "scene_b"
    with pytest.raises(SceneNotFoundError, match="scene_a, scene_b"):
        evaluate_folder(tmp_path / "out", truth=str(d.scene.parent), run="scene_c")


def test_mismatched_grids_are_refused(dataset, tmp_path):
    d, _, _, profile = dataset
    A, names, em = shuffled(dataset)
    moved = {**profile, "transform": Affine(15.0, 0, 538015.0, 0, -15.0, 4142000.0)}
    write_run(tmp_path / "moved", A, names, em, moved)
    with pytest.raises(InvalidSceneError, match="grids differ"):
        evaluate_folder(tmp_path / "moved", truth=str(d.scene.parent), reconstruct=False)
    write_run(tmp_path / "small", A[:, :-1], names, em, {**profile, "height": ROWS - 1})
    with pytest.raises(InvalidSceneError, match="grids differ"):
        evaluate_folder(tmp_path / "small", truth=str(d.scene.parent), reconstruct=False)


def test_missing_inputs_are_reported(dataset, tmp_path):
    d, _, _, profile = dataset
    with pytest.raises(SceneNotFoundError, match="does not exist"):
        evaluate_folder(tmp_path / "nope", truth=str(d.scene.parent))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneNotFoundError, match="no unmix outputs"):
        evaluate_folder(tmp_path / "empty", truth=str(d.scene.parent))
    A, names, em = shuffled(dataset)
    write_run(tmp_path / "out", A, names, em, profile)
    truth = tmp_path / "truth"
    truth.mkdir()
    shutil.copy(d.truth_abundance, truth / "scene_abundance.tif")
    with pytest.raises(SceneNotFoundError, match=r"scene_endmembers\.csv is missing"):
        evaluate_folder(tmp_path / "out", truth=str(truth))
    with pytest.raises(SceneNotFoundError, match="truth file"):
        evaluate_folder(tmp_path / "out", truth_abundance=str(d.truth_abundance),
                        truth_endmembers=str(tmp_path / "missing.csv"))
    with pytest.raises(InvalidSceneError, match="go together"):
        evaluate_folder(tmp_path / "out", truth_abundance=str(d.truth_abundance))


def test_ambiguous_truth_folder_uses_the_scene_id(dataset, tmp_path):
    d, _, _, _ = dataset
    truth = tmp_path / "truth"
    shutil.copytree(d.truth_abundance.parent, truth)
    shutil.copy(d.truth_abundance, truth / "other_abundance.tif")
    shutil.copy(d.truth_endmembers, truth / "other_endmembers.csv")
    assert find_truth(truth, "scene").abundance.name == "scene_abundance.tif"
    with pytest.raises(InvalidSceneError, match="--truth-abundance"):
        find_truth(truth, "unknown")


def test_changed_scene_is_refused(dataset, tmp_path):
    d, _, _, profile = dataset
    A, names, em = shuffled(dataset)
    out = write_run(tmp_path / "out", A, names, em, profile, scene=d.scene)
    record = json.loads((out / "scene_fake_run.json").read_text())
    record["inputs"] = [{"path": str(d.scene), "sha256": "0" * 64}]
    (out / "scene_fake_run.json").write_text(json.dumps(record))
    with pytest.raises(InvalidSceneError, match="sha256"):
        evaluate_folder(out, truth=str(d.scene.parent))
    (ev,) = evaluate_folder(out, truth=str(d.scene.parent), reconstruct=False)
    assert ev.reconstruction is None


def test_blockwise_reconstruction_equals_the_metrics():
    rng = np.random.default_rng(0)
    Y, Y_hat = rng.random((50, 7)), rng.random((50, 7))
    r = reconstruction_scores([(Y[:20], Y_hat[:20]), (Y[20:20], Y_hat[20:20]),
                               (Y[20:], Y_hat[20:])])
    assert r.rmse == pytest.approx(recon_rmse(Y, Y_hat))
    assert r.psnr == pytest.approx(recon_psnr(Y, Y_hat))
    assert r.re == pytest.approx(recon_re(Y, Y_hat))
    assert (r.n_pixels, r.n_bands) == (50, 7)
    assert reconstruction_scores([(Y, Y)]).psnr == math.inf


def test_match_bands():
    wl = np.array([400.0, 410.0, 420.0])
    m = match_bands(np.array([3, 1]), wl[[2, 0]], np.array([1, 2, 3]), wl)
    assert m.method == "band number" and m.ref_index.tolist() == [2, 0]
    m = match_bands(None, np.array([420.3]), np.array([1, 2, 3]), wl)
    assert m.method == "wavelength" and m.ref_index.tolist() == [2]
    with pytest.raises(EndmemberError, match="another band grid"):
        match_bands(np.array([3]), np.array([425.0]), np.array([1, 2, 3]), wl)
    with pytest.raises(EndmemberError, match="not in the reference"):
        match_bands(np.array([4]), np.array([430.0]), np.array([1, 2, 3]), wl)
