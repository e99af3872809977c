"""Endmember extractors (VCA, N-FINDR, ATGP) on noiseless linear mixtures with pure pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hsu_geo.endmembers.atgp import atgp
from hsu_geo.endmembers.extract import EXTRACTORS, extract_endmembers
from hsu_geo.endmembers.nfindr import nfindr
from hsu_geo.endmembers.vca import estimate_snr, vca
from hsu_geo.errors import ConfigError, EndmemberError, HsuGeoError, InvalidSceneError
from hsu_geo.unmix.classical import fcls
from hsu_geo.unmix.metrics import match_endmembers, sad

METHODS = sorted(EXTRACTORS)


def smooth_spectra(k: int, L: int, seed: int) -> np.ndarray:
    """``(k, L)`` positive, smooth random spectra (random walks), pairwise well separated."""
    rng = np.random.default_rng(seed)
    S = np.abs(np.cumsum(rng.normal(size=(k, L)), axis=1)) + 0.5
    return S / S.max()


def usgs_spectra(shared: Path, k: int, seed: int, min_angle: float = 0.15) -> np.ndarray:
    """``(k, 224)`` USGS 1995 library spectra with pairwise angles > ``min_angle`` rad."""
    from scipy.io import loadmat

    lib = loadmat(shared / "libraries" / "usgs_splib" / "USGS_1995_Library.mat")["datalib"]
    lib = lib[:, 3:].T  # (498 spectra, 224 bands); columns 0-2 are wavelength/fwhm/index
    lib = lib[(lib > 0).all(axis=1)]
    unit = lib / np.linalg.norm(lib, axis=1, keepdims=True)
    chosen: list[int] = []
    for i in np.random.default_rng(seed).permutation(lib.shape[0]):
        if all(np.arccos(np.clip(unit[i] @ unit[j], -1, 1)) > min_angle for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return lib[chosen]


def mixture(M: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noiseless LMM ``Y = A M`` ``(n, L)`` with Dirichlet abundances and one pure pixel per
    endmember at random positions; returns ``(Y, A)``."""
    rng = np.random.default_rng(seed)
    k = M.shape[0]
    A = rng.dirichlet(np.ones(k), size=n)
    A[:k] = np.eye(k)
    A = A[rng.permutation(n)]
    return A @ M, A


@pytest.fixture(scope="module")
def smooth_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    M = smooth_spectra(5, 120, seed=3)
    Y, A = mixture(M, 2000, seed=4)
    return M, Y, A


@pytest.fixture(scope="module")
def usgs_case(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    M = usgs_spectra(shared_data, 6, seed=0)
    Y, A = mixture(M, 3000, seed=1)
    return M, Y, A


@pytest.fixture(params=["smooth", "usgs"])
def case(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return request.getfixturevalue(f"{request.param}_case")


@pytest.mark.parametrize("method", METHODS)
def test_recovers_endmembers_and_abundances(case, method: str) -> None:
    M, Y, A = case
    k = M.shape[0]
    M_est, idx = extract_endmembers(Y, k, method=method, seed=7)
    assert M_est.shape == M.shape and idx.shape == (k,)
    assert len(set(idx.tolist())) == k
    perm = match_endmembers(M, M_est)
    assert sad(M, M_est[perm]).mean() < 0.01
    # the chosen pixels are the pure ones
    np.testing.assert_allclose(A[idx[perm]], np.eye(k), atol=1e-9)
    A_est = fcls(Y, M_est)[:, perm]
    np.testing.assert_allclose(A_est, A, atol=1e-6)


def test_vca_raw_pixels_and_low_snr_branch(smooth_case) -> None:
    M, Y, _ = smooth_case
    k = M.shape[0]
    M_raw, idx = vca(Y, k, seed=1, projected=False)
    np.testing.assert_array_equal(M_raw, Y[idx])
    # forcing the low-SNR (PCA) branch still finds the vertices on noiseless data
    M_low, _ = vca(Y, k, seed=1, snr_db=0.0)
    perm = match_endmembers(M, M_low)
    assert sad(M, M_low[perm]).mean() < 0.01
    assert estimate_snr(Y, k) == float("inf")


def test_nfindr_random_init_climbs_to_the_vertices(smooth_case) -> None:
    M, Y, _ = smooth_case
    M_est, _ = nfindr(Y, M.shape[0], init="random", seed=11)
    perm = match_endmembers(M, M_est)
    assert sad(M, M_est[perm]).mean() < 0.01


def test_extractors_on_noisy_data_are_close() -> None:
    M = smooth_spectra(4, 100, seed=5)
    Y, _ = mixture(M, 3000, seed=6)
    rng = np.random.default_rng(0)
    Y = Y + rng.normal(scale=np.sqrt(np.mean(Y**2) / 1e4), size=Y.shape)  # 40 dB
    for method in METHODS:
        M_est, _ = extract_endmembers(Y, 4, method=method, seed=0)
        perm = match_endmembers(M, M_est)
        assert sad(M, M_est[perm]).mean() < 0.05, method


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_for_a_seed(smooth_case, method: str) -> None:
    _, Y, _ = smooth_case
    Y = Y + np.random.default_rng(2).normal(scale=0.01, size=Y.shape)
    a = extract_endmembers(Y, 5, method=method, seed=123)
    b = extract_endmembers(Y.copy(), 5, method=method, seed=123)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_float32_input(smooth_case) -> None:
    M, Y, _ = smooth_case
    for method in METHODS:
        M_est, _ = extract_endmembers(Y.astype(np.float32), 5, method=method)
        assert sad(M, M_est[match_endmembers(M, M_est)]).mean() < 0.01


def test_unknown_method_lists_valid_names() -> None:
    Y = smooth_spectra(3, 10, 0)
    with pytest.raises(ConfigError, match="atgp, nfindr, vca"):
        extract_endmembers(Y, 2, method="ppi")


@pytest.mark.parametrize("method", METHODS)
def test_k_too_large(method: str) -> None:
    Y = np.random.default_rng(0).random((50, 8))
    with pytest.raises(EndmemberError, match="bands"):
        extract_endmembers(Y, 9, method=method)
    with pytest.raises(EndmemberError, match="pixels"):
        extract_endmembers(Y[:4], 5, method=method)
    with pytest.raises(EndmemberError):
        extract_endmembers(Y, 0, method=method)
    with pytest.raises(ConfigError):
        extract_endmembers(Y, 2.5, method=method)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
def test_nan_pixels_rejected(method: str) -> None:
    Y = np.random.default_rng(0).random((50, 8))
    Y[3, 2] = np.nan
    with pytest.raises(InvalidSceneError, match="nodata"):
        extract_endmembers(Y, 3, method=method)
    with pytest.raises(InvalidSceneError):
        extract_endmembers(Y[0], 3, method=method)  # 1-D
    assert issubclass(InvalidSceneError, HsuGeoError)


def test_atgp_rank_deficient_data() -> None:
    M = smooth_spectra(3, 20, 0)
    Y, _ = mixture(M, 200, 1)
    with pytest.raises(EndmemberError, match="linearly independent"):
        atgp(Y, 4)
