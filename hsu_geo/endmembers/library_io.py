"""Spectral libraries as users have them, for ``--endmembers``: text tables and ENVI libraries.

:func:`read_library` takes ``FILE[:KEY=VALUE...]`` and returns a
:class:`~hsu_geo.endmembers.library.SpectralLibrary` (nm, increasing grid). Formats:

* **ENVI spectral library** (``.sli`` + ``.hdr``, or ``.sli.hdr``, or a header-less data file
  with ``FILE.hdr``; give either file), read with ``spectral.io.envi.open``: ``spectra names``,
  ``wavelength`` and ``wavelength units``, ``fwhm``, ``data ignore value`` (-> NaN) and
  ``reflectance scale factor`` (values are divided by it). hsu-geo's own ``_endmembers.sli``,
  EnMAP-Box, earthlib and USGS splib ENVI libraries are all of this kind. splib records that are
  not spectra (``error bars to preceding``, the wavelength/resolution records) are dropped. A
  CSV next to the library with the same stem and a ``spectra names``/``name`` column (EnMAP-Box,
  earthlib) supplies class labels for ``by=``.
* **Long table** (one row per wavelength): a wavelength column (``wavelength_nm``,
  ``wavelength``, ``wavelength_um``, ``wl``, ``nm``...), optional ``fwhm``, an optional bad-band
  column (``bbl``: rows with 0 are dropped), index columns that are ignored (``band``,
  ``channel``, ``index``... as in hsu-geo's own ``_endmembers.csv``) and one column per
  spectrum named by its header. A table without a header row is read as wavelength + spectra.
* **Wide table** (one row per spectrum), e.g. NASA EMIT SpectralUnmixing.jl libraries: the
  header holds the wavelengths as numbers, plus label columns: a ``name`` column names the
  spectra and a ``class`` column groups them.

Comma, semicolon, tab or whitespace separated, UTF-8 with or without a byte-order mark. Empty
cells, ``nan`` and the splib fill value (< -1e30) are missing values. Wavelengths in
micrometres (declared by the header/column name, or all values below 30) are converted to nm.
A grid that is not increasing (e.g. overlapping detectors) is sorted, and spectra at repeated
wavelengths are averaged, with a warning. Reflectance must be 0-1 (a x10000 or percent library
is reported when it meets the scene; fix it with ``scale=``).

Options after the path (``:``-separated, keys case-insensitive):

* ``class=A,B``: keep these classes. With a class column (``class`` in the file, or ``by=``)
  each class becomes one endmember, the mean of its spectra, unless ``average=no``.
* ``by=COLUMN``: the label column (in the table or the sidecar CSV) that holds the classes.
* ``average=no``: keep every spectrum of the chosen classes (named ``CLASS_1``... when
  unnamed) instead of class means.
* ``names=A,B*``: keep the spectra whose names match these (case-insensitive, shell
  wildcards ``*``/``?``), in this order.
* ``scale=FACTOR``: reflectance = stored value x FACTOR (replaces a header's scale factor),
  e.g. ``scale=0.0001`` for x10000 libraries.

Examples: ``basic_endmember_library.csv`` (EMIT: one mean spectrum per class: SOIL, PV, NPV),
``basic_endmember_library.csv:class=soil,npv:scale=0.0001``,
``library_berlin.sli:by=level_2:class=impervious,tree,soil:scale=0.0001``,
``s07_AV95_envi.hdr:names=alunite gds84*,kaolinite cm9*``.
"""

from __future__ import annotations

import csv
import fnmatch
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hsu_geo.endmembers.library import FILL_BELOW, MICRON_LIMIT, SpectralLibrary
from hsu_geo.endmembers.library import _parse_float as _number  # one cell -> float
from hsu_geo.errors import ConfigError, EndmemberError
from hsu_geo.safe_io import ENDMEMBER_LIMIT, HEADER_LIMIT, check_regular_file, read_small_file

