"""Mixing models and noise for synthetic hyperspectral data (``shared/models/synthetic.md`` §1).

Conventions (the project's, not the specs' column form): abundances ``A (n, k)`` with rows on
the simplex, endmembers ``M (k, L)`` with one spectrum per row, mixtures ``Y (n, L)``.
Results are float64 unless both ``A`` and ``M`` are float32. Every random draw takes a
``numpy.random.Generator`` so results are reproducible from a seed.

Bilinear pair order: the ``P = k(k-1)/2`` pairs ``i < j`` in ``numpy.triu_indices(k, 1)``
order ((0,1), (0,2), …, (1,2), …); per-pair coefficients ``gamma`` are ``(n, P)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hsu_geo.errors import ConfigError

MIXINGS = ("linear", "bilinear", "pnmm")
BILINEAR_VARIANTS = ("gbm", "fan")


def _check(A: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    A, M = np.asarray(A), np.asarray(M)
    if A.ndim != 2 or M.ndim != 2:
        raise ConfigError(f"abundances must be (n, k) and endmembers (k, L); got {A.shape} "
                          f"and {M.shape}")
    if A.shape[1] != M.shape[0]:
        raise ConfigError(f"abundances have {A.shape[1]} endmembers but M has {M.shape[0]} "
                          "rows; pass M as (k, L)")
    dtype = np.float32 if (A.dtype == np.float32 and M.dtype == np.float32) else np.float64
    return A.astype(dtype, copy=False), M.astype(dtype, copy=False)


def pair_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(i, j)`` of the ``k(k-1)/2`` endmember pairs ``i < j``."""
    return np.triu_indices(k, 1)


def dirichlet_abundances(n: int, k: int, rng: np.random.Generator,
                         alpha: float = 1.0) -> np.ndarray:
    """``(n, k)`` float64 abundances drawn i.i.d. from Dir(alpha, …, alpha) (generator G4)."""
    if n < 0 or k < 1 or alpha <= 0:
        raise ConfigError(f"dirichlet_abundances needs n >= 0, k >= 1, alpha > 0; got n={n}, "
                          f"k={k}, alpha={alpha}")
    return rng.dirichlet(np.full(k, float(alpha)), size=n)


