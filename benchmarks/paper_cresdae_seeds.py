"""Combine several ``benchmarks/paper_cresdae.py --json`` runs (different ``--seed``) into one
table: mean ± std over seeds of the mean per-endmember abundance RMSE per dataset and method,
and the acceptance check ("CResDAE beats VCA+FCLS and LinearAE") per seed.

    for s in 0 1 2 3 4; do
        python benchmarks/paper_cresdae.py --seed $s --json seed$s.json --datasets ...
    done
    python benchmarks/paper_cresdae_seeds.py seed*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LABELS = {"fcls": "VCA+FCLS", "mvc_nmf": "MVC-NMF", "khype": "VCA+K-Hype",
          "linear_ae": "LinearAE", "convae": "ConvAE", "nae": "NAE", "cresdae": "CResDAE"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="JSON files of paper_cresdae.py")
    args = ap.parse_args()
    runs = [json.loads(p.read_text()) for p in args.runs]
    seeds = [r["settings"]["seed"] for r in runs]
    datasets = runs[0]["settings"]["datasets"]
    methods = [m for m in LABELS if m in runs[0]["settings"]["methods"]]
    values: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        for row in run["results"]:
            values.setdefault((row["dataset"], row["method"]), []).append(row["mean_rmse"])
    print(f"Mean per-endmember abundance RMSE, mean ± std over seeds {sorted(seeds)} "
          f"({runs[0]['settings']['size'][0]} x {runs[0]['settings']['size'][1]} px)\n")
    print("| dataset | " + " | ".join(LABELS[m] for m in methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for name in datasets:
        cells = []
        for m in methods:
            v = np.asarray(values.get((name, m), []), dtype=float)
            cells.append(f"{v.mean():.4f} ± {v.std():.4f}" if v.size else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nAcceptance (CResDAE below both VCA+FCLS and LinearAE), per seed:")
    total = 0
    for seed, run in sorted(zip(seeds, runs, strict=True)):
        passed = [a["dataset"] for a in run["acceptance"] if a["pass"]]
        total += len(passed)
        print(f"- seed {seed}: {len(passed)}/{len(run['acceptance'])} "
              f"({', '.join(passed) if passed else 'none'})")
    cases = sum(len(r["acceptance"]) for r in runs)
    print(f"- all seeds: {total}/{cases}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
