"""Nonlinear estimators ppnmm / gbm: recovery, the linearity gate, flags, bad input, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.endmembers.library import load_usgs_library
from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.synth.datasets import library_on_grid, parse_band_spec
from hsu_geo.synth.mixing import add_noise, bilinear_gbm, linear_mix, pnmm
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.adapter import _unmix_block
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.classical import fcls
from hsu_geo.unmix.classical.nonlinear import (
    fit_nonlinear,
    forward,
    linearity_gate,
    simplex_projection,
)
from hsu_geo.unmix.classical.nonlinear_model import GbmUnmixer, NonlinearConfig, PpnmmUnmixer
from hsu_geo.unmix.metrics import abundance_armse

MINERALS = ["alunite", "calcite", "hematite"]


@pytest.fixture(scope="module")
def M() -> np.ndarray:  # noqa: N802
    """(3, 43) USGS spectra on a 50 nm grid."""
    return library_on_grid(load_usgs_library(MINERALS), parse_band_spec("400:2500:50"))


def _scene(M: np.ndarray, mixing: str, n: int = 400, snr: float = 30.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.ones(M.shape[0]), n)
    if mixing == "linear":
        Y = linear_mix(A, M)
    elif mixing == "pnmm":
        Y = pnmm(A, M, xi=rng.uniform(-0.3, 0.3, n))
    else:
        Y = bilinear_gbm(A, M, rng=rng)
    return add_noise(Y, snr, rng).astype("float32"), A


@pytest.mark.parametrize(("kind", "mixing"), [("ppnmm", "pnmm"), ("gbm", "bilinear")])
def test_recovery_beats_fcls(M, kind, mixing):
    Y, A = _scene(M, mixing)
    res = fit_nonlinear(Y, M, kind)
    err_nl, err_fcls = abundance_armse(A, res.A), abundance_armse(A, fcls(Y, M))
    assert err_nl < 0.6 * err_fcls, (err_nl, err_fcls)
    assert res.converged.mean() > 0.95
    assert np.allclose(res.A.sum(axis=1), 1.0) and res.A.min() >= 0
    assert np.all(res.rss <= res.rss_linear * (1 + 1e-6))  # never worse than the FCLS start


def test_noise_free_parameters_recovered(M):
    rng = np.random.default_rng(3)
    A = rng.dirichlet(np.ones(3), 50)
    b = rng.uniform(-0.3, 0.3, 50)
    res = fit_nonlinear(pnmm(A, M, xi=b), M, "ppnmm", tol=1e-9, max_iter=100)
    assert np.abs(res.A - A).max() < 1e-4
    assert np.abs(res.theta[:, 0] - b).max() < 1e-3
    gamma = rng.uniform(0.2, 0.8, (50, 3))
    res = fit_nonlinear(forward("gbm", A, M, gamma), M, "gbm", tol=1e-9, max_iter=200)
    assert np.abs(res.A - A).max() < 1e-3


def test_gate_keeps_linear_scene_unchanged(M):
    Y, _ = _scene(M, "linear", n=600)
    for cls in (PpnmmUnmixer, GbmUnmixer):
        u = cls()
        u.fit(Y, M)
        gate = u.fit_info["nonlinear_gate"]
        assert gate["decision"] == "linear", gate
        A, extras, _ = u.abundances_and_extras(Y)
        np.testing.assert_allclose(A, fcls(Y, M), atol=1e-6)
        assert np.all(extras["fit_quality"] == 2) and np.all(extras["nonlinearity"] == 0)


def test_gate_takes_nonlinear_scene(M):
    Y, _ = _scene(M, "pnmm", n=600)
    use, ev = linearity_gate(Y, M, "ppnmm")
    assert use and ev["statistic"] > ev["needed"]
    assert 0.5 < ev["nonlinear_residual_over_noise"] < 1.5  # the fit reaches the noise level


def test_gate_refuses_when_noise_cannot_be_estimated(M):
    Y, _ = _scene(M, "pnmm", n=30)
    use, ev = linearity_gate(Y, M, "ppnmm")
    assert not use and "too few" in ev["reason"]


def test_nonconvergence_is_flagged_not_nan(M):
    Y, _ = _scene(M, "bilinear", n=200)
    u = GbmUnmixer(NonlinearConfig(gate="always", max_iter=1))
    u.fit(Y, M)
    A, extras, R = u.abundances_and_extras(Y)
    q = extras["fit_quality"]
    assert np.any(q == 1)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(R))
    assert np.all(np.isfinite(extras["nonlinearity"]))
    assert np.allclose(A.sum(axis=1), 1.0, atol=1e-5) and A.min() >= 0


def test_kernel_layout_and_spatial_prior(M):
    Y, _ = _scene(M, "pnmm", n=144)
    cube = Y.reshape(12, 12, -1).copy()
    cube[0, 0] = np.nan  # nodata stays NaN in every output
    for spatial in (0, 3):
        u = PpnmmUnmixer(NonlinearConfig(gate="always", spatial=spatial))
        u.fit(Y, M)
        out = _unmix_block(cube, u, 3, n_extra=2)
        assert out.shape == (12, 12, 3 + 1 + 2)
        assert np.isnan(out[0, 0]).all() and np.isfinite(out[1:, 1:]).all()
        assert set(np.unique(out[1:, 1:, 5])) <= {0.0, 1.0}


def test_simplex_projection():
    V = np.array([[0.5, 0.5, 0.5], [2.0, -1.0, 0.0], [0.2, 0.3, 0.5]])
    P = simplex_projection(V)
    np.testing.assert_allclose(P, [[1 / 3] * 3, [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])


def test_bad_input(M):
    Y, _ = _scene(M, "pnmm", n=10)
    with pytest.raises(EndmemberError, match="bands"):  # 2 + 3 parameters need 6 bands
        fit_nonlinear(Y[:, :5], M[:, :5], "gbm")
    with pytest.raises(EndmemberError, match="at least 2 endmembers"):
        fit_nonlinear(Y, M[:1], "ppnmm")
    with pytest.raises(EndmemberError, match="bands"):
        fit_nonlinear(Y, M[:, :-1], "ppnmm")
    bad = Y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidSceneError, match="NaN"):
        fit_nonlinear(bad, M, "ppnmm")
    with pytest.raises(ConfigError, match="gate"):
        make_config(NonlinearConfig, {"gate": "maybe"})
    with pytest.raises(ConfigError, match="spatial"):
        make_config(NonlinearConfig, {"spatial": "2"})
    with pytest.raises(EndmemberError, match="bands"):
        PpnmmUnmixer().fit(Y[:, :3], M[:, :3])


def test_registry():
    assert MODELS.get("ppnmm") is PpnmmUnmixer and MODELS.get("gbm") is GbmUnmixer
    assert PpnmmUnmixer.extra_outputs == ("nonlinearity", "fit_quality")


def test_cli_writes_extra_rasters(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["synth", str(tmp_path / "syn"), "--mixing", "pnmm", "--snr", "30",
                              "--size", "20", "20", "--library", "usgs:" + ",".join(MINERALS),
                              "--bands", "400:2500:50"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    scene = tmp_path / "syn" / "pnmm_snr30" / "scene.tif"
    out = tmp_path / "out"
    res = runner.invoke(cli, ["unmix", str(scene), "-m", "ppnmm", "-k", "3", "-o", str(out)],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with rasterio.open(out / "scene_ppnmm_nonlinearity.tif") as src:
        b = src.read(1)
    with rasterio.open(out / "scene_ppnmm_fit_quality.tif") as src:
        q = src.read(1)
    assert b.shape == (20, 20) and np.isfinite(b).all()
    assert set(np.unique(q)) <= {0.0, 1.0, 2.0}
    record = json.loads((out / "scene_ppnmm_run.json").read_text())
    gate = record["extra"]["fit"]["nonlinear_gate"]
    assert gate["decision"] in ("linear", "nonlinear") and "outputs" in record
    assert record["outputs"]["nonlinearity"] == "scene_ppnmm_nonlinearity.tif"


@pytest.mark.parametrize(("kind", "mixing"), [("ppnmm", "pnmm"), ("gbm", "bilinear")])
def test_moment_engine_matches_subspace_engine(M, kind, mixing):
    """Two independent formulations of the same objective and normal equations agree."""
    Y, _ = _scene(M, mixing, n=300, seed=5)
    ref = fit_nonlinear(Y.astype("float64"), M, kind, tol=1e-9, max_iter=100)
    mom = fit_nonlinear(Y.astype("float64"), M, kind, tol=1e-9, max_iter=100, _moments=True)
    np.testing.assert_allclose(mom.rss_linear, ref.rss_linear, rtol=1e-6)
    np.testing.assert_allclose(mom.rss, ref.rss, rtol=1e-4)
    assert np.median(np.abs(mom.A - ref.A).max(axis=1)) < 1e-5


def test_spatial_prior_lowers_the_gate_bar(M):
    Y, _ = _scene(M, "bilinear", n=600, snr=10.0, seed=2)
    _, plain = linearity_gate(Y, M, "ppnmm")
    _, smooth = linearity_gate(Y, M, "ppnmm", spatial=3)
    d, d0 = plain["explained_over_noise"], plain["explained_by_noise"]
    assert smooth["statistic"] == pytest.approx((d - d0) * 9 + d0)
    assert smooth["needed"] == pytest.approx(plain["needed"])


@pytest.mark.parametrize(("kind", "mixing"), [("ppnmm", "pnmm"), ("gbm", "bilinear")])
def test_compiled_engine_matches_numpy_engine(M, kind, mixing):
    """The compiled per-pixel kernel runs the numpy engine's algorithm: same iterates."""
    Y, _ = _scene(M, mixing, n=500, seed=7)
    Y[:50] = np.asarray(M)[0]  # pure pixels: abundances and γ at their bounds
    ref = fit_nonlinear(Y, M, kind, engine="numpy")
    fast = fit_nonlinear(Y, M, kind, engine="compiled", threads=1)
    np.testing.assert_allclose(fast.A, ref.A, atol=1e-7)
    np.testing.assert_allclose(fast.theta, ref.theta, atol=1e-5)
    np.testing.assert_allclose(fast.rss, ref.rss, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(fast.rss_linear, ref.rss_linear, rtol=1e-9)
    assert (fast.converged == ref.converged).all()
    assert np.mean(fast.iterations == ref.iterations) > 0.99


def test_compiled_engine_threads_do_not_change_results(M):
    Y, _ = _scene(M, "pnmm", n=999, seed=3)
    one = fit_nonlinear(Y, M, "ppnmm", threads=1)
    three = fit_nonlinear(Y, M, "ppnmm", threads=3)
    np.testing.assert_array_equal(one.A, three.A)
    np.testing.assert_array_equal(one.theta, three.theta)
    with pytest.raises(ConfigError, match="threads"):
        fit_nonlinear(Y, M, "ppnmm", threads=0)
    with pytest.raises(ConfigError, match="engine"):
        fit_nonlinear(Y, M, "ppnmm", engine="cuda")
    with pytest.raises(ConfigError, match="A0"):
        fit_nonlinear(Y, M, "ppnmm", A0=np.zeros((3, 3)))


def test_spatial_prior_does_not_depend_on_the_chunking(M, tmp_path):
    """The neighbourhood mean is computed with a halo: 8 x 8 chunks give the one-chunk maps."""
    from hsu_geo.ingest import open_scene
    from hsu_geo.unmix.adapter import apply_unmixer, neighbourhood_mean_cube
    from tests.unmix.scenes import write_scene

    Y, _ = _scene(M, "pnmm", n=24 * 20, snr=20.0, seed=4)
    cube = np.ascontiguousarray(Y.reshape(24, 20, -1).transpose(2, 0, 1))
    cube[:, 8, 8] = np.nan  # a nodata pixel on a chunk corner
    wl = np.arange(400.0, 2501.0, 50.0)
    path = write_scene(tmp_path / "s.tif", cube, wl)
    u = PpnmmUnmixer(NonlinearConfig(gate="always", spatial=3))
    u.fit(Y, M)
    maps = []
    for chunk in (8, 64):
        scene = open_scene(path, chunks=chunk)
        smooth = neighbourhood_mean_cube(scene, 3).values
        ds = apply_unmixer(scene, u, ["a", "b", "c"])
        maps.append((smooth, ds["abundance"].values, ds["nonlinearity"].values))
    (s8, a8, b8), (s1, a1, b1) = maps
    np.testing.assert_allclose(s8, s1, atol=1e-6, equal_nan=True)
    # an interior pixel: the plain 3 x 3 mean; the scene corner: its 4 in-scene pixels
    np.testing.assert_allclose(s1[:, 4, 4], cube[:, 3:6, 3:6].mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(s1[:, 0, 0], cube[:, :2, :2].mean(axis=(1, 2)), rtol=1e-5)
    assert np.isnan(s1[:, 8, 8]).all() and np.isfinite(s1[:, 7, 7]).all()
    np.testing.assert_allclose(a8, a1, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(b8, b1, atol=1e-4, equal_nan=True)
    assert np.isnan(a1[:, 8, 8]).all()
