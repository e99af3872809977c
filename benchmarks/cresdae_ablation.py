"""Why CResDAE does not beat VCA+FCLS here: CResDAE variants on the nonlinear synthetic sets.

What: VCA+FCLS against four CResDAE set-ups on the bilinear and PNMM datasets of
``hsu-geo synth`` (same generator, size and seed as ``benchmarks/paper_cresdae.py``), scored by
mean per-endmember abundance RMSE after Hungarian matching:

- ``paper``: the default Config (the paper's settings; synthetic pretraining unsupervised,
  decoder learning rate 1e-5 in every stage);
- ``no_synth``: the same without the synthetic pretraining stage;
- ``supervised``: synthetic pretraining adds the abundance error ``||a - a_true||²`` of the
  synthetic pixels (whose abundances are known) to the loss, weight 1;
- ``supervised_big``: as ``supervised`` with 8192 pixels per synthetic dataset and the decoder
  pretrained at 1e-3 (fine-tuning still at 1e-5).

The supervised variants are experiments, not options of the model: they live only in this
script. Progress goes to stderr; a Markdown table to stdout.

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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper_cresdae

from hsu_geo.endmembers.extract import extract_endmembers
from hsu_geo.synth import softmax_abundances, synthesize
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep.cresdae import CResDAEConfig, CResDAEUnmixer
from hsu_geo.unmix.metrics import evaluate

NONLINEAR = tuple(f"{m}_snr{s}" for s in (10, 20, 30) for m in ("bilinear", "pnmm"))


class SupervisedPretrainCResDAE(CResDAEUnmixer):
    """CResDAE whose synthetic pretraining also fits the known synthetic abundances."""

    supervision_weight = 1.0
    pretrain_decoder_lr: float | None = None

    def _synthetic_with_truth(self, M0: np.ndarray) -> np.ndarray:
        """``(n, L + k)`` float32: synthetic pixels and their abundances side by side."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 2])
        parts = []
        for mixing in cfg.synth_mixings:
            for snr in cfg.synth_snr_db:
                A = softmax_abundances(cfg.synth_pixels, M0.shape[0], rng,
                                       cfg.synth_temperature)
                Y, A = synthesize(M0, cfg.synth_pixels, mixing, snr, rng, A=A)
                parts.append(np.concatenate([Y, A], axis=1))
        return np.concatenate(parts).astype(np.float32)

    def _pretrain_synthetic(self, net: Any, M0: np.ndarray, device: torch.device) -> None:
        cfg = self.config
        L = M0.shape[1]
        Z = torch.from_numpy(self._synthetic_with_truth(M0)).to(device)

        def loss(zb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            x, a_true = zb[:, :L], zb[:, L:]
            total, terms = self.loss(net, x)
            sup = ((net.encode(x) - a_true) ** 2).sum(dim=1).mean()
            terms["abundance"] = sup.detach()
            return total + self.supervision_weight * sup, terms

        groups = self.param_groups(net)
        if self.pretrain_decoder_lr is not None:
            groups[1]["lr"] = self.pretrain_decoder_lr
        self.run_stage("synthetic_pretrain", net, Z, loss, groups,
                       self.train_settings(cfg.synth_epochs, cfg.batch_size, seed_offset=10),
                       weight_decay=cfg.weight_decay)


def make(variant: str, seed: int) -> CResDAEUnmixer:
    cfg = CResDAEConfig(seed=seed)
    if variant == "paper":
        return CResDAEUnmixer(cfg)
    if variant == "no_synth":
        return CResDAEUnmixer(replace(cfg, synthetic_pretrain=False))
    model = SupervisedPretrainCResDAE(
        replace(cfg, synth_pixels=8192) if variant == "supervised_big" else cfg)
    if variant == "supervised_big":
        model.pretrain_decoder_lr = 1e-3
    return model


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
