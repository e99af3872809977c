"""GPU check and speed of every registered deep model: one short script for a lent CUDA machine.

For each deep model of ``hsu_geo.unmix.MODELS`` (or ``--models``):

1. **CUDA against CPU**: the model is fitted on CPU on a small ``64 x 64`` linear scene (a few
   optimiser steps, seeded), its state loaded onto ``--device``, and the abundances of the
   scene computed on both (pixel models through ``abundances``, spatial models block by block
   through :func:`hsu_geo.unmix.spatial.spatial_stacked`); the largest absolute difference
   must stay below ``--tol`` (fp32: TF32 is switched off by ``precision=fp32``).
2. **Training speed** on ``--device``: ``fit`` with the model's defaults except ``epochs=1``,
   ``min_steps=--steps`` and the optional pretraining stages off (:data:`TIMING`), on the
   sample the pipeline draws from the ``--size`` scene (pixel models: the 100,000-pixel
   sample of one :func:`hsu_geo.ingest.scan.scan_cube` pass, shared by all pixel models;
   spatial models: their seeded training patches of the scene). Reported as optimiser steps
   per second and training pixels per second (steps x batch x pixels per sample over the time
   spent in the training stages, summed over stages), and the fit's wall time (the scan is
   not in it, as the pipeline scans once for everything).
3. **Inference speed**: abundances + reconstruction RMSE of a ``--size x --size x --bands``
   scene (a dask cube tiling one generated ``256 x 256`` mixture tile, so generating it
   costs nothing) through the code ``hsu-geo unmix`` runs
   (:func:`hsu_geo.unmix.adapter.apply_unmixer`), reduced per chunk; pixels per second.

    python benchmarks/gpu.py                       # cuda:0, 2000 x 2000 x 224, all deep models
    python benchmarks/gpu.py --models cnnaeu,cresdae --size 1000 --json gpu.json
    python benchmarks/gpu.py --device cpu --size 128 --steps 2   # dry run without a GPU

Bounded in time: ``--max-model-seconds`` (60) skips the inference of a model whose check and
fit ran over, and ``--budget-seconds`` (290) skips the models not started when the whole run
has used it, so the script ends within about five minutes plus one model; skipped models are
listed as such. Prints a Markdown table; ``--json`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

from hsu_geo.ingest.scan import scan_cube  # noqa: E402
from hsu_geo.unmix import MODELS  # noqa: E402
from hsu_geo.unmix.adapter import apply_unmixer  # noqa: E402
from hsu_geo.unmix.deep.base import DeepUnmixer  # noqa: E402
from hsu_geo.unmix.spatial import is_spatial, spatial_stacked, training_patches  # noqa: E402

TILE = 256
#: settings for the timed fits: a fixed step budget, optional pretraining stages off (the
#: names a model lacks are ignored)
TIMING = {"epochs": 1, "synthetic_pretrain": False, "pretrain_steps": 0}


def deep_models() -> list[str]:
    return [n for n in MODELS.names() if issubclass(MODELS.get(n), DeepUnmixer)]


def mixture_tile(size: int, bands: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(cube (bands, size, size) float32, M (k, bands))``: smooth random spectra mixed by
    spatially smooth abundances (softmax of blurred noise), 30 dB white noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    M = np.abs(np.cumsum(rng.normal(size=(k, bands)), axis=1)) + 0.5
    M /= M.max()
    field = gaussian_filter(rng.normal(size=(k, size, size)), sigma=(0, 6, 6), mode="wrap")
    A = np.exp(field / field.std() * 2.0)
    A /= A.sum(axis=0, keepdims=True)
    Y = np.einsum("kl,kyx->lyx", M, A)
    Y += rng.normal(scale=np.sqrt(np.mean(Y ** 2) / 1e3), size=Y.shape)
    return Y.astype(np.float32), M


def as_cube(arr: da.Array | np.ndarray) -> xr.DataArray:
    bands = arr.shape[0]
    return xr.DataArray(arr, dims=("band", "y", "x"), coords={
        "band": np.arange(1, bands + 1), "wavelength": ("band", np.linspace(400, 2500, bands)),
        "fwhm": ("band", np.full(bands, 10.0))})


def big_cube(tile: np.ndarray, size: int, chunk: int) -> xr.DataArray:
    """A lazy ``(L, size, size)`` cube made of references to ``tile`` (no generation cost)."""
    t = da.from_array(tile, chunks=(tile.shape[0], chunk, chunk))
    reps = -(-size // tile.shape[1])
    grid = da.block([[t] * reps] * reps)[:, :size, :size]
    return as_cube(grid.rechunk((tile.shape[0], chunk, chunk)))


def make(name: str, device: str, **overrides: Any) -> DeepUnmixer:
    cls = MODELS.get(name)
    cfg = cls.Config()
    valid = {f.name for f in fields(cfg)}
    cfg = replace(cfg, **{key: v for key, v in overrides.items() if key in valid})
    return cls(cfg, device=device)


def fit(model: DeepUnmixer, cube: xr.DataArray, M: np.ndarray,
        pixels: np.ndarray | None = None) -> None:
    """Fit as :func:`hsu_geo.pipeline.fit_model` does: spatial models on their own sample of
    ``cube`` (patches), pixel models on ``pixels (n, L)`` (default: every pixel of ``cube``)."""
    if is_spatial(model):  # a model may read its own sample
        own = getattr(model, "training_sample", None)
        model.fit(own(cube) if own else training_patches(cube, model), M)
    else:
        if pixels is None:
            pixels = cube.values.reshape(cube.shape[0], -1).T
        model.fit(pixels, M)


def abundances(model: DeepUnmixer, cube: xr.DataArray) -> np.ndarray:
    k = model.endmembers.shape[0]
    if is_spatial(model):
        with dask.config.set(scheduler="synchronous"):
            return spatial_stacked(cube, model, k).values[:k]
    return model.abundances(cube.values.reshape(cube.shape[0], -1).T).T.reshape(
        k, *cube.shape[1:])


def training_pixels(model: DeepUnmixer) -> tuple[int, int, float]:
    """(optimiser steps, pixels seen, seconds) over every stage of the last fit."""
    per_sample = 1
    if is_spatial(model):
        p = model.fit_info.get("patch_size") or [1, 1]
        per_sample = int(p[0]) * int(p[1])
    steps = seen = 0
    seconds = 0.0
    for stage in model.fit_info.get("stages", {}).values():
        s, b = int(stage.get("steps", 0)), int(stage.get("batch_size", 0))
        steps += s
        seen += s * b * per_sample
        seconds += float(stage.get("seconds", 0.0))
    return steps, seen, seconds


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


#: the pixel models' training sample per (size, bands, k, chunk): one scan for all of them
_SAMPLES: dict[tuple[int, int, int, int], np.ndarray] = {}


def check_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"model": name, "device": args.device}
    t_model = time.perf_counter()
    small, M = mixture_tile(64, args.bands, args.k, seed=1)
    small_cube = as_cube(small)
    # 1. CUDA against CPU, same weights
    cpu = make(name, "cpu", **TIMING, min_steps=args.check_steps, n_patches=8, patch_size=48,
               seed=0, precision="fp32")
    fit(cpu, small_cube, M)
    if args.device != "cpu" or args.compare:
        dev = make(name, args.device, **{f.name: getattr(cpu.config, f.name)
                                         for f in fields(cpu.config)})
        dev.load_state(cpu.state())
        if hasattr(cpu, "fill_spectrum"):
            dev.fill_spectrum = cpu.fill_spectrum
        a_cpu, a_dev = abundances(cpu, small_cube), abundances(dev, small_cube)
        row["max_abs_diff_vs_cpu"] = float(np.nanmax(np.abs(a_cpu - a_dev)))
        row["matches_cpu"] = bool(row["max_abs_diff_vs_cpu"] <= args.tol)
    # 2. training speed
    tile, M = mixture_tile(TILE, args.bands, args.k, seed=2)
    cube = big_cube(tile, args.size, args.chunk)
    model = make(name, args.device, **TIMING, min_steps=args.steps, seed=0)
    pixels = None
    if not is_spatial(model):  # one scan of the big scene, shared by the pixel models
        key = (args.size, args.bands, args.k, args.chunk)
        if key not in _SAMPLES:
            _SAMPLES[key] = scan_cube(cube, 100_000, seed=0)[0]
        pixels = _SAMPLES[key]
    sync(args.device)
    t0 = time.perf_counter()
    fit(model, cube, M, pixels)
    sync(args.device)
    seconds = time.perf_counter() - t0
    steps, seen, in_stages = training_pixels(model)
    in_stages = in_stages or seconds
    row.update(fit_seconds=round(seconds, 2), train_steps=steps,
               train_steps_per_s=round(steps / in_stages, 1),
               train_px_per_s=round(seen / in_stages))
    if time.perf_counter() - t_model > args.max_model_seconds:
        row["skipped"] = "inference: over --max-model-seconds"
        return row
    # 3. inference on the big scene
    names = [f"em{i}" for i in range(model.endmembers.shape[0])]
    sync(args.device)
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        ds = apply_unmixer(cube, model, names)
        total = float(ds["reconstruction_rmse"].sum().compute())
    sync(args.device)
    seconds = time.perf_counter() - t0
    row.update(infer_seconds=round(seconds, 2), infer_px_per_s=round(args.size ** 2 / seconds),
               infer_finite=bool(np.isfinite(total)))
    if args.device.startswith("cuda"):
        row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--models", default=None, help="comma-separated (default: every deep model)")
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--bands", type=int, default=224)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--threads", type=int, default=4, help="dask threads at inference")
    ap.add_argument("--steps", type=int, default=200, help="optimiser steps timed per model")
    ap.add_argument("--check-steps", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--max-model-seconds", type=float, default=60.0)
    ap.add_argument("--budget-seconds", type=float, default=290.0,
                    help="models not started after this many seconds are skipped")
    ap.add_argument("--compare", action="store_true",
                    help="run the comparison even with --device cpu (tests this script)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA device here; run this on the GPU "
              "machine, or --device cpu for a dry run", file=sys.stderr)
        return 2
    models = args.models.split(",") if args.models else deep_models()
    rows = []
    t_start = time.perf_counter()
    for name in models:
        t0 = time.perf_counter()
        if t0 - t_start > args.budget_seconds:
            rows.append({"model": name, "skipped": f"not started: the run passed "
                                                   f"--budget-seconds {args.budget_seconds:g}"})
            print(f"[gpu] {name}: skipped (over --budget-seconds)", file=sys.stderr, flush=True)
            continue
        try:
            rows.append(check_model(name, args))
        except Exception as exc:  # one model's failure must not hide the others' numbers
            traceback.print_exc()
            rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
        print(f"[gpu] {name}: {time.perf_counter() - t0:.1f} s {json.dumps(rows[-1])}",
              file=sys.stderr, flush=True)
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                   else "CPU")
    print(f"# Deep models on {device_name} ({args.device}), scene {args.size} x {args.size} x "
          f"{args.bands}, k = {args.k}, chunks {args.chunk}, torch {torch.__version__}\n")
    print("| model | CUDA vs CPU max abs diff | fit s | train steps/s | train px/s | infer px/s "
          "| peak GPU GiB | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r.get('max_abs_diff_vs_cpu', '—')} | "
              f"{r.get('fit_seconds', '—')} | "
              f"{r.get('train_steps_per_s', '—')} | {r.get('train_px_per_s', '—')} | "
              f"{r.get('infer_px_per_s', '—')} | {r.get('peak_gpu_gib', '—')} | "
              f"{r.get('error') or r.get('skipped') or ''} |")
    print(f"\nTotal {time.perf_counter() - t_start:.0f} s (--budget-seconds "
          f"{args.budget_seconds:g}).")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "device": device_name, "rows": rows}, indent=1))
    bad = [r["model"] for r in rows if "error" in r or r.get("matches_cpu") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
