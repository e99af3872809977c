"""Sparse unmixing on a real scene with truth: Jasper Ridge against its bundle library.

What: ``sunsal`` and ``sunsal_tv`` select members from a library of 529 spectra that are
pixels of the Jasper Ridge image itself, grouped by class (tree 129, water 138, dirt 127, road
135: ``../shared/data/jasper_ridge/spectral_library_jasperRidge.mat``, from the
MUA_SparseUnmixing study; every member equals an image pixel exactly). Such a library holds
each material many times with its natural variability, as a field or image library does. The
abundance of a class is the sum of the fractions of its selected members, scored against the
reference abundances (``Jasper_GT.mat``, sum to one).

Rows (one deterministic run each; no seeds are involved):

- ``scaled FCLS, reference endmembers``: the four reference spectra, fractions summing to one
  with a per-pixel brightness (the form sunsal writes); the linear model at its best endmembers.
- ``sunsal``: the default (selection by SUnSAL, candidates, pruning, then scaled FCLS on the
  kept members), at ``duplicate_angle`` 0 (the per-member candidate test alone), 0.05, 0.1
  (default, fixed a priori: the customary spectral-angle match threshold) and 0.2.
- ``sunsal_tv``: the same selection, abundances by TV-regularised ADMM through the spatial
  engine at ``tv_noise`` 0.03 / 0.1 (default, chosen on synthetic scenes in
  ``benchmarks/sunsal_tv.py``) / 0.3 / 1.

Development scene (``--dev``): Samson with a bundle library built the same way from its own
pixels, as far as the Jasper Ridge library's recipe can be read from its members (every member
is an image pixel whose reference abundance of its class is 0.95-1.0): per class, 130 pixels
drawn (seed 0) among those with reference abundance >= 0.95. The settings are checked there
first; Jasper Ridge is the reported scene.

Metrics: abundance aRMSE (sqrt of the mean over pixels and classes) and per-class RMSE of the
class abundances against the reference, in two conventions: ``fractions`` (what sunsal writes:
fractions summing to one beside a brightness) and ``reference`` (the rule the reference maps of
Samson and Jasper Ridge follow, ``hsu_geo.scoring.convention_abundances``: NNLS on endmembers
each divided by its maximum, then sum-normalised; from a model's fractions ``f`` and kept
spectra ``m_j`` that is exactly ``f_j max(m_j) / Σ_i f_i max(m_i)``). A bundle's members
differ in brightness, so only the second compares with the reference maps. Members kept per
class. Nothing here was tuned on Jasper Ridge: the non-default columns are a sensitivity
table.

    python benchmarks/sparse_real.py [--dev] [--data ../shared/data] [--json out.json]
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

from hsu_geo.datasets import (  # noqa: E402
    load_jasper_ridge,
    load_jasper_ridge_bundles,
    load_samson,
)
from hsu_geo.unmix.classical.lsq import scaled_fcls  # noqa: E402
from hsu_geo.unmix.classical.sunsal import SunsalConfig, SunsalUnmixer  # noqa: E402
from hsu_geo.unmix.classical.sunsal_tv import SunsalTVConfig, SunsalTVUnmixer  # noqa: E402
from hsu_geo.unmix.spatial import spatial_stacked  # noqa: E402

ANGLES = (0.0, 0.05, 0.1, 0.2)
TV_GRID = (0.03, 0.1, 0.3, 1.0)
#: development bundle library: members per class, and the smallest reference abundance
DEV_PER_CLASS, DEV_PURITY = 130, 0.95


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _both(row: dict[str, Any]) -> str:
    return (f"{row['fractions']['armse']:.4f} (fractions), "
            f"{row['reference']['armse']:.4f} (reference)")


def pixel_bundles(Y: np.ndarray, truth: np.ndarray, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A bundle library of image pixels ``Y (N, L)``: per class of ``truth (N, k)``, at most
    ``DEV_PER_CLASS`` pixels drawn among those with abundance >= ``DEV_PURITY``."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(truth.shape[1]):
        pure = np.flatnonzero(truth[:, c] >= DEV_PURITY)
        rows.append(np.sort(rng.choice(pure, min(DEV_PER_CLASS, pure.size), replace=False)))
    return (np.vstack([Y[r] for r in rows]).astype(np.float64),
            np.concatenate([np.full(r.size, c) for c, r in enumerate(rows)]))


def class_fractions(F: np.ndarray, rows: list[int], cls: np.ndarray, k: int) -> np.ndarray:
    """``(N, k)`` class fractions: the fractions ``F (N, len(rows))`` summed per class."""
    out = np.zeros((F.shape[0], k))
    for col, row in enumerate(rows):
        out[:, cls[row]] += F[:, col]
    return out


def reference_convention(F: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Fractions ``F (N, m)`` of spectra ``E (m, L)`` in the reference convention:
    ``F_j max(E_j)``, sum-normalised per pixel (the NNLS weights on max-normalised spectra)."""
    W = F * E.max(axis=1)[None, :]
    total = W.sum(axis=1, keepdims=True)
    return W / np.where(total > 0, total, 1.0)


