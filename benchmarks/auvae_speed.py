"""AUVAE-Net speed on CPU: seconds per optimiser step of each training phase at the default
chunk size, the projected time of the code's full schedule, and inference throughput.

Usage: ``python benchmarks/auvae_speed.py [--train-pixels 20000] [--pixels 100000]
[--bands 300] [--k 5] [--seed 0]``

Data: Dirichlet(1) abundances of k smooth random spectra, linear mixing, 30 dB noise (the data
of ``deep_speed.py``). Training: one short epoch (``ae_steps`` 2, ``disc_epochs`` 1,
``gen_steps`` 1) on ``--train-pixels`` pixels, so chunks are the default ``N // 10``; the
per-step times are scaled to the default schedule (20 epochs × 10 chunks × 30 / 20 / 10 steps of
the autoencoder / discriminator / generator). Inference: ``apply_unmixer`` over a dask cube of
``--pixels`` pixels (abundances + reconstruction RMSE; dask threads, one torch thread per
task). Wall times on a shared machine are approximate; CPU seconds are printed beside them
(the inference CPU time includes the dask graph set-up).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.deep_speed import make_data, time_inference  # noqa: E402
from hsu_geo.unmix.deep.auvae_net import AUVAENetConfig, AUVAENetUnmixer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-pixels", type=int, default=20_000)
    ap.add_argument("--pixels", type=int, default=100_000)
    ap.add_argument("--bands", type=int, default=300)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    Y, M = make_data(max(args.pixels, args.train_pixels), args.bands, args.k, args.seed)
    cfg = AUVAENetConfig(epochs=1, min_steps=0, ae_steps=2, disc_epochs=1, gen_steps=1,
                         seed=args.seed)
    model = AUVAENetUnmixer(cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(Y[:args.train_pixels], M)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    stages = model.fit_info["stages"]
    full = AUVAENetConfig()
    chunks = model.fit_info["chunks_per_epoch"]
    planned = {"autoencoder": full.epochs * chunks * full.ae_steps,
               "discriminator": full.epochs * chunks * full.disc_epochs * 2,
               "generator": full.epochs * chunks * full.gen_steps}
    print(f"training sample {args.train_pixels} px x {args.bands} bands, k={args.k}, "
          f"chunk {stages['autoencoder']['batch_size']} px ({chunks} chunks); short fit "
          f"{fit_s:.1f} s wall, {fit_cpu:.1f} s CPU (CPU/wall {fit_cpu / fit_s:.2f}: below 1 "
          "= the machine is shared)")
    total = 0.0
    for name, stage in stages.items():
        per_step = stage["seconds"] / max(stage["steps"], 1)
        total += per_step * planned[name]
        print(f"  {name:<14} {per_step * 1e3:8.1f} ms/step  x {planned[name]:5d} steps "
              f"(default schedule) = {per_step * planned[name]:7.1f} s")
    print(f"  projected default training: {total:.0f} s ({total / 60:.1f} min)")
    c0 = time.process_time()
    pxs, rmse = time_inference(model, Y[:args.pixels])
    cpu = time.process_time() - c0
    print(f"inference: {pxs:,.0f} px/s wall, {args.pixels / cpu:,.0f} px per CPU-second over "
          f"{args.pixels} px (abundances + RMSE, mean RMSE {rmse:.4f})")


if __name__ == "__main__":
    main()
