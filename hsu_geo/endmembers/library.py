"""Endmember spectral libraries: the bundled USGS minerals, user CSVs, resampling and naming.

A :class:`SpectralLibrary` holds ``k`` spectra on one wavelength grid (nm). NaN marks channels
with no data (splib07 deleted channels, or a spectrum that does not span the whole grid).

The bundled library (``hsu_geo/data/usgs_minerals_*.csv``, see ``hsu_geo/data/README.md``) is
USGS splib07 (public domain; Kokaly et al. 2017, https://doi.org/10.3133/ds1035). Its entries
come on two grids: 1 nm (350-2500 nm) and the AVIRIS-1995 224-channel grid (with FWHM). When a
request mixes both, the loader puts every entry on one common grid (1 nm steps plus the original
sample positions, linear interpolation) and keeps each entry's native resolution as a per-entry
``fwhm_nm`` row, so :func:`resample_to_bands` never smooths an already convolved spectrum twice.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from spectral import BandResampler

from hsu_geo.errors import EndmemberError
from hsu_geo.safe_io import ENDMEMBER_LIMIT, read_small_text

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
USGS_INDEX = "usgs_minerals_index.csv"
USGS_SOURCE = "USGS Spectral Library Version 7 (splib07), Kokaly et al. 2017, doi:10.3133/ds1035"

FILL_BELOW = -1e30  # splib07 deleted-channel flag is -1.23e34
MICRON_LIMIT = 30.0  # wavelengths all below this are taken as micrometres
FINE_STEP_NM = 1.0  # coarser libraries are interpolated to this step before resampling
SMALL_GAP_NM = 20.0  # NaN gaps up to this width (or 3 sample spacings) are interpolated over
MIN_KERNEL_NM = 1.0  # narrowest Gaussian SRF used on the fine grid
DEFAULT_NAME_THRESHOLD_RAD = 0.10
_NAN_TOKENS = frozenset({"", "nan", "na", "n/a", "none", "null", "-nan"})


@dataclass
class SpectralLibrary:
    """``k`` named spectra on one wavelength grid.

    Attributes:
        names: endmember names, length k, unique.
        wavelength_nm: (L0,) strictly increasing sample centres, nm.
        spectra: (k, L0) reflectance; NaN = no data at that wavelength.
        fwhm_nm: native spectral resolution, nm: (L0,) shared by all entries, (k, L0) per entry,
            or None. NaN/None = unknown, taken as the local sample spacing.
        source: where the spectra came from (file path or library citation).
        records: optional full record ids (e.g. splib07 titles), length k.
    """

    names: list[str]
    wavelength_nm: np.ndarray
    spectra: np.ndarray
    fwhm_nm: np.ndarray | None
    source: str
    records: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.wavelength_nm = np.asarray(self.wavelength_nm, dtype=float).ravel()
        self.spectra = np.atleast_2d(np.asarray(self.spectra, dtype=float))
        k, n = len(self.names), self.wavelength_nm.size
        if self.spectra.shape != (k, n):
            raise EndmemberError(
                f"library {self.source!r}: spectra have shape {self.spectra.shape}, expected "
                f"({k}, {n}) for {k} names and {n} wavelengths"
            )
        if len(set(self.names)) != k:
            raise EndmemberError(f"library {self.source!r}: endmember names are not unique")
        if n < 2 or not np.all(np.isfinite(self.wavelength_nm)) \
                or not np.all(np.diff(self.wavelength_nm) > 0):
            raise EndmemberError(
                f"library {self.source!r}: wavelengths must be finite, strictly increasing and "
                "at least two"
            )
        if self.fwhm_nm is not None:
            self.fwhm_nm = np.asarray(self.fwhm_nm, dtype=float)
            if self.fwhm_nm.shape not in ((n,), (k, n)):
                raise EndmemberError(
                    f"library {self.source!r}: fwhm_nm has shape {self.fwhm_nm.shape}, expected "
                    f"({n},) or ({k}, {n})"
                )
        if self.records is not None and len(self.records) != k:
            raise EndmemberError(f"library {self.source!r}: {len(self.records)} records for "
                                 f"{k} names")

    def __len__(self) -> int:
        return len(self.names)

    def select(self, names: Sequence[str]) -> SpectralLibrary:
        """Sub-library with ``names`` (case-insensitive) in the given order."""
        lookup = {n.lower(): i for i, n in enumerate(self.names)}
        unknown = [n for n in names if str(n).lower() not in lookup]
        if unknown:
            raise EndmemberError(
                f"unknown endmember(s) {', '.join(map(str, unknown))} in {self.source}; "
                f"available: {', '.join(sorted(self.names))}"
            )
        idx = [lookup[str(n).lower()] for n in names]
        if len(set(idx)) != len(idx):
            raise EndmemberError(f"endmember names repeat: {', '.join(map(str, names))}")
        fwhm = self.fwhm_nm
        if fwhm is not None and fwhm.ndim == 2:
            fwhm = fwhm[idx]
        return SpectralLibrary(
            names=[self.names[i] for i in idx], wavelength_nm=self.wavelength_nm.copy(),
            spectra=self.spectra[idx].copy(), fwhm_nm=None if fwhm is None else fwhm.copy(),
            source=self.source,
            records=None if self.records is None else [self.records[i] for i in idx],
        )


# --------------------------------------------------------------------------------------------
# CSV reading / writing


def _parse_float(token: str) -> float:
    """One CSV cell -> float; empty/'nan' -> NaN, splib07 fill -> NaN; ValueError otherwise."""
    text = token.strip()
    if text.lower() in _NAN_TOKENS:
        return math.nan
    value = float(text)
    return math.nan if value < FILL_BELOW else value


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def read_endmember_csv(path: str | Path) -> SpectralLibrary:
    """Read user endmembers from a CSV: one wavelength column + one column per endmember.

    Layout: a header row, then one row per wavelength. The wavelength column is named
    ``wavelength_nm`` (``wavelength``/``wavelength_um`` are accepted, case-insensitive); an
    optional ``fwhm_nm`` (or ``fwhm``) column gives band widths; every other column is an
    endmember named by its header. Any wavelength grid works. Wavelengths are nm, except that when
    every value is below 30 they are taken as micrometres and multiplied by 1000 (the fwhm column
    then too). Comma, semicolon or tab separated; a UTF-8 byte-order mark is tolerated. Empty cells,
    ``nan`` and the splib07 fill value (-1.23e34) are missing values (NaN). Rows may be in
    decreasing wavelength order (they are reversed).

    Returns:
        SpectralLibrary with spectra (k, L0), wavelength_nm (L0,), fwhm_nm (L0,) or None.

    Raises:
        EndmemberError: unreadable file, missing wavelength column, non-numeric cell,
            non-monotonic or repeated wavelengths, or no endmember column.
    """
    path = Path(path)
    if not path.exists():
        raise EndmemberError(f"endmember file not found: {path}")
    # a regular file of at most ENDMEMBER_LIMIT (64 MiB), never a FIFO or /dev/zero
    text = read_small_text(path, ENDMEMBER_LIMIT, "endmember file (--endmembers)",
                           EndmemberError)
    numbered = [(no, ln) for no, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if not numbered:
        raise EndmemberError(f"endmember file {path} is empty")
    line_no = [no for no, _ in numbered]
    lines = [ln for _, ln in numbered]
    rows = list(csv.reader(lines, delimiter=_sniff_delimiter(lines[0])))
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    wl_col = next((i for i, h in enumerate(lower) if h.startswith("wavelength")
                   or h in ("wl", "lambda")), None)
    if wl_col is None:
        raise EndmemberError(
            f"endmember file {path} has no wavelength column (expected 'wavelength_nm'); "
            f"columns: {', '.join(header)}"
        )
    fwhm_col = next((i for i, h in enumerate(lower) if h.startswith("fwhm")), None)
    em_cols = [i for i in range(len(header)) if i not in (wl_col, fwhm_col)]
    if not em_cols:
        raise EndmemberError(f"endmember file {path} has no endmember columns besides "
                             f"{header[wl_col]!r}")
    names = [header[i] for i in em_cols]
    if any(not n for n in names):
        raise EndmemberError(f"endmember file {path}: an endmember column has an empty header")
    if len({n.lower() for n in names}) != len(names):
        raise EndmemberError(f"endmember file {path}: endmember column names repeat")
    values = np.empty((len(rows) - 1, len(header)))
    for r, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise EndmemberError(f"endmember file {path} line {line_no[r + 1]}: {len(row)} "
                                 f"fields, header has {len(header)}")
        for c, token in enumerate(row):
            try:
                values[r, c] = _parse_float(token)
            except ValueError:
                raise EndmemberError(
                    f"endmember file {path} line {line_no[r + 1]}, column {header[c]!r}: "
                    f"{token.strip()!r} is not a number"
                ) from None
    if values.shape[0] < 2:
        raise EndmemberError(f"endmember file {path} needs at least two wavelength rows")
    wl = values[:, wl_col]
    if not np.all(np.isfinite(wl)):
        raise EndmemberError(f"endmember file {path}: column {header[wl_col]!r} has empty cells")
    order = slice(None)
    if np.all(np.diff(wl) < 0):
        order = slice(None, None, -1)
    elif not np.all(np.diff(wl) > 0):
        raise EndmemberError(
            f"endmember file {path}: wavelengths are not strictly monotonic (first problem at "
            f"{wl[1:][np.diff(wl) <= 0][0]:g})"
        )
    values = values[order]
    scale = 1000.0 if np.nanmax(np.abs(values[:, wl_col])) < MICRON_LIMIT else 1.0
    fwhm = None if fwhm_col is None else values[:, fwhm_col] * scale
    spectra = values[:, em_cols].T
    empty = [n for n, s in zip(names, spectra, strict=True) if not np.any(np.isfinite(s))]
    if empty:
        raise EndmemberError(f"endmember file {path}: column(s) {', '.join(empty)} have no values")
    return SpectralLibrary(names=names, wavelength_nm=values[:, wl_col] * scale, spectra=spectra,
                           fwhm_nm=fwhm, source=str(path))


def write_endmember_csv(lib: SpectralLibrary, path: str | Path) -> Path:
    """Write ``lib`` in the layout :func:`read_endmember_csv` reads (nm; '' = NaN).

    A per-entry (k, L0) ``fwhm_nm`` cannot be stored in that layout and is dropped.
    """
    path = Path(path)
    fwhm = lib.fwhm_nm if lib.fwhm_nm is not None and lib.fwhm_nm.ndim == 1 else None
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["wavelength_nm", *(["fwhm_nm"] if fwhm is not None else []), *lib.names])
        for i, wl in enumerate(lib.wavelength_nm):
            row = [repr(float(wl))]
            if fwhm is not None:
                row.append("" if not np.isfinite(fwhm[i]) else repr(float(fwhm[i])))
            row += ["" if not np.isfinite(v) else repr(float(v)) for v in lib.spectra[:, i]]
            writer.writerow(row)
    return path


# --------------------------------------------------------------------------------------------
# Bundled USGS library


@functools.lru_cache(maxsize=1)
def _usgs_index() -> tuple[dict[str, str], ...]:
    with (DATA_DIR / USGS_INDEX).open(encoding="utf-8", newline="") as fh:
        return tuple(dict(row) for row in csv.DictReader(fh))


@functools.lru_cache(maxsize=4)
def _usgs_grid(filename: str) -> SpectralLibrary:
    return read_endmember_csv(DATA_DIR / filename)


def list_usgs_minerals() -> list[str]:
    """Short names of the bundled USGS splib07 minerals, sorted (e.g. 'alunite', 'kaolinite')."""
    return sorted(row["name"] for row in _usgs_index())


def load_usgs_library(names: Iterable[str] | None = None) -> SpectralLibrary:
    """The bundled USGS splib07 mineral library, or the ``names`` subset (case-insensitive).

    Entries stored on one grid come back on it (1 nm, 350-2500 nm, ``fwhm_nm`` None; or the
    AVIRIS-95 224-channel grid with its FWHM). A request mixing both grids comes back on a common
    grid: 1 nm steps plus every original sample position (so no sample is lost), each entry
    linearly interpolated and NaN outside its own range, with a per-entry (k, L0) ``fwhm_nm``
    holding each entry's native resolution (NaN = unknown, i.e. the 1 nm records).
    ``records`` holds the splib07 record ids.

    Raises:
        EndmemberError: a name is not in the library (the message lists the available names).
    """
    index = {row["name"]: row for row in _usgs_index()}
    if isinstance(names, str):
        names = [names]
    wanted = list(index) if names is None else [str(n).strip().lower() for n in names]
    unknown = [n for n in wanted if n not in index]
    if unknown:
        raise EndmemberError(
            f"unknown USGS mineral(s) {', '.join(unknown)}; available: "
            f"{', '.join(list_usgs_minerals())}"
        )
    if not wanted:
        raise EndmemberError("no USGS minerals requested")
    if len(set(wanted)) != len(wanted):
        raise EndmemberError(f"USGS mineral names repeat: {', '.join(wanted)}")
    files = sorted({index[n]["file"] for n in wanted})
    records = [index[n]["record"] for n in wanted]
    if len(files) == 1:
        lib = _usgs_grid(files[0]).select(wanted)
        lib.source, lib.records = USGS_SOURCE, records
        return lib
    grids = {f: _usgs_grid(f) for f in files}
    lo = math.floor(min(g.wavelength_nm[0] for g in grids.values()))
    hi = math.ceil(max(g.wavelength_nm[-1] for g in grids.values()))
    steps = np.arange(lo, hi + FINE_STEP_NM / 2, FINE_STEP_NM)
    common = np.unique(np.concatenate([steps, *(g.wavelength_nm for g in grids.values())]))
    spectra = np.full((len(wanted), common.size), np.nan)
    fwhm = np.full((len(wanted), common.size), np.nan)
    for i, name in enumerate(wanted):
        grid = grids[index[name]["file"]]
        j = grid.names.index(name)
        spectra[i] = _interp_finite(grid.wavelength_nm, grid.spectra[j], common)
        if grid.fwhm_nm is not None:
            fwhm[i] = _interp_finite(grid.wavelength_nm, grid.fwhm_nm, common)
    return SpectralLibrary(names=wanted, wavelength_nm=common, spectra=spectra, fwhm_nm=fwhm,
                           source=USGS_SOURCE, records=records)


def _interp_finite(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """Linear interpolation of the finite part of ``y``; NaN outside its first..last sample."""
    ok = np.isfinite(y)
    out = np.full(x_new.shape, np.nan)
    if ok.sum() < 2:
        return out
    inside = (x_new >= x[ok][0]) & (x_new <= x[ok][-1])
    out[inside] = np.interp(x_new[inside], x[ok], y[ok])
    return out


# --------------------------------------------------------------------------------------------
# Resampling


def _spacing(wl: np.ndarray) -> np.ndarray:
    """(L,) distance to the nearest neighbouring centre (nm)."""
    d = np.diff(wl)
    return np.minimum(np.r_[d[:1], d], np.r_[d, d[-1:]])


def _target_bands(wavelength_nm: Sequence[float] | np.ndarray,
                  fwhm_nm: Sequence[float] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate target centres (nm, distinct, any order) and fill unknown FWHM from the
    nearest-neighbour spacing."""
    wl = np.asarray(wavelength_nm, dtype=float).ravel()
    if wl.size == 0 or not np.all(np.isfinite(wl)):
        raise EndmemberError("target wavelengths must be a non-empty list of finite values (nm)")
    if np.unique(wl).size != wl.size:
        raise EndmemberError("target wavelengths repeat; every band needs its own centre")
    if wl.max() < MICRON_LIMIT:
        raise EndmemberError(f"target wavelengths {wl.min():g}-{wl.max():g} look like "
                             "micrometres; pass nanometres")
    fw = np.full(wl.size, np.nan) if fwhm_nm is None else np.asarray(fwhm_nm, float).ravel()
    if fw.size != wl.size:
        raise EndmemberError(f"{fw.size} FWHM values for {wl.size} target bands")
    if np.any(fw[np.isfinite(fw)] <= 0):
        raise EndmemberError("target FWHM values must be positive")
    if not np.all(np.isfinite(fw)):
        if wl.size < 2:
            raise EndmemberError("a single target band needs a known FWHM")
        order = np.argsort(wl)
        spacing = np.empty(wl.size)
        spacing[order] = _spacing(wl[order])
        fw = np.where(np.isfinite(fw), fw, spacing)
    return wl, fw


