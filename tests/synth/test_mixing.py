"""Mixing models and noise (synthetic.md §1, tests of §7)."""

from __future__ import annotations

import numpy as np
import pytest

from hsu_geo.errors import ConfigError
from hsu_geo.synth import (
    add_noise,
    bilinear_fan,
    bilinear_gbm,
    dirichlet_abundances,
    linear_mix,
    noise_sigma,
    pnmm,
    synthesize,
    synthesize_detailed,
)


@pytest.fixture(name="M")
def endmembers() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(0.05, 0.9, size=(4, 30))


def test_dirichlet_on_simplex():
    A = dirichlet_abundances(500, 5, np.random.default_rng(0))
    assert A.shape == (500, 5)
    assert (A >= 0).all()
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-6)


def test_linear_is_matrix_product(M):
    A = dirichlet_abundances(20, 4, np.random.default_rng(0))
    np.testing.assert_allclose(linear_mix(A, M), A @ M)


def test_pure_pixels_are_endmembers(M):
    A = np.eye(4)
    for Y in (linear_mix(A, M), bilinear_fan(A, M), bilinear_gbm(A, M, gamma=1.0),
              pnmm(A, M, xi=0.0)):
        np.testing.assert_allclose(Y, M)


def test_gbm_zero_gamma_and_pnmm_zero_xi_equal_linear(M):
    A = dirichlet_abundances(50, 4, np.random.default_rng(0))
    np.testing.assert_allclose(bilinear_gbm(A, M, gamma=0.0), A @ M)
    np.testing.assert_allclose(pnmm(A, M, xi=np.zeros(50)), A @ M)


def test_fan_equals_gbm_gamma_one_and_explicit_sum(M):
    A = dirichlet_abundances(10, 4, np.random.default_rng(0))
    expected = A @ M
    for i in range(4):
        for j in range(i + 1, 4):
            expected = expected + (A[:, i] * A[:, j])[:, None] * (M[i] * M[j])[None]
    np.testing.assert_allclose(bilinear_fan(A, M), expected)
    np.testing.assert_allclose(bilinear_gbm(A, M, gamma=np.ones((10, 6))), expected)


def test_gbm_draws_gamma_from_rng(M):
    A = dirichlet_abundances(10, 4, np.random.default_rng(0))
    Y1 = bilinear_gbm(A, M, rng=np.random.default_rng(3))
    Y2 = bilinear_gbm(A, M, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(Y1, Y2)
    assert (Y1 >= A @ M - 1e-12).all()
    with pytest.raises(ConfigError):
        bilinear_gbm(A, M)
    with pytest.raises(ConfigError):
        bilinear_gbm(A, M, gamma=np.ones((10, 5)))


def test_pnmm_formula(M):
    A = dirichlet_abundances(10, 4, np.random.default_rng(0))
    xi = np.linspace(-0.3, 0.3, 10)
    s = A @ M
    np.testing.assert_allclose(pnmm(A, M, xi=xi), s + xi[:, None] * s * s)


def test_shape_mismatch_is_clear(M):
    with pytest.raises(ConfigError, match="rows"):
        linear_mix(np.ones((3, 5)) / 5, M)


@pytest.mark.parametrize("snr", [10.0, 20.0, 30.0])
def test_noise_hits_target_snr(M, snr):
    rng = np.random.default_rng(0)
    A = dirichlet_abundances(64 * 64, 4, rng)
    clean = linear_mix(A, M)
    noisy = add_noise(clean, snr, rng)
    achieved = 10 * np.log10(np.sum(clean ** 2) / np.sum((noisy - clean) ** 2))
    assert abs(achieved - snr) < 0.1
    assert noise_sigma(clean, snr) > 0


def test_infinite_snr_is_noise_free(M):
    clean = linear_mix(np.eye(4), M)
    np.testing.assert_array_equal(add_noise(clean, None, np.random.default_rng(0)), clean)
    np.testing.assert_array_equal(add_noise(clean, np.inf, np.random.default_rng(0)), clean)


@pytest.mark.parametrize("mixing", ["linear", "bilinear", "pnmm"])
def test_synthesize_shapes_and_seed(M, mixing):
    Y, A = synthesize(M, 200, mixing, 20.0, np.random.default_rng(5))
    Y2, A2 = synthesize(M, 200, mixing, 20.0, np.random.default_rng(5))
    assert Y.shape == (200, 30) and A.shape == (200, 4)
    np.testing.assert_array_equal(Y, Y2)
    np.testing.assert_array_equal(A, A2)
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-6)


def test_synthesize_detailed_records_parameters(M):
    A = dirichlet_abundances(100, 4, np.random.default_rng(0))
    syn = synthesize_detailed(M, 100, "pnmm", 30.0, np.random.default_rng(1), A=A)
    assert syn.nonlinearity.shape == (100,)
    assert np.abs(syn.nonlinearity).max() <= 0.3
    np.testing.assert_allclose(syn.Y_clean, pnmm(A, M, xi=syn.nonlinearity))
    assert syn.noise_sigma > 0
    gbm = synthesize_detailed(M, 100, "bilinear", None, np.random.default_rng(1), A=A)
    assert gbm.nonlinearity.shape == (100, 6)
    np.testing.assert_array_equal(gbm.Y, gbm.Y_clean)
    with pytest.raises(ConfigError, match="mixing"):
        synthesize(M, 10, "cubic", 20.0, np.random.default_rng(0))


def test_float32_in_float32_out(M):
    A = dirichlet_abundances(10, 4, np.random.default_rng(0)).astype("float32")
    assert linear_mix(A, M.astype("float32")).dtype == np.float32
    assert add_noise(linear_mix(A, M.astype("float32")), 20, np.random.default_rng(0)).dtype \
        == np.float32
