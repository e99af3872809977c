"""HySime subspace / endmember-count estimation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hsu_geo.endmembers.hysime import estimate_noise, hysime
from hsu_geo.errors import InvalidSceneError
from tests.endmembers.test_extractors import smooth_spectra, usgs_spectra


def noisy_mixture(M: np.ndarray, n: int, snr_db: float, seed: int) -> tuple[np.ndarray, float]:
    """LMM with Dirichlet abundances and white Gaussian noise at ``snr_db``; (Y, sigma)."""
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(M.shape[0]), size=n) @ M
    sigma = float(np.sqrt(np.mean(X**2) / 10 ** (snr_db / 10)))
    return X + rng.normal(scale=sigma, size=X.shape), sigma


@pytest.mark.parametrize("snr_db", [30.0, 40.0])
@pytest.mark.parametrize("k", [3, 5, 8])
def test_true_k_on_smooth_spectra(k: int, snr_db: float) -> None:
    M = smooth_spectra(k, 150, seed=k)
    Y, _ = noisy_mixture(M, 8000, snr_db, seed=1)
    res = hysime(Y)
    assert res.k == k
    assert res[0] == k  # indexable like a tuple
    assert res.subspace.shape == (150, k)
    np.testing.assert_allclose(res.subspace.T @ res.subspace, np.eye(k), atol=1e-10)


@pytest.mark.parametrize("snr_db", [30.0, 40.0])
def test_true_k_on_usgs_spectra(shared_data: Path, snr_db: float) -> None:
    M = usgs_spectra(shared_data, 6, seed=0)
    Y, _ = noisy_mixture(M, 10000, snr_db, seed=2)
    assert hysime(Y).k == 6


def test_subspace_contains_the_endmembers() -> None:
    M = smooth_spectra(4, 100, seed=9)
    Y, _ = noisy_mixture(M, 6000, 35.0, seed=3)
    _, E = hysime(Y)
    resid = M - (M @ E) @ E.T
    assert np.linalg.norm(resid) / np.linalg.norm(M) < 0.01


def test_noise_estimate_matches_injected_noise() -> None:
    M = smooth_spectra(4, 80, seed=2)
    Y, sigma = noisy_mixture(M, 6000, 30.0, seed=4)
    W = estimate_noise(Y)
    assert W.shape == Y.shape
    assert abs(W.std() / sigma - 1) < 0.1


def test_float32_and_determinism() -> None:
    M = smooth_spectra(5, 100, seed=1)
    Y, _ = noisy_mixture(M, 5000, 30.0, seed=5)
    a = hysime(Y.astype(np.float32))
    b = hysime(Y.astype(np.float32))
    assert a.k == b.k == 5
    np.testing.assert_array_equal(a.subspace, b.subspace)


def test_bad_input() -> None:
    Y = np.random.default_rng(0).random((100, 10))
    Y[5, 5] = np.inf
    with pytest.raises(InvalidSceneError, match="nodata"):
        hysime(Y)
    with pytest.raises(InvalidSceneError):
        hysime(np.zeros((10, 5)))
    with pytest.raises(InvalidSceneError):
        hysime(np.ones(5))
