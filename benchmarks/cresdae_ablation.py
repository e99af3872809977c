"""Why CResDAE does not beat VCA+FCLS here: CResDAE variants on the nonlinear synthetic sets.

What: VCA+FCLS against four CResDAE set-ups on the bilinear and PNMM datasets of
``hsu-geo synth`` (same generator, size and seed as ``benchmarks/paper_cresdae.py``), scored by
mean per-endmember abundance RMSE after Hungarian matching:

- ``paper``: the default Config (the paper's settings; synthetic pretraining unsupervised,
  decoder learning rate 1e-5 in every stage);
- ``no_synth``: the same without the synthetic pretraining stage;
- ``supervised``: ``--set synth_supervision=1``: synthetic pretraining adds the error of the
  known synthetic abundances ``||a - a_true||²`` to the loss (not in the paper; off by default);
- ``supervised_big``: as ``supervised`` with ``synth_pixels=8192`` per synthetic dataset and
  ``synth_lr_decoder=1e-3`` (fine-tuning still at 1e-5).

Progress goes to stderr; a Markdown table to stdout.

    python benchmarks/cresdae_ablation.py [--size 64 64] [--seed 0] [--datasets bilinear_snr30,...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper_cresdae

from hsu_geo.endmembers.extract import extract_endmembers
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep.cresdae import CResDAEConfig, CResDAEUnmixer
from hsu_geo.unmix.metrics import evaluate

NONLINEAR = tuple(f"{m}_snr{s}" for s in (10, 20, 30) for m in ("bilinear", "pnmm"))


#: variant -> settings changed from the default (paper) Config
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {},
    "no_synth": {"synthetic_pretrain": False},
    "supervised": {"synth_supervision": 1.0},
    "supervised_big": {"synth_supervision": 1.0, "synth_pixels": 8192,
                       "synth_lr_decoder": 1e-3},
}


def make(variant: str, seed: int) -> CResDAEUnmixer:
    return CResDAEUnmixer(replace(CResDAEConfig(seed=seed), **SETTINGS[variant]))


VARIANTS = ("paper", "no_synth", "supervised", "supervised_big")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=list(paper_cresdae.DEFAULT_SIZE))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", default=",".join(NONLINEAR))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    datasets = args.datasets.split(",")
    variants = args.variants.split(",")
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets:
            data = paper_cresdae.load_synthetic(name, tuple(args.size), args.seed, Path(tmp))
            Y, A_ref, M_ref = data["Y"], data["A"], data["M"]
            M_vca, _ = extract_endmembers(Y, M_ref.shape[0], "vca", seed=args.seed)
            row = {}
            for v in ("fcls", *variants):
                t0 = time.perf_counter()
                model = MODELS.get("fcls")() if v == "fcls" else make(v, args.seed)
                model.fit(Y, M_vca)
                s = evaluate(M_ref, np.asarray(model.endmembers, np.float64), A_ref,
                             model.abundances(Y))
                row[v] = s.mean_rmse
                print(f"[cresdae_ablation] {name:>14} {v:>14}: mean RMSE {s.mean_rmse:.4f} "
                      f"SAD {s.mean_sad:.4f} ({time.perf_counter() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
            table[name] = row
    cols = ("fcls", *variants)
    print(f"Mean per-endmember abundance RMSE, {args.size[0]} x {args.size[1]} px, seed "
          f"{args.seed} (bold: better than VCA+FCLS)\n")
    print("| dataset | VCA+FCLS | " + " | ".join(f"CResDAE {v}" for v in variants) + " |")
    print("|---" * len(cols) + "|---|")
    for name, row in table.items():
        cells = [f"{row['fcls']:.4f}"] + [
            f"**{row[v]:.4f}**" if row[v] < row["fcls"] else f"{row[v]:.4f}" for v in variants]
        print(f"| {name} | " + " | ".join(cells) + " |")
    wins = {v: sum(row[v] < row["fcls"] for row in table.values()) for v in variants}
    print("\nbeats VCA+FCLS on: " + ", ".join(f"{v} {n}/{len(table)}" for v, n in wins.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
