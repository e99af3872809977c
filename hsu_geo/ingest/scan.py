"""One pass over a cube: a seeded pixel sample plus exact per-band statistics.

The unmix pipeline reads the scene twice at most: this scan (sample for endmembers/training,
band statistics for bad-band decisions) and the unmixing pass. Per band it accumulates the
count of valid values, min, max, sum, and the sum of squared differences between horizontally
adjacent valid pixels — the noise estimator of ``spectral.noise_from_diffs`` (noise variance =
mean squared neighbour difference / 2), restricted to the diagonal so it streams in
O(pixels x bands).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from hsu_geo.errors import ConfigError, InvalidSceneError


@dataclass
class BandStats:
    """Per-band statistics over the whole scene, arrays of shape (bands,)."""

    count: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    total: np.ndarray
    diff_sq: np.ndarray
    diff_count: np.ndarray
    pixels: int

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.total / self.count

    @property
    def noise_std(self) -> np.ndarray:
        """Noise standard deviation from adjacent-pixel differences (NaN if unknown)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.diff_sq / self.diff_count / 2.0)

    @property
    def snr(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.abs(self.mean) / self.noise_std

    def merge(self, other: BandStats) -> BandStats:
        return BandStats(
            self.count + other.count, np.fmin(self.minimum, other.minimum),
            np.fmax(self.maximum, other.maximum), self.total + other.total,
            self.diff_sq + other.diff_sq, self.diff_count + other.diff_count,
            self.pixels + other.pixels,
        )


#: most memory the pixel sample may take (float32 pixels x bands): 4 GiB, i.e. 100,000 pixels
#: (the default sample) of up to ~10,000 bands, or 2.5 million pixels of 425 bands
SAMPLE_BYTES_LIMIT = 4 * 2**30

#: rows per slab when accumulating statistics (bounds temporaries to a slab, not a chunk)
SLAB_ROWS = 32


def _scan_block(block: np.ndarray, quota: int, seed: int) -> tuple[np.ndarray, BandStats]:
    """Sample up to ``quota`` pixels of a ``(L, h, w)`` block and accumulate band stats.

    Works on slabs of rows seen pixel-major ``(rows, w, L)`` (a view, contiguous when the
    reader delivered pixel-major memory); slabs without NaN skip the masking.
    """
    L, h, w = block.shape
    pixels = block.transpose(1, 2, 0)  # (h, w, L)
    minimum = np.full(L, np.nan)
    maximum = np.full(L, np.nan)
    count = np.zeros(L, "int64")
    total = np.zeros(L, "float64")
    diff_sq = np.zeros(L, "float64")
    diff_count = np.zeros(L, "int64")
    anyvalid = np.zeros((h, w), bool)
    for r0 in range(0, h, SLAB_ROWS):
        sub = pixels[r0:r0 + SLAB_ROWS]
        sums = sub.sum(axis=(0, 1))  # finite sums <=> no NaN/inf in the slab
        if np.isfinite(sums).all():
            lo, hi = sub.min(axis=(0, 1)), sub.max(axis=(0, 1))
            count += sub.shape[0] * w
            total += sums
            diff = sub[:, 1:] - sub[:, :-1]
            diff_count += sub.shape[0] * (w - 1)
            anyvalid[r0:r0 + SLAB_ROWS] = True
        else:
            finite = np.isfinite(sub)
            with np.errstate(invalid="ignore"):
                lo = np.fmin.reduce(sub, axis=(0, 1))  # NaN only if all NaN
                hi = np.fmax.reduce(sub, axis=(0, 1))
            count += finite.sum(axis=(0, 1))
            filled = np.where(finite, sub, np.float32(0))
            total += filled.sum(axis=(0, 1))
            pair = finite[:, 1:] & finite[:, :-1]
            diff = np.where(pair, filled[:, 1:] - filled[:, :-1], np.float32(0))
            diff_count += pair.sum(axis=(0, 1))
            anyvalid[r0:r0 + SLAB_ROWS] = finite.any(axis=-1)
        minimum = np.fmin(minimum, lo)
        maximum = np.fmax(maximum, hi)
        # per-slab sums in the data's precision (pairwise summation over <= 16k values),
        # accumulated across slabs in float64
        diff_sq += np.einsum("ijb,ijb->b", diff, diff)
    stats = BandStats(count, minimum, maximum, total, diff_sq, diff_count, h * w)
    pick = np.flatnonzero(anyvalid.ravel())
    if pick.size > quota:
        pick = np.sort(np.random.default_rng(seed).choice(pick, quota, replace=False))
    rows, cols = np.divmod(pick, w)
    return np.ascontiguousarray(pixels[rows, cols]), stats


def scan_cube(cube: xr.DataArray, n_sample: int, seed: int = 0) -> tuple[np.ndarray, BandStats]:
    """Read every chunk once: ``(sample (n, bands) float32 with NaNs kept, BandStats)``.

    Pixels are sampled from every chunk in proportion to its area among pixels with at least
    one finite band; rows may still hold NaN in some bands (bad bands are decided afterwards).
    A sample over :data:`SAMPLE_BYTES_LIMIT` is refused before anything is read.
    """
    data = cube.data
    total = data.shape[1] * data.shape[2]
    need = min(n_sample, total) * data.shape[0] * 4
    if need > SAMPLE_BYTES_LIMIT:
        fit = max(1, SAMPLE_BYTES_LIMIT // (4 * data.shape[0]))
        raise ConfigError(
            f"--sample-size {n_sample}: a sample of {min(n_sample, total)} pixels x "
            f"{data.shape[0]} bands needs {need / 2**30:.1f} GiB, more than the "
            f"{SAMPLE_BYTES_LIMIT / 2**30:.0f} GiB allowed; use --sample-size {fit} or less")
    n_x = len(data.chunks[2])

    def scan(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        j, i = block_info[0]["chunk-location"][1:]
        quota = max(1, math.ceil(n_sample * block.shape[1] * block.shape[2] / total))
        out = np.empty((1, 1, 1), dtype=object)
        with np.errstate(over="ignore"):  # values near float32 overflow: refused later,
            # by check_magnitudes, with a message (not a RuntimeWarning)
            out[0, 0, 0] = _scan_block(block, quota, seed * 1_000_003 + j * 10_007 + i)
        return out

    # map_blocks (not dask.delayed) so each chunk's read fuses with its scan into one task:
    # a chunk is read, scanned and freed before the next is read, whatever the scene size
    results = data.map_blocks(scan, dtype=object, chunks=(1, 1, 1),
                              meta=np.empty((0, 0, 0), object)).compute()
    parts = [results[0, j, i] for j in range(results.shape[1]) for i in range(n_x)]
    sample = np.concatenate([p[0] for p in parts], axis=0)
    stats = parts[0][1]
    for _, s in parts[1:]:
        stats = stats.merge(s)
    if sample.shape[0] > n_sample:
        pick = np.sort(np.random.default_rng(seed).choice(sample.shape[0], n_sample,
                                                          replace=False))
        sample = sample[pick]
    if sample.shape[0] == 0:
        raise InvalidSceneError(
            f"{cube.attrs.get('product_id', 'scene')}: every pixel is nodata; check the "
            "nodata value or the file"
        )
    return sample.astype("float32", copy=False), stats


#: no reflectance or radiance comes near this magnitude; beyond it values are an undeclared fill
#: value, a wrong scale, or close enough to float32 overflow (3.4e38) to break the arithmetic
MAX_PLAUSIBLE = 1e10


def check_magnitudes(stats: BandStats, keep: np.ndarray, cube: xr.DataArray) -> None:
    """Refuse infinite or implausibly large values (``|x| > MAX_PLAUSIBLE``) in the kept bands.

    Args:
        stats: full-scene statistics of ``cube`` from :func:`scan_cube`.
        keep: 0-based indexes of the bands that will be unmixed.
    """
    keep = np.asarray(keep, dtype=int)
    with np.errstate(invalid="ignore"):
        lo, hi = stats.minimum[keep], stats.maximum[keep]
        peak = np.fmax(np.abs(lo), np.abs(hi))
    bad = np.flatnonzero(peak > MAX_PLAUSIBLE)  # NaN (an empty band) compares False
    if bad.size == 0:
        return
    i = int(bad[np.argmax(peak[bad])])
    value = hi[i] if abs(hi[i]) >= abs(lo[i]) else lo[i]
    b = keep[i]
    where = (f"band {int(cube['band'].values[b])} "
             f"({float(cube['wavelength'].values[b]):.1f} nm)")
    more = f" and {bad.size - 1} more bands" if bad.size > 1 else ""
    what = "infinite values" if not np.isfinite(value) else f"values up to {value:.3g}"
    raise InvalidSceneError(
        f"{cube.attrs.get('product_id', 'scene')}: {where}{more} "
        f"{'hold' if bad.size > 1 else 'holds'} {what}, far beyond any "
        f"reflectance or radiance (|value| > {MAX_PLAUSIBLE:g}); if that is a fill value, "
        "declare it as nodata (GeoTIFF nodata or ENVI 'data ignore value'), else set the "
        "reflectance scale factor the values were multiplied by"
    )


def valid_rows(sample: np.ndarray) -> np.ndarray:
    """Rows of a sample that are finite in every column, ``(n_valid, bands)``."""
    return sample[np.isfinite(sample).all(axis=1)]