def score(F: np.ndarray, E: np.ndarray, rows: list[int] | None, cls: np.ndarray | None,
          truth: np.ndarray) -> dict[str, Any]:
    """aRMSE and per-class RMSE of fractions ``F`` of spectra ``E`` (class sums over library
    ``rows`` when given) in both conventions."""
    out: dict[str, Any] = {}
    for label, A in (("fractions", F), ("reference", reference_convention(F, E))):
        G = A if rows is None else class_fractions(A, rows, cls, truth.shape[1])
        err = G - truth
        out[label] = {"armse": float(np.sqrt(np.mean(err ** 2))),
                      "class_rmse": [float(v) for v in np.sqrt(np.mean(err ** 2, axis=0))]}
    return out


def run(data: Path, dev: bool = False) -> dict[str, Any]:
    scene = load_samson(data) if dev else load_jasper_ridge(data)
    L = scene.cube.shape[0]
    Y = scene.cube.reshape(L, -1).T.astype("float32")  # (N, L)
    k = len(scene.names)
    truth = scene.abundances.reshape(k, -1).T
    lib, cls = pixel_bundles(Y, truth) if dev else load_jasper_ridge_bundles(data)
    if lib.shape[1] != L:
        raise SystemExit(f"library has {lib.shape[1]} bands, the scene {L}")
    rows: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    A, _ = scaled_fcls(Y, scene.endmembers)
    rows.append({"method": "scaled FCLS, reference endmembers", "setting": "-",
                 **score(A, scene.endmembers, None, None, truth), "kept": [1] * k,
                 "seconds": time.perf_counter() - t0})
    _say(f"reference endmembers: aRMSE {_both(rows[-1])}")

    for angle in ANGLES:
        t0 = time.perf_counter()
        su = SunsalUnmixer(SunsalConfig(duplicate_angle=angle))
        su.fit(Y, lib)
        sel = list(su.selected or [])
        F, _ = su.abundances_and_brightness(Y)
        rows.append({"method": "sunsal", "setting": f"duplicate_angle={angle:g}",
                     **score(F, lib[sel], sel, cls, truth),
                     "kept": np.bincount(cls[sel], minlength=k).tolist(),
                     "group_candidates": len(su.fit_info["sunsal"]["group_candidates"]),
                     "seconds": time.perf_counter() - t0})
        _say(f"sunsal angle {angle:g}: aRMSE {_both(rows[-1])} kept {rows[-1]['kept']}")

    t0 = time.perf_counter()
    tv = SunsalTVUnmixer(SunsalTVConfig())
    tv.fit(Y, lib)
    fit_s = time.perf_counter() - t0
    sel = list(tv.selected or [])
    sigma = tv.fit_info["sunsal"]["noise_sigma"]
    cube = xr.DataArray(scene.cube, dims=("band", "y", "x"))
    for c in TV_GRID:
        t0 = time.perf_counter()
        tv.lam_tv = c * sigma
        est = spatial_stacked(cube, tv, len(sel)).values[: len(sel)].reshape(len(sel), -1).T
        rows.append({"method": "sunsal_tv", "setting": f"tv_noise={c:g}",
                     **score(est, lib[sel], sel, cls, truth),
                     "kept": np.bincount(cls[sel], minlength=k).tolist(),
                     "seconds": fit_s + time.perf_counter() - t0})
        _say(f"sunsal_tv {c:g}: aRMSE {_both(rows[-1])}")
    return {"scene": scene.name, "dev": dev, "classes": list(scene.names), "library_size": len(lib),
            "library_per_class": np.bincount(cls, minlength=k).tolist(),
            "defaults": {"duplicate_angle": SunsalConfig().duplicate_angle,
                         "tv_noise": SunsalTVConfig().tv_noise}, "rows": rows}


def render(result: dict[str, Any]) -> str:
    names = result["classes"]
    title = ("Samson (development) with a bundle library of its purest pixels "
             "(`python benchmarks/sparse_real.py --dev`)" if result["dev"] else
             "Jasper Ridge with its bundle library (`python benchmarks/sparse_real.py`)")
    per_class = ", ".join(f"{n} {c}" for n, c in
                          zip(names, result["library_per_class"], strict=True))
    out = [f"# Sparse unmixing on {title}", "",
           f"Library: {result['library_size']} image spectra ({per_class}); "
           "class fraction = sum over the kept members of a class; defaults "
           + ", ".join(f"{k} = {v:g}" for k, v in result["defaults"].items()) + ".", "",
           "| method | setting | aRMSE reference | "
           + " | ".join(f"RMSE {n}" for n in names)
           + " | aRMSE fractions | kept per class | seconds |",
           "|---|---|---|" + "---|" * len(names) + "---|---|---|"]
    for r in result["rows"]:
        ref = r["reference"]
        out.append(f"| {r['method']} | {r['setting']} | {ref['armse']:.4f} | "
                   + " | ".join(f"{v:.4f}" for v in ref["class_rmse"])
                   + f" | {r['fractions']['armse']:.4f} | {'/'.join(map(str, r['kept']))} | "
                   f"{r['seconds']:.0f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--dev", action="store_true",
                    help="the development scene (Samson, library of its own purest pixels)")
    args = ap.parse_args()
    need = "samson" if args.dev else "jasper_ridge/spectral_library_jasperRidge.mat"
    if not (args.data / need).exists():
        raise SystemExit(f"{need} is not under {args.data}; pass --data")
    result = run(args.data, args.dev)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
