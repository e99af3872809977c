"""Endmember accuracy of pure-pixel refinement (hsu_geo.endmembers.refine) vs VCA / N-FINDR / ATGP.

What: mean SAD (rad and degrees, Hungarian matching, models/README.md "Metrics") of blind
endmembers, seeds 0-4, mean ± std over seeds, for the pixel extractors (vca, nfindr, atgp),
each followed by refinement (vca+refine, ...), and the new default ``refined`` (multi-start,
denoised starts, refinement, blind selection by reconstruction error); plus one-at-a-time
sensitivity tables of every constant of ``refined``.

1. Synthetic scenes (``hsu_geo.synth.variability``): class bundles from the Berlin urban
   spectral library (shared data; EnMAP bands 460-2409 nm): each pixel draws its own class
   spectrum as a Dirichlet(1) combination of the bundle, per-pixel and per-class log-normal
   brightness (sigma 0.2, 0.1), smooth G1 abundances (sigma 6 px, T 0.3), roads as 2-px lines,
   white noise. The reference is the bundle mean. The library's two water spectra are 0.7 rad
   apart (two water types), so the water bundle is their mean times 20 smooth random
   perturbations (about 0.06 rad). Scenes: ``vnir3`` (soil/tree/water, bands <= 900 nm, 95 x 95,
   30 dB), ``vswir4road`` (tree/water/soil + pavement road, 100 x 100, 30 dB),
   ``vswir4road_20db``, ``urban5`` (tree/low vegetation/soil/roof + pavement road, 25 dB) and
   ``lmm_novar`` (one spectrum per class, no brightness variation: the plain linear model,
   where extreme pixels are right), and ``vswir4road_variants`` / ``urban5_variants`` (as
   ``vswir4road`` / ``urban5`` with Dirichlet alpha 0.1: most pixels close to one member of
   their class's bundle, i.e. classes made of a few material variants, several modes each),
   and ``vswir4road_rare`` (``vswir4road`` plus two 2 x 2 patches of the brightest Berlin roof
   spectrum, 8 of 10 000 pixels: a rare extreme material that is none of the classes).
   These are the data the constants were chosen on.
2. Real scenes (Samson, Jasper Ridge, Moffett, MUUFL via ``hsu_geo.datasets``): each cube is
   written as a GeoTIFF and read back by ``hsu_geo.pipeline.prepare_scene`` - the scan and
   bad-band step of ``hsu-geo unmix`` - and the endmembers come from
   ``hsu_geo.endmembers.extract.extract_endmembers(Y, k, method, seed)``, the call the pipeline
   makes (k = reference count). SAD is over the bands the pipeline kept. The default is also
   run end to end (``run_unmix``, ``-m fcls -k K``) and its written endmember CSV scored with
   ``hsu_geo.scoring.score_outputs``; the two must agree. The real-data sensitivity tables are
   *reported, not used to choose anything*. Spatial smoothing needs the image layout, so its
   rows use the scene cube in memory (``refined(Y, k, Y_start=smooth_cube(...))``).

    python benchmarks/endmember_refine.py [--data ../shared/data] [--seeds 0-4]
        [--parts synthetic,real] [--constants schedule,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hsu_geo.config import UnmixOptions
from hsu_geo.datasets import LOADERS, write_geotiff
from hsu_geo.endmembers.extract import extract_endmembers
from hsu_geo.endmembers.refine import refined, smooth_cube
from hsu_geo.pipeline import prepare_scene, run_unmix
from hsu_geo.scoring import score_outputs
from hsu_geo.synth.variability import random_bundles, variable_scene
from hsu_geo.unmix.metrics import match_endmembers, sad

REPO = Path(__file__).resolve().parents[1]
METHODS = ("vca", "nfindr", "atgp", "vca+refine", "nfindr+refine", "atgp+refine", "refined")

#: one-at-a-time variations of ``refined`` (label, keywords); the first is the default
SENSITIVITY: list[tuple[str, str, dict[str, Any]]] = [
    ("default", "default (schedule 0.7→0.8→0.9→0.95, min_pixels 5, neighbours 10, "
     "8 VCA starts, supported set first, min_support 0.1 %, 3 rare-material rounds, "
     "best k of the pooled endmembers, supported subsets only)", {}),
    ("combine", "none: the best start's set (the previous rule)", {"combine": "none"}),
    ("combine", "pool, then refined at 0.95 (kept only if its key is lower)",
     {"combine": "pool-refined"}),
    ("selection", "lowest residual only (the previous rule)", {"selection": "residual"}),
    ("rare_rounds", "0 (no rare-material rounds)", {"rare_rounds": 0}),
    ("min_support", "min_pixels only (5 px)", {"min_support": 0.0}),
    ("min_support", "0.2 % of the pixels", {"min_support": 0.002}),
    ("min_support", "1 %", {"min_support": 0.01}),
    ("schedule", "0.95 only (the previous default)", {"schedule": (0.95,)}),
    ("schedule", "0.9 only", {"schedule": (0.9,)}),
    ("schedule", "0.98 only", {"schedule": (0.98,)}),
    ("schedule", "0.8→0.9→0.95", {"schedule": (0.8, 0.9, 0.95)}),
    ("schedule", "0.5→0.7→0.8→0.9→0.95", {"schedule": (0.5, 0.7, 0.8, 0.9, 0.95)}),
    ("schedule", "0.7→0.8→0.9 (ends at 0.9)", {"schedule": (0.7, 0.8, 0.9)}),
    ("min_pixels", "1", {"min_pixels": 1}),
    ("min_pixels", "20", {"min_pixels": 20}),
    ("min_pixels", "100", {"min_pixels": 100}),
    ("neighbours", "1 (off)", {"neighbours": 1}),
    ("neighbours", "5", {"neighbours": 5}),
    ("neighbours", "20", {"neighbours": 20}),
    ("n_vca", "0 (N-FINDR + ATGP only)", {"n_vca": 0}),
    ("n_vca", "4", {"n_vca": 4}),
    ("n_vca", "16", {"n_vca": 16}),
    ("purity rule", "area (no norm weights)", {"rule": "area"}),
    ("purity rule", "nnls-signal (one-sided)", {"rule": "nnls-signal"}),
    ("purity rule", "nnls-area (one-sided)", {"rule": "nnls-area"}),
    ("purity rule", "fcls (not brightness-free)", {"rule": "fcls"}),
    ("update", "purified (NNLS share removed)", {"update": "purified", "rule": "nnls-area"}),
    ("smoothing", "3x3 starts (in memory)", {"smooth": 3}),
    ("smoothing", "5x5 starts (in memory)", {"smooth": 5}),
]

# --------------------------------------------------------------------------------------------
# synthetic scenes
# --------------------------------------------------------------------------------------------

SYNTH = {
    "vnir3": {"classes": ["soil", "tree", "water"], "vnir": True, "thin": (), "snr": 30.0,
              "size": 95},
    "vswir4road": {"classes": ["tree", "water", "soil", "pavement"], "vnir": False,
                   "thin": (3,), "snr": 30.0, "size": 100},
    "vswir4road_20db": {"classes": ["tree", "water", "soil", "pavement"], "vnir": False,
                        "thin": (3,), "snr": 20.0, "size": 100},
    "urban5": {"classes": ["tree", "low vegetation", "soil", "roof", "pavement"],
               "vnir": False, "thin": (4,), "snr": 25.0, "size": 100},
    "lmm_novar": {"classes": ["tree", "water", "soil", "roof"], "vnir": False, "thin": (),
                  "snr": 30.0, "size": 100, "novar": True},
    "vswir4road_variants": {"classes": ["tree", "water", "soil", "pavement"], "vnir": False,
                            "thin": (3,), "snr": 30.0, "size": 100, "alpha": 0.1},
    "urban5_variants": {"classes": ["tree", "low vegetation", "soil", "roof", "pavement"],
                        "vnir": False, "thin": (4,), "snr": 25.0, "size": 100, "alpha": 0.1},
    "vswir4road_rare": {"classes": ["tree", "water", "soil", "pavement"], "vnir": False,
                        "thin": (3,), "snr": 30.0, "size": 100, "rare": "roof"},
}


def berlin_bundles(data: Path, classes: list[str], vnir: bool) -> list[np.ndarray]:
    """Class bundles ``(n, L)`` from the Berlin urban library (level_3 classes), reflectance."""
    lib = data / "libraries" / "enmapbox_berlin_urban"
    X = np.fromfile(lib / "library_berlin.sli", dtype="<f8").reshape(75, 177) / 1e4
    with open(lib / "library_berlin.csv", newline="") as f:
        cls = np.array([r[3] for r in list(csv.reader(f))[1:]])
    hdr = (lib / "library_berlin.hdr").read_text()
    wl = np.array([float(v) for v in
                   hdr.split("wavelength =")[1].split("{")[1].split("}")[0].split(",")]) * 1000
    keep = wl <= 900 if vnir else np.ones(wl.size, bool)
    out = []
    for name in classes:
        B = X[cls == name]
        if B.shape[0] < 4:  # water: two different water types; one class = their mean, varied
            rng = np.random.default_rng(7)
            g = np.cumsum(rng.normal(size=(20, B.shape[1])), axis=1)
            g = (g - g.mean(axis=1, keepdims=True)) / g.std(axis=1, keepdims=True)
            B = B.mean(axis=0) * np.exp(0.1 * g)
        out.append(B[:, keep])
    return out


def synthetic_scene(name: str, seed: int, data: Path):
    s = SYNTH[name]
    rng = np.random.default_rng(1000 + seed)
    if (data / "libraries" / "enmapbox_berlin_urban").is_dir():
        bundles = berlin_bundles(data, s["classes"], s["vnir"])
    else:  # no shared data: smooth random bundles (numbers then differ from the report)
        bundles = random_bundles(len(s["classes"]), 70 if s["vnir"] else 177,
                                 np.random.default_rng(7))
    if s.get("novar"):
        return variable_scene([b[:1] for b in bundles], s["size"], s["size"], rng,
                              snr_db=s["snr"], brightness_sigma=0.0,
                              class_brightness_sigma=0.0)
    rare = None
    if s.get("rare"):  # the brightest member of another class: 2 patches of 2 x 2 pixels
        if (data / "libraries" / "enmapbox_berlin_urban").is_dir():
            (other,) = berlin_bundles(data, [s["rare"]], s["vnir"])
        else:
            (other,) = random_bundles(1, bundles[0].shape[1], np.random.default_rng(8))
        rare = other[np.argmax(other.mean(axis=1))]
    return variable_scene(bundles, s["size"], s["size"], rng, snr_db=s["snr"], thin=s["thin"],
                          alpha=s.get("alpha", 1.0), rare=rare)


# --------------------------------------------------------------------------------------------
# scoring helpers
# --------------------------------------------------------------------------------------------


def sad_of(M_ref: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Per-reference-endmember SAD (rad) after Hungarian matching."""
    return sad(M_ref, np.asarray(M, float)[match_endmembers(M_ref, M)])


