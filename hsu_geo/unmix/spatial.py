"""The spatial engine: block-wise inference of spatial models with a halo, and seeded patch
sampling for their training.

Models declare ``input`` (:class:`hsu_geo.unmix.base.Unmixer`): ``"pixels"`` models go through
the per-pixel kernel of :mod:`hsu_geo.unmix.adapter`; ``"patches"`` and ``"image"`` models
come here. Such a model has ``halo`` (its receptive-field radius in pixels: the abundances and
the modelled spectrum of a pixel depend on the input within ``halo`` pixels of it, nothing
farther) and a fused per-block predict::

    abundances_image(block (L, h + 2d, w + 2d) float32, valid (h + 2d, w + 2d) bool)
        -> (A (k, h, w) float32, rmse (h, w) float32)          # d = halo

which returns the abundances and the reconstruction RMSE (over bands, scene units) of the
block's interior, both computed on the model's device so only ``k + 1`` values per pixel come
back to the host.

**Inference** (:func:`spatial_stacked`): ``dask.array.map_overlap`` with depth ``halo`` on the
two spatial axes (band axis one chunk), ``boundary="reflect"`` at the scene edge (dask's
reflect repeats the edge pixel: ``... 2 1 0 | 0 1 2 ...``); inside the scene the halo is the
true neighbours, so the result does not depend on the chunking. Pixels with any non-finite
band are *filled before the convolution* with the model's ``fill_spectrum`` (the mean
spectrum of its training pixels — a constant, so the fill does not depend on the chunk either;
models without one get the block's mean valid spectrum) and their outputs are *re-masked to
NaN after*. So a nodata pixel influences its neighbours within ``halo`` exactly as a pixel of
the training mean spectrum would, and nothing farther. A halo larger than a chunk is handled by
rechunking, not refused: consecutive spatial chunks are grouped until each is at least ``halo``
wide (:func:`spatial_chunks`; in practice only a short last row/column of chunks, since
``--chunk-size`` >= 16 and CNNAEU's halo is 7); a scene smaller than the halo in y or x is
refused.

Memory per chunk (float32, chunk ``c x c`` pixels, ``L`` bands, ``d`` halo, ``k`` endmembers,
``F`` the widest hidden layer of the model, ``model.hidden_width(L, k)`` — 48 for CNNAEU,
max(128, 2L) for SSANU-Net, max(32k, 50 + 50k) for ACR-Net, max(128, L) for DFFN):
``4 * (2 L e^2 + (T + 2d) e (L + 2 (F + k)) + 3 L T c + (k + 1) c^2)`` bytes with
``e = c + 2d`` and ``T = min(c, TILE_PIXELS // e)`` rows per model call — the overlapped block
and its filled copy; per row tile its scaled copy, hidden activations and abundances (each
with its normalised copy), the reconstruction, its difference and its square; and the output.
Peak memory is this times the number of dask threads, set by ``--chunk-size``, not by the
scene size (:func:`chunk_memory_bytes`). E.g. L = 224, d = 7, k = 3: 0.10 GiB at c = 128,
0.36 GiB at c = 256, 0.71 GiB at c = 512 (measured for one CNNAEU block, block included:
0.35 and 0.72 GiB).

**Training sample** (:func:`sample_patches`): seeded ``p x p`` windows read from the dask
cube. Positions are drawn from ``numpy.random.default_rng([seed, 0x5A7C])`` over the scene's
top-left corners, so they depend on the seed and the scene size only (not on chunking);
windows whose fraction of valid pixels is below ``min_valid`` are rejected and replacements
drawn (as many as the acceptance rate so far suggests), in at most :data:`MAX_ROUNDS` rounds
of at most ``n`` windows each (memory bounded by ``2 n L p^2 4`` bytes; requests with
``n L p^2 4`` above :data:`PATCH_BYTES_LIMIT` are refused). The first round's ``n`` windows
(:func:`first_round`) are cut out by the pipeline's scan of the scene
(:func:`hsu_geo.ingest.scan.scan_cube_with_windows`), so only replacements for rejected
windows are read again; the result is the same either way.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.ingest.scan import WindowRequest
from hsu_geo.unmix.base import INPUT_KINDS, Unmixer

#: most memory the training patches may take (float32)
PATCH_BYTES_LIMIT = 2 * 2**30
#: pixels (halo included) per model call inside a block: row tiles of the block bound the
#: network's temporaries independently of the chunk size
TILE_PIXELS = 65536
#: rounds of window draws that replace windows below the valid-fraction threshold
MAX_ROUNDS = 8


def is_spatial(unmixer: Unmixer | type[Unmixer]) -> bool:
    """Whether the model needs spatial context (``input`` is ``"patches"`` or ``"image"``)."""
    kind = getattr(unmixer, "input", "pixels")
    if kind not in INPUT_KINDS:
        raise ConfigError(f"model input kind {kind!r} is not known; use one of "
                          f"{', '.join(INPUT_KINDS)}")
    return kind != "pixels"


def chunk_memory_bytes(chunk: int, bands: int, halo: int, k: int, hidden: int = 48) -> int:
    """Working memory (bytes) of one ``chunk x chunk`` block (module docstring formula)."""
    e = chunk + 2 * halo
    t = max(1, min(chunk, TILE_PIXELS // e))
    return 4 * (2 * bands * e * e + (t + 2 * halo) * e * (bands + 2 * (hidden + k))
                + 3 * bands * t * chunk + (k + 1) * chunk * chunk)


def _merge_small(chunks: tuple[int, ...], depth: int) -> tuple[int, ...]:
    """``chunks`` regrouped so that none is smaller than ``depth``: consecutive chunks are
    summed until they reach ``depth``; a short remainder joins the last group."""
    out: list[int] = []
    acc = 0
    for c in chunks:
        acc += c
        if acc >= depth:
            out.append(acc)
            acc = 0
    if acc:
        if out:
            out[-1] += acc
        else:
            out.append(acc)
    return tuple(out)


def spatial_chunks(arr: da.Array, halo: int) -> da.Array:
    """``arr (L, H, W)`` with one band chunk and no spatial chunk smaller than ``halo``."""
    return arr.rechunk({0: -1, 1: _merge_small(arr.chunks[1], halo),
                        2: _merge_small(arr.chunks[2], halo)})


def _fill_block(block: np.ndarray, valid: np.ndarray, fill: np.ndarray | None) -> np.ndarray:
    """``block (L, h, w)`` with invalid pixels set to ``fill (L,)`` (default: the block's mean
    valid spectrum)."""
    if valid.all():
        return np.ascontiguousarray(block, dtype=np.float32)
    if fill is None:
        fill = block[:, valid].mean(axis=1)
    return np.where(valid[None], block, np.asarray(fill, np.float32)[:, None, None]
                    ).astype(np.float32, copy=False)


def _spatial_block(block: np.ndarray, unmixer: Unmixer, halo: int, k: int) -> np.ndarray:
    """Kernel of :func:`spatial_stacked`: overlapped ``block (L, h + 2d, w + 2d)`` ->
    ``(k + 1, h, w)`` = abundances + reconstruction RMSE of the interior, NaN where the
    input pixel is not finite in every band."""
    valid = np.isfinite(block).all(axis=0)
    d = halo
    inner = valid[d:valid.shape[0] - d, d:valid.shape[1] - d]
    out = np.full((k + 1, *inner.shape), np.nan, dtype=np.float32)
    if not inner.any():
        return out
    filled = _fill_block(block, valid, getattr(unmixer, "fill_spectrum", None))
    h, w = inner.shape
    rows = max(1, min(h, TILE_PIXELS // (w + 2 * d)))
    for r0 in range(0, h, rows):  # row tiles with their own halo bound the temporaries
        r1 = min(h, r0 + rows)
        A, rmse = unmixer.abundances_image(  # type: ignore[attr-defined]
            filled[:, r0:r1 + 2 * d], valid[r0:r1 + 2 * d])
        out[:k, r0:r1] = A
        out[k, r0:r1] = rmse
    out[:, ~inner] = np.nan
    return out


def spatial_stacked(cube: xr.DataArray, unmixer: Unmixer, k: int) -> xr.DataArray:
    """Lazy ``(output, y, x)`` float32: ``k`` abundances then the reconstruction RMSE of a
    fitted spatial model, block by block with the model's halo (module docstring)."""
    halo = int(getattr(unmixer, "halo", 0))
    H, W = (int(s) for s in cube.shape[1:])
    if halo >= H or halo >= W:
        raise InvalidSceneError(
            f"the scene is {H} x {W} pixels but {unmixer.name} needs {halo} pixels of context "
            "on each side; unmix a larger window or use a per-pixel model (e.g. -m fcls)")
    arr = cube.data if isinstance(cube.data, da.Array) else da.from_array(cube.values)
    arr = spatial_chunks(arr, halo)
    out = da.map_overlap(
        _spatial_block, arr, depth={0: 0, 1: halo, 2: halo},
        boundary={0: "none", 1: "reflect", 2: "reflect"}, trim=False, allow_rechunk=False,
        dtype=np.float32, chunks=((k + 1,), arr.chunks[1], arr.chunks[2]),
        unmixer=unmixer, halo=halo, k=k, meta=np.empty((0, 0, 0), np.float32))
    coords = {name: c for name, c in cube.coords.items() if "band" not in c.dims}
    return xr.DataArray(out, dims=("output", "y", "x"), coords=coords)


