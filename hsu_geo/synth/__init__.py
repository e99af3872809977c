"""Synthetic hyperspectral data: mixing models (linear, bilinear Fan/GBM, PPNMM) and noise.

See :mod:`hsu_geo.synth.mixing` for shapes and conventions (``A (n, k)``, ``M (k, L)``).
"""

from hsu_geo.synth.mixing import (
    MIXINGS,
    Synthetic,
    add_noise,
    bilinear_fan,
    bilinear_gbm,
    dirichlet_abundances,
    gbm_gamma,
    linear_mix,
    noise_sigma,
    pair_indices,
    pnmm,
    ppnmm_b,
    softmax_abundances,
    synthesize,
    synthesize_detailed,
)

__all__ = [
    "MIXINGS",
    "Synthetic",
    "add_noise",
    "bilinear_fan",
    "bilinear_gbm",
    "dirichlet_abundances",
    "gbm_gamma",
    "linear_mix",
    "noise_sigma",
    "pair_indices",
    "pnmm",
    "ppnmm_b",
    "softmax_abundances",
    "synthesize",
    "synthesize_detailed",
]
