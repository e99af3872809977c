"""Endmember tables: the wide CSV (``band,wavelength_nm,<name>...``) and an ENVI spectral library.

Both hold the same ``(endmember, band)`` spectra for the bands the model saw; ``band`` is the
original 1-based band number of the product, so every row traces back to the input. Endmember
column names equal the abundance COG's band descriptions, in the same order.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from spectral.io import envi

from hsu_geo.errors import EndmemberError, OutputError

CSV_FIXED = ("band", "wavelength_nm")
#: extra .hdr key (ignored by ENVI) with the product's 1-based band numbers
ORIGINAL_BAND_KEY = "original band"


@dataclass(frozen=True)
class EndmemberTable:
    """Endmember spectra: ``spectra`` (endmember, band) float32 on ``wavelength_nm`` (band,)."""

    names: tuple[str, ...]
    band: np.ndarray
    wavelength_nm: np.ndarray
    spectra: np.ndarray
    fwhm_nm: np.ndarray | None = None

    def __post_init__(self) -> None:
        k, n = np.shape(self.spectra)
        if len(self.names) != k:
            raise EndmemberError(f"{len(self.names)} endmember names for {k} spectra")
        if len(set(self.names)) != k:
            raise EndmemberError(f"endmember names repeat: {list(self.names)}; make them unique")
        if len(self.band) != n or len(self.wavelength_nm) != n:
            raise EndmemberError(
                f"spectra have {n} bands but band/wavelength have "
                f"{len(self.band)}/{len(self.wavelength_nm)} entries"
            )
        if self.fwhm_nm is not None and len(self.fwhm_nm) != n:
            raise EndmemberError(f"fwhm has {len(self.fwhm_nm)} entries for {n} bands")


def _num(value: float) -> str:
    """Shortest text that round-trips a float64 value ('nan' for NaN)."""
    return "nan" if math.isnan(value) else repr(float(value))


def _num32(value: np.float32) -> str:
    """Shortest text that round-trips a float32 value ('nan' for NaN)."""
    return "nan" if math.isnan(value) else str(np.float32(value))


def write_endmember_csv(path: str | os.PathLike[str], table: EndmemberTable) -> Path:
    """Write ``band,wavelength_nm,<name>...``: one row per band, UTF-8, comma, '.' decimal."""
    path = Path(path)
    spectra = np.asarray(table.spectra, dtype="float32")
    try:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow([*CSV_FIXED, *table.names])
            for j, (b, wl) in enumerate(zip(table.band, table.wavelength_nm, strict=True)):
                writer.writerow([int(b), _num(wl), *(_num32(v) for v in spectra[:, j])])
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); check the directory") \
            from exc
    return path


def read_endmember_csv(path: str | os.PathLike[str]) -> EndmemberTable:
    """Read a CSV in the layout :func:`write_endmember_csv` writes (not arbitrary user CSVs)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0][:2]) != CSV_FIXED or len(rows[0]) < 3:
        raise EndmemberError(
            f"{path} does not start with 'band,wavelength_nm,<name>...'; "
            "pass an hsu-geo endmember CSV"
        )
    names = tuple(rows[0][2:])
    body = [r for r in rows[1:] if r]
    if not body or any(len(r) != len(rows[0]) for r in body):
        raise EndmemberError(f"{path} has rows whose length differs from its header; fix the file")
    try:
        band = np.array([int(r[0]) for r in body], dtype="int32")
        values = np.array([[float(v) for v in r[1:]] for r in body], dtype="float64")
    except ValueError as exc:
        raise EndmemberError(f"{path} holds a non-numeric value ({exc}); fix the file") from exc
    return EndmemberTable(names, band, values[:, 0], values[:, 1:].T.astype("float32"))


def write_spectral_library(sli_path: str | os.PathLike[str], table: EndmemberTable, *,
                           description: str = "hsu-geo endmembers") -> tuple[Path, Path]:
    """Write an ENVI spectral library: ``<stem>.sli`` (float32, one spectrum per line) + ``.hdr``.

    The header carries ``spectra names``, ``wavelength`` (nm), ``wavelength units = Nanometers``
    ``fwhm`` when every band width is known, and
    the product's band numbers as ``original band``. Byte order is the machine's (little-endian on
    x86/ARM), recorded in the header as ENVI requires. ENVI lists are comma-separated, so
    ``spectral`` writes commas inside names as '-'.
    """
    sli = Path(sli_path)
    if sli.suffix != ".sli":
        raise OutputError(f"spectral library name {sli} must end in .sli")
    header: dict[str, object] = {
        "wavelength": [float(w) for w in table.wavelength_nm],
        "wavelength units": "Nanometers",
        "spectra names": list(table.names),
        ORIGINAL_BAND_KEY: [int(b) for b in table.band],
    }
    fwhm = table.fwhm_nm
    if fwhm is not None and np.all(np.isfinite(fwhm)):
        header["fwhm"] = [float(f) for f in fwhm]
    lib = envi.SpectralLibrary(np.ascontiguousarray(table.spectra, dtype="float32"), header)
    base = str(sli.with_suffix(""))
    try:
        lib.save(base, description=description)
    except OSError as exc:
        raise OutputError(f"cannot write {sli} ({exc.strerror or exc}); check the directory") \
            from exc
    return sli, sli.with_suffix(".hdr")


def read_spectral_library(hdr_path: str | os.PathLike[str]) -> EndmemberTable:
    """Read an ENVI spectral library back (via ``spectral.io.envi.open``)."""
    hdr = Path(hdr_path)
    lib = envi.open(str(hdr), str(hdr.with_suffix(".sli")))
    if not isinstance(lib, envi.SpectralLibrary):
        raise EndmemberError(f"{hdr} is not an ENVI spectral library header")
    centers = np.asarray(lib.bands.centers, dtype="float64")
    widths = lib.bands.bandwidths
    band = lib.metadata.get(ORIGINAL_BAND_KEY)
    band = np.arange(1, centers.size + 1) if band is None else np.asarray(band, dtype=float)
    return EndmemberTable(
        tuple(lib.names), band.astype("int32"), centers,
        np.asarray(lib.spectra, dtype="float32"),
        None if widths is None else np.asarray(widths, dtype="float64"),
    )


def table_from_result(names: Sequence[str], spectra: np.ndarray, band: np.ndarray,
                      wavelength_nm: np.ndarray, fwhm_nm: np.ndarray | None) -> EndmemberTable:
    """Build a table from result arrays, dropping an all-NaN fwhm."""
    fw = None if fwhm_nm is None or not np.any(np.isfinite(fwhm_nm)) else np.asarray(fwhm_nm)
    return EndmemberTable(tuple(str(n) for n in names), np.asarray(band, dtype="int32"),
                          np.asarray(wavelength_nm, dtype="float64"),
                          np.asarray(spectra, dtype="float32"), fw)
