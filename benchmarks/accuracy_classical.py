"""Accuracy of blind classical unmixing on real benchmark scenes, through the real CLI path.

For Samson and Jasper Ridge (../shared/data), each cube is written as a GeoTIFF with wavelength
tags, unmixed with ``hsu-geo unmix``'s pipeline (VCA or N-FINDR endmembers + FCLS, k = number
of reference endmembers, default bad-band handling), and the written outputs are scored against
the ground truth: mean SAD (radians) after Hungarian matching, abundance aRMSE
(sqrt(mean over pixels and endmembers)) and mean per-endmember RMSE. VCA is random: it is run
for ``--seeds`` seeds and reported as mean ± std; N-FINDR is initialised from ATGP and is
deterministic, but its seed is varied the same way.

    python benchmarks/accuracy_classical.py [--data ../shared/data] [--seeds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hsu_geo.config import UnmixOptions
from hsu_geo.datasets import load_jasper_ridge, load_samson, write_geotiff
from hsu_geo.pipeline import run_unmix
from hsu_geo.scoring import score_outputs

REPO = Path(__file__).resolve().parents[1]


def run(data: Path, seeds: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for loader in (load_samson, load_jasper_ridge):
            scene = loader(data)
            tif = write_geotiff(scene, Path(tmp) / f"{scene.name}.tif")
            for extractor in ("vca", "nfindr"):
                scores = []
                t0 = time.perf_counter()
                for seed in range(seeds):
                    out = Path(tmp) / f"{scene.name}_{extractor}_{seed}"
                    opts = UnmixOptions(model="fcls", k=str(len(scene.names)),
                                        extractor=extractor, seed=seed, device="cpu")
                    res = run_unmix(tif, out, opts)
                    o = res["outputs"]
                    file_bands = np.arange(1, scene.cube.shape[0] + 1)  # GeoTIFF band numbers
                    scores.append(score_outputs(o["abundance"], o["endmembers_csv"],
                                                scene.endmembers, file_bands, scene.abundances))
                rows.append({
                    "scene": scene.name, "method": f"{extractor.upper()}+FCLS",
                    "bands": int(res["record"]["extra"]["bands_used"]),
                    "sad": np.array([s.mean_sad for s in scores]),
                    "armse": np.array([s.armse for s in scores]),
                    "mrmse": np.array([s.mean_rmse for s in scores]),
                    "seconds": (time.perf_counter() - t0) / seeds,
                })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    rows = run(args.data, args.seeds)
    print(f"| scene | method | bands used | mean SAD (rad) | aRMSE | mean RMSE | s/run |"
          f"  ({args.seeds} seeds)")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scene']} | {r['method']} | {r['bands']} | "
              f"{r['sad'].mean():.4f} ± {r['sad'].std():.4f} | "
              f"{r['armse'].mean():.4f} ± {r['armse'].std():.4f} | "
              f"{r['mrmse'].mean():.4f} ± {r['mrmse'].std():.4f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