def _valid_runs(wl: np.ndarray, y: np.ndarray) -> list[tuple[int, int]]:
    """Index runs [a, b] of finite samples, bridging NaN gaps up to the small-gap width."""
    idx = np.flatnonzero(np.isfinite(y))
    if idx.size == 0:
        return []
    max_gap = max(SMALL_GAP_NM, 3.0 * float(np.median(np.diff(wl))))
    breaks = np.flatnonzero(np.diff(wl[idx]) > max_gap)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _fill_small_gaps(wl: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear interpolation over the bridged NaN gaps; edges and large gaps stay NaN."""
    out = y.copy()
    for a, b in _valid_runs(wl, y):
        seg = slice(a, b + 1)
        ok = np.isfinite(y[seg])
        if not ok.all():
            out[seg] = np.interp(wl[seg], wl[seg][ok], y[seg][ok])
    return out


def _covered(wl: np.ndarray, y: np.ndarray, centres: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """(L,) bool: band centre within half a FWHM of a valid run of the spectrum."""
    cov = np.zeros(centres.size, bool)
    for a, b in _valid_runs(wl, y):
        cov |= (centres >= wl[a] - fwhm / 2) & (centres <= wl[b] + fwhm / 2)
    return cov


def _ranges(runs: Sequence[tuple[float, float]]) -> str:
    """'400-1290 nm, 2450-2500 nm' for (first, last) centres of runs of target bands."""
    return ", ".join(f"{a:g}-{b:g} nm" if a != b else f"{a:g} nm" for a, b in runs)


def coverage_mask(lib: SpectralLibrary, wavelength_nm: Sequence[float] | np.ndarray,
                  fwhm_nm: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """(k, L) bool: entry ``i`` has data within half a FWHM of target band ``j``."""
    wl, fw = _target_bands(wavelength_nm, fwhm_nm)
    return np.array([_covered(lib.wavelength_nm, s, wl, fw) for s in lib.spectra]).reshape(
        len(lib), wl.size)


def _band_runs(mask: np.ndarray, wl: np.ndarray, order: np.ndarray) -> list[tuple[float, float]]:
    """(first, last) centres of the runs of ``mask`` bands in wavelength order."""
    idx = np.flatnonzero(mask[order])  # positions in wavelength order
    if idx.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(idx) > 1)
    starts, ends = idx[np.r_[0, cuts + 1]], idx[np.r_[cuts, idx.size - 1]]
    return [(wl[order[a]], wl[order[b]]) for a, b in zip(starts, ends, strict=True)]


def _drop_spec(runs: Sequence[tuple[float, float]]) -> str:
    """A ``--drop-bands`` value (inclusive nm ranges) for band-centre runs."""
    return ",".join(f"{math.floor(a * 10) / 10:g}-{math.ceil(b * 10) / 10:g}nm" for a, b in runs)


def _check_coverage(lib: SpectralLibrary, wl: np.ndarray, fw: np.ndarray) -> None:
    """EndmemberError naming what the library covers and what the scene needs, if any target
    band lacks data in some entry. With at least half of the bands covered the message gives
    the ``--drop-bands`` value that removes the rest; with fewer, too little would be left."""
    cov = coverage_mask(lib, wl, fw)
    bad = ~cov.all(axis=0)
    if not bad.any():
        return
    order = np.argsort(wl)
    runs = _band_runs(bad, wl, order)
    covered = _band_runs(~bad, wl, order)
    n_ok = int(wl.size - bad.sum())
    limiting = [n for n, c in zip(lib.names, cov, strict=True) if not c.all()]
    more = f" and {len(limiting) - 5} more" if len(limiting) > 5 else ""
    head = (f"endmember library {lib.source!r} covers {n_ok} of the scene's {wl.size} bands "
            f"({_ranges(covered) if covered else 'none'}; the scene needs "
            f"{wl[order[0]]:g}-{wl[order[-1]]:g} nm): no data at {_ranges(runs)} "
            f"({int(bad.sum())} bands) in {', '.join(limiting[:5])}{more}")
    if 2 * n_ok < wl.size:
        raise EndmemberError(
            f"{head}; too few bands to unmix with it (under half): supply a library that "
            "covers the scene's range (dropping the rest with --drop-bands would leave too "
            "little)")
    raise EndmemberError(f"{head}; drop those bands (--drop-bands {_drop_spec(runs)}) or "
                         "supply a library that covers them")


def _fine_grid(lib: SpectralLibrary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Library on a grid no coarser than FINE_STEP_NM: wl (Lf,), spectra (k, Lf), native FWHM
    (k, Lf) (unknown FWHM -> the original sample spacing). Small NaN gaps are filled first."""
    wl = lib.wavelength_nm
    k = len(lib)
    native = np.broadcast_to(np.nan if lib.fwhm_nm is None else lib.fwhm_nm, (k, wl.size))
    native = np.where(np.isfinite(native), native, _spacing(wl)[None, :])
    filled = np.array([_fill_small_gaps(wl, s) for s in lib.spectra])
    if np.max(np.diff(wl)) <= FINE_STEP_NM * 1.001:
        return wl, filled, native
    fine = np.arange(wl[0], wl[-1], FINE_STEP_NM)
    fine = np.unique(np.r_[fine, wl])  # keep the original samples as knots
    spectra = np.full((k, fine.size), np.nan)
    for i, s in enumerate(filled):
        for a, b in _valid_runs(wl, s):
            seg = (fine >= wl[a]) & (fine <= wl[b])
            spectra[i, seg] = np.interp(fine[seg], wl[a:b + 1], s[a:b + 1]) if b > a else s[a]
    fwhm = np.array([np.interp(fine, wl, row) for row in native])
    return fine, spectra, fwhm


def resample_to_bands(lib: SpectralLibrary, wavelength_nm: Sequence[float] | np.ndarray,
                      fwhm_nm: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Convolve library spectra to sensor bands with Gaussian SRFs (``spectral.BandResampler``).

    Args:
        lib: spectra (k, L0) on ``lib.wavelength_nm`` (nm).
        wavelength_nm: (L,) target band centres, nm, distinct (any order, e.g. AVIRIS with
            overlapping spectrometers).
        fwhm_nm: (L,) target FWHM, nm; None or NaN entries are derived from the band spacing
            (distance to the nearest neighbouring centre).

    Libraries coarser than 1 nm are first interpolated linearly to 1 nm (original samples kept
    as knots). Each target band uses a Gaussian of FWHM sqrt(fwhm_target^2 - fwhm_library^2)
    (at least 1 nm; unknown library FWHM = its sample spacing), so spectra that are already
    convolved (e.g. AVIRIS-95 records) are not smoothed twice; ``BandResampler`` truncates the
    Gaussian at +-FWHM/2 and renormalises. NaN library samples never leak into the output: gaps
    up to 20 nm are interpolated over, and elsewhere the SRF weights are renormalised over the
    finite samples. A band that the half-FWHM tolerance covers at a data edge but whose SRF
    reaches no sample takes the nearest data value.

    Returns:
        (k, L) float64 resampled spectra, all finite.

    Raises:
        EndmemberError: a target band centre lies more than half its FWHM outside the data of
            some library entry (the message names the uncovered range and the entries).
    """
    wl, fw = _target_bands(wavelength_nm, fwhm_nm)
    _check_coverage(lib, wl, fw)
    fine_wl, spectra, native = _fine_grid(lib)
    out = np.empty((len(lib), wl.size))
    groups: dict[bytes, list[int]] = {}
    for i, row in enumerate(native):
        groups.setdefault(np.round(row, 6).tobytes(), []).append(i)
    for rows in groups.values():
        lib_fwhm = np.interp(wl, fine_wl, native[rows[0]])
        eff = np.sqrt(np.maximum(fw**2 - lib_fwhm**2, MIN_KERNEL_NM**2))
        matrix = np.nan_to_num(BandResampler(fine_wl, wl, None, eff).matrix)  # (L, Lf)
        block = spectra[rows]
        valid = np.isfinite(block)
        num = np.where(valid, block, 0.0) @ matrix.T
        den = valid.astype(float) @ matrix.T
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(den > 1e-9, num / np.where(den > 1e-9, den, 1.0), np.nan)
    for i in np.flatnonzero(~np.isfinite(out).all(axis=1)):
        # a band whose centre is within half a FWHM of the data edge (so covered) but whose
        # narrowed SRF reaches no sample, e.g. AVIRIS-NG 381 nm against AVIRIS-95 records
        # starting at 383 nm: take the nearest data (linear inside, edge value outside)
        ok, miss = np.isfinite(spectra[i]), ~np.isfinite(out[i])
        if ok.any():
            out[i, miss] = np.interp(wl[miss], fine_wl[ok], spectra[i, ok])
    if not np.all(np.isfinite(out)):
        bad = np.flatnonzero(~np.isfinite(out).all(axis=0))
        raise EndmemberError(
            f"endmember library {lib.source!r} has no data under {bad.size} target band(s) near "
            f"{wl[bad[0]]:g} nm; drop those bands (--drop-bands) or supply a library that "
            "covers them"
        )
    return out


# --------------------------------------------------------------------------------------------
# Naming


def spectral_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) spectral angles (rad) between rows of ``a`` (n, L) and ``b`` (m, L)."""
    a = np.atleast_2d(a)
    b = np.atleast_2d(b)
    na = np.linalg.norm(a, axis=1)[:, None]
    nb = np.linalg.norm(b, axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (a @ b.T) / (na * nb)
    return np.arccos(np.clip(np.nan_to_num(cos, nan=-1.0), -1.0, 1.0))


def name_endmembers(M: np.ndarray, wavelength_nm: Sequence[float] | np.ndarray,
                    fwhm_nm: Sequence[float] | np.ndarray | None = None,
                    threshold_rad: float = DEFAULT_NAME_THRESHOLD_RAD,
                    library: SpectralLibrary | None = None,
                    method: str = "sam") -> list[tuple[str, float]]:
    """Name extracted endmembers after their closest library mineral.

    ``method="sam"`` (this function's default, kept for compatibility): full-spectrum spectral
    angle, below. ``method="features"`` (what ``hsu-geo unmix`` uses): diagnostic absorption
    features after continuum removal
    (:func:`hsu_geo.endmembers.features.name_endmembers_by_features`): names may be ``"A or
    B"``, ``threshold_rad`` is not used, and each returned pair also carries ``.confidence`` and
    ``.info`` (the evidence, or why the name cannot be decided).

    Args:
        M: (k, L) endmember spectra on the scene bands (NaN bands are ignored).
        wavelength_nm: (L,) scene band centres, nm. fwhm_nm: (L,) nm, None/NaN = from spacing.
        threshold_rad: largest spectral angle accepted as a match. The default 0.10 rad (5.7 deg)
            is the usual SAM maximum angle (ENVI's default; mineral-mapping studies use about
            0.05-0.15 rad): tight enough that a noisy or mixed pixel spectrum does not take the
            name of an unrelated mineral, loose enough to tolerate atmospheric-correction and
            grain-size differences. Note that related minerals (kaolinite/dickite/halloysite,
            alunite/natroalunite, calcite/dolomite) lie within a few hundredths of a radian of
            each other, so the name is a best guess, not an identification.
        library: reference spectra; default the bundled USGS library. Entries without data under
            every scene band are skipped.

    Returns:
        One ``(name, angle_rad)`` per endmember: the matched mineral name when the best angle is
        below the threshold, else ``em_<i>`` (1-based position). Repeated names get ``_2``,
        ``_3`` in endmember order. The angle is the best-match angle (NaN if no library entry
        covers the scene bands), for the run record.
    """
    M = np.atleast_2d(np.asarray(M, dtype=float))
    wl, fw = _target_bands(wavelength_nm, fwhm_nm)
    if M.shape[1] != wl.size:
        raise EndmemberError(f"endmembers have {M.shape[1]} bands but {wl.size} wavelengths "
                             "were given")
    lib = load_usgs_library() if library is None else library
    if method == "features":
        from hsu_geo.endmembers.features import name_endmembers_by_features

        return list(name_endmembers_by_features(M, wl, fw, library=lib))
    if method != "sam":
        raise EndmemberError(f"naming method {method!r}: use 'features' or 'sam'")
    usable = [n for n, c in zip(lib.names, coverage_mask(lib, wl, fw), strict=True) if c.all()]
    angles = np.full((M.shape[0], 0), np.nan)
    if usable:
        ref = resample_to_bands(lib.select(usable), wl, fw)
        angles = np.array([
            spectral_angle(m[np.isfinite(m)], ref[:, np.isfinite(m)])[0] for m in M
        ]).reshape(M.shape[0], len(usable))
    result: list[tuple[str, float]] = []
    seen: dict[str, int] = {}
    for i in range(M.shape[0]):
        if angles.shape[1] == 0:
            result.append((f"em_{i + 1}", math.nan))
            continue
        j = int(np.argmin(angles[i]))
        best = float(angles[i, j])
        if best >= threshold_rad:
            result.append((f"em_{i + 1}", best))
            continue
        name = usable[j]
        seen[name] = seen.get(name, 0) + 1
        result.append((name if seen[name] == 1 else f"{name}_{seen[name]}", best))
    return result


# --------------------------------------------------------------------------------------------
# Checks of a library against a scene: overall scale and how much of the scene it explains

#: scene and library brightness differing by more than this factor (either way) is reported
SCALE_WARN_RATIO = 3.0
#: ... and by more than this factor is taken as different units (percent or x10000 reflectance)
UNIT_MISMATCH_RATIO = 30.0
#: a median per-pixel relative residual ``||y - fit|| / ||y||`` above this is reported
RESIDUAL_WARN = 0.20
#: reflectance on a 0-1 scale has a mean level below this; above it the values are scaled
_MAX_UNIT_LEVEL = 1.5
_CHUNK = 16_384


def _unit_hint(level: float, what: str) -> str | None:
    """How ``what`` ('the scene'/'the library') looks scaled, or None for 0-1 reflectance."""
    if level <= _MAX_UNIT_LEVEL:
        return None
    factor = 100 if level <= 150 else 10000
    label = "percent (x100)" if factor == 100 else "x10000"
    if what == "the scene":
        return (f"the scene looks like {label} reflectance without its scale factor: give it "
                f"one (--scale {1 / factor:g}, or ENVI header 'reflectance scale factor = "
                f"{factor}', GeoTIFF tag reflectance_scale_factor={factor})")
    return (f"the library looks like {label} reflectance: divide its values by {factor} "
            f"(--endmembers FILE:scale={1 / factor:g})")


def library_scale_check(Y: np.ndarray, M: np.ndarray, *,
                        scaled: bool | None) -> tuple[dict, list[str]]:
    """Compare the overall level of scene pixels ``Y (N, L)`` and library spectra ``M (k, L)``
    on the same (the scene's kept) bands.

    The ratio is the median pixel brightness (mean over bands) over the median library
    brightness (mean over bands of each entry). Beyond :data:`SCALE_WARN_RATIO` either way a
    warning is returned, worded for the fit: ``scaled=True`` (a per-pixel brightness absorbs
    the factor), ``False`` (plain FCLS, which cannot) or ``None`` (another model). Beyond
    :data:`UNIT_MISMATCH_RATIO` the two are in different units (percent or x10000
    reflectance against 0-1): the message names the side whose level is not 0-1 reflectance
    and the scale factor to use; with ``scaled=False`` that is an :class:`EndmemberError`
    (sum-to-one abundances across units are meaningless).

    Returns ``(info, warnings)``, info ``{"scene_median_brightness",
    "library_median_brightness", "ratio", "bands"}``. Raises EndmemberError when the library
    level is not positive.
    """
    Y = np.asarray(Y)
    M = np.asarray(M, dtype=float)
    scene = float(np.median(np.mean(Y, axis=1, dtype=np.float64))) if Y.shape[0] else math.nan
    lib = float(np.median(M.mean(axis=1)))
    info = {"scene_median_brightness": scene, "library_median_brightness": lib,
            "ratio": math.nan, "bands": int(M.shape[1])}
    if not lib > 0:
        raise EndmemberError(f"library spectra have a median mean value of {lib:.4g} over the "
                             f"scene's {M.shape[1]} bands; reflectance must be positive")
    if not scene > 0:
        return info, [f"the sampled scene pixels have a median brightness of {scene:.4g} "
                      "(mean over bands): mostly no-data or dark pixels, so the library fit "
                      "says little; check the nodata value or crop the scene"]
    ratio = scene / lib
    info["ratio"] = ratio
    factor = max(ratio, 1.0 / ratio)
    if factor <= SCALE_WARN_RATIO:
        return info, []
    times = f"{factor:,.0f}" if factor >= 100 else f"{factor:.2g}"
    head = (f"scene pixels are {times}x {'brighter' if ratio > 1 else 'darker'} than "
            f"the library spectra (median brightness {scene:.4g} vs {lib:.4g} over the "
            f"{M.shape[1]} shared bands)")
    if factor > UNIT_MISMATCH_RATIO:
        hints = [h for h in (_unit_hint(scene, "the scene"), _unit_hint(lib, "the library"))
                 if h] or ["neither looks like scaled reflectance: check the units of both"]
        msg = f"{head}: different units; {'; '.join(hints)}"
        if scaled is False:
            raise EndmemberError(f"{msg} (plain FCLS cannot fit across units; "
                                 "--set brightness=scaled would absorb the factor)")
        if scaled:
            msg += (". The abundances are unaffected (the per-pixel brightness absorbs the "
                    "factor) but the brightness is in mixed units")
        return info, [msg]
    if scaled:
        tail = ("the per-pixel brightness absorbs this, but a large factor usually means "
                "materials missing from the library (vegetation, shade, water) or a scale "
                "problem")
    elif scaled is False:
        tail = ("plain FCLS fits at the library's brightness, so the abundances are biased: "
                "use --set brightness=scaled")
    else:
        tail = ("this model does not separate a per-pixel brightness from the fractions "
                "(fcls does: --set brightness=scaled, its default with a library)")
    return info, [f"{head}; {tail}"]


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else math.nan


def library_fit_diagnostics(Y: np.ndarray, M: np.ndarray, A: np.ndarray,
                            brightness: np.ndarray | None = None,
                            names: Sequence[str] | None = None,
                            reconstruct: Callable[[np.ndarray], np.ndarray] | None = None,
                            ) -> tuple[dict, list[str]]:
    """How well library endmembers explain scene pixels, for the run record.

    Args:
        Y: (N, L) pixels; M: (k, L) endmembers on the same bands; A: (N, k) abundances.
        brightness: (N,) per-pixel brightness of a scaled fit (modelled spectra
            ``s * A @ M``), or None (modelled spectra ``A @ M``).
        names: endmember names (default ``em_1``...).
        reconstruct: the model's map from abundances ``(n, k)`` to spectra ``(n, L)``
            (default ``A @ M``), e.g. ``Unmixer.reconstruct`` of a nonlinear model.

    Returns ``(info, warnings)``: info holds the pixel count, the median and 95th percentile of
    the relative residual ``||y - fit|| / ||y||`` per pixel, the median and mean
    reconstruction RMSE (units of Y), per endmember the mean, median, 5th/95th percentile and
    the share of pixels where it is the largest fraction, and the brightness percentiles. A
    warning is returned when the median relative residual exceeds :data:`RESIDUAL_WARN`.
    """
    Y = np.asarray(Y)
    M = np.asarray(M, dtype=np.float64)
    A_in = np.asarray(A)
    A = A_in.astype(np.float64)
    N, k = A.shape
    names = [f"em_{i + 1}" for i in range(k)] if names is None else [str(n) for n in names]
    rel = np.full(N, np.nan)
    rmse = np.empty(N)
    for a in range(0, N, _CHUNK):
        b = min(a + _CHUNK, N)
        fit = A[a:b] @ M if reconstruct is None else \
            np.array(reconstruct(A_in[a:b]), dtype=np.float64)
        if brightness is not None:
            fit *= np.asarray(brightness[a:b], dtype=np.float64)[:, None]
        y = Y[a:b].astype(np.float64)
        r = np.linalg.norm(y - fit, axis=1)
        yn = np.linalg.norm(y, axis=1)
        rmse[a:b] = r / math.sqrt(M.shape[1])
        np.divide(r, yn, out=rel[a:b], where=yn > 0)
    rel_ok = rel[np.isfinite(rel)]
    dominant = np.bincount(np.argmax(A, axis=1), minlength=k) / max(N, 1) if N else np.zeros(k)
    info: dict = {
        "pixels": int(N),
        "median_relative_residual": float(np.median(rel_ok)) if rel_ok.size else math.nan,
        "p95_relative_residual": _pct(rel_ok, 95),
        "median_rmse": float(np.median(rmse)) if N else math.nan,
        "mean_rmse": float(rmse.mean()) if N else math.nan,
        "abundance": {n: {"mean": float(A[:, i].mean()) if N else math.nan,
                          "median": float(np.median(A[:, i])) if N else math.nan,
                          "p5": _pct(A[:, i], 5), "p95": _pct(A[:, i], 95),
                          "dominant_share": float(dominant[i])}
                      for i, n in enumerate(names)},
    }
    if brightness is not None:
        s = np.asarray(brightness, dtype=np.float64)
        info["brightness"] = {"median": float(np.median(s)) if N else math.nan,
                              "p5": _pct(s, 5), "p95": _pct(s, 95),
                              "min": float(s.min()) if N else math.nan,
                              "max": float(s.max()) if N else math.nan}
    warnings: list[str] = []
    med = info["median_relative_residual"]
    if med > RESIDUAL_WARN:
        warnings.append(
            f"the library endmembers leave a median relative residual of {100 * med:.0f} % "
            f"(||y - fit|| / ||y|| over {rel_ok.size} sampled pixels; above "
            f"{100 * RESIDUAL_WARN:.0f} %): the scene holds materials the library lacks "
            "(e.g. vegetation, soil, water) or the spectra do not match it; read the "
            "abundances with care, add endmembers, or extract them from the scene (omit "
            "--library/--endmembers)")
    return info, warnings
