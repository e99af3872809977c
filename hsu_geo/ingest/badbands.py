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
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import dask
import numpy as np
import spectral
import xarray as xr

from hsu_geo.cube import valid_mask
from hsu_geo.errors import ConfigError, InvalidSceneError

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


def sample_windows(cube: xr.DataArray, n: int, size: int, seed: int) -> np.ndarray:
    """Read ``n`` windows of ``size``² pixels spread over the scene: (n, rows, cols, bands).

    Windows sit on a jittered grid so the sample covers the whole scene; only these pixels
    are read (slices reach the file reader).
    """
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    h, w = min(size, ny), min(size, nx)
    rng = np.random.default_rng(seed)
    per_side = max(1, math.ceil(math.sqrt(n)))
    ys = np.linspace(0, ny - h, per_side).astype(int)
    xs = np.linspace(0, nx - w, per_side).astype(int)
    origins = [(int(y), int(x)) for y in ys for x in xs]
    if len(origins) > n:
        origins = [origins[i] for i in sorted(rng.choice(len(origins), n, replace=False))]
    origins = sorted(set(origins))
    parts = [cube.data[:, y:y + h, x:x + w] for y, x in origins]
    arrays = dask.compute(*parts)
    return np.stack([a.transpose(1, 2, 0) for a in arrays])


def _window_reasons(wavelength: np.ndarray, windows: Iterable[tuple[float, float]]) -> list:
    reasons: list[str | None] = [None] * wavelength.size
    for lo, hi in windows:
        label = f"absorption window {lo:g}-{hi:g} nm" if math.isfinite(hi) else \
            f"beyond {lo:g} nm (detector edge, low SNR)"
        for i in np.flatnonzero((wavelength >= lo) & (wavelength <= hi)):
            reasons[i] = reasons[i] or label
    return reasons


def _snr(windows: np.ndarray) -> np.ndarray:
    """Per-band SNR = mean / noise std, noise from adjacent-pixel differences, (bands,)."""
    noise_var = []
    for win in windows:
        if win.shape[0] > 1 and win.shape[1] > 1 and np.isfinite(win).all():
            noise_var.append(np.diag(spectral.noise_from_diffs(win.astype("float64")).cov))
    if not noise_var:
        return np.full(windows.shape[-1], np.nan)
    sigma = np.sqrt(np.maximum(np.mean(noise_var, axis=0), 0))
    mean = np.nanmean(windows.reshape(-1, windows.shape[-1]), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(mean) / sigma


def find_bad_bands(cube: xr.DataArray, config: BadBandConfig = BadBandConfig()) -> BandReport:
    """Decide which bands to drop and why; reads only a pixel sample."""
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
        win = sample_windows(cube, config.sample_windows, config.window, config.seed)
        pix = win.reshape(-1, win.shape[-1])
        report.sample_pixels = int(pix.shape[0])
        finite = np.isfinite(pix)
        all_bands = cube.assign_coords(good_band=("band", np.ones(band.size, bool)))
        if not finite.any() and not bool(valid_mask(all_bands).any()):
            raise InvalidSceneError(
                f"{cube.attrs.get('product_id', 'scene')}: every pixel is nodata; check the "
                "nodata value or the file"
            )
        for i in np.flatnonzero(~finite.any(axis=0)):
            reasons[i] = reasons[i] or f"no valid value in a {pix.shape[0]}-pixel sample"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            spread = np.nanmax(pix, axis=0) - np.nanmin(pix, axis=0)
        for i in np.flatnonzero(finite.any(axis=0) & (spread == 0)):
            reasons[i] = reasons[i] or "constant over the pixel sample"
        candidates = np.array([r is None for r in reasons])
        ok_pix = finite[:, candidates].all(axis=1)
        if candidates.any() and ok_pix.any():
            snr = _snr(np.where(ok_pix.reshape(win.shape[:3])[..., None], win, np.nan)
                       [..., candidates])
            idx = np.flatnonzero(candidates)
            for j, i in enumerate(idx):
                lo, hi = max(0, j - config.neighbours), min(idx.size, j + config.neighbours + 1)
                neigh = np.delete(snr[lo:hi], j - lo)
                ref = np.nanmedian(neigh) if np.isfinite(neigh).any() else np.nan
                if np.isfinite(snr[j]) and np.isfinite(ref) and snr[j] < config.snr_ratio * ref:
                    reasons[i] = f"low SNR ({snr[j]:.1f} vs neighbours' median {ref:.1f})"
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
    out = cube.isel(band=np.flatnonzero(keep))
    out = out.assign_coords(good_band=("band", np.ones(int(keep.sum()), bool)))
    out.attrs = dict(cube.attrs)
    out.attrs["dropped_bands"] = list(cube.attrs.get("dropped_at_ingest", [])) + report.dropped
    return out


def preprocess(cube: xr.DataArray, config: BadBandConfig = BadBandConfig()
               ) -> tuple[xr.DataArray, BandReport]:
    """Find and drop bad bands: ``(cube with good bands only, report)``."""
    report = find_bad_bands(cube, config)
    return drop_bands(cube, report), report
