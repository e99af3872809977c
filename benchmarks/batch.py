"""Batch throughput on a dask LocalCluster: 1 worker vs 2 workers (one task per scene).

Writes ``--scenes`` GeoTIFF scenes (``--size`` x ``--size`` px, ``--bands`` bands, float32
reflectance: linear mixtures of 5 USGS minerals + noise), then for each worker count starts a
``LocalCluster`` (processes, 1 thread each), warms the workers up (imports; not timed), and
times ``hsu_geo.batch.run_batch`` with ``--scheduler <that cluster>`` from its start to the
last scene's record. Reports wall time, scenes per second, the speed-up over 1 worker and the
peak resident memory of each worker (``ru_maxrss``). Target (issue): >= 1.6x with 2 workers on
2 cores. Timings on a shared machine vary; compare runs made back to back.

    python benchmarks/batch.py [--scenes 8] [--size 160] [--bands 120] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hsu_geo.batch import run_batch  # noqa: E402
from hsu_geo.config import UnmixOptions  # noqa: E402

MINERALS = ["alunite", "kaolinite", "muscovite", "calcite", "hematite"]


def make_scenes(folder: Path, n: int, size: int, bands: int) -> list[Path]:
    """``n`` mixtures of the USGS minerals on ``bands`` bands (400-2450 nm), 30 m UTM grids."""
    from hsu_geo.endmembers.library import load_usgs_library, resample_to_bands

    wl = np.linspace(400.0, 2450.0, bands)
    fwhm = np.full(bands, (wl[1] - wl[0]) * 1.1)
    E = resample_to_bands(load_usgs_library(MINERALS), wl, fwhm)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"scene_{i:02d}.tif"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(i)
        A = rng.dirichlet(np.full(len(MINERALS), 0.6), size=size * size).T
        Y = (E.T @ A).reshape(bands, size, size)
        Y += rng.normal(0.0, 0.003, Y.shape)
        profile = {"driver": "GTiff", "dtype": "float32", "count": bands, "height": size,
                   "width": size, "crs": "EPSG:32611", "tiled": True, "blockxsize": 128,
                   "blockysize": 128, "interleave": "pixel",
                   "transform": from_origin(538_000.0 + 10_000.0 * i, 4_142_000.0, 30.0, 30.0)}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(Y.astype("float32"))
            dst.update_tags(quantity="reflectance", acquisition_time="2023-06-15T18:30:00Z")
            for b in range(bands):
                dst.update_tags(b + 1, wavelength=f"{wl[b]:.2f}", wavelength_units="Nanometers",
                                fwhm=f"{fwhm[b]:.2f}")
    return paths


def _warm_up() -> None:
    import hsu_geo.batch
    import hsu_geo.pipeline
    import hsu_geo.stac
    import hsu_geo.unmix.device
    import hsu_geo.write.outputs

    hsu_geo.unmix.device.resolve_device("auto")


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run(scenes_dir: Path, out: Path, workers: int, opts: UnmixOptions) -> dict[str, float]:
    """Time one batch on a fresh ``workers``-process LocalCluster."""
    from distributed import Client, LocalCluster

    shutil.rmtree(out, ignore_errors=True)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        client.run(_warm_up)
        cpu0 = sum(client.run(_cpu_seconds).values())
        own0 = _cpu_seconds()  # this process also runs the LocalCluster's scheduler
        t0 = time.perf_counter()
        record = run_batch(scenes_dir, out, opts.updated(scheduler=cluster.scheduler_address))
        wall = time.perf_counter() - t0
        own = _cpu_seconds() - own0
        cpu = sum(client.run(_cpu_seconds).values()) - cpu0
        rss = list(client.run(_peak_rss_mb).values())
    done = record["summary"]["done"]
    if done != len([e for e in record["scenes"] if e["scene_id"]]):
        raise SystemExit(f"{workers} worker(s): only {done} scenes done: {record['scenes']}")
    return {"workers": workers, "wall": wall, "scenes": done, "rss_max": max(rss),
            "rss_mean": float(np.mean(rss)), "worker_cpu": cpu, "client_cpu": own}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=8, help="number of scenes (>= 6)")
    ap.add_argument("--size", type=int, default=160, help="scene edge in pixels")
    ap.add_argument("--bands", type=int, default=120)
    ap.add_argument("--k", default="5", help="endmembers per scene")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where scenes and outputs go (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.scenes < 6:
        ap.error("--scenes must be >= 6")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hsu_geo_batch_bench_"))
    scenes = work / "scenes"
    make_scenes(scenes, args.scenes, args.size, args.bands)
    opts = UnmixOptions(k=args.k, sample_size=20_000, device="cpu")
    print(f"{args.scenes} scenes of {args.size} x {args.size} px x {args.bands} bands, "
          f"fcls, k={args.k}; LocalCluster, 1 thread per worker, one task per scene")
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} before the runs"
          + (" (busy machine: the speed-up is not meaningful)" if load > 1.0 else ""))
    rows = [run(scenes, work / f"out_{n}", n, opts) for n in (1, 2)]
    base = rows[0]["scenes"] / rows[0]["wall"]
    print(f"{'workers':>7} {'wall s':>7} {'scenes/s':>8} {'speed-up':>8} {'worker CPU s':>12} "
          f"{'client CPU s':>12} {'peak RSS/worker MB (max, mean)':>31}")
    for r in rows:
        rate = r["scenes"] / r["wall"]
        print(f"{r['workers']:>7} {r['wall']:>7.1f} {rate:>8.3f} {rate / base:>7.2f}x "
              f"{r['worker_cpu']:>12.1f} {r['client_cpu']:>12.1f} "
              f"{r['rss_max']:>23.0f}, {r['rss_mean']:.0f}")
    ratio = (rows[1]["scenes"] / rows[1]["wall"]) / base
    print(f"throughput ratio 2 workers / 1 worker: {ratio:.2f}x (target >= 1.6x)")
    w, c = rows[0]["worker_cpu"], rows[0]["client_cpu"]
    print(f"CPU-time bound with 2 idle cores (Amdahl, client CPU as the serial part): "
          f"{(w + c) / (w / 2 + c):.2f}x; load average after: {os.getloadavg()[0]:.1f}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
