"""Training patches of a spatial model: cut out by the pipeline's one scan vs read afterwards.

Generates once (cached in ``--workdir``) a tiled, uncompressed float32 GeoTIFF of ``--size``²
pixels x ``--bands`` bands with wavelength tags, opens it as ``hsu-geo unmix`` does
(``open_scene``, ``--chunk`` pixel chunks), and times, round-robin over ``--repeat`` rounds
(best and median):

- ``scan``: the pipeline's scan alone (``scan_cube``: pixel sample + band statistics);
- ``scan + windows``: the same scan also cutting out a patch model's first-round windows
  (``scan_cube_with_windows`` with ``first_round``: CNNAEU's defaults, 250 windows of 40²);
- ``patches, separate read``: ``sample_patches`` reading those windows from the scene
  afterwards, the extra pass the pipeline made before the windows came from the scan.

The file is read once before timing (warm page cache for every path), so the numbers are the
read path's cost, not the disk's.

    python benchmarks/patch_sampling.py [--size 1500] [--bands 120] [--chunk 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hsu_geo.ingest import open_scene  # noqa: E402
from hsu_geo.ingest.scan import scan_cube, scan_cube_with_windows  # noqa: E402
from hsu_geo.unmix.spatial import first_round, sample_patches  # noqa: E402


def make_scene(path: Path, size: int, bands: int) -> None:
    import rasterio
    from rasterio.transform import from_origin

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "dtype": "float32", "count": bands, "height": size,
               "width": size, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "interleave": "pixel", "crs": "EPSG:32633",
               "transform": from_origin(500000, 4000000, 30, 30)}
    wl = np.linspace(400, 2500, bands)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            h = min(512, size - row)
            block = rng.random((bands, h, size), dtype=np.float32)
            dst.write(block, window=((row, row + h), (0, size)))
        for b in range(bands):
            dst.update_tags(b + 1, wavelength=f"{wl[b]:.3f}", wavelength_units="Nanometers")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "_work")
    ap.add_argument("--size", type=int, default=1500)
    ap.add_argument("--bands", type=int, default=120)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--patch", type=int, default=40)
    ap.add_argument("--patches", type=int, default=250)
    args = ap.parse_args()
    path = args.workdir / f"patch_sampling_{args.size}_{args.bands}.tif"
    make_scene(path, args.size, args.bands)
    cube = open_scene(path, chunks=args.chunk)
    request = first_round(args.size, args.size, args.patch, args.patches, seed=0)
    cube.data.sum().compute()  # warm the page cache
    paths = {
        "scan": lambda: scan_cube(cube, 100_000, seed=0),
        "scan + windows": lambda: scan_cube_with_windows(cube, 100_000, seed=0,
                                                         windows=request),
        "patches, separate read": lambda: sample_patches(cube, args.patch, args.patches, 0),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeat):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    gib = args.size ** 2 * args.bands * 4 / 2**30
    print(f"# Patch sampling: {args.size} x {args.size} x {args.bands} float32 ({gib:.2f} GiB), "
          f"chunks {args.chunk}, {args.patches} windows of {args.patch}², "
          f"{args.repeat} rounds\n")
    print("| path | best s | median s |")
    print("|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {min(t):.2f} | {statistics.median(t):.2f} |")
    before = min(times["scan"]) + min(times["patches, separate read"])
    print(f"\nbefore (scan, then a separate read): {before:.2f} s; now (one scan with windows): "
          f"{min(times['scan + windows']):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
