"""The model interface: every unmixing method (classical or deep) is an :class:`Unmixer`.

Models never see xarray, files or CRS: ``fit`` gets a pixel sample ``Y (N, L)`` and initial
endmembers ``M0 (k, L)``; ``abundances`` maps pixels ``Y (N, L)`` to ``A (N, k)``. The adapter
(:mod:`hsu_geo.unmix.adapter`) does sampling, block-wise application and re-wrapping.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from hsu_geo.errors import ConfigError

#: what a model consumes: single pixels, patches of the scene, or the whole image
INPUT_KINDS = ("pixels", "patches", "image")


@dataclass(frozen=True)
class NoConfig:
    """Models without settings."""


class Unmixer(ABC):
    """Base class of unmixing models.

    Class attributes: ``name`` (registry key), ``description``, ``doi`` (paper), ``input``
    (one of :data:`INPUT_KINDS`), ``halo`` (receptive-field radius in pixels of spatial
    models), ``Config`` (a frozen dataclass with the paper's defaults), ``uses_device`` (torch
    models).

    Input kinds: ``"pixels"`` — ``fit(Y (N, L), M0)``, applied pixel by pixel
    (``abundances`` then ``reconstruct``); ``"patches"`` — ``fit(P (n, L, p, p), M0)`` on seeded
    ``p x p`` windows of the scene (:func:`hsu_geo.unmix.spatial.sample_patches`; NaN marks
    nodata) and applied block by block with a ``halo`` through the fused
    ``abundances_image(block (L, h + 2 halo, w + 2 halo), valid) -> (A (k, h, w), rmse (h, w))``
    (:mod:`hsu_geo.unmix.spatial`); ``"image"`` — trained on large crops (``patch_size`` of
    the model's config; the whole image when that covers it), sampled and applied like
    ``"patches"``. Spatial models still answer ``abundances(Y (N, L))`` for single pixels
    (sanity checks), each pixel taken as a homogeneous neighbourhood.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    doi: ClassVar[str] = ""
    input: ClassVar[str] = "pixels"
    halo: ClassVar[int] = 0
    Config: ClassVar[type] = NoConfig
    #: whether the model computes on a torch device (classical models run in numpy)
    uses_device: ClassVar[bool] = False

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        self.config = config if config is not None else self.Config()
        self.device = device
        self.endmembers: np.ndarray | None = None  # (k, L)
        self.fit_info: dict[str, Any] = {}

    @abstractmethod
    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Learn from a pixel sample ``Y (N, L)`` starting at endmembers ``M0 (k, L)``."""

    @abstractmethod
    def abundances(self, Y: np.ndarray) -> np.ndarray:
        """Abundances ``A (N, k)`` (float32) of pixels ``Y (N, L)``; all pixels finite."""

    def reconstruct(self, A: np.ndarray) -> np.ndarray:
        """Modelled spectra ``(N, L)`` of abundances ``A (N, k)`` (linear mixing by default)."""
        return A @ self.endmembers


def make_config(config_cls: type, settings: dict[str, str]) -> Any:
    """Build ``config_cls`` from ``--set key=value`` strings, converting to the field types.

    Unknown keys and unconvertible values are :class:`ConfigError` listing the valid keys.
    """
    valid = {f.name: f for f in fields(config_cls)}
    kwargs: dict[str, Any] = {}
    defaults = config_cls()
    for key, raw in settings.items():
        if key not in valid:
            listing = ", ".join(sorted(valid)) or "(this model has no settings)"
            raise ConfigError(f"unknown setting {key!r}; valid keys: {listing}")
        default = getattr(defaults, key)
        try:
            if isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value: Any = raw.lower() in ("true", "1", "yes")
            elif isinstance(default, int):
                value = int(raw)
            elif isinstance(default, float):
                value = float(raw)
            elif isinstance(default, tuple):
                value = tuple(type(default[0])(v) if default else v for v in raw.split(","))
            else:
                value = raw
        except ValueError:
            raise ConfigError(f"setting {key}={raw!r}: expected {type(default).__name__}") \
                from None
        kwargs[key] = value
    return config_cls(**kwargs)
