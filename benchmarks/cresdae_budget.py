"""CResDAE training budget and decoder start: fit time, accuracy and how far the encoder ends
from the optimum of its own decoder.

What: on the project's synthetic datasets (``hsu-geo synth`` generator, as in
``benchmarks/paper_cresdae.py``), CResDAE is fitted from VCA endmembers with variants of
``min_steps`` (the fine-tuning floor in optimiser steps) and ``decoder_init`` (``zero``: last
layer of the nonlinear path zero-initialised; ``pretrain``: the earlier 2000-step NAE-style
decoder pretraining, with weight decay on the endmember matrix as before). Per variant: fit
seconds (and the seconds of each stage), fine-tuning steps, abundance aRMSE, mean per-endmember
abundance RMSE, mean endmember SAD (rad), and the *encoder gap*: the RMSE between the encoder's
abundances and the abundances that minimise the reconstruction MSE of the trained decoder
(per-pixel softmax logits optimised by Adam, 300 steps, decoder frozen, started from the
encoder's logits) — a measure of how well the encoder is trained for its own decoder.

    python -P benchmarks/cresdae_budget.py [--size 32 32] [--seeds 0] \\
        [--datasets bilinear_snr20,pnmm_snr20] [--min-steps 0,1000] [--skip-before] \\
        [--json out.json]

(``-P``: ``benchmarks/`` holds a module that shadows a package.) Nothing here is tuned on the
ground truth; the table is a sensitivity check of defaults chosen a priori.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_cresdae import load_synthetic

from hsu_geo.endmembers.extract import extract_endmembers
from hsu_geo.unmix.deep.cresdae import CResDAEConfig, CResDAEUnmixer
from hsu_geo.unmix.metrics import evaluate


def encoder_gap(model: CResDAEUnmixer, Y: np.ndarray, steps: int = 300) -> float:
    """RMSE between the encoder's abundances and those minimising ``||decode(a) - x||²`` for
    the trained decoder (softmax logits per pixel, Adam lr 0.05, decoder frozen)."""
    net = model.network
    X = torch.from_numpy((Y / model.scale).astype(np.float32))
    with torch.no_grad():
        z0 = net.encoder(X)
        a_enc = torch.softmax(z0, dim=1)
    z = z0.clone().requires_grad_(True)
    for p in net.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.square(net.decode(torch.softmax(z, dim=1)) - X).sum()
        loss.backward()
        opt.step()
    for p in net.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        return float(torch.sqrt(torch.square(torch.softmax(z, dim=1) - a_enc).mean()))


def variants(min_steps: Sequence[int], before: bool = True) -> dict[str, dict[str, Any]]:
    """Label -> config overrides: the earlier start (2000-step pretraining, decayed
    endmembers, paper epochs; unless ``before`` is False) and the zero start at each
    ``min_steps``."""
    out = {"pretrain stage, paper epochs (before)": {"decoder_init": "pretrain", "min_steps": 0,
                                                     "decay_endmembers": True}} if before else {}
    for n in min_steps:
        out[f"zero start, min_steps={n}"] = {"decoder_init": "zero", "min_steps": n}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"))
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--datasets", default="bilinear_snr20,pnmm_snr20")
    ap.add_argument("--min-steps", default="0,1000", help="comma-separated min_steps values")
    ap.add_argument("--skip-before", action="store_true",
                    help="leave out the variant with the 2000-step decoder pretraining")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            for seed in seeds:
                data = load_synthetic(name, tuple(args.size), seed, Path(tmp))
                Y, A_ref, M_ref = data["Y"], data["A"], data["M"]
                M0, _ = extract_endmembers(Y, M_ref.shape[0], "vca", seed=seed)
                for label, over in variants([int(v) for v in args.min_steps.split(",")],
                                            not args.skip_before).items():
                    model = CResDAEUnmixer(CResDAEConfig(seed=seed, **over))
                    t0 = time.perf_counter()
                    model.fit(Y, M0)
                    fit_s = time.perf_counter() - t0
                    A = model.abundances(Y)
                    s = evaluate(M_ref, np.asarray(model.endmembers, np.float64), A_ref, A)
                    stages = model.fit_info["stages"]
                    row = {"dataset": name, "seed": seed, "variant": label, "fit_s": fit_s,
                           "stage_s": {k: v["seconds"] for k, v in stages.items()},
                           "finetune_steps": stages["finetune"]["steps"],
                           "armse": s.armse, "mean_rmse": s.mean_rmse, "sad": s.mean_sad,
                           "gap": encoder_gap(model, Y)}
                    rows.append(row)
                    print(f"[cresdae_budget] {name} s{seed} {label}: fit {fit_s:.1f} s "
                          f"{row['stage_s']} steps {row['finetune_steps']} aRMSE "
                          f"{s.armse:.4f} mRMSE {s.mean_rmse:.4f} SAD {s.mean_sad:.4f} "
                          f"gap {row['gap']:.4f}", file=sys.stderr, flush=True)
    print(f"CResDAE budget, size {args.size[0]}x{args.size[1]}, seeds {seeds} "
          "(mean ± std over seeds)\n")
    print("| dataset | variant | fit s | fine-tune steps | aRMSE | mean RMSE | SAD rad | "
          "encoder gap |")
    print("|---|---|---|---|---|---|---|---|")
    keys = dict.fromkeys((r["dataset"], r["variant"]) for r in rows)
    for name, label in keys:
        sel = [r for r in rows if r["dataset"] == name and r["variant"] == label]

        def ms(key: str, fmt: str, sel: list[dict[str, Any]] = sel) -> str:
            v = np.array([r[key] for r in sel], dtype=float)
            return f"{v.mean():{fmt}}" + (f" ± {v.std():{fmt}}" if len(v) > 1 else "")
        print(f"| {name} | {label} | {ms('fit_s', '.1f')} | {ms('finetune_steps', '.0f')} | "
              f"{ms('armse', '.4f')} | {ms('mean_rmse', '.4f')} | {ms('sad', '.4f')} | "
              f"{ms('gap', '.4f')} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
