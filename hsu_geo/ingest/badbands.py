"""Bad-band detection and removal: product flags, absorption windows, data checks, overrides.

A band is dropped when any of these holds (first reason wins in the report):

1. the product flags it (``bbl`` = 0 / ``good_band`` false);
2. its centre lies in an atmospheric absorption window. Defaults: 1340-1460 nm and
   1790-1960 nm (water vapour) and beyond 2450 nm (low SNR at the SWIR detector edge), the
   windows commonly used for airborne/spaceborne imaging spectrometers (formats.md §1.8 and
   §2.2: AHSI published masks 1359-1444 / 1805-1940 / 2480+ nm, AVIRIS-NG/ISOFIT practice);
3. on a pixel sample it holds no valid value, or is constant;
4. its SNR, estimated from adjacent-pixel differences (``spectral.noise_from_diffs``) on the
   same sample, is far below its spectral neighbours' (ratio < ``snr_ratio``).

``--drop-bands`` adds bands, ``--keep-bands`` forces bands back in (both take band numbers,
ranges, or wavelength ranges in nm: ``"1-7,200,1340-1460nm"``). Only a pixel sample is read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from hsu_geo.cube import take_bands, valid_mask
from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.ingest.scan import BandStats, _scan_block

DEFAULT_WINDOWS_NM: tuple[tuple[float, float], ...] = (
    (1340.0, 1460.0), (1790.0, 1960.0), (2450.0, math.inf),
)
MIN_BANDS = 3


@dataclass(frozen=True)
class BadBandConfig:
    """How bad bands are chosen.

    Attributes:
        windows_nm: absorption windows (lo, hi) in nm; band centres inside are dropped.
        use_product_flags: honour the product's bad-band list.
        data_checks: run the all-nodata / constant / SNR checks on a pixel sample.
        snr_ratio: drop a band whose SNR is below this fraction of its neighbours' median.
        neighbours: how many bands on each side form the neighbourhood.
        sample_windows: number of sample windows; window: their edge in pixels.
        drop, keep: user selections (band numbers, ranges, ``A-Bnm`` wavelength ranges).
    """

    windows_nm: tuple[tuple[float, float], ...] = DEFAULT_WINDOWS_NM
    use_product_flags: bool = True
    data_checks: bool = True
    snr_ratio: float = 0.2
    neighbours: int = 5
    sample_windows: int = 16
    window: int = 32
    drop: str | None = None
    keep: str | None = None
    seed: int = 0


@dataclass
class BandReport:
    """What preprocessing decided: dropped bands with reasons, and sample statistics."""

    dropped: list[dict] = field(default_factory=list)
    sample_pixels: int = 0


_TOKEN = re.compile(
    r"^\s*(?P<a>\d+(?:\.\d+)?)\s*(?:-\s*(?P<b>\d+(?:\.\d+)?))?\s*(?P<nm>nm)?\s*$", re.I
)


def parse_band_selection(spec: str, band: np.ndarray, wavelength: np.ndarray) -> np.ndarray:
    """Boolean mask over ``band`` for a spec like ``"1-7,200,1340-1460nm"``.

    Plain numbers are original band numbers; numbers with ``nm`` are wavelengths (a range
    ``A-Bnm`` is inclusive, a single ``Anm`` picks the nearest band).
    """
    mask = np.zeros(band.size, bool)
    for token in filter(None, (t.strip() for t in spec.split(","))):
        m = _TOKEN.match(token)
        if m is None:
            raise ConfigError(
                f"band selection {token!r} is not understood; use band numbers (12), ranges "
                "(1-7) or wavelength ranges in nm (1340-1460nm)"
            )
        a = float(m["a"])
        b = float(m["b"]) if m["b"] else None
        if m["nm"]:
            if b is None:
                mask[np.argmin(np.abs(wavelength - a))] = True
            else:
                mask |= (wavelength >= min(a, b)) & (wavelength <= max(a, b))
        else:
            lo, hi = (a, a) if b is None else (min(a, b), max(a, b))
            mask |= (band >= lo) & (band <= hi)
    return mask


def sample_windows(cube: xr.DataArray, n: int, size: int, seed: int,
                   max_chunks: int = 4) -> list[np.ndarray]:
    """Read ``n`` windows of ``size``² pixels: a list of ``(bands, h, w)`` arrays.

    Windows lie in at most ``max_chunks`` chunks spread over the scene (chunks follow the
    file's tiles, and a pixel-interleaved tile is read whole), so the cost is a few tiles,
    not the scene. Only these windows are read (slices reach the file reader).
    """
    ys, xs = np.cumsum((0, *cube.data.chunks[1])), np.cumsum((0, *cube.data.chunks[2]))
    cells = [(j, i) for j in range(len(ys) - 1) for i in range(len(xs) - 1)]
    rng = np.random.default_rng(seed)
    if len(cells) > max_chunks:
        cells = [cells[c] for c in np.linspace(0, len(cells) - 1, max_chunks).round()
                 .astype(int)]
    per_chunk = max(1, math.ceil(n / len(cells)))
    origins: dict[tuple[int, int, int, int], None] = {}  # ordered set: no window twice
    for j, i in cells:
        h, w = min(size, ys[j + 1] - ys[j]), min(size, xs[i + 1] - xs[i])
        for _ in range(per_chunk):
            y = int(rng.integers(ys[j], ys[j + 1] - h + 1))
            x = int(rng.integers(xs[i], xs[i + 1] - w + 1))
            origins[(y, x, h, w)] = None
    parts = [cube.data[:, y:y + h, x:x + w] for y, x, h, w in list(origins)[:max(n, 1)]]
    # one compute per window: windows sharing a chunk in one graph would read it whole
    return [part.compute() for part in parts]


def stats_from_windows(windows: list[np.ndarray]) -> BandStats:
    """Band statistics of sampled windows (same estimator as the full-scene scan)."""
    stats = _scan_block(windows[0], 0, 0)[1]
    for win in windows[1:]:
        stats = stats.merge(_scan_block(win, 0, 0)[1])
    return stats


def _window_reasons(wavelength: np.ndarray, windows: Iterable[tuple[float, float]]) -> list:
    reasons: list[str | None] = [None] * wavelength.size
    for lo, hi in windows:
        label = f"absorption window {lo:g}-{hi:g} nm" if math.isfinite(hi) else \
            f"beyond {lo:g} nm (detector edge, low SNR)"
        for i in np.flatnonzero((wavelength >= lo) & (wavelength <= hi)):
            reasons[i] = reasons[i] or label
    return reasons


def _data_reasons(stats: BandStats, reasons: list[str | None], config: BadBandConfig,
                  where: str) -> None:
    """Fill ``reasons`` for bands without valid values, constant bands and low-SNR bands."""
    for i in np.flatnonzero(stats.count == 0):
        reasons[i] = reasons[i] or f"no valid value in the {where}"
    for i in np.flatnonzero((stats.count > 1) & (stats.maximum == stats.minimum)):
        reasons[i] = reasons[i] or f"constant over the {where}"
    idx = np.flatnonzero([r is None for r in reasons])
    snr = stats.snr[idx]
    for j, i in enumerate(idx):
        lo, hi = max(0, j - config.neighbours), min(idx.size, j + config.neighbours + 1)
        neigh = np.delete(snr[lo:hi], j - lo)
        neigh = neigh[np.isfinite(neigh)]
        if neigh.size and np.isfinite(snr[j]) and snr[j] < config.snr_ratio * np.median(neigh):
            reasons[i] = f"low SNR ({snr[j]:.1f} vs neighbours' median {np.median(neigh):.1f})"


def find_bad_bands(cube: xr.DataArray, config: BadBandConfig = BadBandConfig(),
                   stats: BandStats | None = None) -> BandReport:
    """Decide which bands to drop and why.

    Data checks use ``stats`` (the full-scene scan of :func:`hsu_geo.ingest.scan.scan_cube`)
    when given, else a few sampled windows (cheap, for ``hsu-geo info``).
    """
    band = cube["band"].values
    wl = cube["wavelength"].values
    reasons: list[str | None] = [None] * band.size
    if config.use_product_flags:
        for i in np.flatnonzero(~cube["good_band"].values):
            reasons[i] = "product bad-band list (bbl)"
    for i, r in enumerate(_window_reasons(wl, config.windows_nm)):
        reasons[i] = reasons[i] or r
    report = BandReport()
    if config.data_checks:
        where = "scene"
        if stats is None:
            stats = stats_from_windows(sample_windows(cube, config.sample_windows,
                                                      config.window, config.seed))
            where = "pixel sample"
        report.sample_pixels = stats.pixels
        if not np.any(stats.count > 0):
            all_bands = cube.assign_coords(good_band=("band", np.ones(band.size, bool)))
            if not bool(valid_mask(all_bands).any()):
                raise InvalidSceneError(
                    f"{cube.attrs.get('product_id', 'scene')}: every pixel is nodata; check "
                    "the nodata value or the file"
                )
        _data_reasons(stats, reasons, config, where)
    if config.drop:
        for i in np.flatnonzero(parse_band_selection(config.drop, band, wl)):
            reasons[i] = reasons[i] or "user --drop-bands"
    if config.keep:
        for i in np.flatnonzero(parse_band_selection(config.keep, band, wl)):
            reasons[i] = None
    report.dropped = [
        {"band": int(band[i]), "wavelength_nm": float(wl[i]), "reason": r}
        for i, r in enumerate(reasons) if r is not None
    ]
    return report


def drop_bands(cube: xr.DataArray, report: BandReport) -> xr.DataArray:
    """The cube without the reported bands; every remaining band is marked good."""
    gone = {d["band"] for d in report.dropped}
    keep = np.array([b not in gone for b in cube["band"].values])
    if keep.sum() < MIN_BANDS:
        raise InvalidSceneError(
            f"{cube.attrs.get('product_id', 'scene')}: only {int(keep.sum())} usable bands are "
            f"left after bad-band removal (need >= {MIN_BANDS}); relax it with --keep-bands"
        )
    out = take_bands(cube, np.flatnonzero(keep))
    out = out.assign_coords(good_band=("band", np.ones(int(keep.sum()), bool)))
    out.attrs = dict(cube.attrs)
    out.attrs["dropped_bands"] = list(cube.attrs.get("dropped_at_ingest", [])) + report.dropped
    return out


def preprocess(cube: xr.DataArray, config: BadBandConfig = BadBandConfig(),
               stats: BandStats | None = None) -> tuple[xr.DataArray, BandReport]:
    """Find and drop bad bands: ``(cube with good bands only, report)``."""
    report = find_bad_bands(cube, config, stats)
    return drop_bands(cube, report), report
