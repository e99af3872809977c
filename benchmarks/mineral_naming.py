"""Mineral naming benchmark: absorption-feature naming vs full-spectrum SAM on other labs' spectra.

What: spectra of minerals that the bundled USGS splib07 library (``hsu_geo/data``) also holds,
measured by other laboratories or at other times, resampled to sensor band sets, named against
the bundled library by :func:`hsu_geo.endmembers.features.name_by_features` (the default of
``hsu-geo unmix``) and by full-spectrum SAM (the previous default), and scored against the
mineral the source file says it is.

Test libraries (``../shared/data/libraries``, see ``PROVENANCE.md``):

* ``usgs1995`` (development set): ``usgs_splib/USGS_1995_Library.mat``, 498 older USGS
  spectra on the AVIRIS-1995 grid. Many are earlier measurements of the *same samples* as the
  bundled splib07 records (e.g. Kaolinite CM9), so it is not independent; the table also gives
  the "other samples" subset (sample id not in the bundled record). The naming method was
  designed while looking at this set.
* ``jpl`` (held out): ``aster_jpl_jhu/jpl.beckman.mineral.*.spectrum.txt``, JPL Beckman
  spectra (ASTER 2.0 library, percent reflectance, 0.4-2.5 um), usually three grain sizes per
  sample. Independent samples and instrument. Reported once the method was fixed.

Name matching (``normalise``): the mineral name (JPL ``Name:`` line; USGS first word) is
lower-cased, the formula / sample id stripped, then mapped by ``ALIASES`` (e.g. ``titanite
(sphene)`` -> sphene, ``clinochlore`` -> chlorite, ``forsterite`` -> olivine, Na jarosite ->
natrojarosite, ``serpentine`` -> antigorite or chrysotile, both accepted). Only names that then
equal a bundled mineral are scored; mixtures (``+``, ``/``), Pb/H3O jarosites and
intermediate Na-K alunite are skipped.

Sensor grids: ``aviris-ng``: 400-2500 nm every 5 nm, FWHM 5.5 nm; ``enmap``: the 224 EnMAP
bands of ``scenes/enmap_potsdam_tiles/enmap_potsdam_srf.csv``; both without the atmospheric
water-vapour bands 1340-1460 and 1790-1960 nm (as a real scene would be after bad-band
removal); ``lab-5nm``: 400-2500 nm every 5 nm with no bands dropped.

Metrics per (library, grid): top-1 % (the best-scoring mineral is right), top-3 %, the
decision of the naming rule (named right / "A or B", or a featureless group "A or B or C",
containing the right one / named wrong / ``em_i``), and SAM's top-1 % and top-3 % on the same
spectra. Per-spectrum and per-mineral
(mean over a mineral's spectra, then over minerals) accuracies are given.

    python benchmarks/mineral_naming.py [--libraries usgs1995,jpl] [--grids aviris-ng,enmap]
        [--data ../shared/data] [--sensitivity] [--json out.json] [--per-spectrum]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsu_geo.endmembers import features as feat
from hsu_geo.endmembers.library import (
    SpectralLibrary,
    _usgs_index,
    list_usgs_minerals,
    load_usgs_library,
    resample_to_bands,
    spectral_angle,
)
from hsu_geo.errors import EndmemberError

REPO = Path(__file__).resolve().parents[1]
WATER_VAPOUR_NM = ((1340.0, 1460.0), (1790.0, 1960.0))

#: normalised source name -> bundled mineral name(s) accepted as correct
ALIASES: dict[str, tuple[str, ...]] = {
    "titanite": ("sphene",),
    "clinochlore": ("chlorite",),
    "forsterite": ("olivine",),
    "serpentine": ("antigorite", "chrysotile"),
    "lepidocrosite": ("lepidocrocite",),
    "hematite=2%+98%qtz": (),
}


@dataclass
class TestSpectrum:
    """One test spectrum: its id, the accepted bundled names, wavelengths (nm), reflectance 0-1,
    FWHM (nm or None), and whether the same sample is in the bundled library."""

    sid: str
    truth: tuple[str, ...]
    wavelength_nm: np.ndarray
    reflectance: np.ndarray
    fwhm_nm: np.ndarray | None
    same_sample: bool = False


def normalise(raw: str, source: str) -> tuple[str, ...]:
    """Bundled names a source mineral name stands for; () when not in the bundled library."""
    bundled = set(list_usgs_minerals())
    text = raw.strip().lower()
    if not text or "+" in text.split()[0] or "/" in text.split()[0]:
        return ()  # mixtures (the formula after the name may hold '+' charges)
    if source == "usgs1995":
        tokens = text.split()
        key = tokens[0]
        if key == "jarosite":
            tail = " ".join(tokens[1:])
            if re.search(r"\bna\b|na,", tail):
                return ("natrojarosite",)
            if re.search(r"\bk\b|k,", tail):
                return ("jarosite",)
            return ()
        if key == "alunite":
            tail = " ".join(tokens[1:])
            if "na82" in tail or "al706" in tail:
                return ("natroalunite",)
            if "na63" in tail:
                return ()
            return ("alunite",)
    else:  # JPL: "Kaolinite Al_2Si_2O_5(OH)_4", "Titanite (Sphene) CaTiSiO_5"
        text = re.sub(r"\(feldspar\)|\(chlorite\)|\(sphene\)|garnet|alpha", " ", text)
        key = text.split()[0]
    if key in ALIASES:
        return ALIASES[key]
    return (key,) if key in bundled else ()


def load_jpl(folder: Path) -> list[TestSpectrum]:
    """JPL Beckman mineral spectra (ASTER 2.0 text: 26-line header, um and percent)."""
    out = []
    for path in sorted(folder.glob("jpl.beckman.mineral.*.spectrum.txt")):
        lines = path.read_text(encoding="latin-1").splitlines()
        name = next((ln.split(":", 1)[1] for ln in lines[:5] if ln.startswith("Name:")), "")
        truth = normalise(name, "jpl")
        if not truth:
            continue
        rows = []
        for ln in lines[26:]:
            parts = ln.split()
            if len(parts) >= 2:
                try:
                    rows.append((float(parts[0]), float(parts[1])))
                except ValueError:
                    continue
        data = np.array(sorted(rows))
        wl, refl = data[:, 0] * 1000.0, data[:, 1] / 100.0
        keep = np.r_[True, np.diff(wl) > 0]
        out.append(TestSpectrum(path.name.removeprefix("jpl.beckman.mineral.")
                                .removesuffix(".spectrum.txt"), truth, wl[keep], refl[keep],
                                None))
    return out


def load_usgs1995(path: Path) -> list[TestSpectrum]:
    """USGS_1995_Library.mat: 498 spectra on the AVIRIS-95 grid (um, fwhm um)."""
    from scipy.io import loadmat

    mat = loadmat(str(path))
    lib = np.asarray(mat["datalib"], dtype=float)
    names = [bytes(r).decode("ascii", "replace").strip() for r in mat["names"]]
    wl, fwhm = lib[:, 0] * 1000.0, lib[:, 1] * 1000.0
    order = np.argsort(wl)
    records = " ".join(r["record"].lower() for r in _usgs_index())
    out = []
    for c in range(3, lib.shape[1]):
        truth = normalise(names[c], "usgs1995")
        if not truth:
            continue
        y = lib[order, c]
        y = np.where(y < -1e30, np.nan, y)
        tokens = names[c].split()
        sample = tokens[1].lower() if len(tokens) > 1 else ""
        same = bool(sample) and bool(re.search(rf"_{re.escape(sample)}[_.]", records))
        out.append(TestSpectrum(names[c], truth, wl[order], y, fwhm[order], same))
    return out


def sensor_grid(name: str, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(centres nm, fwhm nm) of a sensor grid, water-vapour bands dropped unless lab."""
    if name in ("aviris-ng", "lab-5nm"):
        wl = np.arange(400.0, 2500.1, 5.0)
        fw = np.full(wl.size, 5.5)
    elif name == "enmap":
        rows = np.loadtxt(data / "scenes/enmap_potsdam_tiles/enmap_potsdam_srf.csv",
                          delimiter=",", skiprows=1)
        wl, fw = rows[:, 0], rows[:, 1]
    else:
        raise SystemExit(f"unknown grid {name!r}: use aviris-ng, enmap or lab-5nm")
    if name != "lab-5nm":
        keep = np.ones(wl.size, bool)
        for a, b in WATER_VAPOUR_NM:
            keep &= ~((wl >= a) & (wl <= b))
        wl, fw = wl[keep], fw[keep]
    return wl, fw


