"""SUnSAL sparse unmixing against the whole bundled library (``-m sunsal``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from scipy.optimize import nnls as scipy_nnls

from hsu_geo.cli.main import cli
from hsu_geo.endmembers.library import load_usgs_library, resample_to_bands, write_endmember_csv
from hsu_geo.errors import ConfigError, EndmemberError
from hsu_geo.synth.mixing import add_noise
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.classical import fcls, nnls
from hsu_geo.unmix.classical.sunsal import SunsalConfig, SunsalUnmixer, _candidates, sunsal
from tests.unmix.scenes import write_scene

PRESENT = ("alunite", "kaolinite", "calcite", "hematite", "muscovite")
WL = np.arange(400.0, 2401.0, 20.0)  # 101 bands, 10 nm FWHM


def library_scene(names=PRESENT, snr_db: float = 30.0, side: int = 40, seed: int = 0):
    """``(Y (side², L), A (side², k))``: Dirichlet(1) mixtures of library ``names`` + noise."""
    M = resample_to_bands(load_usgs_library(list(names)), WL, np.full(WL.size, 10.0))
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.ones(len(names)), size=side * side)
    return add_noise(A @ M, snr_db, rng), A


def whole_library() -> tuple[list[str], np.ndarray]:
    lib = load_usgs_library()
    return lib.names, resample_to_bands(lib, WL, np.full(WL.size, 10.0))


def test_five_library_minerals_are_the_top_five_of_the_whole_library() -> None:
    Y, _ = library_scene()
    names, M = whole_library()
    model = SunsalUnmixer()
    model.fit(Y.astype("float32"), M)
    info = model.fit_info["sunsal"]
    order = np.argsort(info["library_mean_fraction"])[::-1]
    assert {names[i] for i in order[:5]} == set(PRESENT)  # top 5 by total abundance
    assert {names[i] for i in model.selected} == set(PRESENT)  # and only those are kept
    assert model.endmembers.shape == (5, WL.size)
    F, s = model.abundances_and_brightness(Y.astype("float32"))
    assert F.shape == (Y.shape[0], 5) and s.shape == (Y.shape[0],)
    np.testing.assert_allclose(F.sum(axis=1), 1.0, atol=1e-5)
    assert float(np.median(s)) == pytest.approx(1.0, abs=0.1)  # library's own brightness
    model.config = SunsalConfig(abundance="sunsal")  # ADMM on the kept members instead
    F2, s2 = model.abundances_and_brightness(Y.astype("float32"))
    np.testing.assert_allclose(F2.sum(axis=1), 1.0, atol=1e-5)
    assert float(np.abs(F2 - F).mean()) < 0.02 and float(np.median(s2)) < float(np.median(s))


def _problem(seed: int = 3, k: int = 6, L: int = 30, n: int = 60):
    rng = np.random.default_rng(seed)
    M = np.abs(np.cumsum(rng.normal(size=(k, L)), axis=1)) + 0.5
    A = rng.dirichlet(np.full(k, 0.5), size=n)
    return A @ M + rng.normal(scale=0.05, size=(n, L)), M


def test_admm_matches_exact_references() -> None:
    Y, M = _problem()
    lam = 0.4
    # exact l1 reference: with a >= 0, ||a||_1 is linear, so the problem is an NNLS in k-space
    norms = np.linalg.norm(M, axis=1)
    R = np.linalg.cholesky(M @ M.T).T
    ref = np.array([scipy_nnls(R, np.linalg.solve(R.T, M @ y - lam * norms))[0] for y in Y])
    got, info = sunsal(Y, M, lam, tol=1e-7, max_iter=20000)
    assert info.converged == Y.shape[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (ref == 0).any() and np.array_equal(got == 0, ref == 0)  # same supports
    np.testing.assert_allclose(sunsal(Y, M, 0.0, tol=1e-7, max_iter=20000)[0], nnls(Y, M),
                               atol=1e-4)
    np.testing.assert_allclose(
        sunsal(Y, M, 0.0, sum_to_one=True, tol=1e-7, max_iter=20000)[0], fcls(Y, M), atol=1e-4)


def test_lambda_is_in_scene_units() -> None:
    Y, M = _problem(seed=4)
    a1, _ = sunsal(Y, M, 0.3, tol=1e-7, max_iter=20000)
    a2, _ = sunsal(100 * Y, M, 30.0, tol=1e-7, max_iter=20000)  # x100 scene, x100 lambda
    np.testing.assert_allclose(a2, 100 * a1, atol=1e-2)
    a3, _ = sunsal(Y, 10 * M, 0.3, tol=1e-7, max_iter=20000)  # x10 library: a / 10
    np.testing.assert_allclose(a3, a1 / 10, atol=1e-4)


def test_registry_settings_and_bad_settings() -> None:
    assert MODELS.get("sunsal") is SunsalUnmixer
    cfg = make_config(SunsalConfig, {"lam_noise": "2", "min_fraction": "0.05",
                                     "brightness": "auto"})
    assert cfg.lam_noise == 2.0 and cfg.brightness == "scaled"
    for bad in ({"min_fraction": "1.5"}, {"brightness": "shade"}, {"lam": "-1"},
                {"tol": "0"}, {"lambda": "1"}, {"abundance": "mesma"}):
        with pytest.raises(ConfigError):
            make_config(SunsalConfig, bad)
    with pytest.raises(ConfigError, match="fit the model"):
        SunsalUnmixer().abundances(np.ones((2, 3)))


def test_library_that_explains_nothing_is_refused() -> None:
    Y, _ = library_scene(side=12)
    _, M = whole_library()
    model = SunsalUnmixer(SunsalConfig(min_fraction=0.9))
    with pytest.raises(EndmemberError, match="kept no library member"):
        model.fit(Y, M)


# --------------------------------------------------------------------------------------------
# end to end


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert result.exit_code == 1, result.output
    assert lines and lines[-1].startswith("Error:") and "Traceback" not in result.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def scene_tif(tmp_path_factory):
    Y, _ = library_scene(side=40, seed=1)
    cube = Y.T.reshape(-1, 40, 40)
    return write_scene(tmp_path_factory.mktemp("sunsal") / "mix.tif", cube, WL)


def test_cli_selects_and_writes_only_the_present_minerals(scene_tif, tmp_path) -> None:
    res = invoke("unmix", scene_tif, "-m", "sunsal", "-o", tmp_path, "-q")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "mix_sunsal_run.json").read_text())
    assert set(record["endmembers"]) == set(PRESENT)
    fit = record["extra"]["fit"]["sunsal"]
    assert fit["library_size"] == len(load_usgs_library())
    assert set(fit["selected"]) == set(PRESENT) and fit["pruned"]
    # group candidates are reported by name (none needed: each mineral is in the library once)
    assert all(name in fit["library_mean_fraction"] for name in fit["group_candidates"])
    with rasterio.open(tmp_path / "mix_sunsal_abundance.tif") as src:
        assert src.count == 5
        assert {src.descriptions[i] for i in range(5)} == set(PRESENT)
    assert (tmp_path / "mix_sunsal_brightness.tif").exists()


def test_library_on_another_scale_is_refused_without_brightness(scene_tif, tmp_path) -> None:
    lib = load_usgs_library()
    lib.spectra = lib.spectra * 100.0  # percent reflectance
    csv = write_endmember_csv(lib, tmp_path / "percent.csv")
    msg = one_line_error(invoke("unmix", scene_tif, "-m", "sunsal", "--endmembers", csv,
                                "--set", "brightness=none", "-o", tmp_path / "no", "-q"))
    assert "divide its values by 100" in msg and "different units" in msg


def test_library_on_another_scale_is_absorbed_by_the_brightness(scene_tif, tmp_path) -> None:
    lib = load_usgs_library()
    lib.spectra = lib.spectra * 100.0  # percent reflectance
    csv = write_endmember_csv(lib, tmp_path / "percent.csv")
    res = invoke("unmix", scene_tif, "-m", "sunsal", "--endmembers", csv, "-o",
                 tmp_path / "yes", "-q")  # brightness=scaled absorbs the factor, with a warning
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "yes" / "mix_sunsal_run.json").read_text())
    assert set(record["endmembers"]) == set(PRESENT)
    assert any("different units" in w for w in record["extra"]["fit"]["warnings"])


def test_library_covering_too_few_bands(scene_tif, tmp_path) -> None:
    lib = load_usgs_library(list(PRESENT))
    lib.spectra[:, (lib.wavelength_nm < 1000) | (lib.wavelength_nm > 1500)] = np.nan
    csv = write_endmember_csv(lib, tmp_path / "narrow.csv")
    msg = one_line_error(invoke("unmix", scene_tif, "-m", "sunsal", "--endmembers", csv,
                                "-o", tmp_path / "o", "-q"))
    assert "too few bands" in msg and "covers" in msg


def test_fitted_model_read_back_keeps_its_lambda() -> None:
    Y, M = _problem(seed=5, n=200)
    model = SunsalUnmixer(SunsalConfig(min_fraction=0.01, prune=False, abundance="sunsal"))
    model.fit(Y, M)
    again = SunsalUnmixer(model.config)  # as hsu_geo.unmix.fitted_io rebuilds it
    again.endmembers = model.endmembers.copy()
    again.fit_info = json.loads(json.dumps(model.fit_info))
    np.testing.assert_array_equal(again.abundances(Y), model.abundances(Y))


def _bundle_library(rng: np.random.Generator) -> np.ndarray:
    """Rows: three distinct spectra, a near-duplicate of the first, ten near-duplicates of a
    fourth spectrum (a bundle, within 0.05 rad of each other) and one lone spectrum."""
    base = np.abs(rng.normal(size=(5, 40))) + 0.1
    first_twin = base[0] * (1 + 0.01 * rng.normal(size=40))
    bundle = base[3] * (1 + 0.01 * rng.normal(size=(10, 40)))
    return np.vstack([base[:3], first_twin, bundle, base[4]])


def test_a_material_spread_over_a_bundle_becomes_a_candidate() -> None:
    M = _bundle_library(np.random.default_rng(0))
    frac = np.r_[0.3, 0.25, 0.0, 0.025, np.full(10, 0.01), 0.015]
    frac[4 + 7] = 0.012  # the bundle's peak
    keep, grouped = _candidates(M, frac, 0.02, 0.1)
    assert keep == [0, 1, 3, 11] and grouped == [11]  # one member for the whole bundle
    # the per-member test alone loses the bundle (10 % of the scene in all)
    assert _candidates(M, frac, 0.02, 0.0) == ([0, 1, 3], [])
    # a member that reaches min_fraction alone stays even beside a larger near-duplicate
    assert 3 in keep and 0 in keep
    # the lone spectrum at 1.5 % is not a candidate: it has no near-duplicates to add up
    assert 14 not in keep


def test_near_duplicate_test_in_blocks_equals_one_block(monkeypatch) -> None:
    from hsu_geo.unmix.classical import sunsal as module

    M = _bundle_library(np.random.default_rng(1))
    frac = np.r_[0.3, 0.25, 0.0, 0.025, np.full(10, 0.01), 0.015]
    whole = _candidates(M, frac, 0.02, 0.1)
    monkeypatch.setattr(module, "_ANGLE_BLOCK", 3)
    assert _candidates(M, frac, 0.02, 0.1) == whole and whole[1]


def test_duplicate_angle_setting_is_checked() -> None:
    for bad in (-0.1, 2.0, float("nan")):
        with pytest.raises(ConfigError, match="duplicate_angle"):
            SunsalConfig(duplicate_angle=bad)


def test_jasper_ridge_bundle_library_keeps_every_class(shared_data) -> None:
    """Real scene with truth: the 529-spectrum Jasper Ridge bundle library (image pixels of
    four classes). Its classes spread over ~60 members each, so the per-member test alone
    keeps no dirt or road member (measured, benchmarks/sparse_real.py)."""
    from hsu_geo.datasets import load_jasper_ridge, load_jasper_ridge_bundles

    scene = load_jasper_ridge(shared_data)
    lib, cls = load_jasper_ridge_bundles(shared_data)
    Y = scene.cube.reshape(scene.cube.shape[0], -1).T[::10].astype("float32")  # 1000 px
    model = SunsalUnmixer(SunsalConfig(max_iter=500))
    model.fit(Y, lib)
    assert set(cls[model.selected]) == {0, 1, 2, 3}
    frac = np.asarray(model.fit_info["sunsal"]["library_mean_fraction"])
    alone, _ = _candidates(lib, frac, 0.02, 0.0)
    assert not {2, 3} & set(cls[alone])  # without the group rule: no dirt, no road
