"""One pass over a cube: a seeded pixel sample plus exact per-band statistics.

The unmix pipeline reads the scene twice at most: this scan (sample for endmembers/training,
band statistics for bad-band decisions) and the unmixing pass. Per band it accumulates the
count of valid values, min, max, sum, and the sum of squared differences between horizontally
adjacent valid pixels — the noise estimator of ``spectral.noise_from_diffs`` (noise variance =
mean squared neighbour difference / 2), restricted to the diagonal so it streams in
O(pixels x bands), and to pairs inside aligned :data:`PAIR_ALIGN`-column groups.

The same pass can also cut out given windows (:class:`WindowRequest`: the first round of a
spatial model's seeded training patches), so such a model needs no extra read of the scene
for them (:func:`scan_cube_with_windows`).

Neither the sample nor the pairs depend on the chunking (for chunk sizes that are multiples
of :data:`PAIR_ALIGN`) or on the scheduler: the same seed gives the same sample, the same bad
bands and the same endmembers for any ``--chunk-size`` (sums differ in float rounding only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dask.array as da
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
#: the noise estimate pairs horizontally adjacent pixels within aligned groups of this many
#: columns (the smallest --chunk-size), so chunk borders never split a pair
PAIR_ALIGN = 16


_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
_U64 = 2**64 - 1
#: extra candidates drawn so that a pass yields the whole sample with near certainty: a
#: candidate count is binomial, mean n + 6 sqrt(n) + 10 falls below n with p < 1e-9
_MARGIN_SD = 6.0


def _seed_key(seed: int) -> np.uint64:
    """A 64-bit key for ``seed`` (splitmix64 of the seed, so nearby seeds differ)."""
    z = (int(seed) + 0x9E3779B97F4A7C15) & _U64
    z = ((z ^ (z >> 30)) * _MIX[0]) & _U64
    z = ((z ^ (z >> 27)) * _MIX[1]) & _U64
    return np.uint64(z ^ (z >> 31))


def pixel_keys(index: np.ndarray, seed: int) -> np.ndarray:
    """Pseudo-random 64-bit keys of global pixel indexes (row * width + col), any shape.

    The splitmix64 finaliser of ``index XOR key(seed)``: a bijection, so distinct pixels have
    distinct keys (no ties), and a pixel's key depends on nothing but its position and the
    seed (not on the chunk, task or thread that reads it).
    """
    z = index.astype(np.uint64) ^ _seed_key(seed)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX[0])  # uint64 arrays wrap modulo 2**64
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX[1])
    return z ^ (z >> np.uint64(31))


def _key_threshold(fraction: float) -> int:
    """Keys ``<=`` this are a ``fraction`` of all 64-bit keys (-1: none, 2**64-1: all)."""
    return min(_U64, math.ceil(min(max(fraction, 0.0), 1.0) * 2.0**64) - 1)


@dataclass
class Candidates:
    """Sample candidates of one block: pixels ``(n, L)`` float32, their global indexes and keys
    ``(n,)``, and the number of pixels in the block with at least one finite band."""

    pixels: np.ndarray
    index: np.ndarray
    key: np.ndarray
    valid: int


def _candidates(pixels: np.ndarray, anyvalid: np.ndarray, fraction: float, seed: int,
                origin: tuple[int, int], width: int) -> Candidates:
    """The valid pixels of a ``(h, w, L)`` block whose key is in the lowest ``fraction``."""
    h, w = anyvalid.shape
    threshold = _key_threshold(fraction)
    if threshold < 0:
        empty = np.empty(0, np.uint64)
        return Candidates(np.empty((0, pixels.shape[2]), pixels.dtype), empty.astype(np.int64),
                          empty, int(anyvalid.sum()))
    rows = np.arange(origin[0], origin[0] + h, dtype=np.int64)[:, None]
    cols = np.arange(origin[1], origin[1] + w, dtype=np.int64)[None, :]
    index = rows * width + cols
    key = pixel_keys(index, seed)
    pick = anyvalid & (key <= np.uint64(threshold))
    r, c = np.nonzero(pick)
    gathered = pixels.transpose(2, 0, 1)[:, r, c].T  # per band: faster for band-major blocks
    return Candidates(np.ascontiguousarray(gathered), index[pick], key[pick],
                      int(anyvalid.sum()))


def _scan_block(block: np.ndarray, fraction: float = 0.0, seed: int = 0,
                origin: tuple[int, int] = (0, 0), width: int | None = None
                ) -> tuple[Candidates, BandStats]:
    """Sample candidates and band stats of a ``(L, h, w)`` block at ``origin`` (row, col) of a
    scene ``width`` pixels wide (the block's own width by default).

    Candidates are the pixels with at least one finite band whose :func:`pixel_keys` lie in the
    lowest ``fraction`` of the key range (0: none). Works on slabs of rows seen pixel-major
    ``(rows, w, L)`` (a view, contiguous when the reader delivered pixel-major memory); slabs
    without NaN skip the masking.
    """
    L, h, w = block.shape
    pixels = block.transpose(1, 2, 0)  # (h, w, L)
    # noise pairs (x, x+1) only inside aligned PAIR_ALIGN-column groups: no pair crosses a
    # chunk border when chunk sizes are multiples of PAIR_ALIGN, so the pairs do not
    # depend on the chunking
    cut = (origin[1] + np.arange(1, w)) % PAIR_ALIGN == 0  # (w-1,) pair (j, j+1) dropped
    n_pairs = w - 1 - int(cut.sum())
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
            diff[:, cut] = 0
            diff_count += sub.shape[0] * n_pairs
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
            pair[:, cut] = False
            diff = np.where(pair, filled[:, 1:] - filled[:, :-1], np.float32(0))
            diff_count += pair.sum(axis=(0, 1))
            anyvalid[r0:r0 + SLAB_ROWS] = finite.any(axis=-1)
        minimum = np.fmin(minimum, lo)
        maximum = np.fmax(maximum, hi)
        # per-slab sums in the data's precision (pairwise summation over <= 16k values),
        # accumulated across slabs in float64
        diff_sq += np.einsum("ijb,ijb->b", diff, diff)
    stats = BandStats(count, minimum, maximum, total, diff_sq, diff_count, h * w)
    return _candidates(pixels, anyvalid, fraction, seed, origin, width or w), stats


def _first_fraction(n: int, pixels: int) -> float:
    """Key fraction of the first pass: twice the sample plus a margin, over all pixels, so one
    pass suffices unless more than about half the scene is nodata."""
    return min(1.0, 2.0 * (n + _MARGIN_SD * math.sqrt(n) + 10) / max(pixels, 1))


@dataclass(frozen=True)
class WindowRequest:
    """Windows to cut out during a scan: top-left ``rows (n,)``, ``cols (n,)`` and one size
    ``height x width`` (pixels), all inside the scene."""

    rows: np.ndarray
    cols: np.ndarray
    height: int
    width: int

    def nbytes(self, bands: int) -> int:
        return int(self.rows.size) * bands * self.height * self.width * 4


#: a window's part inside one chunk: (window index, row offset, col offset, (L, h, w) values)
Piece = tuple[int, int, int, np.ndarray]


def _window_pieces(block: np.ndarray, origin: tuple[int, int], req: WindowRequest
                   ) -> list[Piece]:
    """The parts of the requested windows that lie in ``block (L, h, w)`` at ``origin``."""
    y0, x0 = origin
    _, h, w = block.shape
    r, c = req.rows, req.cols
    hit = np.flatnonzero((r < y0 + h) & (r + req.height > y0) &
                         (c < x0 + w) & (c + req.width > x0))
    pieces: list[Piece] = []
    for i in hit:
        ya, yb = max(int(r[i]), y0), min(int(r[i]) + req.height, y0 + h)
        xa, xb = max(int(c[i]), x0), min(int(c[i]) + req.width, x0 + w)
        pieces.append((int(i), ya - int(r[i]), xa - int(c[i]),
                       np.array(block[:, ya - y0:yb - y0, xa - x0:xb - x0], np.float32)))
    return pieces


def _scan_pass(data: da.Array, fraction: float, seed: int, with_stats: bool = True,
               windows: WindowRequest | None = None
               ) -> tuple[list[Candidates], list[BandStats], list[list[Piece]]]:
    """One read of every chunk: candidates (and band stats, and the parts of ``windows``)
    per chunk, in chunk order."""
    width = data.shape[2]

    def scan(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        (y0, _), (x0, _) = block_info[0]["array-location"][1:]
        out = np.empty((1, 1, 1), dtype=object)
        with np.errstate(over="ignore"):  # values near float32 overflow: refused later,
            # by check_magnitudes, with a message (not a RuntimeWarning)
            if with_stats:
                cand, stats = _scan_block(block, fraction, seed, (y0, x0), width)
            else:
                pixels = block.transpose(1, 2, 0)
                anyvalid = np.isfinite(pixels).any(axis=-1)
                cand = _candidates(pixels, anyvalid, fraction, seed, (y0, x0), width)
                stats = None
        pieces = _window_pieces(block, (y0, x0), windows) if windows is not None else []
        out[0, 0, 0] = (cand, stats, pieces)
        return out

    # map_blocks (not dask.delayed) so each chunk's read fuses with its scan into one task:
    # a chunk is read, scanned and freed before the next is read, whatever the scene size
    results = data.map_blocks(scan, dtype=object, chunks=(1, 1, 1),
                              meta=np.empty((0, 0, 0), object)).compute()
    parts = [results[0, j, i] for j in range(results.shape[1])
             for i in range(results.shape[2])]
    return [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]


def _assemble(pieces: list[list[Piece]], req: WindowRequest, bands: int) -> np.ndarray:
    """``(n, L, height, width)`` float32 windows from their per-chunk parts."""
    out = np.full((req.rows.size, bands, req.height, req.width), np.nan, np.float32)
    for chunk in pieces:
        for i, dy, dx, values in chunk:
            out[i, :, dy:dy + values.shape[1], dx:dx + values.shape[2]] = values
    return out


def scan_cube(cube: xr.DataArray, n_sample: int, seed: int = 0) -> tuple[np.ndarray, BandStats]:
    """``(sample, stats)`` of :func:`scan_cube_with_windows` without windows."""
    sample, stats, _ = scan_cube_with_windows(cube, n_sample, seed)
    return sample, stats


def scan_cube_with_windows(cube: xr.DataArray, n_sample: int, seed: int = 0,
                           windows: WindowRequest | None = None
                           ) -> tuple[np.ndarray, BandStats, np.ndarray | None]:
    """Read every chunk once: ``(sample (n, bands) float32 with NaNs kept, BandStats)``.

    The sample is the ``min(n_sample, valid)`` pixels with at least one finite band whose
    :func:`pixel_keys` (a hash of the global pixel index and ``seed``) are smallest, in
    row-major order: a uniform random sample without replacement that depends on the scene
    and the seed only, never on the chunk size or the scheduler. Each chunk keeps only its
    candidates (keys in the lowest ``~2 n / pixels`` of the range), so memory stays about
    twice the sample; a scene more than about half nodata may need a second read to find
    enough candidates. Rows may still hold NaN in some bands (bad bands are decided
    afterwards). A sample over :data:`SAMPLE_BYTES_LIMIT` is refused before anything is read.

    ``windows``: also cut these windows (inside the scene) out of the same read, returned
    third as ``(n, bands, height, width)`` float32 (NaN kept; ``None`` without a request).
    Their memory, :meth:`WindowRequest.nbytes` (twice that while they are assembled), comes on
    top of the sample's; the caller bounds it (the pipeline: the patch limit of
    :mod:`hsu_geo.unmix.spatial`).
    """
    data = cube.data
    if windows is not None:
        H, W = data.shape[1], data.shape[2]
        r, c = np.asarray(windows.rows), np.asarray(windows.cols)
        if r.shape != c.shape or r.ndim != 1 or (r.size and (
                r.min() < 0 or c.min() < 0 or r.max() + windows.height > H
                or c.max() + windows.width > W)) or windows.height < 1 or windows.width < 1:
            raise ConfigError(f"window request outside the {H} x {W} scene")
    total = data.shape[1] * data.shape[2]
    need = min(n_sample, total) * data.shape[0] * 4
    if need > SAMPLE_BYTES_LIMIT:
        fit = max(1, SAMPLE_BYTES_LIMIT // (4 * data.shape[0]))
        raise ConfigError(
            f"--sample-size {n_sample}: a sample of {min(n_sample, total)} pixels x "
            f"{data.shape[0]} bands needs {need / 2**30:.1f} GiB, more than the "
            f"{SAMPLE_BYTES_LIMIT / 2**30:.0f} GiB allowed; use --sample-size {fit} or less")
    fraction = _first_fraction(n_sample, total)
    parts, stat_parts, pieces = _scan_pass(data, fraction, seed, windows=windows)
    cut = _assemble(pieces, windows, data.shape[0]) if windows is not None else None
    del pieces
    stats = stat_parts[0]
    for s in stat_parts[1:]:
        stats = stats.merge(s)
    valid = sum(p.valid for p in parts)
    want = min(n_sample, valid)
    while sum(p.key.size for p in parts) < want and fraction < 1.0:
        # mostly nodata: read again with a fraction sized on the valid pixels now known
        fraction = min(1.0, max(2.0 * fraction, (want + _MARGIN_SD * math.sqrt(want) + 10)
                                / valid))
        parts, _, _ = _scan_pass(data, fraction, seed, with_stats=False)
    if want == 0:
        raise InvalidSceneError(
            f"{cube.attrs.get('product_id', 'scene')}: every pixel is nodata; check the "
            "nodata value or the file"
        )
    key = np.concatenate([p.key for p in parts])
    index = np.concatenate([p.index for p in parts])
    chosen = np.argsort(key, kind="stable")[:want]  # keys are distinct: no ties
    chosen = chosen[np.argsort(index[chosen], kind="stable")]  # row-major order
    offsets = np.cumsum([0] + [p.key.size for p in parts])
    part_of = np.searchsorted(offsets, chosen, side="right") - 1
    by_part = np.argsort(part_of, kind="stable")
    bounds = np.searchsorted(part_of[by_part], np.arange(len(parts) + 1))
    sample = np.empty((want, data.shape[0]), np.float32)
    for i, p in enumerate(parts):  # one gather per chunk, not per pixel
        rows = by_part[bounds[i]:bounds[i + 1]]
        if rows.size:
            sample[rows] = p.pixels[chosen[rows] - offsets[i]]
    return sample, stats, cut


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