log = logging.getLogger(__name__)

WHAT = "endmember file (--endmembers)"
OPTION_KEYS = ("class", "names", "by", "average", "scale")
TABLE_SUFFIXES = (".csv", ".txt", ".tsv", ".tab", ".dat")
#: long-table columns that number the rows rather than hold a spectrum
INDEX_COLUMNS = frozenset({"", "band", "bands", "band_number", "band number", "bandnumber",
                           "original band", "original_band", "channel", "index", "idx", "#",
                           "no", "unnamed: 0"})
WAVELENGTH_COLUMNS = frozenset({"wl", "lambda", "nm", "um", "µm", "micrometers", "microns",
                                "nanometers", "nanometres", "micrometres"})
BBL_COLUMNS = frozenset({"bbl", "good_band", "good_wavelengths", "bad band list"})
#: wide-table label columns that name each spectrum, best first
NAME_COLUMNS = ("name", "spectra names", "spectra_names", "spectrum", "spectrum_name",
                "spectrum name", "names", "label", "title", "id")
CLASS_COLUMN = "class"
#: splib ENVI records that are not spectra
NOT_SPECTRA = re.compile(r"^\s*(error bars|wavelengths? in |resolution +in |bandpass)", re.I)
#: largest plausible wavelength in nm (30 µm); larger values are wavenumbers or garbage
MAX_WAVELENGTH_NM = 30_000.0
_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(nm|um|µm)?\s*$")


# --------------------------------------------------------------------------------------------
# FILE[:KEY=VALUE...]


@dataclass(frozen=True)
class LibrarySpec:
    """A parsed ``--endmembers`` value: the file and the selection options (module doc)."""

    path: Path
    classes: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    by: str | None = None
    average: bool = True
    scale: float | None = None


def _is_option(segment: str) -> bool:
    key, sep, _ = segment.partition("=")
    return bool(sep) and key.strip().lower() in OPTION_KEYS