def run_variant(Y: np.ndarray, k: int, seed: int, kw: dict[str, Any],
                cube: np.ndarray | None) -> np.ndarray:
    kw = dict(kw)
    size = kw.pop("smooth", None)
    if size is not None:
        if cube is None:
            raise ValueError("smoothing needs the cube")
        Y_start = smooth_cube(cube, size).reshape(cube.shape[0], -1).T
        return refined(Y, k, seed=seed, Y_start=Y_start, **kw)[0]
    return refined(Y, k, seed=seed, **kw)[0]


def collect(
    cases: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]],
    seeds: list[int], methods: bool, log: str,
) -> dict[str, Any]:
    """Per seed: ``cases(seed) -> (Y pipeline pixels, M_ref, cube or None, Y_img)``."""
    out: dict[str, Any] = {"methods": {}, "sensitivity": {}, "seconds": {}}
    for seed in seeds:
        Y, M_ref, cube, Y_img = cases(seed)
        k = M_ref.shape[0]
        if methods:
            for m in METHODS:
                t0 = time.perf_counter()
                M = extract_endmembers(Y, k, m, seed=seed)[0]
                out["seconds"].setdefault(m, []).append(time.perf_counter() - t0)
                out["methods"].setdefault(m, []).append(sad_of(M_ref, M).tolist())
        for i, (_, _, kw) in enumerate(SENSITIVITY):
            if i == 0 and methods:  # the default row is the 'refined' method
                s = out["methods"]["refined"][-1]
            else:
                Yv = Y_img if "smooth" in kw else Y
                s = sad_of(M_ref, run_variant(Yv, k, seed, kw, cube)).tolist()
            out["sensitivity"].setdefault(str(i), []).append(s)
        print(f"  {log} seed {seed}: refined {np.mean(out['sensitivity']['0'][-1]):.4f}",
              file=sys.stderr, flush=True)
    return out


