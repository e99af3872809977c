"""End-to-end speed and memory of ``hsu-geo unmix -m fcls -k 8`` on a large generated scene.

Writes a 2000 x 2000 x 300 int16 GeoTIFF (pixel-interleaved, 512 tiles, uncompressed; linear
mixtures of 8 USGS minerals + noise), then in one run measures:

1. rasterio reading the file block window by block window (all bands), the I/O floor, with
   GDAL's defaults and again with GTIFF_DIRECT_IO=YES (the read option hsu-geo sets);
2. ``hsu-geo unmix scene.tif -m fcls -k 8`` as a subprocess: wall time and peak RSS;
3. the same on a scene with 1/4 of the area, to see how peak RSS grows with scene size.

The page cache is warmed by one full read before any timing, so both the floor and the unmix
run read from memory. Targets (issue): wall <= 3 x the read floor, peak RSS <= 2 GiB, peak RSS
growth <= 25 % for 4 x the area.

    python benchmarks/scene.py [--workdir DIR] [--size 2000] [--bands 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

MINERALS = ["alunite", "kaolinite", "muscovite", "calcite", "hematite", "dolomite", "jarosite",
            "montmorillonite"]


def make_scene(path: Path, size: int, bands: int, seed: int = 0) -> Path:
    """Write the benchmark scene tile by tile (never the whole array in memory)."""
    if path.exists():
        return path
    from hsu_geo.endmembers.library import load_usgs_library, resample_to_bands

    wl = np.linspace(400, 2450, bands)
    E = resample_to_bands(load_usgs_library(MINERALS), wl, np.full(bands, 8.0))
    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "dtype": "int16", "count": bands, "height": size,
               "width": size, "crs": "EPSG:32611", "nodata": -9999, "tiled": True,
               "blockxsize": 512, "blockysize": 512, "interleave": "pixel",
               "transform": from_origin(500000, 4200000, 30, 30), "BIGTIFF": "YES"}
    tmp = path.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.update_tags(reflectance_scale_factor="10000")
        for b in range(bands):
            dst.update_tags(b + 1, wavelength=f"{wl[b]:.2f}", wavelength_units="Nanometers",
                            fwhm="8")
        for y in range(0, size, 512):
            for x in range(0, size, 512):
                h, w = min(512, size - y), min(512, size - x)
                A = rng.dirichlet(np.full(len(MINERALS), 0.3), size=h * w)
                Y = A @ E + rng.normal(0, 0.003, (h * w, bands))
                dst.write((Y.T.reshape(bands, h, w) * 10000).astype("int16"),
                          window=Window(x, y, w, h))
    tmp.rename(path)
    return path


def read_blocks(path: Path, **gdal_options: str) -> float:
    """Seconds for rasterio to read every 512 x 512 window, all bands (GDAL defaults, or the
    given config options)."""
    t0 = time.perf_counter()
    with rasterio.Env(**gdal_options), rasterio.open(path) as src:
        for y in range(0, src.height, 512):
            for x in range(0, src.width, 512):
                src.read(window=Window(x, y, min(512, src.width - x), min(512, src.height - y)))
    return time.perf_counter() - t0


def run_unmix(path: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in GiB) of the CLI in a fresh process."""
    code = ("import resource, sys, time; from hsu_geo.cli.main import cli; t=time.perf_counter()\n"
            "try:\n    cli(sys.argv[1:], standalone_mode=False)\n"
            "finally:\n    print('WALL', time.perf_counter()-t, 'RSS', "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    args = [sys.executable, "-c", code, "unmix", str(path), "-m", "fcls", "-k", "8", "-o",
            str(out), "-q", "--overwrite"]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("WALL")]
    if proc.returncode or not line:
        raise SystemExit(f"unmix failed: {proc.stderr[-2000:]}")
    parts = line[-1].split()
    return float(parts[1]), float(parts[3]) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hsu_bench")
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--bands", type=int, default=300)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (args.size, args.size // 2):
        path = make_scene(args.workdir / f"scene_{size}x{size}x{args.bands}.tif", size,
                          args.bands)
        read_blocks(path)  # warm the page cache
        floor = read_blocks(path)
        direct = read_blocks(path, GTIFF_DIRECT_IO="YES")
        out = args.workdir / f"out_{size}"
        wall, rss = run_unmix(path, out)
        record = json.loads(next(out.glob("*_run.json")).read_text())
        rows.append((size, path.stat().st_size / 2**30, floor, direct, wall, rss,
                     record["timings_s"]))
    print(f"| scene | file GiB | rasterio block read s | same with GTIFF_DIRECT_IO s | "
          f"unmix -m fcls -k 8 s | ratio | ratio (direct IO) | peak RSS GiB |  "
          f"(cpus: {os.cpu_count()})")
    print("|---|---|---|---|---|---|---|---|")
    for size, gib, floor, direct, wall, rss, _ in rows:
        print(f"| {size}x{size}x{args.bands} | {gib:.2f} | {floor:.1f} | {direct:.1f} | "
              f"{wall:.1f} | {wall / floor:.2f} | {wall / direct:.2f} | {rss:.2f} |")
    for size, *_, timings in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if v >= 0.05)
        print(f"stages of the {size} x {size} run (s): {stages}")
    growth = rows[0][5] / rows[1][5] - 1
    print(f"peak RSS growth for 4x the area: {100 * growth:+.0f} %")


if __name__ == "__main__":
    main()
