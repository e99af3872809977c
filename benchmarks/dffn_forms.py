"""DFFN's full-scene form against its exact form (hsu_geo.unmix.deep.dffn).

``--part ffm``: the feature-fusion image Ỹ of the sampled form (the non-local sum over
``m`` seeded reference pixels, ``D_B`` scaled to 10 000 pixels) against the exact Ỹ (sum over
all N pixels, computed block-wise) on Samson and Jasper Ridge, for several ``m`` and seeds:
relative Frobenius error, largest absolute error, seconds. No ground truth is read: this is
how ``ref_pixels`` is chosen.

``--part fit``: ``hsu-geo unmix -m dffn`` (the pipeline) with ``--set fusion=exact`` and
``--set fusion=sampled`` on the same scene and seed; the two abundance maps are compared after
a Hungarian matching of their endmembers (RMSE between the maps, SAD between the endmember
sets), and each is scored against the reference (mean SAD, mean per-endmember RMSE with the
abundances as written), with the wall time of each run.

    python benchmarks/dffn_forms.py --part ffm [--refs 256 1024 4096] [--seeds 0-4]
    python benchmarks/dffn_forms.py --part fit [--datasets samson jasper_ridge] [--seeds 0]
        [--data ../shared/data] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def part_ffm(datasets: list[str], refs: list[int], seeds: list[int],
             data: Path = DATA) -> list[dict]:
    import torch

    from hsu_geo.datasets import load_scene
    from hsu_geo.unmix.deep.dffn_fusion import Fusion

    torch.set_num_threads(1)
    rows = []
    for name in datasets:
        scene = load_scene(name, data)
        L = scene.cube.shape[0]
        Y = torch.from_numpy(scene.cube.reshape(L, -1).astype(np.float32))
        Y = Y / Y.max()
        t0 = time.perf_counter()
        _, exact = Fusion.calibrate(Y, Y, 0.5)
        t_exact = time.perf_counter() - t0
        rows.append({"dataset": name, "m": "exact (N)", "n": int(Y.shape[1]),
                     "seconds": round(t_exact, 2)})
        print(json.dumps(rows[-1]), flush=True)
        for m in refs:
            errs, maxs, secs = [], [], []
            for seed in seeds:
                gen = torch.Generator().manual_seed(seed * 7919 + 17)
                pick = torch.randperm(Y.shape[1], generator=gen)[:m].sort().values
                t0 = time.perf_counter()
                _, approx = Fusion.calibrate(Y, Y[:, pick], 0.5, 10_000 / Y.shape[1])
                secs.append(time.perf_counter() - t0)
                errs.append(float(torch.linalg.norm(approx - exact) / torch.linalg.norm(exact)))
                maxs.append(float((approx - exact).abs().max()))
            rows.append({"dataset": name, "m": m, "seeds": seeds,
                         "rel_fro_error": [round(float(np.mean(errs)), 4),
                                           round(float(np.std(errs, ddof=1)) if len(errs) > 1
                                                 else 0.0, 4)],
                         "max_abs_error": round(float(np.max(maxs)), 4),
                         "seconds": round(float(np.mean(secs)), 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _read(out: Path) -> tuple[np.ndarray, np.ndarray]:
    import rasterio

    (ab,) = out.glob("*_abundance.tif")
    with rasterio.open(ab) as ds:
        A = ds.read().astype(np.float64)
    (em,) = out.glob("*_endmembers.csv")
    raw = np.genfromtxt(em, delimiter=",", names=True)
    cols = [c for c in raw.dtype.names if c not in ("wavelength_nm", "band", "wavelength")]
    return A, np.stack([raw[c] for c in cols])


def part_fit(datasets: list[str], seeds: list[int], settings: list[str],
             data: Path = DATA) -> list[dict]:
    from rasterio.errors import NotGeoreferencedWarning

    from hsu_geo.config import UnmixOptions
    from hsu_geo.datasets import load_scene, write_geotiff, write_truth
    from hsu_geo.evaluate import evaluate_folder
    from hsu_geo.pipeline import run_unmix
    from hsu_geo.unmix.metrics import match_endmembers, sad

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
    extra = dict(s.split("=", 1) for s in settings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets:
            scene = load_scene(name, data)
            tif = write_geotiff(scene, Path(tmp) / f"{name}.tif")
            ta, te = write_truth(scene, Path(tmp) / f"{name}_truth")
            k = len(scene.names)
            for seed in seeds:
                got = {}
                for form in ("exact", "sampled"):
                    out = Path(tmp) / f"{name}_{form}_{seed}"
                    opts = UnmixOptions(model="dffn", k=str(k), seed=seed, device="cpu",
                                        settings={"fusion": form, **extra})
                    t0 = time.perf_counter()
                    run_unmix(str(tif), out, opts, overwrite=True)
                    secs = time.perf_counter() - t0
                    (ev,) = evaluate_folder(out, truth_abundance=ta, truth_endmembers=te,
                                            reconstruct=False, abundance_convention="physical")
                    got[form] = (*_read(out), secs, ev)
                Ae, Ee, te_s, eve = got["exact"]
                As, Es, ts_s, evs = got["sampled"]
                perm = match_endmembers(Ee, Es)
                diff = As[perm] - Ae
                ok = np.isfinite(diff).all(axis=0)
                rows.append({
                    "dataset": name, "seed": seed,
                    "abundance_rmse_between_forms": round(float(np.sqrt(np.mean(
                        diff[:, ok] ** 2))), 4),
                    "abundance_max_abs_diff": round(float(np.abs(diff[:, ok]).max()), 4),
                    "endmember_sad_between_forms_rad": [round(float(v), 4)
                                                        for v in sad(Ee, Es[perm])],
                    "exact": {"mean_sad_rad": round(eve.mean_sad_rad, 4),
                              "mean_rmse": round(eve.mean_rmse, 4), "seconds": round(te_s, 1)},
                    "sampled": {"mean_sad_rad": round(evs.mean_sad_rad, 4),
                                "mean_rmse": round(evs.mean_rmse, 4),
                                "seconds": round(ts_s, 1)}})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("ffm", "fit"), required=True)
    ap.add_argument("--datasets", nargs="+", default=["samson", "jasper_ridge"])
    ap.add_argument("--refs", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--seeds", default=None, help="e.g. 0-4 (ffm default), 0 (fit default)")
    ap.add_argument("--set", dest="settings", action="append", default=[],
                    help="extra dffn setting KEY=VALUE for both forms (fit part)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="shared data folder (default: ../shared/data beside the repository)")
    args = ap.parse_args()
    if args.part == "ffm":
        rows = part_ffm(args.datasets, args.refs, _seeds(args.seeds or "0-4"), args.data)
    else:
        rows = part_fit(args.datasets, _seeds(args.seeds or "0"), args.settings, args.data)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
