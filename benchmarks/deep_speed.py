"""CResDAE speed on CPU: training time, block-wise inference throughput, sample-scene run.

Usage: ``python benchmarks/deep_speed.py [--pixels 100000] [--bands 300] [--k 5]
[--epochs 40] [--measure-epochs E] [--threads 1] [--skip-scene] [--seed 0]``

Targets (the deep-engine issue, CPU, 2 cores): training on 100,000 sampled pixels × 300 bands
for 40 epochs ≤ 5 min; inference including reconstruction RMSE ≥ 50,000 pixels/s; the full
``hsu-geo unmix sample_data/minerals_aviris_like.tif -m cresdae`` < 2 min.

Data: Dirichlet(1) abundances of k smooth random spectra, linear mixing, 30 dB noise
(:mod:`hsu_geo.synth`), float32 ``(N, L)``. Timed:

- ``fine-tune``: the 40-epoch stage (batch 1024, encoder lr 1e-3, decoder lr 1e-5) on all N
  pixels. With ``--measure-epochs E < --epochs`` only E epochs run and the time is scaled by
  epochs / E (per-epoch cost is constant: same batches, same layers);
- ``pretraining``: the default decoder pretraining and synthetic pretraining stages (their
  size does not depend on N);
- ``inference``: :func:`hsu_geo.unmix.adapter.apply_unmixer` over a dask cube of N pixels
  (250 rows, chunks 125 × 200 so both cores get equal blocks; dask's threaded scheduler, one
  torch thread per task), abundances + reconstruction RMSE computed;
- ``sample scene``: wall time of the CLI run as a subprocess (includes Python start-up and
  imports).

Timings on a shared machine are approximate: rerun when the load is low.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dask.array as da  # noqa: E402
import xarray as xr  # noqa: E402

from hsu_geo.synth import dirichlet_abundances, synthesize  # noqa: E402
from hsu_geo.unmix.adapter import apply_unmixer  # noqa: E402
from hsu_geo.unmix.deep.cresdae import CResDAEConfig, CResDAEUnmixer  # noqa: E402

SAMPLE = ROOT / "sample_data" / "minerals_aviris_like.tif"


def make_data(n: int, L: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Y (n, L) float32, M (k, L))``: linear mixtures at 30 dB of smooth spectra."""
    rng = np.random.default_rng(seed)
    M = np.abs(np.cumsum(rng.normal(size=(k, L)), axis=1)) + 0.5
    M /= M.max()
    A = dirichlet_abundances(n, k, rng)
    Y, _ = synthesize(M, n, "linear", 30.0, rng, A=A)
    return Y.astype(np.float32), M


def time_training(Y: np.ndarray, M: np.ndarray, epochs: int, measure: int, threads: int,
                  seed: int) -> tuple[float, float, float, float]:
    """``(fine-tune seconds for `epochs`, measured seconds, pretraining seconds,
    final loss)``."""
    cfg = CResDAEConfig(epochs=measure, synthetic_pretrain=False, pretrain_steps=0,
                        threads=threads, seed=seed)
    model = CResDAEUnmixer(cfg)
    model.fit(Y, M)
    stage = model.fit_info["stages"]["finetune"]
    measured = stage["seconds"]
    pre = CResDAEUnmixer(CResDAEConfig(epochs=0, threads=threads, seed=seed))
    pre.fit(Y, M)
    pre_s = sum(s["seconds"] for k, s in pre.fit_info["stages"].items() if k != "finetune")
    return measured * epochs / max(measure, 1), measured, pre_s, stage["final_loss"]


def time_inference(model: CResDAEUnmixer, Y: np.ndarray) -> tuple[float, float]:
    """``(pixels/s through apply_unmixer, mean RMSE)`` over a dask cube holding ``Y``."""
    n, L = Y.shape
    rows = 250
    cols = int(np.ceil(n / rows))
    pad = np.full((rows * cols, L), np.nan, dtype=np.float32)
    pad[:n] = Y
    cube = xr.DataArray(
        da.from_array(pad.T.reshape(L, rows, cols), chunks=(L, 125, 200)),
        dims=("band", "y", "x"),
        coords={"band": np.arange(1, L + 1), "wavelength": ("band", np.linspace(400, 2500, L)),
                "fwhm": ("band", np.full(L, 10.0))})
    ds = apply_unmixer(cube, model, [f"em_{i + 1}" for i in range(model.k)])
    t0 = time.perf_counter()
    ab, rmse = (v.values for v in (ds["abundance"], ds["reconstruction_rmse"]))
    seconds = time.perf_counter() - t0
    assert np.isfinite(ab).all(axis=0).sum() == n
    return n / seconds, float(np.nanmean(rmse))


def time_scene() -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from hsu_geo.cli.main import cli; cli()",
                        "unmix", str(SAMPLE), "-m", "cresdae", "-o", out, "--overwrite", "-q"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=100_000)
    ap.add_argument("--bands", type=int, default=300)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--measure-epochs", type=int, default=None,
                    help="run only this many epochs and extrapolate (busy machines)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--skip-scene", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    measure = args.measure_epochs or args.epochs

    print(f"# CResDAE CPU benchmark: {args.pixels} px x {args.bands} bands, k={args.k}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine: "
          "timings are approximate)")
    Y, M = make_data(args.pixels, args.bands, args.k, args.seed)
    train_s, measured, pre_s, loss = time_training(Y, M, args.epochs, measure, args.threads,
                                                   args.seed)
    note = "" if measure == args.epochs else f" (from {measure} epochs: {measured:.1f} s)"
    rows = [(f"fine-tune {args.epochs} epochs", f"{train_s:.1f} s{note}", "<= 300 s",
             train_s <= 300),
            ("pretraining stages (decoder + synthetic)", f"{pre_s:.1f} s", "", None)]

    model = CResDAEUnmixer(CResDAEConfig(epochs=1, synthetic_pretrain=False, pretrain_steps=0))
    model.fit(Y[:4096], M)
    pps, rmse = time_inference(model, Y)
    rows.append(("inference + reconstruction RMSE", f"{pps:,.0f} px/s", ">= 50,000 px/s",
                 pps >= 50_000))
    if not args.skip_scene:
        scene_s = time_scene()
        rows.append(("hsu-geo unmix sample scene -m cresdae", f"{scene_s:.1f} s", "< 120 s",
                     scene_s < 120))
    print(f"final fine-tune loss {loss:.4g}; mean reconstruction RMSE {rmse:.4g} (of the "
          "1-epoch model used only to time inference)")
    print(f"{'measure':<44}{'result':<34}{'target':<16}ok")
    for name, value, target, ok in rows:
        print(f"{name:<44}{value:<34}{target:<16}{'' if ok is None else ('yes' if ok else 'NO')}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