def synthetic_part(data: Path, seeds: list[int]) -> dict[str, Any]:
    res = {}
    for name in SYNTH:
        def case(seed: int, name: str = name):
            sc = synthetic_scene(name, seed, data)
            return sc.pixels, sc.means, sc.cube, sc.pixels
        res[name] = collect(case, seeds, True, name)
    return res


def real_part(data: Path, seeds: list[int]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, loader in LOADERS.items():
            try:
                scene = loader(data)
            except Exception as exc:
                res[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            tif = write_geotiff(scene, Path(tmp) / f"{scene.name}.tif")
            k = len(scene.names)
            kept_of: dict[int, np.ndarray] = {}

            def case(seed: int, scene=scene, tif=tif, k=k, kept_of=kept_of):
                opts = UnmixOptions(model="fcls", k=str(k), seed=seed, device="cpu")
                prep = prepare_scene(tif, opts, model="fcls")
                kept = prep.cube["band"].values - 1  # 1-based band numbers of the file
                kept_of[seed] = kept
                cube = scene.cube[kept].astype("float64")
                Y_img = cube.reshape(cube.shape[0], -1).T
                return prep.sample, scene.endmembers[:, kept], cube, Y_img

            r = collect(case, seeds, True, name)
            # the default through the whole CLI pipeline: written CSV scored
            e2e = []
            for seed in seeds:
                out = Path(tmp) / f"{name}_{seed}"
                opts = UnmixOptions(model="fcls", k=str(k), seed=seed, device="cpu")
                o = run_unmix(tif, out, opts)["outputs"]
                file_bands = np.arange(1, scene.cube.shape[0] + 1)
                sc = score_outputs(o["abundance"], o["endmembers_csv"], scene.endmembers,
                                   file_bands, scene.abundances)
                e2e.append({"mean_sad": sc.mean_sad, "armse": sc.armse,
                            "mean_rmse": sc.mean_rmse})
            r["end_to_end"] = e2e
            r["names"] = list(scene.names)
            r["bands_used"] = len(kept_of[seeds[0]])
            r["pixels"] = int(scene.cube.shape[1] * scene.cube.shape[2])
            res[name] = r
    return res


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def ms(values: list[list[float]]) -> tuple[float, float]:
    m = np.array([np.mean(v) for v in values])
    return float(m.mean()), float(m.std())


def fmt(values: list[list[float]], deg: bool = True) -> str:
    m, s = ms(values)
    text = f"{m:.4f} ± {s:.4f}"
    return text + (f" ({math.degrees(m):.2f}°)" if deg else "")


def report(res: dict[str, Any], title: str) -> str:
    names = [n for n in res if "error" not in res[n]]
    lines = [f"### {title}: mean SAD, rad ± std over seeds (degrees)", "",
             "| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for m in METHODS:
        label = f"**{m}** (default)" if m == "refined" else m
        lines.append(f"| {label} | " + " | ".join(fmt(res[n]["methods"][m]) for n in names)
                     + " |")
    lines += ["", f"### {title}: sensitivity of `refined` (one constant at a time), mean SAD rad",
              "", "| constant | value | " + " | ".join(names) + " |",
              "|---|---" + "|---" * len(names) + "|"]
    for i, (const, value, _) in enumerate(SENSITIVITY):
        cells = []
        for n in names:
            cells.append(fmt(res[n]["sensitivity"][str(i)], deg=False))
        lines.append(f"| {const} | {value} | " + " | ".join(cells) + " |")
    lines += ["", f"### {title}: per-endmember SAD of the default (rad, mean over seeds)", ""]
    for n in names:
        per = np.mean(np.array(res[n]["methods"]["refined"]), axis=0)
        labels = res[n].get("names") or [f"em{i + 1}" for i in range(per.size)]
        lines.append(f"- {n}: " + ", ".join(f"{a} {b:.4f}" for a, b in zip(labels, per,
                                                                            strict=True)))
    lines += ["", f"### {title}: seconds per extraction (mean)", "",
              "| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for m in METHODS:
        lines.append(f"| {m} | " + " | ".join(f"{np.mean(res[n]['seconds'][m]):.2f}"
                                             for n in names) + " |")
    for n in res:
        if "error" in res[n]:
            lines.append(f"\n{n}: not run ({res[n]['error']})")
        elif "end_to_end" in res[n]:
            e = np.array([x["mean_sad"] for x in res[n]["end_to_end"]])
            a = np.array([x["armse"] for x in res[n]["end_to_end"]])
            lines.append(f"\n{n}: end to end (`run_unmix`, -m fcls -k {len(res[n]['names'])}, "
                         f"written CSV scored): mean SAD {e.mean():.4f} ± {e.std():.4f} rad, "
                         f"aRMSE {a.mean():.4f} ± {a.std():.4f}; {res[n]['bands_used']} bands "
                         f"kept, {res[n]['pixels']} pixels")
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--parts", default="synthetic,real")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--constants", default=None,
                    help="comma-separated constants of the sensitivity table to run (e.g. "
                         "schedule); default: all")
    args = ap.parse_args()
    if args.constants:
        wanted = set(args.constants.split(","))
        unknown = wanted - {c for c, _, _ in SENSITIVITY}
        if unknown:
            ap.error(f"unknown constants {sorted(unknown)}")
        SENSITIVITY[:] = [row for i, row in enumerate(SENSITIVITY)
                          if i == 0 or row[0] in wanted]
    seeds = parse_seeds(args.seeds)
    parts = args.parts.split(",")
    result: dict[str, Any] = {"seeds": seeds}
    if "synthetic" in parts:
        result["synthetic"] = synthetic_part(args.data, seeds)
        print(report(result["synthetic"], "Synthetic scenes (constants chosen here)"),
              flush=True)
        print()
    if "real" in parts:
        result["real"] = real_part(args.data, seeds)
        print(report(result["real"], "Real benchmarks (reported, not tuned on)"), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
