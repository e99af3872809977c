"""Project metrics (shared/models/README.md "Metrics")."""

from __future__ import annotations

import numpy as np
import pytest

from hsu_geo.errors import EndmemberError
from hsu_geo.unmix.metrics import (
    abundance_armse,
    abundance_rmse,
    evaluate,
    match_endmembers,
    recon_psnr,
    recon_re,
    recon_rmse,
    sad,
    sad_matrix,
    sid,
)


def test_sad_known_angles_and_scale_invariance() -> None:
    ref = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    est = np.array([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    np.testing.assert_allclose(sad(ref, est), [np.pi / 2, np.pi / 4, 0.0], atol=1e-7)
    np.testing.assert_allclose(sad(ref, 7.0 * ref), 0.0, atol=1e-7)
    np.testing.assert_allclose(sad([1.0, 0.0], [-1.0, 0.0]), [np.pi])  # clipped cosine
    assert sad_matrix(ref, est).shape == (3, 3)


def test_hungarian_recovers_a_shuffle() -> None:
    rng = np.random.default_rng(0)
    M = rng.random((6, 40))
    perm = rng.permutation(6)
    M_est = M[perm] * rng.uniform(0.5, 2.0, size=(6, 1))  # shuffled and rescaled
    p = match_endmembers(M, M_est)
    np.testing.assert_allclose(
        M_est[p] / M_est[p].sum(1, keepdims=True), M / M.sum(1, keepdims=True), rtol=1e-12
    )
    np.testing.assert_array_equal(perm[p], np.arange(6))
    # more estimates than references: the best subset is matched
    extra = np.vstack([rng.random((2, 40)), M_est])
    np.testing.assert_allclose(sad(M, extra[match_endmembers(M, extra)]), 0.0, atol=1e-7)
    with pytest.raises(EndmemberError):
        match_endmembers(M, M[:3])


def test_hungarian_minimises_total_sad() -> None:
    import itertools

    rng = np.random.default_rng(5)
    for _ in range(5):
        ref, est = rng.random((5, 8)), rng.random((5, 8))
        S = sad_matrix(ref, est)
        best = min(sum(S[r, c] for r, c in enumerate(p)) for p in itertools.permutations(range(5)))
        assert sad(ref, est[match_endmembers(ref, est)]).sum() == pytest.approx(best)


def test_abundance_rmse_definitions() -> None:
    rng = np.random.default_rng(1)
    A = rng.dirichlet(np.ones(4), size=500)
    A_hat = A + rng.normal(scale=0.05, size=A.shape)
    per = abundance_rmse(A, A_hat)
    np.testing.assert_allclose(per, np.sqrt(((A - A_hat) ** 2).mean(axis=0)))
    overall = abundance_armse(A, A_hat)
    np.testing.assert_allclose(overall, np.sqrt(((A - A_hat) ** 2).sum() / A.size))
    # SSANU-Net variant = sqrt(R) * aRMSE
    ssanu = np.sqrt(np.mean(np.sum((A - A_hat) ** 2, axis=1)))
    np.testing.assert_allclose(ssanu, np.sqrt(4) * overall)
    assert abundance_armse(A, A) == 0.0
    with pytest.raises(EndmemberError):
        abundance_rmse(A, A[:, :3])


def test_sid() -> None:
    rng = np.random.default_rng(2)
    M = rng.random((3, 30)) + 0.1
    np.testing.assert_allclose(sid(M, M), 0.0, atol=1e-12)
    np.testing.assert_allclose(sid(M, 5 * M), 0.0, atol=1e-12)  # scale invariant
    other = rng.random((3, 30)) + 0.1
    d = sid(M, other)
    assert (d > 0).all()
    np.testing.assert_allclose(d, sid(other, M))  # symmetric
    p = M / M.sum(1, keepdims=True) + 1e-12
    q = other / other.sum(1, keepdims=True) + 1e-12
    np.testing.assert_allclose(d, np.sum(p * np.log(p / q) + q * np.log(q / p), axis=1))
    assert np.isfinite(sid([[0.0, 1.0, 2.0]], [[-0.1, 1.0, 2.0]])).all()  # zeros/negatives


def test_reconstruction_metrics() -> None:
    rng = np.random.default_rng(3)
    Y = rng.random((100, 20))
    E = rng.normal(scale=0.1, size=Y.shape)
    np.testing.assert_allclose(recon_rmse(Y, Y + E), np.sqrt(np.mean(E**2)))
    np.testing.assert_allclose(recon_psnr(Y, Y + E), 10 * np.log10(Y.max() ** 2 / np.mean(E**2)))
    np.testing.assert_allclose(recon_psnr(Y, Y + E, max_value=1.0), -10 * np.log10(np.mean(E**2)))
    assert recon_psnr(Y, Y) == np.inf
    assert recon_re(Y, 3 * Y) == pytest.approx(0.0, abs=1e-7)
    cos = np.sum(Y * (Y + E), 1) / np.linalg.norm(Y, axis=1) / np.linalg.norm(Y + E, axis=1)
    np.testing.assert_allclose(recon_re(Y, Y + E), np.mean(np.arccos(cos)))


def test_evaluate_applies_one_permutation() -> None:
    rng = np.random.default_rng(4)
    M = rng.random((4, 25)) + 0.1
    A = rng.dirichlet(np.ones(4), size=200)
    Y = A @ M
    perm = np.array([2, 0, 3, 1])
    M_est = M[perm] * 1.5  # estimated endmember j is reference perm[j]
    A_est = A[:, perm] / 1.5
    s = evaluate(M, M_est, A, A_est, Y, A_est @ M_est)
    np.testing.assert_allclose(M_est[s.perm], M * 1.5)
    assert s.mean_sad == pytest.approx(0.0, abs=1e-7)
    assert s.mean_sid == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(s.rmse, abundance_rmse(A, A / 1.5))
    assert s.armse == pytest.approx(abundance_armse(A, A / 1.5))
    assert s.mean_rmse == pytest.approx(float(np.mean(s.rmse)))
    assert s.recon_rmse == pytest.approx(0.0, abs=1e-12)
    assert s.psnr > 200.0
    assert s.re == pytest.approx(0.0, abs=1e-7)
    only_em = evaluate(M, M_est)
    assert only_em.rmse is None and only_em.psnr is None