def softmax_abundances(n: int, k: int, rng: np.random.Generator,
                       temperature: float = 0.3) -> np.ndarray:
    """``(n, k)`` float64 abundances ``softmax(z / T)`` with ``z ~ N(0, I_k)`` per pixel.

    The per-pixel distribution of generator G1 (smoothed, standardised Gaussian fields through
    a softmax) without its spatial structure; ``T = 0.3`` gives many near-pure pixels.
    """
    if n < 0 or k < 1 or temperature <= 0:
        raise ConfigError(f"softmax_abundances needs n >= 0, k >= 1, temperature > 0; got "
                          f"n={n}, k={k}, temperature={temperature}")
    z = rng.standard_normal((n, k)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def linear_mix(A: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Linear mixing ``Y = A M``: ``A (n, k)``, ``M (k, L)`` -> ``(n, L)``."""
    A, M = _check(A, M)
    return A @ M


def _bilinear(A: np.ndarray, M: np.ndarray, beta: np.ndarray | float) -> np.ndarray:
    i, j = pair_indices(M.shape[0])
    weights = A[:, i] * A[:, j] * beta  # (n, P)
    return A @ M + weights @ (M[i] * M[j])


def bilinear_fan(A: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Fan bilinear model ``y = M a + Σ_{i<j} a_i a_j (m_i ⊙ m_j)``: ``(n, k), (k, L) -> (n, L)``.
    """
    A, M = _check(A, M)
    return _bilinear(A, M, 1.0)


def gbm_gamma(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """GBM coefficients ``(n, k(k-1)/2)`` drawn U(0, 1) per pixel and pair."""
    return rng.uniform(0.0, 1.0, size=(n, k * (k - 1) // 2))


def bilinear_gbm(A: np.ndarray, M: np.ndarray, gamma: np.ndarray | float | None = None,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Generalised bilinear model: ``y = M a + Σ_{i<j} γ_ij a_i a_j (m_i ⊙ m_j)``.

    ``gamma``: scalar or ``(n, P)`` per pixel and pair (see module doc for pair order); when
    ``None`` it is drawn U(0, 1) with ``rng`` (:func:`gbm_gamma`). Returns ``(n, L)``.
    """
    A, M = _check(A, M)
    if gamma is None:
        if rng is None:
            raise ConfigError("bilinear_gbm: pass gamma or rng to draw gamma ~ U(0, 1)")
        gamma = gbm_gamma(A.shape[0], M.shape[0], rng)
    gamma = np.asarray(gamma, dtype=A.dtype)
    n_pairs = M.shape[0] * (M.shape[0] - 1) // 2
    if gamma.ndim not in (0, 2) or (gamma.ndim == 2 and gamma.shape != (A.shape[0], n_pairs)):
        raise ConfigError(f"bilinear_gbm: gamma must be a scalar or ({A.shape[0]}, {n_pairs}); "
                          f"got shape {gamma.shape}")
    return _bilinear(A, M, gamma)


def ppnmm_b(n: int, rng: np.random.Generator,
            b_range: tuple[float, float] = (-0.3, 0.3)) -> np.ndarray:
    """PPNMM nonlinearity ``b (n,)`` drawn U(b_range) per pixel."""
    low, high = b_range
    if low > high:
        raise ConfigError(f"b_range {b_range}: low must not exceed high")
    return rng.uniform(low, high, size=n)


def pnmm(A: np.ndarray, M: np.ndarray, xi: np.ndarray | float | None = None,
         rng: np.random.Generator | None = None,
         b_range: tuple[float, float] = (-0.3, 0.3)) -> np.ndarray:
    """Polynomial post-nonlinear model (PPNMM): ``y = s + ξ·(s ⊙ s)`` with ``s = M a``.

    ``xi``: scalar or ``(n,)`` per pixel; when ``None`` it is drawn U(b_range) with ``rng``
    (:func:`ppnmm_b`). Returns ``(n, L)``. ``xi = 0`` gives the linear model.
    """
    A, M = _check(A, M)
    if xi is None:
        if rng is None:
            raise ConfigError("pnmm: pass xi or rng to draw xi ~ U(b_range)")
        xi = ppnmm_b(A.shape[0], rng, b_range)
    xi = np.asarray(xi, dtype=A.dtype)
    if xi.ndim not in (0, 1) or (xi.ndim == 1 and xi.shape[0] != A.shape[0]):
        raise ConfigError(f"pnmm: xi must be a scalar or ({A.shape[0]},); got shape {xi.shape}")
    s = A @ M
    b = xi[:, None] if xi.ndim == 1 else xi
    out = np.multiply(s, s)  # in place from here: one (n, L) temporary, not three
    out *= b
    out += s
    return out


def noise_sigma(Y_clean: np.ndarray, snr_db: float) -> float:
    """Per-image white-noise σ for ``snr_db``: σ² = ‖Y‖²_F / (N·L·10^(SNR/10))."""
    Y_clean = np.asarray(Y_clean)
    if Y_clean.size == 0:
        return 0.0
    power = float(np.mean(np.square(Y_clean, dtype=np.float64)))
    return float(np.sqrt(power / 10.0 ** (float(snr_db) / 10.0)))


def add_noise(Y: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """``Y (n, L)`` plus white Gaussian noise at ``snr_db`` dB over the whole image.

    ``snr_db`` None or +inf returns a copy of ``Y``. Same dtype as ``Y`` (float).
    """
    Y = np.asarray(Y)
    out = Y.astype(np.result_type(Y.dtype, np.float32), copy=True)
    if snr_db is None or np.isposinf(snr_db):
        return out
    sigma = noise_sigma(Y, snr_db)
    out += (sigma * rng.standard_normal(Y.shape)).astype(out.dtype, copy=False)
    return out


@dataclass
class Synthetic:
    """One synthetic image: noisy ``Y (n, L)``, noise-free ``Y_clean (n, L)``, abundances
    ``A (n, k)``, ``noise_sigma`` and the nonlinearity parameters (``gamma (n, P)`` for GBM,
    ``b (n,)`` for PPNMM) plus the generation settings in ``params``."""

    Y: np.ndarray
    Y_clean: np.ndarray
    A: np.ndarray
    noise_sigma: float
    nonlinearity: np.ndarray | None
    params: dict[str, Any] = field(default_factory=dict)


def synthesize_detailed(M: np.ndarray, n: int, mixing: str, snr_db: float | None,
                        rng: np.random.Generator, *, A: np.ndarray | None = None,
                        alpha: float = 1.0, bilinear_variant: str = "gbm",
                        gamma: np.ndarray | float | None = None,
                        xi: np.ndarray | float | None = None,
                        b_range: tuple[float, float] = (-0.3, 0.3)) -> Synthetic:
    """Like :func:`synthesize` but returns everything a dataset writer stores."""
    M = np.asarray(M)
    if mixing not in MIXINGS:
        raise ConfigError(f"mixing {mixing!r} is not known; use one of {', '.join(MIXINGS)}")
    if bilinear_variant not in BILINEAR_VARIANTS:
        raise ConfigError(f"bilinear_variant {bilinear_variant!r}; use gbm or fan")
    if A is None:
        A = dirichlet_abundances(n, M.shape[0], rng, alpha)
    elif np.asarray(A).shape[0] != n:
        raise ConfigError(f"A has {np.asarray(A).shape[0]} rows but n={n}")
    nonlin: np.ndarray | None = None
    if mixing == "linear":
        Y_clean = linear_mix(A, M)
    elif mixing == "pnmm":
        if xi is None:
            xi = ppnmm_b(n, rng, b_range)
        nonlin = np.asarray(xi)
        Y_clean = pnmm(A, M, xi)
    elif bilinear_variant == "fan":
        Y_clean = bilinear_fan(A, M)
    else:
        if gamma is None:
            gamma = gbm_gamma(n, M.shape[0], rng)
        nonlin = np.asarray(gamma)
        Y_clean = bilinear_gbm(A, M, gamma)
    sigma = 0.0 if snr_db is None or np.isposinf(snr_db) else noise_sigma(Y_clean, snr_db)
    Y = add_noise(Y_clean, snr_db, rng)
    params = {"mixing": mixing, "snr_db": snr_db, "n": n, "alpha": alpha,
              "bilinear_variant": bilinear_variant if mixing == "bilinear" else None,
              "b_range": list(b_range) if mixing == "pnmm" else None}
    return Synthetic(Y=Y, Y_clean=Y_clean, A=np.asarray(A), noise_sigma=sigma,
                     nonlinearity=nonlin, params=params)


def synthesize(M: np.ndarray, n: int, mixing: str, snr_db: float | None,
               rng: np.random.Generator, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic pixels of endmembers ``M (k, L)``: returns ``(Y (n, L), A (n, k))``.

    ``mixing``: ``"linear"`` (LMM), ``"bilinear"`` (GBM with γ ~ U(0, 1) per pixel/pair, or
    ``bilinear_variant="fan"``) or ``"pnmm"`` (PPNMM with ξ ~ U(-0.3, 0.3) per pixel, range
    ``b_range``). ``snr_db``: white-noise SNR in dB (None = noise-free). Keywords: ``A`` (fixed
    abundances ``(n, k)``, e.g. smooth maps; default Dirichlet(``alpha``)), ``alpha``,
    ``bilinear_variant``, ``gamma``, ``xi``, ``b_range``.
    """
    syn = synthesize_detailed(M, n, mixing, snr_db, rng, **kw)
    return syn.Y, syn.A