def resample_tests(tests: list[TestSpectrum], wl: np.ndarray, fw: np.ndarray
                   ) -> tuple[list[TestSpectrum], np.ndarray]:
    """Test spectra on the sensor grid (those that cover it), (n, L)."""
    kept, rows = [], []
    for t in tests:
        lib = SpectralLibrary([t.sid], t.wavelength_nm, t.reflectance[None, :],
                              None if t.fwhm_nm is None else t.fwhm_nm, t.sid)
        try:
            rows.append(resample_to_bands(lib, wl, fw)[0])
        except EndmemberError:  # a spectrum not covering the grid is skipped
            continue
        kept.append(t)
    return kept, np.array(rows)


def evaluate(tests: list[TestSpectrum], wl: np.ndarray, fw: np.ndarray,
             params: Sequence[tuple[float, float, float]] = (
                 (feat.MIN_FIT, feat.AMBIGUITY_MARGIN, feat.MAX_ANGLE_RAD),),
             ) -> dict:
    """Feature naming and SAM on the tests: per-spectrum outcome rows for each
    ``(min_fit, margin, max_angle)`` in ``params`` (the scores are computed once)."""
    kept, X = resample_tests(tests, wl, fw)
    lib = load_usgs_library()
    t0 = time.perf_counter()
    ref = resample_to_bands(lib, wl, fw)
    match = feat.match_features(X, wl, ref, lib.names, feat.library_windows(lib))
    t_feat = time.perf_counter() - t0
    sam = spectral_angle(X, ref)
    out = {}
    for min_fit, margin, max_angle in params:
        named = feat.decide_names(match, wl, min_fit=min_fit, margin=margin,
                                  max_angle=max_angle)
        rows = []
        for t, nm, ang in zip(kept, named, sam, strict=True):
            cands = [c for c, _ in nm.candidates]
            sam_rank = [lib.names[j] for j in np.argsort(ang)[:3]]
            parts = nm.name.split(" or ")
            decision = ("em" if nm.name.startswith("em_") else
                        "right" if len(parts) == 1 and parts[0] in t.truth else
                        "either" if len(parts) >= 2 and set(parts) & set(t.truth) else "wrong")
            rows.append({"id": t.sid, "truth": "/".join(t.truth), "same_sample": t.same_sample,
                         "name": nm.name, "confidence": nm.confidence,
                         "top1": bool(cands[:1] and cands[0] in t.truth),
                         "top3": bool(set(cands[:3]) & set(t.truth)),
                         "sam_name": sam_rank[0], "sam_top1": sam_rank[0] in t.truth,
                         "sam_top3": bool(set(sam_rank) & set(t.truth)),
                         "feature_top": cands[:3], "decision": decision,
                         "reason": nm.info.get("reason", "")})
        out[(min_fit, margin, max_angle)] = rows
    return {"rows": out[tuple(params[0])], "by_params": out, "seconds_features": t_feat}


