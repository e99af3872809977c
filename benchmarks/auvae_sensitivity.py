"""AUVAE-Net sensitivity on synthetic data (never on the real scenes' truth): the code's loss
against the [I] options, at one budget.

Usage: ``python benchmarks/auvae_sensitivity.py [--pixels 1000] [--bands 60] [--k 3]
[--epochs 20] [--seeds 0]``

Data: ``deep_speed.make_data`` (Dirichlet(1) abundances of k smooth random spectra, linear,
30 dB); ``M0`` = VCA of the data (the pipeline's kind of start). Every variant trains with the
same schedule: ``--epochs`` passes of the code's 10 chunks × 30/20/10 steps, ``min_steps`` 0
(the default 20 is the code's schedule; W starts Glorot-random and Adam moves it about lr =
2e-4 per step, so much shorter runs leave the endmembers untrained and say nothing).
Reported, mean over seeds: mean endmember SAD (rad) and abundance aRMSE after
Hungarian matching on SAD, the spread of the abundances (mean over endmembers of their standard
deviation over pixels; the truth's is printed), and the final KL and normSAD terms.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.deep_speed import make_data  # noqa: E402
from hsu_geo.endmembers.vca import vca  # noqa: E402
from hsu_geo.synth import dirichlet_abundances, synthesize  # noqa: E402
from hsu_geo.unmix.deep.auvae_net import AUVAENetConfig, AUVAENetUnmixer  # noqa: E402
from hsu_geo.unmix.metrics import abundance_armse, match_endmembers, sad  # noqa: E402

VARIANTS: dict[str, dict[str, object]] = {
    "code (default)": {},
    "sad_mode=angle": {"sad_mode": "angle"},
    "prior=dirichlet": {"prior": "dirichlet"},
    "angle + dirichlet": {"sad_mode": "angle", "prior": "dirichlet"},
    "kl_weight=0": {"kl_weight": 0.0},
}


def data(n: int, L: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Y (n, L), M (k, L), A (n, k))``."""
    _, M = make_data(k + 1, L, k, seed)
    rng = np.random.default_rng(seed + 100)
    A = dirichlet_abundances(n, k, rng)
    Y, A = synthesize(M, n, "linear", 30.0, rng, A=A)
    return Y.astype(np.float32), M, A


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=1000)
    ap.add_argument("--bands", type=int, default=60)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    Y, M, A = data(args.pixels, args.bands, args.k, 0)
    M0, _ = vca(Y, args.k, seed=0)
    p0 = match_endmembers(M, M0)
    print(f"{args.pixels} px x {args.bands} bands, k={args.k}, 30 dB; VCA start: mean SAD "
          f"{sad(M, M0[p0]).mean():.4f} rad; truth abundance spread {A.std(0).mean():.3f}; "
          f"epochs {args.epochs} (x 10 chunks x 30/20/10 steps), seeds {seeds}")
    print("| variant | mean SAD (rad) | aRMSE | abundance spread | KL | normSAD |")
    print("|---|---|---|---|---|---|")
    for name, kw in VARIANTS.items():
        rows = []
        for seed in seeds:
            m = AUVAENetUnmixer(AUVAENetConfig(epochs=args.epochs, min_steps=0, seed=seed,
                                               **kw))
            m.fit(Y, M0)
            Ah = m.abundances(Y)
            perm = match_endmembers(M, m.endmembers)
            terms = m.fit_info["stages"]["autoencoder"]["final_terms"]
            rows.append((sad(M, m.endmembers[perm]).mean(), abundance_armse(A, Ah[:, perm]),
                         Ah.std(0).mean(), terms["kl"], terms["norm_sad"]))
        r = np.mean(rows, axis=0)
        print(f"| {name} | {r[0]:.4f} | {r[1]:.4f} | {r[2]:.3f} | {r[3]:.4f} | {r[4]:.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
