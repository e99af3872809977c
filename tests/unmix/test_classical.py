"""UCLS / SCLS / NNLS / FCLS abundance estimators, KKT checks and the registry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix.classical import (
    ESTIMATORS,
    estimate_abundances,
    fcls,
    fcls_kkt_residual,
    lsq,
    nnls,
    nnls_kkt_residual,
    reconstruction_rmse,
    scls,
    ucls,
)


def spectra(k: int, L: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    S = np.abs(np.cumsum(rng.normal(size=(k, L)), axis=1)) + 0.5
    return S / S.max()


def noisy_pixels(M: np.ndarray, n: int, seed: int, noise: float = 0.05) -> np.ndarray:
    """Mixtures with sparse Dirichlet abundances plus strong noise: many active bounds."""
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.full(M.shape[0], 0.3), size=n)
    return A @ M + rng.normal(scale=noise, size=(n, M.shape[1]))


def scipy_fcls(Y: np.ndarray, M: np.ndarray, weight: float = 1e4) -> np.ndarray:
    """Reference: scipy NNLS per pixel with a heavily weighted sum-to-one row."""
    w = weight * np.linalg.norm(M, 2)
    Ma = np.vstack([M.T, np.full((1, M.shape[0]), w)])
    return np.array([scipy_nnls(Ma, np.r_[y, w])[0] for y in Y])


def objective(Y: np.ndarray, M: np.ndarray, A: np.ndarray) -> np.ndarray:
    return np.sum((Y - A @ M) ** 2, axis=1)


@pytest.mark.parametrize("k", [3, 6, 10])
def test_fcls_and_nnls_match_scipy_per_pixel(k: int) -> None:
    M = spectra(k, 60, seed=k)
    Y = noisy_pixels(M, 300, seed=1)
    A = fcls(Y, M)
    ref = scipy_fcls(Y, M)
    np.testing.assert_allclose(A, ref, atol=1e-6)
    assert (A >= 0).all()
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)
    assert fcls_kkt_residual(Y, M, A) <= 1e-9
    # the active-set solution is never worse than scipy's
    assert (objective(Y, M, A) <= objective(Y, M, ref) + 1e-10).all()

    An = nnls(Y, M)
    refn = np.array([scipy_nnls(M.T, y)[0] for y in Y])
    np.testing.assert_allclose(An, refn, atol=1e-6)
    assert nnls_kkt_residual(Y, M, An) <= 1e-9
    assert (An == 0).any()  # the test exercises active bounds


def test_fcls_recovers_noiseless_abundances() -> None:
    M = spectra(6, 100, seed=0)
    rng = np.random.default_rng(1)
    A = rng.dirichlet(np.full(6, 0.5), size=2000)
    A[A < 0.05] = 0.0  # exact zeros: active bounds at the optimum
    A /= A.sum(axis=1, keepdims=True)
    Y = A @ M
    np.testing.assert_allclose(fcls(Y, M), A, atol=1e-6)
    np.testing.assert_allclose(nnls(Y, M), A, atol=1e-6)


def test_kkt_residual_detects_non_optimal_abundances() -> None:
    M = spectra(5, 50, seed=2)
    Y = noisy_pixels(M, 200, seed=3)
    A = fcls(Y, M)
    assert fcls_kkt_residual(Y, M, A) <= 1e-9
    per_pixel = fcls_kkt_residual(Y, M, A, per_pixel=True)
    assert per_pixel.shape == (200,)
    S = scls(Y, M)
    assert (S < 0).any()
    assert fcls_kkt_residual(Y, M, S) > 1e-3  # infeasible
    U = np.full_like(A, 1.0 / 5)
    assert fcls_kkt_residual(Y, M, U) > 1e-3  # feasible but not optimal
    assert fcls_kkt_residual(Y, M, A * 1.01) > 1e-3  # violates sum-to-one
    with pytest.raises(EndmemberError):
        fcls_kkt_residual(Y, M, A[:, :4])


def test_float32_input_keeps_dtype_and_accuracy() -> None:
    M = spectra(6, 200, seed=4)
    Y = noisy_pixels(M, 5000, seed=5, noise=0.01).astype(np.float32)
    A = fcls(Y, M)
    assert A.dtype == np.float32
    assert fcls_kkt_residual(Y, M, A) <= 1e-6
    assert nnls(Y, M).dtype == np.float32
    assert fcls(Y.astype(np.float64), M).dtype == np.float64


def test_batches_threads_and_fallback_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    M = spectra(6, 40, seed=6)
    Y = noisy_pixels(M, 3000, seed=7)
    ref = fcls(Y, M, threads=1)
    ref_scls = scls(Y, M)
    monkeypatch.setattr(lsq, "BATCH_PIXELS", 256)
    monkeypatch.setattr(lsq, "_MATMUL_CHUNK", 1000)
    np.testing.assert_allclose(fcls(Y, M, threads=2), ref, atol=1e-12)
    np.testing.assert_allclose(scls(Y, M), ref_scls, atol=1e-12)
    bad = Y.copy()
    bad[2500, 7] = np.nan  # in a later chunk
    with pytest.raises(InvalidSceneError):
        fcls(bad, M, threads=2)
    # max_iter=0: every pixel that needs the optimality phase goes to exhaustive enumeration
    np.testing.assert_allclose(fcls(Y, M, max_iter=0), ref, atol=1e-9)
    np.testing.assert_allclose(nnls(Y, M, max_iter=0), nnls(Y, M), atol=1e-9)


def test_near_collinear_and_duplicate_endmembers() -> None:
    M = spectra(4, 50, seed=8)
    bump = 1e-5 * np.sin(np.linspace(0, 3, 50))
    Mc = np.vstack([M, M[0] + bump])  # almost the same spectrum as row 0: cond(G) ~ 1e11
    Y = noisy_pixels(M, 400, seed=9, noise=0.02)
    A = fcls(Y, Mc)
    assert np.isfinite(A).all() and (A >= 0).all()
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-9)
    ref = fcls(Y, M)
    assert fcls_kkt_residual(Y, Mc, A) <= 1e-8
    # at least as good a fit as without the near-duplicate (up to rounding)
    assert (objective(Y, Mc, A) <= objective(Y, M, ref) * (1 + 1e-9)).all()
    # an exact duplicate: solution not unique, the optimal fit must still be reached
    Md = np.vstack([M, M[2]])
    Ad = fcls(Y, Md)
    np.testing.assert_allclose(objective(Y, Md, Ad), objective(Y, M, ref), rtol=1e-9, atol=1e-12)
    assert (Ad >= 0).all()


def test_pure_pixels_and_vertices() -> None:
    M = spectra(5, 30, seed=10)
    Y = np.vstack([M, 2 * M[0] - M[1]])  # pure pixels and one outside the simplex
    A = fcls(Y, M)
    np.testing.assert_allclose(A[:5], np.eye(5), atol=1e-9)
    assert fcls_kkt_residual(Y, M, A) <= 1e-9


def test_ucls_and_scls_closed_forms() -> None:
    M = spectra(5, 40, seed=11)
    Y = noisy_pixels(M, 100, seed=12)
    U = ucls(Y, M)
    np.testing.assert_allclose(U, np.linalg.lstsq(M.T, Y.T, rcond=None)[0].T, atol=1e-9)
    S = scls(Y, M)
    np.testing.assert_allclose(S.sum(axis=1), 1.0, atol=1e-12)
    Gi = np.linalg.inv(M @ M.T)
    one = np.ones(5)
    expect = U - np.outer(U.sum(axis=1) - 1, Gi @ one) / (one @ Gi @ one)  # baselines.md B2
    np.testing.assert_allclose(S, expect, atol=1e-9)


def test_reconstruction_rmse() -> None:
    M = spectra(4, 30, seed=13)
    Y = noisy_pixels(M, 50, seed=14)
    A = fcls(Y, M)
    r = reconstruction_rmse(Y, M, A)
    assert r.shape == (50,)
    np.testing.assert_allclose(r, np.sqrt(np.mean((Y - A @ M) ** 2, axis=1)))


def test_registry_and_dispatch() -> None:
    assert set(ESTIMATORS) == {"fcls", "nnls", "ucls", "scls"}
    M = spectra(3, 20, seed=15)
    Y = noisy_pixels(M, 20, seed=16)
    for name, fn in ESTIMATORS.items():
        np.testing.assert_array_equal(estimate_abundances(Y, M, name), fn(Y, M))
    np.testing.assert_array_equal(estimate_abundances(Y, M, "FCLS"), fcls(Y, M))
    with pytest.raises(ConfigError, match="fcls, nnls, scls, ucls"):
        estimate_abundances(Y, M, "sunsal")


@pytest.mark.parametrize("method", sorted(ESTIMATORS))
def test_bad_input(method: str) -> None:
    M = spectra(3, 20, seed=17)
    Y = noisy_pixels(M, 10, seed=18)
    bad = Y.copy()
    bad[2, 3] = np.nan
    with pytest.raises(InvalidSceneError, match="nodata"):
        estimate_abundances(bad, M, method)
    with pytest.raises(EndmemberError, match="bands"):
        estimate_abundances(Y, M[:, :10], method)
    with pytest.raises(EndmemberError, match="underdetermined"):
        estimate_abundances(Y[:, :2], M[:, :2], method)
    with pytest.raises(EndmemberError):
        estimate_abundances(Y, np.where(M > 0.5, np.nan, M), method)
    with pytest.raises(InvalidSceneError):
        estimate_abundances(Y[0], M, method)


def test_empty_input_and_bad_options() -> None:
    M = spectra(3, 20, seed=19)
    A = fcls(np.empty((0, 20)), M)
    assert A.shape == (0, 3)
    with pytest.raises(ConfigError):
        fcls(np.ones((2, 20)), M, max_iter=-1)
    with pytest.raises(ConfigError):
        nnls(np.ones((2, 20)), M, threads=0)


def test_free_set_maps_are_shared_across_calls_and_bounded() -> None:
    from hsu_geo.unmix.classical import lsq

    rng = np.random.default_rng(5)
    M = rng.random((5, 40))
    Y = rng.dirichlet(np.ones(5) * 0.3, 500) @ M + rng.normal(0, 0.01, (500, 40))
    lsq._MAPS_CACHE.clear()
    first = fcls(Y, M)
    assert len(lsq._MAPS_CACHE) == 1
    maps = next(iter(lsq._MAPS_CACHE.values()))
    factored = len(maps.cache)
    np.testing.assert_array_equal(fcls(Y, M), first)  # second call reuses the factorisations
    assert next(iter(lsq._MAPS_CACHE.values())) is maps and len(maps.cache) == factored
    for i in range(lsq._MAPS_CACHE_SIZE + 3):
        fcls(Y[:10], M * (1 + 0.01 * (i + 1)))
    assert len(lsq._MAPS_CACHE) == lsq._MAPS_CACHE_SIZE


def test_pool_nnls_equals_nnls_on_every_subset() -> None:
    # subsets of one pool share factorised blocks; each answer is still nnls's
    rng = np.random.default_rng(5)
    P = rng.random((7, 60))
    Y = rng.random((700, 60)).astype(np.float32)
    pool = lsq.PoolNNLS(Y, P)
    for rows in ([0, 1, 2, 3, 4], [4, 1, 6, 3, 0], [2, 5], [6, 0, 1, 2, 3, 4, 5]):
        A = pool(rows)
        want = nnls(Y.astype(np.float64), P[rows])
        np.testing.assert_allclose(A, want, atol=1e-9)
        R = Y.astype(np.float64) - want @ P[rows]
        assert pool.residual_sq(rows, A) == pytest.approx(float(np.sum(R * R)), rel=1e-9)
    assert pool._shared  # blocks were shared
    with pytest.raises(EndmemberError, match="distinct pool indices"):
        pool([1, 1])
    with pytest.raises(InvalidSceneError):
        lsq.PoolNNLS(np.full((3, 60), np.nan), P)