def summarise(rows: list[dict]) -> dict:
    """Percentages per spectrum and per mineral (mean over minerals of their spectra's mean)."""
    def pct(key: str, sel: list[dict]) -> float:
        return 100.0 * float(np.mean([r[key] for r in sel])) if sel else float("nan")

    by_min: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_min[r["truth"]].append(r)

    def per_mineral(key: str) -> float:
        return 100.0 * float(np.mean([np.mean([r[key] for r in v]) for v in by_min.values()]))

    dec = defaultdict(int)
    for r in rows:
        dec[r["decision"]] += 1
    return {"n": len(rows), "minerals": len(by_min),
            "top1": pct("top1", rows), "top3": pct("top3", rows),
            "sam_top1": pct("sam_top1", rows), "sam_top3": pct("sam_top3", rows),
            "top1_per_mineral": per_mineral("top1") if rows else float("nan"),
            "sam_top1_per_mineral": per_mineral("sam_top1") if rows else float("nan"),
            "decisions": {k: dec.get(k, 0) for k in ("right", "either", "wrong", "em")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--libraries", default="usgs1995,jpl")
    ap.add_argument("--grids", default="aviris-ng,enmap,lab-5nm")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--sensitivity", action="store_true",
                    help="also vary MIN_FIT and AMBIGUITY_MARGIN (decisions only)")
    ap.add_argument("--per-spectrum", action="store_true", help="print every spectrum")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    data = Path(args.data)
    loaders = {"usgs1995": lambda: load_usgs1995(data / "libraries/usgs_splib/"
                                                 "USGS_1995_Library.mat"),
               "jpl": lambda: load_jpl(data / "libraries/aster_jpl_jhu")}
    results: dict = {}
    print("| library | grid | spectra | minerals | top-1 % | top-3 % | per-mineral top-1 % | "
          "SAM top-1 % | SAM top-3 % | SAM per-mineral top-1 % | named right / A-or-B / "
          "wrong / em_i |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for lname in args.libraries.split(","):
        tests = loaders[lname]()
        subsets = {lname: tests}
        if lname == "usgs1995":
            subsets["usgs1995 (other samples)"] = [t for t in tests if not t.same_sample]
        for grid in args.grids.split(","):
            wl, fw = sensor_grid(grid, data)
            ev = evaluate(tests, wl, fw)
            for sname, sub in subsets.items():
                ids = {t.sid for t in sub}
                rows = [r for r in ev["rows"] if r["id"] in ids]
                s = summarise(rows)
                results[f"{sname}|{grid}"] = {**s, "rows": rows,
                                              "seconds_features": ev["seconds_features"]}
                d = s["decisions"]
                print(f"| {sname} | {grid} | {s['n']} | {s['minerals']} | {s['top1']:.1f} | "
                      f"{s['top3']:.1f} | {s['top1_per_mineral']:.1f} | {s['sam_top1']:.1f} | "
                      f"{s['sam_top3']:.1f} | {s['sam_top1_per_mineral']:.1f} | "
                      f"{d['right']} / {d['either']} / {d['wrong']} / {d['em']} |", flush=True)
                if args.per_spectrum:
                    for r in rows:
                        print(f"    {r['id'][:40]:40s} {r['truth']:22s} -> {r['name']:28s} "
                              f"top3={r['feature_top']} sam={r['sam_name']}", file=sys.stderr)
            if args.sensitivity:
                grid_params = [(mf, mg, ma) for mf in (0.5, 0.7, 0.85, 0.9)
                               for mg in (0.01, 0.02, 0.05) for ma in (0.3, np.pi)]
                ev2 = evaluate(tests, wl, fw, grid_params)
                print(f"\nSensitivity, {lname} / {grid}: decisions named right / A-or-B with "
                      "the right one / named wrong / em_i (top-1 does not depend on these)")
                for (mf, mg, ma), rows in ev2["by_params"].items():
                    d = summarise(rows)["decisions"]
                    print(f"- MIN_FIT={mf} AMBIGUITY_MARGIN={mg} MAX_ANGLE_RAD={ma:.2f}: "
                          f"{d['right']} / {d['either']} / {d['wrong']} / {d['em']}")
                print()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
