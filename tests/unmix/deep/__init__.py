"""Deep-model tests; shared tiny data and settings (each test runs in about a second on CPU)."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np
import pytest
import torch

from hsu_geo.synth import linear_mix, softmax_abundances
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep import DeepUnmixer

#: settings that make any deep model train in well under a second on tiny data
TINY: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 64,
    "pretrain_steps": 5,
    "pretrain_pixels": 64,
    "synth_pixels": 32,
    "synth_epochs": 1,
    "max_train_pixels": 0,
    "min_steps": 0,
    "ae_steps": 2,  # auvae_net: steps per chunk of each phase
    "disc_epochs": 1,
    "gen_steps": 1,
}

#: CUDA-only tests: use with ``@pytest.mark.requires_cuda``; skipped when torch sees no GPU
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def deep_model_names(kinds: tuple[str, ...] = ("pixels",)) -> list[str]:
    """Every registered model that trains with the deep engine and takes an input of one of
    ``kinds`` (the shared suites feed pixel arrays; spatial models have their own tests)."""
    return [name for name, cls in MODELS.items()
            if issubclass(cls, DeepUnmixer) and cls.input in kinds]


def tiny_config(cls: type, **overrides: Any) -> Any:
    """``cls.Config`` with the :data:`TINY` values it has, plus ``overrides``."""
    names = {f.name for f in fields(cls.Config)}
    return replace(cls.Config(), **{k: v for k, v in {**TINY, **overrides}.items() if k in names})


def tiny_settings(cls: type) -> dict[str, str]:
    """:data:`TINY` as ``--set`` strings for the fields ``cls.Config`` has."""
    names = {f.name for f in fields(cls.Config)}
    return {k: str(v) for k, v in TINY.items() if k in names}


def endmembers(k: int = 3, bands: int = 40, seed: int = 0) -> np.ndarray:
    """Smooth positive spectra ``(k, bands)`` with maximum 1."""
    rng = np.random.default_rng(seed)
    M = np.abs(np.cumsum(rng.normal(size=(k, bands)), axis=1)) + 0.5
    return M / M.max()


def mixtures(
    n: int = 400, k: int = 3, bands: int = 40, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free linear mixtures: ``(Y (n, bands) float32, M (k, bands), A (n, k))``."""
    M = endmembers(k, bands, seed)
    A = softmax_abundances(n, k, np.random.default_rng(seed + 1), temperature=0.5)
    return linear_mix(A, M).astype(np.float32), M, A
