"""GBM's Gaussian prior on the interaction coefficients γ (``gamma_prior``): both engines,
its effect on γ the data do not determine, the unmixer's λ = 12 σ̂², and a reloaded model."""

from __future__ import annotations

import numpy as np
import pytest

from hsu_geo.endmembers.library import load_usgs_library
from hsu_geo.errors import ConfigError
from hsu_geo.synth.datasets import library_on_grid, parse_band_spec
from hsu_geo.synth.mixing import add_noise, bilinear_gbm, gbm_gamma, noise_sigma
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.classical.nonlinear import fit_nonlinear, scene_noise_std
from hsu_geo.unmix.classical.nonlinear_model import GbmConfig, GbmUnmixer, PpnmmUnmixer
from hsu_geo.unmix.metrics import abundance_armse

MINERALS = ["alunite", "calcite", "hematite", "olivine", "gypsum"]


@pytest.fixture(scope="module")
def M() -> np.ndarray:  # noqa: N802
    """(5, 43) USGS spectra on a 50 nm grid."""
    return library_on_grid(load_usgs_library(MINERALS), parse_band_spec("400:2500:50"))


def _bilinear(M: np.ndarray, n: int, snr: float = 30.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = M.shape[0]
    A = rng.dirichlet(np.ones(k), n)
    clean = bilinear_gbm(A, M, gbm_gamma(n, k, rng))
    return add_noise(clean, snr, rng), A, noise_sigma(clean, snr)


def test_compiled_engine_matches_numpy_engine_with_the_prior(M):
    Y, _, sigma = _bilinear(M, 300, seed=4)
    Y[:30] = M[1]  # pure pixels: every γ undetermined
    lam = 12 * sigma**2
    ref = fit_nonlinear(Y, M, "gbm", engine="numpy", gamma_prior=lam)
    fast = fit_nonlinear(Y, M, "gbm", engine="compiled", threads=1, gamma_prior=lam)
    np.testing.assert_allclose(fast.A, ref.A, atol=1e-7)
    np.testing.assert_allclose(fast.theta, ref.theta, atol=1e-5)
    np.testing.assert_allclose(fast.rss, ref.rss, rtol=1e-6, atol=1e-12)
    assert (fast.converged == ref.converged).all()


def test_prior_settles_undetermined_gamma_at_one_half(M):
    Y, _, sigma = _bilinear(M, 200, seed=1)
    Y[:20] = M[0]  # a pure pixel: no pair present, no γ defined by the data
    plain = fit_nonlinear(Y, M, "gbm")
    prior = fit_nonlinear(Y, M, "gbm", gamma_prior=12 * sigma**2)
    np.testing.assert_allclose(prior.theta[:20], 0.5, atol=1e-6)
    np.testing.assert_allclose(prior.A[:20], plain.A[:20], atol=1e-6)
    # a heavy prior pins γ at ½; where that fits worse than FCLS the FCLS point is kept
    # (γ = 0: the fit is never worse than the linear one in residual, the rss reported)
    heavy = fit_nonlinear(Y, M, "gbm", gamma_prior=1e6)
    kept = np.all(heavy.theta == 0.0, axis=1)
    assert 0 < kept.sum() < kept.size
    assert np.abs(heavy.theta[~kept] - 0.5).max() < 1e-3
    assert np.all(heavy.rss <= heavy.rss_linear * (1 + 1e-9))


def test_prior_converges_in_fewer_iterations_without_losing_accuracy(M):
    Y, A, sigma = _bilinear(M, 2000, seed=2)
    plain = fit_nonlinear(Y, M, "gbm")
    prior = fit_nonlinear(Y, M, "gbm", gamma_prior=12 * sigma**2)
    assert prior.iterations.mean() < plain.iterations.mean()
    assert prior.converged.mean() >= plain.converged.mean()
    assert abundance_armse(A, prior.A) <= 1.02 * abundance_armse(A, plain.A)


def test_bad_prior_is_refused(M):
    Y, _, _ = _bilinear(M, 50)
    with pytest.raises(ConfigError, match="gamma_prior"):
        fit_nonlinear(Y, M, "gbm", gamma_prior=-1.0)
    with pytest.raises(ConfigError, match="gamma_prior"):
        fit_nonlinear(Y, M, "gbm", gamma_prior=float("nan"))
    with pytest.raises(ConfigError, match="ppnmm has none"):
        fit_nonlinear(Y, M, "ppnmm", gamma_prior=1.0)
    with pytest.raises(ConfigError, match="gamma_prior"):
        GbmConfig(gamma_prior=-2.0)
    with pytest.raises(ConfigError):
        make_config(PpnmmUnmixer.Config, {"gamma_prior": "1"})


def test_unmixer_sets_lambda_from_the_scene_noise(M):
    Y, _, _ = _bilinear(M, 3000, seed=3)
    u = GbmUnmixer(GbmConfig(gate="always"))
    u.fit(Y, M)
    sigma = scene_noise_std(Y)
    info = u.fit_info["gamma_prior"]
    assert info["noise_std"] == pytest.approx(sigma)
    assert u.gamma_prior == pytest.approx(12 * sigma**2) == pytest.approx(info["lam"])
    spatial = GbmUnmixer(GbmConfig(gate="always", spatial=3))
    spatial.fit(Y, M)
    assert spatial.gamma_prior == pytest.approx(12 * sigma**2 / 9)
    off = GbmUnmixer(make_config(GbmConfig, {"gate": "always", "gamma_prior": "0"}))
    off.fit(Y, M)
    assert off.gamma_prior == 0.0
    A_on, A_off = u.abundances(Y), off.abundances(Y)
    assert A_on.shape == A_off.shape and not np.allclose(A_on, A_off)
    # too few pixels to estimate the noise: plain least squares, and the reason
    few = GbmUnmixer(GbmConfig(gate="always"))
    few.fit(Y[:20], M)
    assert few.gamma_prior == 0.0 and "too few" in few.fit_info["gamma_prior"]["reason"]


def test_reloaded_model_keeps_the_gate_decision_and_lambda(M, tmp_path):
    from hsu_geo.pipeline import FittedModel
    from hsu_geo.unmix.fitted_io import load_fitted, save_fitted

    Y, _, _ = _bilinear(M, 3000, seed=5)
    for gate in ("never", "always"):
        u = GbmUnmixer(GbmConfig(gate=gate))
        u.fit(Y, M)
        fitted = FittedModel(
            model="gbm", unmixer=u, wavelength=np.linspace(400, 2500, M.shape[1]),
            band=np.arange(1, M.shape[1] + 1), names=[f"em_{i + 1}" for i in range(5)],
            trained_on="t", endmember_source="test", angles_deg=[None] * 5,
            model_config={"gate": gate}, device="cpu")
        path = save_fitted(tmp_path / f"{gate}.npz", fitted)
        back = load_fitted(path).unmixer
        assert back.nonlinear == u.nonlinear == (gate == "always")
        assert back.gamma_prior == pytest.approx(u.gamma_prior) and u.gamma_prior > 0
        np.testing.assert_allclose(back.abundances(Y[:200]), u.abundances(Y[:200]), atol=1e-6)
