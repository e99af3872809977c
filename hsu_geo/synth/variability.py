"""Synthetic scenes with endmember variability, brightness variation and spatial structure.

Made to choose the endmember-refinement constants (:mod:`hsu_geo.endmembers.refine`) without
touching any real benchmark's ground truth. The real benchmark references (Samson, Jasper
Ridge, ...) are class means of variable pixels, so these scenes imitate that:

* every class is a *bundle* of spectra (``(n_j, L)``, e.g. the members of one class of a field
  spectral library, or :func:`random_bundles`); each pixel draws its own class spectrum as a
  random convex combination of the bundle (Dirichlet(alpha) weights), so the population mean of a
  class is the bundle mean, which is the reference (``means``); ``alpha`` sets how close
  each pixel is to a single bundle member (how large the variability is);
* brightness varies per pixel (``s_n``, log-normal) and per pixel and class (``t_nj``,
  log-normal), like illumination, topography and canopy shade; these scale spectra without
  changing their shape, so the reference direction stays the bundle mean;
* abundances are spatially smooth (generator G1 of :mod:`hsu_geo.synth.datasets`, softmax of
  Gaussian random fields); optional *thin* classes (roads) are drawn as anti-aliased straight
  lines a few pixels wide over the smooth background, a class with few pure pixels;
* optionally a *rare* material that is none of the classes (a few buildings in a natural
  scene, an outcrop of an unlisted mineral): small square patches of pure pixels of one
  spectrum, whose class abundances are 0 (so they sum to 0 there, not 1);
* white Gaussian noise at a given SNR.

Shapes: ``cube (L, rows, cols)``, ``abundances (k, rows, cols)``, ``means (k, L)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hsu_geo.errors import ConfigError
from hsu_geo.synth.datasets import smooth_abundances
from hsu_geo.synth.mixing import noise_sigma

__all__ = ["VariableScene", "random_bundles", "road_coverage", "variable_scene"]


@dataclass
class VariableScene:
    """A synthetic cube ``(L, rows, cols)``, its class means ``(k, L)`` (the reference) and
    abundances ``(k, rows, cols)``; ``clean`` is the cube before noise."""

    cube: np.ndarray
    clean: np.ndarray
    means: np.ndarray
    abundances: np.ndarray

    @property
    def pixels(self) -> np.ndarray:
        """The cube as ``(rows*cols, L)`` pixels (row-major)."""
        return np.ascontiguousarray(self.cube.reshape(self.cube.shape[0], -1).T)


def random_bundles(k: int, n_bands: int, rng: np.random.Generator, *, members: int = 20,
                   spread: float = 0.05) -> list[np.ndarray]:
    """``k`` bundles of ``members`` smooth positive spectra ``(members, n_bands)`` each.

    Class bases are random walks (well separated, positive); members are the base times
    ``exp(spread * g)`` with ``g`` a smooth, unit-variance random curve, i.e. shape changes of
    about ``spread`` (relative) around the base.
    """
    if k < 1 or n_bands < 2 or members < 1:
        raise ConfigError("random_bundles needs k >= 1, n_bands >= 2, members >= 1")
    base = np.abs(np.cumsum(rng.normal(size=(k, n_bands)), axis=1)) + 0.5
    base /= base.max()
    out = []
    for j in range(k):
        g = np.cumsum(rng.normal(size=(members, n_bands)), axis=1)
        g -= g.mean(axis=1, keepdims=True)
        g /= g.std(axis=1, keepdims=True) + 1e-12
        out.append(base[j] * np.exp(spread * g))
    return out


def road_coverage(rows: int, cols: int, rng: np.random.Generator, *, n_lines: int = 3,
                  width: float = 2.0) -> np.ndarray:
    """``(rows, cols)`` fractional cover in [0, 1] of ``n_lines`` random straight lines of
    ``width`` pixels (anti-aliased: cover = clip(width/2 + 0.5 - distance, 0, 1))."""
    r, c = np.mgrid[0:rows, 0:cols].astype(float)
    cover = np.zeros((rows, cols))
    for _ in range(n_lines):
        p = rng.uniform([0, 0], [rows, cols])
        theta = rng.uniform(0, np.pi)
        dist = np.abs((r - p[0]) * np.cos(theta) - (c - p[1]) * np.sin(theta))
        cover = np.maximum(cover, np.clip(width / 2 + 0.5 - dist, 0.0, 1.0))
    return cover


def variable_scene(
    bundles: Sequence[np.ndarray],
    rows: int,
    cols: int,
    rng: np.random.Generator,
    *,
    snr_db: float | None = 30.0,
    temperature: float = 0.3,
    sigma_px: float = 6.0,
    brightness_sigma: float = 0.2,
    class_brightness_sigma: float = 0.1,
    thin: Sequence[int] = (),
    n_lines: int = 3,
    line_width: float = 2.0,
    alpha: float = 1.0,
    rare: np.ndarray | None = None,
    rare_patches: int = 2,
    rare_size: int = 2,
) -> VariableScene:
    """A ``rows x cols`` scene from class ``bundles`` (see the module docstring).

    Args:
        bundles: one ``(n_j, L)`` array of spectra per class.
        snr_db: white-noise SNR (dB) of the whole cube; None = noise-free.
        temperature, sigma_px: the smooth background abundances (G1).
        brightness_sigma: log-normal sigma of the per-pixel brightness ``s_n``.
        class_brightness_sigma: log-normal sigma of the per-pixel, per-class ``t_nj``.
        thin: indices of classes drawn as lines (e.g. roads) instead of smooth fields.
        n_lines, line_width: lines per thin class and their width in pixels.
        alpha: Dirichlet concentration of each pixel's weights over its class bundle: 1 mixes
            many members (variability well below the bundle's spread), 0.1 makes most pixels
            close to one member (variability about the bundle's spread, like real pixels of
            one material variant).
        rare: ``(L,)`` spectrum of a material outside the classes, painted as ``rare_patches``
            squares of ``rare_size`` x ``rare_size`` pure pixels (times the pixel brightness)
            at random places; ``None`` (default): no rare material.
    """
    k = len(bundles)
    n_bands = bundles[0].shape[1]
    if any(b.ndim != 2 or b.shape[1] != n_bands for b in bundles):
        raise ConfigError("every bundle must be (members, L) with the same L")
    thin = sorted(set(int(t) for t in thin))
    if any(t < 0 or t >= k for t in thin) or len(thin) >= k:
        raise ConfigError(f"thin classes {thin} must be distinct indices < {k}, not all")
    bg = [j for j in range(k) if j not in thin]
    A = np.zeros((k, rows, cols))
    A[bg] = smooth_abundances(len(bg), rows, cols, rng, sigma_px, temperature).transpose(2, 0, 1)
    left = np.ones((rows, cols))
    for t in thin:
        cover = road_coverage(rows, cols, rng, n_lines=n_lines, width=line_width) * left
        A[t] = cover
        left = left - cover
    A[bg] *= left[None]
    n = rows * cols
    a = A.reshape(k, n)
    s = np.exp(brightness_sigma * rng.standard_normal(n))
    clean = np.zeros((n, n_bands))
    for j, bundle in enumerate(bundles):
        w = rng.dirichlet(np.full(bundle.shape[0], float(alpha)), size=n)
        t = np.exp(class_brightness_sigma * rng.standard_normal(n))
        clean += (a[j] * s * t)[:, None] * (w @ bundle)
    if rare is not None:
        rare = np.asarray(rare, dtype=float)
        if rare.shape != (n_bands,) or rare_patches < 1 or not 1 <= rare_size <= min(rows, cols):
            raise ConfigError(f"rare must be ({n_bands},) with rare_patches >= 1 and "
                              f"1 <= rare_size <= {min(rows, cols)}")
        mask = np.zeros((rows, cols), dtype=bool)
        for _ in range(rare_patches):
            r0, c0 = rng.integers(0, rows - rare_size + 1), rng.integers(0, cols - rare_size + 1)
            mask[r0:r0 + rare_size, c0:c0 + rare_size] = True
        flat = mask.ravel()
        clean[flat] = s[flat, None] * rare[None, :]
        a[:, flat] = 0.0
    sigma = 0.0 if snr_db is None else noise_sigma(clean, snr_db)
    noisy = clean + sigma * rng.standard_normal(clean.shape) if sigma > 0 else clean.copy()
    means = np.stack([b.mean(axis=0) for b in bundles])
    to_cube = lambda X: X.T.reshape(n_bands, rows, cols)  # noqa: E731
    return VariableScene(to_cube(noisy), to_cube(clean), means, A)