def _items(value: str, key: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise ConfigError(f"--endmembers option {key}= is empty; give a comma-separated list")
    return items


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long for the file system
        return False


def parse_library_spec(spec: str | Path) -> LibrarySpec:
    """Split ``FILE[:KEY=VALUE...]`` (an existing file name containing ':' is taken whole)."""
    text = str(spec)
    if ":" not in text or _exists(Path(text)):
        return LibrarySpec(Path(text))
    parts = text.split(":")
    first = next((i for i in range(1, len(parts)) if _is_option(parts[i])), None)
    if first is None:
        return LibrarySpec(Path(text))
    opts: dict[str, str] = {}
    for seg in parts[first:]:
        key, sep, value = seg.partition("=")
        key = key.strip().lower()
        if not sep or key not in OPTION_KEYS:
            raise ConfigError(f"--endmembers {text!r}: {seg!r} is not an option; use "
                              f"FILE:KEY=VALUE with keys {', '.join(OPTION_KEYS)} "
                              "(e.g. lib.csv:class=soil,npv)")
        if key in opts:
            raise ConfigError(f"--endmembers {text!r}: option {key}= is given twice")
        opts[key] = value.strip()
    average = True
    if "average" in opts:
        word = opts["average"].lower()
        if word not in ("yes", "no", "true", "false", "1", "0", "mean"):
            raise ConfigError(f"--endmembers option average={opts['average']!r}: give yes or no")
        average = word in ("yes", "true", "1", "mean")
    scale = None
    if "scale" in opts:
        from hsu_geo.ingest.scale import check_scale

        scale = check_scale(opts["scale"], "--endmembers option scale=")
    if "by" in opts and not opts["by"]:
        raise ConfigError("--endmembers option by= is empty; give a column name")
    return LibrarySpec(
        path=Path(":".join(parts[:first])),
        classes=_items(opts["class"], "class") if "class" in opts else None,
        names=_items(opts["names"], "names") if "names" in opts else None,
        by=opts.get("by"), average=average, scale=scale)


def library_path(spec: str | Path) -> Path:
    """The file of a ``--endmembers`` value (options stripped)."""
    return parse_library_spec(spec).path


# --------------------------------------------------------------------------------------------
# Raw content of a library file, before selection and clean-up


@dataclass
class _Raw:
    names: list[str]
    wavelength: np.ndarray  # (L,) in the file's unit
    unit: str | None  # "nm", "um" or None (decide from the values)
    spectra: np.ndarray  # (k, L)
    fwhm: np.ndarray | None  # (L,) same unit as wavelength
    kind: str
    labels: dict[str, list[str]] = field(default_factory=dict)  # lower column -> per spectrum
    columns: list[str] = field(default_factory=list)  # label column names as written
    default_by: str | None = None
    divide_by: float = 1.0  # header reflectance scale factor
    ignore: float | None = None  # data ignore value


def _unit_of(text: str | None) -> str | None:
    t = (text or "").strip().lower()
    if t in ("micrometers", "micrometres", "microns", "micron", "um", "µm") or "micro" in t \
            or t.endswith("_um") or t.endswith("(um)") or "µm" in t:
        return "um"
    if t in ("nanometers", "nanometres", "nm") or "nano" in t or t.endswith("_nm") \
            or t.endswith("(nm)"):
        return "nm"
    return None


# ENVI ----------------------------------------------------------------------------------------


def _starts_envi(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"ENVI"
    except OSError:
        return False


def _envi_files(path: Path) -> tuple[Path, Path] | None:
    """``(header, data)`` when ``path`` is an ENVI library (given by header or data file)."""
    if path.suffix.lower() == ".hdr" or _starts_envi(path):
        hdr = path
        tried = [path.with_suffix(""), path.with_suffix(".sli"), path.with_suffix(".spl")]
        data = next((p for p in tried if p != path and p.is_file()), None)
        if data is None:
            raise EndmemberError(f"{path}: ENVI header without its data file (looked for "
                                 f"{', '.join(p.name for p in tried if p != path)}); put "
                                 "the .sli next to it")
        return hdr, data
    if path.suffix.lower() in TABLE_SUFFIXES:
        return None
    for hdr in (Path(f"{path}.hdr"), path.with_suffix(".hdr")):
        if hdr != path and hdr.is_file() and _starts_envi(hdr):
            return hdr, path
    return None


def _read_envi(hdr: Path, data: Path) -> _Raw:
    from spectral.io import envi

    check_regular_file(hdr, HEADER_LIMIT, "ENVI header of the --endmembers library",
                       EndmemberError)
    check_regular_file(data, ENDMEMBER_LIMIT, WHAT, EndmemberError)
    try:
        lib = envi.open(str(hdr), str(data))
    except Exception as exc:  # spectral raises many types (EnviException, ValueError, ...)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise EndmemberError(f"{hdr}: not a readable ENVI spectral library ({reason}); check "
                             "the header and its data file") from None
    if not isinstance(lib, envi.SpectralLibrary):
        kind = getattr(lib, "metadata", {}).get("file type", "image")
        raise EndmemberError(f"{hdr}: an ENVI {kind}, not a spectral library (file type = ENVI "
                             "Spectral Library); give a .sli library, or a CSV")
    meta = lib.metadata
    spectra = np.asarray(lib.spectra, dtype="float64")
    if spectra.ndim != 2:
        spectra = spectra.reshape(spectra.shape[0], -1)
    if lib.bands.centers is None:
        raise EndmemberError(f"{hdr}: the header has no 'wavelength' field; add the band "
                             "centres")
    names = list(lib.names) if lib.names else [f"spectrum_{i + 1}"
                                                for i in range(spectra.shape[0])]
    if len(names) != spectra.shape[0]:
        raise EndmemberError(f"{hdr}: {len(names)} spectra names for {spectra.shape[0]} "
                             "spectra; fix 'spectra names'")
    widths = lib.bands.bandwidths
    ignore = _header_float(meta.get("data ignore value"))
    factor = _header_float(meta.get("reflectance scale factor"))
    raw = _Raw(names=[str(n).strip() for n in names],
               wavelength=np.asarray(lib.bands.centers, dtype="float64"),
               unit=_unit_of(meta.get("wavelength units")),
               spectra=spectra,
               fwhm=None if not widths else np.asarray(widths, dtype="float64"),
               kind="ENVI spectral library",
               divide_by=factor if factor is not None and factor > 0 else 1.0,
               ignore=ignore)
    _add_sidecar_labels(raw, data)
    return raw


def _header_float(value: object) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _add_sidecar_labels(raw: _Raw, data: Path) -> None:
    """Labels from ``<stem>.csv`` next to an ENVI library (EnMAP-Box, earthlib), by name."""
    stem = data.with_suffix("") if data.suffix.lower() in (".sli", ".spl") else data
    side = Path(f"{stem}.csv")
    if not side.is_file():
        return
    try:
        rows = list(csv.reader(_text(side).splitlines()))
    except EndmemberError:
        return
    if len(rows) < 2:
        return
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    key = next((lower.index(c) for c in NAME_COLUMNS if c in lower), None)
    if key is None:
        return
    table = {r[key].strip().lower(): r for r in rows[1:] if len(r) == len(header)}
    for j, col in enumerate(lower):
        if j == key:
            continue
        raw.labels[col] = [table.get(n.lower(), [""] * len(header))[j].strip()
                           for n in raw.names]
        raw.columns.append(header[j])
    log.info("class labels for %s from %s (columns %s)", data, side, ", ".join(raw.columns))


# text tables ---------------------------------------------------------------------------------


def _text(path: Path) -> str:
    raw = read_small_file(path, ENDMEMBER_LIMIT, WHAT, EndmemberError)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text[:4096]:
        raise EndmemberError(
            f"{path}: not a text table and no ENVI header next to it ({path.name}.hdr or "
            f"{path.stem}.hdr); give a CSV, or an ENVI spectral library with its .hdr")
    return text


def _split(lines: list[str]) -> list[list[str]]:
    head = lines[0]
    counts = {d: head.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        return [ln.split() for ln in lines]
    return [[c.strip() for c in row] for row in csv.reader(lines, delimiter=best)]


def _header_number(token: str) -> tuple[float, str | None] | None:
    m = _NUMBER_UNIT.match(token)
    if m is None:
        return None
    return float(m.group(1)), _unit_of(m.group(2)) if m.group(2) else None


def _cells(rows: list[list[str]], cols: list[int], path: Path, line_no: list[int],
           header: list[str] | None) -> np.ndarray:
    """``(rows, len(cols))`` floats of the given columns; one-line error naming the cell."""
    out = np.empty((len(rows), len(cols)))
    for r, row in enumerate(rows):
        for c, j in enumerate(cols):
            try:
                out[r, c] = _number(row[j])
            except ValueError:
                where = f"column {header[j]!r}" if header else f"column {j + 1}"
                raise EndmemberError(f"{path} line {line_no[r]}, {where}: {row[j]!r} is not a "
                                     "number; fix the cell or remove the column") from None
    return out


def _read_table(path: Path) -> _Raw:
    numbered = [(no, ln) for no, ln in enumerate(_text(path).splitlines(), start=1)
                if ln.strip()]
    if not numbered:
        raise EndmemberError(f"{path}: the endmember file is empty")
    rows = _split([ln for _, ln in numbered])
    line_no = [no for no, _ in numbered]
    width = len(rows[0])
    header = rows[0]
    lower = [h.lower() for h in header]
    numeric = [_header_number(h) for h in header]
    if any(h.startswith("wave") or h in WAVELENGTH_COLUMNS for h in lower):
        layout = "long"
    elif all(n is not None for n in numeric):
        layout = "headerless" if _looks_long_headerless(rows) else "wide"
    elif sum(n is not None for n in numeric) >= 2:
        layout = "wide"
    else:
        raise EndmemberError(
            f"{path}: no wavelengths found: give a column named wavelength_nm (one row per "
            "wavelength, one column per spectrum) or put the wavelengths in the header row "
            f"(one row per spectrum); first line: {', '.join(header[:8])[:120]}"
            f"{'...' if width > 8 else ''}")
    for r, row in enumerate(rows):
        if len(row) != width:
            raise EndmemberError(f"{path} line {line_no[r]}: {len(row)} fields, the first line "
                                 f"has {width}; every row needs the same number of fields")
    if layout == "long":
        return _read_long(path, rows, line_no, header)
    if layout == "headerless":
        return _read_long(path, rows, line_no, None)
    return _read_wide(path, rows, line_no, numeric)


def _looks_long_headerless(rows: list[list[str]]) -> bool:
    """All cells numeric: one row per wavelength when the first column is a monotonic grid
    and there are more rows than columns."""
    if len(rows) <= len(rows[0]) or any(len(r) != len(rows[0]) for r in rows):
        return False
    try:
        first = np.array([_number(r[0]) for r in rows])
    except ValueError:
        return False
    d = np.diff(first)
    return bool(np.all(np.isfinite(first)) and (np.all(d > 0) or np.all(d < 0)))


def _read_long(path: Path, rows: list[list[str]], line_no: list[int],
               header: list[str] | None) -> _Raw:
    body, body_no = (rows[1:], line_no[1:]) if header is not None else (rows, line_no)
    width = len(rows[0])
    if header is None:
        lower = ["wavelength"] + [""] * (width - 1)
        names = [f"em_{j}" for j in range(1, width)]
        wl_col, fwhm_col, bbl_col, em_cols = 0, None, None, list(range(1, width))
        unit = None
    else:
        lower = [h.lower() for h in header]
        wl_col = next(j for j, h in enumerate(lower) if h.startswith("wave")
                      or h in WAVELENGTH_COLUMNS)
        fwhm_col = next((j for j, h in enumerate(lower) if h.startswith("fwhm")
                         or h.startswith("bandwidth")), None)
        bbl_col = next((j for j, h in enumerate(lower) if h in BBL_COLUMNS), None)
        skipped = [header[j] for j, h in enumerate(lower) if h in INDEX_COLUMNS and j != wl_col]
        if skipped:
            log.info("%s: ignoring index column(s) %s", path, ", ".join(map(repr, skipped)))
        em_cols = [j for j, h in enumerate(lower)
                   if j not in (wl_col, fwhm_col, bbl_col) and h not in INDEX_COLUMNS]
        names = [header[j] for j in em_cols]
        unit = _unit_of(header[wl_col])
    if not em_cols:
        raise EndmemberError(f"{path}: no spectrum columns besides the wavelengths; add one "
                             "column per endmember")
    if len(body) < 2:
        raise EndmemberError(f"{path}: needs at least two wavelength rows")
    cols = [wl_col] + ([fwhm_col] if fwhm_col is not None else []) + \
        ([bbl_col] if bbl_col is not None else []) + em_cols
    values = _cells(body, cols, path, body_no, header)
    wl = values[:, 0]
    fwhm = values[:, 1] if fwhm_col is not None else None
    spectra = values[:, len(cols) - len(em_cols):].T
    if bbl_col is not None:
        good = values[:, 1 + (fwhm_col is not None)] != 0
        wl, spectra = wl[good], spectra[:, good]
        fwhm = None if fwhm is None else fwhm[good]
    return _Raw(names=names, wavelength=wl, unit=unit, spectra=spectra, fwhm=fwhm,
                kind="long table" if header is not None else "table without header")


def _read_wide(path: Path, rows: list[list[str]], line_no: list[int],
               numeric: list[tuple[float, str | None] | None]) -> _Raw:
    header = rows[0]
    wl_cols = [j for j, n in enumerate(numeric) if n is not None]
    label_cols = [j for j, n in enumerate(numeric) if n is None]
    units = {n[1] for n in numeric if n is not None and n[1]}
    wl = np.array([numeric[j][0] for j in wl_cols])  # type: ignore[index]
    body = rows[1:]
    if not body:
        raise EndmemberError(f"{path}: the header row holds wavelengths but no spectrum "
                             "follows; add one row per spectrum")
    spectra = _cells(body, wl_cols, path, line_no[1:], header)
    lower = [header[j].lower() for j in label_cols]
    labels = {lower[i]: [r[j] for r in body] for i, j in enumerate(label_cols)}
    name_col = next((c for c in NAME_COLUMNS if c in labels), None)
    default_by = CLASS_COLUMN if CLASS_COLUMN in labels else None
    if name_col is not None:
        names = list(labels[name_col])
    elif default_by is not None:
        names = _numbered(labels[default_by])
    else:
        names = [f"spectrum_{i + 1}" for i in range(len(body))]
    return _Raw(names=names, wavelength=wl, unit=units.pop() if len(units) == 1 else None,
                spectra=spectra, fwhm=None, kind="wide table", labels=labels,
                columns=[header[j] for j in label_cols], default_by=default_by)


def _numbered(labels: list[str]) -> list[str]:
    """``SOIL, SOIL, PV`` -> ``SOIL_1, SOIL_2, PV``: labels made unique for spectrum names."""
    total: dict[str, int] = {}
    for lab in labels:
        total[lab.lower()] = total.get(lab.lower(), 0) + 1
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab.lower()] = seen.get(lab.lower(), 0) + 1
        out.append(f"{lab}_{seen[lab.lower()]}" if total[lab.lower()] > 1 else lab)
    return out


# --------------------------------------------------------------------------------------------
# Clean-up and selection


def _to_nm(raw: _Raw, source: str) -> float:
    """Factor from the file's wavelength unit to nm (declared unit checked against values)."""
    finite = raw.wavelength[np.isfinite(raw.wavelength)]
    looks_um = finite.size > 0 and float(np.max(np.abs(finite))) < MICRON_LIMIT
    if raw.unit == "um" and not looks_um:
        log.warning("%s: wavelengths are declared micrometres but reach %g, which only nm "
                    "can be; taking them as nm", source, float(np.max(finite)))
        return 1.0
    if raw.unit == "nm" and looks_um:
        log.warning("%s: wavelengths are declared nm but all are below %g, which only "
                    "micrometres can be; taking them as micrometres", source, MICRON_LIMIT)
        return 1000.0
    return 1000.0 if looks_um else 1.0


def tidy_grid(wavelength: np.ndarray, spectra: np.ndarray, fwhm: np.ndarray | None,
              source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """An increasing grid: a decreasing one is reversed; any other order is sorted and the
    spectra (and FWHM) at repeated wavelengths are averaged (NaN ignored), with a warning.

    Args: wavelength (L,), spectra (k, L), fwhm (L,) or None. Returns the same on (U,).
    """
    d = np.diff(wavelength)
    if np.all(d > 0):
        return wavelength, spectra, fwhm
    if np.all(d < 0):
        return wavelength[::-1], spectra[:, ::-1], None if fwhm is None else fwhm[::-1]
    grid, inverse, counts = np.unique(wavelength, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()

    def mean(values: np.ndarray) -> np.ndarray:  # (n, L) -> (n, U), NaN-aware
        ok = np.isfinite(values)
        num = np.zeros((values.shape[0], grid.size))
        den = np.zeros((values.shape[0], grid.size))
        np.add.at(num, (slice(None), inverse), np.where(ok, values, 0.0))
        np.add.at(den, (slice(None), inverse), ok.astype(float))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    back = int(np.sum(d < 0))
    dups = int(np.sum(counts > 1))
    log.warning("%s: the wavelength grid is not increasing (%d step(s) back%s); sorted it%s",
                source, back, f", {dups} wavelength(s) repeated" if dups else "",
                " and averaged the spectra at repeated wavelengths" if dups else "")
    return grid, mean(spectra), None if fwhm is None else mean(fwhm[None, :])[0]


def _unique_names(names: list[str], source: str) -> list[str]:
    names = [n if n else f"spectrum_{i + 1}" for i, n in enumerate(names)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        key = n.lower()
        seen[key] = seen.get(key, 0) + 1
        out.append(n if seen[key] == 1 else f"{n}_{seen[key]}")
    if out != names:
        log.info("%s: repeated spectrum names were numbered (_2, _3, ...)", source)
    return out


def _select_names(names: list[str], patterns: tuple[str, ...], source: str) -> list[int]:
    picked: list[int] = []
    lower = [n.lower() for n in names]
    for pat in patterns:
        hits = [i for i, n in enumerate(lower) if fnmatch.fnmatchcase(n, pat.lower())]
        if not hits:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise EndmemberError(f"{source}: no spectrum matches names={pat!r}; names are: "
                                 f"{shown}")
        picked += [i for i in hits if i not in picked]
    return picked


def _classes(raw: _Raw, spec: LibrarySpec, keep: list[int], source: str
             ) -> tuple[list[str], np.ndarray, list[str]] | None:
    """Class selection/means: ``(names, spectra (k, L), records)``, or None without classes."""
    by = spec.by.lower() if spec.by else raw.default_by
    if spec.by and by not in raw.labels:
        have = ", ".join(raw.columns) or "none (a table of spectra only)"
        raise EndmemberError(f"{source}: no label column {spec.by!r} for by=; label columns: "
                             f"{have}")
    if by is None:
        if spec.classes:
            have = ", ".join(raw.columns) or "none"
            raise EndmemberError(f"{source}: class= needs a class column, and this library "
                                 f"has none ({'label columns: ' + have}); give by=COLUMN, or "
                                 "select spectra with names=")
        return None
    labels = [raw.labels[by][i].strip() for i in keep]
    order: list[str] = []
    for lab in labels:
        if lab and lab.lower() not in [o.lower() for o in order]:
            order.append(lab)
    if spec.classes:
        avail = {o.lower(): o for o in order}
        missing = [c for c in spec.classes if c.lower() not in avail]
        if missing:
            raise EndmemberError(f"{source}: no class {', '.join(map(repr, missing))} in "
                                 f"column {by!r}; classes: {', '.join(order)}")
        order = [avail[c.lower()] for c in spec.classes]
    unlabelled = sum(1 for lab in labels if not lab)
    if unlabelled:
        log.warning("%s: %d spectra have no %r label and are left out", source, unlabelled, by)
    members = {o.lower(): [keep[j] for j, lab in enumerate(labels) if lab.lower() == o.lower()]
               for o in order}
    if not spec.average:
        idx = [i for o in order for i in members[o.lower()]]
        return ([raw.names[i] for i in idx], raw.spectra[idx],
                [f"{raw.names[i]} ({by} {labels[keep.index(i)]})" for i in idx])
    means, records = [], []
    for o in order:
        block = raw.spectra[members[o.lower()]]
        ok = np.isfinite(block)
        n = ok.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(n > 0, np.where(ok, block, 0).sum(axis=0) / np.maximum(n, 1),
                                  np.nan))
        records.append(f"mean of {len(block)} spectr{'a' if len(block) > 1 else 'um'} with "
                       f"{by} {o}")
    log.info("%s: %s", source, "; ".join(records))
    return list(order), np.array(means), records


def read_library(spec: str | Path) -> SpectralLibrary:
    """Read ``FILE[:KEY=VALUE...]`` (module doc) into a SpectralLibrary (nm, increasing grid,
    spectra ``(k, L)`` as stored x ``scale=``, NaN = no data).

    Raises:
        ConfigError: a malformed option. EndmemberError: the file is missing, not a
            library, has a bad cell, or the selection matches nothing (one line each).
    """
    parsed = parse_library_spec(spec)
    path = parsed.path
    source = str(path)
    if not _exists(path):
        raise EndmemberError(f"{path}: endmember file not found; check the path")
    check_regular_file(path, ENDMEMBER_LIMIT, WHAT, EndmemberError)
    envi_files = _envi_files(path)
    raw = _read_envi(*envi_files) if envi_files else _read_table(path)
    if raw.spectra.shape != (len(raw.names), raw.wavelength.size):
        raise EndmemberError(f"{source}: {raw.spectra.shape} spectra for {len(raw.names)} names "
                             f"and {raw.wavelength.size} wavelengths")
    if not np.all(np.isfinite(raw.wavelength)):
        raise EndmemberError(f"{source}: some wavelengths are empty or not numbers; every "
                             "sample needs its wavelength")
    spectra = raw.spectra.copy()
    spectra[spectra < FILL_BELOW] = np.nan
    if raw.ignore is not None:
        spectra[spectra == raw.ignore] = np.nan
    raw.spectra = spectra
    real = [i for i, n in enumerate(raw.names) if not NOT_SPECTRA.match(n)]
    if len(real) < len(raw.names):
        log.info("%s: dropped %d records that are not spectra (error bars, wavelength and "
                 "resolution records)", source, len(raw.names) - len(real))
    raw.names = _unique_names(raw.names, source)
    keep = _select_names(raw.names, parsed.names, source) if parsed.names else real
    grouped = _classes(raw, parsed, keep, source)
    if grouped is None:
        names, spectra, records = [raw.names[i] for i in keep], raw.spectra[keep], None
    else:
        names, spectra, records = grouped
    factor = parsed.scale if parsed.scale is not None else 1.0 / raw.divide_by
    spectra = spectra * factor
    empty = ~np.isfinite(spectra).any(axis=1)
    if empty.any():
        dropped = [n for n, e in zip(names, empty, strict=True) if e]
        if parsed.names or parsed.classes or empty.all():
            raise EndmemberError(f"{source}: spectrum/spectra {', '.join(dropped[:10])} hold no "
                                 "values (all empty or fill); pick others")
        log.warning("%s: left out %d spectra without values (%s)", source, len(dropped),
                    ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else ""))
        names = [n for n, e in zip(names, empty, strict=True) if not e]
        records = None if records is None else \
            [r for r, e in zip(records, empty, strict=True) if not e]
        spectra = spectra[~empty]
    to_nm = _to_nm(raw, source)
    wl = raw.wavelength * to_nm
    fwhm = None if raw.fwhm is None else raw.fwhm * to_nm
    if wl.size < 2 or float(np.min(wl)) <= 0 or float(np.max(wl)) > MAX_WAVELENGTH_NM:
        raise EndmemberError(f"{source}: wavelengths {np.min(wl):g}-{np.max(wl):g} nm are not "
                             "nm or micrometres of at least two samples (wavenumbers?); give "
                             "band centres in nm or µm")
    wl, spectra, fwhm = tidy_grid(wl, spectra, fwhm, source)
    if fwhm is not None and not np.any(np.isfinite(fwhm) & (fwhm > 0)):
        fwhm = None
    log.info("%s: %s, %d spectra on %d wavelengths %.0f-%.0f nm", source, raw.kind,
             len(names), wl.size, wl[0], wl[-1])
    return SpectralLibrary(names=names, wavelength_nm=wl, spectra=spectra, fwhm_nm=fwhm,
                           source=source, records=records)