def _patch_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 0x5A7C])


def _draw(rng: np.random.Generator, H: int, W: int, py: int, px: int, n: int
          ) -> tuple[np.ndarray, np.ndarray]:
    rows = rng.integers(0, H - py + 1, size=n)
    cols = rng.integers(0, W - px + 1, size=n)
    return rows, cols


def first_round(height: int, width: int, patch: int, n: int, seed: int) -> WindowRequest:
    """The ``n`` windows :func:`sample_patches` draws first for a ``height x width`` scene
    (before any is rejected): what the pipeline's scan cuts out in the same read."""
    py, px = min(patch, height), min(patch, width)
    rows, cols = _draw(_patch_rng(seed), height, width, py, px, n)
    return WindowRequest(rows, cols, py, px)


def sample_patches(cube: xr.DataArray | da.Array | np.ndarray, patch: int, n: int, seed: int,
                   min_valid: float = 0.9, name: str = "the model",
                   first: np.ndarray | None = None) -> np.ndarray:
    """``(m, L, py, px)`` float32 windows of ``cube (L, H, W)`` at seeded positions,
    ``m <= n``, each with at least ``min_valid`` of its pixels finite in every band (NaN kept;
    the model fills and masks them). ``py = min(patch, H)``, ``px = min(patch, W)``: a scene
    smaller than the patch along an axis gives windows as long as the scene along it (the whole
    scene when it is smaller along both; the model refuses windows too small for its
    receptive field). ``first``: the windows of :func:`first_round` already read (by the
    scan), ``(n, L, py, px)``; they are used instead of reading them again."""
    data = cube.data if isinstance(cube, xr.DataArray) else cube
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    L, H, W = (int(s) for s in arr.shape)
    if patch < 1 or n < 1:
        raise ConfigError(f"{name}: patch size and patch count must be >= 1 (got {patch}, {n})")
    if not 0.0 < min_valid <= 1.0:
        raise ConfigError(f"{name}: min_valid={min_valid} must be in (0, 1]")
    py, px = min(patch, H), min(patch, W)
    need_bytes = n * L * py * px * 4
    if need_bytes > PATCH_BYTES_LIMIT:
        raise ConfigError(
            f"{name}: {n} patches of {py} x {px} x {L} take {need_bytes / 2**30:.1f} GiB (limit "
            f"{PATCH_BYTES_LIMIT / 2**30:.0f} GiB); lower --set n_patches or patch_size")
    if first is not None and first.shape != (n, L, py, px):
        raise ConfigError(f"{name}: pre-read windows {first.shape} do not match the request "
                          f"{(n, L, py, px)}")
    rng = _patch_rng(seed)
    kept: list[np.ndarray] = []
    tried = accepted = 0
    for _ in range(MAX_ROUNDS):
        want = n - accepted
        if want <= 0:
            break
        rate = accepted / tried if tried else 1.0  # draw for the acceptance seen so far
        draw = min(n, int(np.ceil(want / max(rate, 1.0 / n))))
        rows, cols = _draw(rng, H, W, py, px, draw)
        if tried == 0 and first is not None:  # round 1 is first_round(): already read
            windows = np.asarray(first, dtype=np.float32)
        else:
            windows = np.stack(da.compute(*[arr[:, r:r + py, c:c + px]
                                            for r, c in zip(rows, cols, strict=True)])
                               ).astype(np.float32, copy=False)
        tried += draw
        frac = np.isfinite(windows).all(axis=1).mean(axis=(1, 2))
        good = windows[frac >= min_valid][:want]
        accepted += good.shape[0]
        kept.append(good)
        del windows
    patches = np.concatenate(kept) if kept else np.empty((0, L, py, px), np.float32)
    if patches.shape[0] == 0:
        raise InvalidSceneError(
            f"{name}: none of {tried} {py} x {px} windows of the scene has {min_valid:.0%} valid "
            "pixels (nodata everywhere?); check the nodata value, unmix a --window with data, "
            "or lower --set min_valid")
    return patches[:n]


def patch_request(cfg: Any, height: int, width: int) -> WindowRequest | None:
    """The first-round windows of a patch model's config (``patch_size``, ``n_patches``,
    ``seed``) on a ``height x width`` scene; ``None`` when the config has no patch sampling."""
    if not all(hasattr(cfg, key) for key in ("patch_size", "n_patches", "seed", "min_valid")):
        return None
    if int(cfg.patch_size) < 1 or int(cfg.n_patches) < 1:
        return None
    return first_round(height, width, int(cfg.patch_size), int(cfg.n_patches), int(cfg.seed))


def training_patches(cube: xr.DataArray, unmixer: Any, first: np.ndarray | None = None
                     ) -> np.ndarray:
    """The training patches of a spatial ``unmixer`` from its config (``patch_size``,
    ``n_patches``, ``min_valid``, ``seed``); ``first``: its first-round windows already read
    (:func:`patch_request`, cut to ``cube``'s bands)."""
    cfg = unmixer.config
    return sample_patches(cube, int(cfg.patch_size), int(cfg.n_patches), int(cfg.seed),
                          float(cfg.min_valid), name=unmixer.name, first=first)
