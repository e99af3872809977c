"""SUnSAL-TV (``-m sunsal_tv``) beside SUnSAL (``-m sunsal``) on spatially structured scenes.

Scenes (64 x 64, linear mixtures of the five minerals of ``hsu-geo synth``'s default set on
400-2500 nm every 10 nm, white noise at 10 / 20 / 30 dB):

- ``smooth``: the abundance generator of ``hsu-geo synth`` (Gaussian-filtered fields through a
  softmax, :func:`hsu_geo.synth.datasets.smooth_abundances`);
- ``regions``: four rectangles of constant Dirichlet(1) abundances (what TV assumes).

Both models select their members from the library first (the same code: sunsal's sparse
regression and pruning on all pixels); ``true library`` gives them only the five minerals used
(isolates the abundance estimator), ``whole library`` all 53 bundled spectra (aRMSE then only
on scenes whose selection is exactly the five). Abundances: ``sunsal`` = its default (scaled
FCLS on the kept members, fractions summing to one), ``sunsal_tv`` = the TV-regularised ADMM
through the spatial engine (one chunk, the halo reflected at the scene edge), written as
fractions. Metric: abundance aRMSE (sqrt of the mean over pixels and endmembers) against the
fractions used, mean ± std over seeds.

λ_TV = ``tv_noise`` x the noise σ estimated from the pixels. The sensitivity table
(``tv_noise`` 0.03 / 0.1 / 0.3 / 1) runs on development seeds 100-104, where the default was
chosen; the reported table (the default only) on seeds 0-4.

    python benchmarks/sunsal_tv.py [--seeds 0-4] [--dev-seeds 100-104] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hsu_geo.endmembers.library import load_usgs_library  # noqa: E402
from hsu_geo.synth.datasets import (  # noqa: E402
    DEFAULT_MINERALS,
    library_on_grid,
    regular_band_grid,
    smooth_abundances,
)
from hsu_geo.synth.mixing import add_noise  # noqa: E402
from hsu_geo.unmix.classical.sunsal import SunsalConfig, SunsalUnmixer  # noqa: E402
from hsu_geo.unmix.classical.sunsal_tv import SunsalTVConfig, SunsalTVUnmixer  # noqa: E402
from hsu_geo.unmix.spatial import spatial_stacked  # noqa: E402

SIDE = 64
SNRS = (10, 20, 30)
TV_GRID = (0.03, 0.1, 0.3, 1.0)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def regions(k: int, rng: np.random.Generator) -> np.ndarray:
    """``(SIDE, SIDE, k)``: four rectangles of constant Dirichlet(1) abundances."""
    A = np.empty((SIDE, SIDE, k))
    cy, cx = rng.integers(SIDE // 4, 3 * SIDE // 4, size=2)
    for (ys, xs), a in zip(((slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, None)),
                            (slice(cy, None), slice(0, cx)), (slice(cy, None), slice(cx, None))),
                           rng.dirichlet(np.ones(k), 4), strict=True):
        A[ys, xs] = a
    return A


def run_scene(kind: str, snr: float, seed: int, M: np.ndarray, names: list[str],
              library: tuple[np.ndarray, list[str]], tv_grid: tuple[float, ...]
              ) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    k = M.shape[0]
    A = smooth_abundances(k, SIDE, SIDE, rng) if kind == "smooth" else regions(k, rng)
    Y = add_noise(A.reshape(-1, k) @ M, snr, rng).astype("float32")  # (N, L)
    cube = xr.DataArray(Y.T.reshape(-1, SIDE, SIDE), dims=("band", "y", "x"))
    lib, lib_names = library
    row: dict[str, Any] = {"kind": kind, "snr": snr, "seed": seed}
    base = SunsalUnmixer(SunsalConfig())
    base.fit(Y, lib)
    kept = [lib_names[i] for i in base.selected]
    row["selected"] = kept
    row["exact"] = sorted(kept) == sorted(names)
    if not row["exact"]:
        return row
    order = [kept.index(n) for n in names]  # estimated columns in truth order
    truth = A.reshape(-1, k)
    F, _ = base.abundances_and_brightness(Y)
    row["sunsal"] = float(np.sqrt(np.mean((F[:, order] - truth) ** 2)))
    tv = SunsalTVUnmixer(SunsalTVConfig())
    tv.fit(Y, lib)
    sigma = tv.fit_info["sunsal"]["noise_sigma"]
    for c in tv_grid:
        tv.lam_tv = c * sigma
        t0 = time.perf_counter()
        est = spatial_stacked(cube, tv, k).values[:k].reshape(k, -1).T
        row[f"tv{c:g}_s"] = time.perf_counter() - t0
        row[f"tv{c:g}"] = float(np.sqrt(np.mean((est[:, order] - truth) ** 2)))
    return row


def _ms(vals: list[float]) -> str:
    if not vals:
        return "n/a"
    v = np.asarray(vals, dtype=float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.4f}" + \
        ("" if v.size >= 5 else f" (n={v.size})")


def table(rows: list[dict[str, Any]], cols: list[str], title: str) -> list[str]:
    out = [f"### {title}", "", "| scene | SNR dB | exact selection | " + " | ".join(cols) + " |",
           "|---|---|---|" + "---|" * len(cols)]
    for kind in ("smooth", "regions"):
        for snr in SNRS:
            sel = [r for r in rows if r["kind"] == kind and r["snr"] == snr]
            if not sel:
                continue
            exact = sum(r["exact"] for r in sel)
            cells = [_ms([r[c] for r in sel if c in r]) for c in cols]
            out.append(f"| {kind} | {snr} | {exact}/{len(sel)} | " + " | ".join(cells) + " |")
    return [*out, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--dev-seeds", default="100-104")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    grid = regular_band_grid(400, 2500, 10)
    true_lib = load_usgs_library(list(DEFAULT_MINERALS))
    M = library_on_grid(true_lib, grid)
    names = list(true_lib.names)
    whole = load_usgs_library()
    libraries = {"true library": (M, names),
                 "whole library": (library_on_grid(whole, grid), list(whole.names))}
    report = ["# SUnSAL-TV beside SUnSAL (`python benchmarks/sunsal_tv.py`)", ""]
    stored: dict[str, Any] = {}
    for label, lib in libraries.items():
        for seeds, grid_tv, what in ((_seeds(args.dev_seeds), TV_GRID, "sensitivity"),
                                     (_seeds(args.seeds), (SunsalTVConfig().tv_noise,),
                                      "reported")):
            rows = []
            for kind in ("smooth", "regions"):
                for snr in SNRS:
                    for seed in seeds:
                        rows.append(run_scene(kind, snr, seed, M, names, lib, grid_tv))
                        _say(f"{label} {what} {kind} {snr} dB seed {seed}: "
                             + ", ".join(f"{c} {rows[-1][c]:.4f}" for c in rows[-1]
                                         if c in ("sunsal",) or (c.startswith("tv")
                                                                  and not c.endswith("_s"))))
            cols = ["sunsal"] + [f"tv{c:g}" for c in grid_tv]
            title = (f"{label}, {what}: seeds {seeds[0]}-{seeds[-1]}, aRMSE "
                     + ("(tv_noise = " + " / ".join(f"{c:g}" for c in grid_tv) + ")"))
            report += table(rows, cols, title)
            stored[f"{label}/{what}"] = rows
    print("\n".join(report))
    if args.json:
        args.json.write_text(json.dumps(stored, indent=1))


if __name__ == "__main__":
    main()
