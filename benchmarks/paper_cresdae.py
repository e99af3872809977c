"""CResDAE paper benchmark: the structure of Zhao et al. 2025, Tables 3-5, with this project.

What: every method of the paper's Tables 3-5 - MVC-NMF, VCA+K-Hype, LinearAE, ConvAE, NAE and
CResDAE - plus VCA+FCLS, on the nine synthetic datasets
(linear / bilinear / PNMM x SNR 10 / 20 / 30 dB) written by the project's generator
(``hsu_geo.synth.datasets.write_datasets``, the same code and defaults as ``hsu-geo synth OUT
--size H W --seed S``), plus the real Samson (k = 3) and Jasper Ridge (k = 4) cubes from the
shared data folder, each scored blind against its ground truth.

How, for every (dataset, method): VCA endmembers (seeded) from all pixels ``Y (N, L)`` ->
``MODELS[method](config).fit(Y, M_vca)`` -> ``abundances(Y)`` (the spatial ConvAE: fit on
its seeded training patches of the ``(L, H, W)`` cube, abundances block by block through the
spatial engine, as ``hsu-geo unmix`` runs it); endmembers are
``unmixer.endmembers`` (for FCLS: the VCA endmembers) -> ``hsu_geo.unmix.metrics.evaluate``
against the truth with one Hungarian matching on the SAD matrix. Metrics (project definitions,
shared/models/README.md "Metrics"): abundance aRMSE = sqrt(mean over pixels and endmembers),
mean per-endmember abundance RMSE, mean endmember SAD (radians), mean endmember SID. Every
deep model uses its default (paper) Config with ``seed`` = ``--seed``; ``--epochs-scale``,
``--quick`` and ``run(overrides=...)`` are deviations and are printed as such.

Output (stdout, Markdown): one table per metric (rows = datasets, columns = methods, with the
paper's Table 3-5 values for LinearAE / NAE / CResDAE beside them where the paper has them),
per-method mean times, the acceptance check "CResDAE beats VCA+FCLS and LinearAE in mean
abundance RMSE on the bilinear and PNMM datasets" (PASS/FAIL per dataset) and the protocol
differences. Progress goes to stderr. ``--json PATH`` dumps every number.

    python benchmarks/paper_cresdae.py [--size 64 64] [--seed 0] [--json out.json]
        [--datasets linear_snr10,...,samson] [--methods fcls,cresdae] [--epochs-scale 0.5]
        [--quick] [--data ../shared/data]
    python benchmarks/paper_cresdae.py --merge a.json b.json   # one seed split over processes

Tiny runs (tests): ``run(datasets=["bilinear_snr30"], size=(12, 12), methods=["fcls",
"cresdae"], overrides={"cresdae": {"epochs": 1, ...}})`` then ``render(result)``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import xarray as xr

from hsu_geo.datasets import load_jasper_ridge, load_samson
from hsu_geo.endmembers.extract import extract_endmembers
from hsu_geo.endmembers.library import load_usgs_library
from hsu_geo.synth.datasets import (
    DEFAULT_MINERALS,
    SynthConfig,
    dataset_name,
    parse_band_spec,
    write_datasets,
)
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.base import Unmixer
from hsu_geo.unmix.metrics import evaluate
from hsu_geo.unmix.spatial import is_spatial, spatial_stacked, training_patches

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_SIZE = (64, 64)
DEFAULT_BANDS = "400:2500:10"  # the ``hsu-geo synth`` default grid
QUICK_SIZE = (32, 32)
QUICK_EPOCHS_SCALE = 0.1

#: the paper's column order: SNR 10 (L, B, P), 20 (L, B, P), 30 (L, B, P)
SNRS = (10, 20, 30)
MIXINGS = ("linear", "bilinear", "pnmm")
SYNTHETIC = tuple(dataset_name(m, s) for s in SNRS for m in MIXINGS)
REAL = ("samson", "jasper_ridge")
ALL_DATASETS = SYNTHETIC + REAL

#: registry key -> column label
METHODS: dict[str, str] = {"fcls": "VCA+FCLS", "mvc_nmf": "MVC-NMF", "khype": "VCA+K-Hype",
                           "linear_ae": "LinearAE", "convae": "ConvAE", "nae": "NAE",
                           "cresdae": "CResDAE"}

#: metric key -> (title, which paper table to show beside it)
METRICS: dict[str, tuple[str, str]] = {
    "armse": ("Abundance aRMSE = sqrt(mean over pixels and endmembers of (a - â)²)", "rmse"),
    "mean_rmse": ("Mean per-endmember abundance RMSE = mean_r sqrt(mean_n (a_rn - â_rn)²)",
                  "rmse"),
    "mean_sad": ("Mean endmember SAD (radians)", "sad"),
    "mean_sid": ("Mean endmember SID", "sid"),
}
PAPER_TABLE_NAMES = {"rmse": "Table 3 (RMSE)", "sad": "Table 4 (SAD)", "sid": "Table 5 (SID)"}

# cresdae.md §7, columns 10 L, 10 B, 10 P, 20 L, 20 B, 20 P, 30 L, 30 B, 30 P (= SYNTHETIC)
_PAPER_ROWS: dict[str, dict[str, tuple[float, ...]]] = {
    "rmse": {
        "mvc_nmf": (0.4347, 0.4297, 0.4302, 0.4426, 0.4471, 0.4456, 0.4431, 0.4497, 0.3883),
        "khype": (0.4051, 0.4088, 0.4058, 0.4142, 0.4217, 0.4159, 0.4194, 0.4187, 0.3542),
        "convae": (0.3800, 0.3746, 0.4605, 0.3914, 0.4250, 0.3776, 0.3761, 0.3974, 0.3309),
        "linear_ae": (0.3712, 0.3317, 0.3590, 0.3385, 0.3494, 0.3777, 0.3495, 0.3566, 0.3074),
        "nae": (0.1819, 0.2049, 0.1286, 0.1664, 0.1707, 0.1912, 0.1436, 0.1300, 0.1643),
        "cresdae": (0.1658, 0.1741, 0.1737, 0.1566, 0.1660, 0.1332, 0.1402, 0.1645, 0.1408),
    },
    "sad": {
        "mvc_nmf": (1.0161, 1.0125, 1.0147, 1.0252, 1.0242, 1.0264, 1.0312, 1.0362, 0.9209),
        "khype": (1.1624, 1.1757, 1.1721, 1.1884, 1.1996, 1.1889, 1.2050, 1.1770, 1.0877),
        "convae": (1.1397, 1.1262, 1.2382, 1.1453, 1.1856, 1.1269, 1.1236, 1.1664, 1.0459),
        "linear_ae": (1.1355, 0.9767, 1.1080, 1.0007, 1.0534, 1.1462, 1.0591, 1.0671, 0.9697),
        "nae": (0.2808, 0.4291, 0.2524, 0.3332, 0.3351, 0.3995, 0.2874, 0.2472, 0.3892),
        "cresdae": (0.2696, 0.2909, 0.2879, 0.2573, 0.2762, 0.2021, 0.2894, 0.2740, 0.2856),
    },
    "sid": {
        "mvc_nmf": (5.9117, 5.8382, 5.8822, 6.0518, 6.0218, 6.0849, 6.1661, 6.2834, 4.0380),
        "khype": (6.4039, 6.9592, 6.4769, 6.5784, 7.6265, 7.1941, 7.3115, 7.0766, 3.7939),
        "convae": (5.4805, 6.4422, 6.3845, 5.7064, 6.8234, 5.2746, 4.3741, 5.6570, 3.0629),
        "linear_ae": (6.0235, 4.2305, 5.6046, 4.5542, 4.9663, 6.0869, 5.2693, 5.4662, 3.3157),
        "nae": (3.6937, 5.1555, 3.3955, 3.9539, 4.2868, 4.6669, 3.6184, 3.3508, 3.7517),
        "cresdae": (3.4522, 3.7031, 3.5962, 3.0901, 3.4293, 2.3115, 3.6076, 3.3468, 3.0264),
    },
}
#: PAPER[table][method][dataset] (synthetic datasets only; the paper has no VCA+FCLS column)
PAPER: dict[str, dict[str, dict[str, float]]] = {
    table: {m: dict(zip(SYNTHETIC, vals, strict=True)) for m, vals in rows.items()}
    for table, rows in _PAPER_ROWS.items()
}
EPOCH_FIELDS = ("epochs", "synth_epochs")  # what --epochs-scale multiplies

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- data -------------------------------------------------------------------------------------
def _split_name(name: str) -> tuple[str, float]:
    mixing, _, snr = name.partition("_snr")
    return mixing, float(snr)


def load_synthetic(name: str, size: tuple[int, int], seed: int, out_dir: Path
                   ) -> dict[str, Any]:
    """Write one dataset with the project's generator (``hsu-geo synth`` defaults: the five
    bundled USGS minerals on 400-2500 nm / 10 nm) and read it back from its ``.mat``."""
    mixing, snr = _split_name(name)
    cfg = SynthConfig(mixings=(mixing,), snrs_db=(snr,), size=size, seed=seed)
    (files,) = write_datasets(out_dir, load_usgs_library(list(DEFAULT_MINERALS)),
                              parse_band_spec(DEFAULT_BANDS), cfg, overwrite=True)
    mat = scipy.io.loadmat(files.mat)
    cube = np.asarray(mat["hyperspectral_cube"], dtype=np.float64)  # (H, W, L), / max
    A = np.asarray(mat["abundance_cube"], dtype=np.float64)  # (H, W, k)
    M = np.asarray(mat["spectra_library"], dtype=np.float64).T  # (k, L)
    return {"Y": cube.reshape(-1, cube.shape[-1]), "A": A.reshape(-1, A.shape[-1]), "M": M,
            "shape": [int(cube.shape[0]), int(cube.shape[1])],
            "names": [str(np.ravel(n)[0]).strip() for n in np.ravel(mat["mineral_names"])],
            "kind": "synthetic", "mixing": mixing, "snr_db": snr,
            "measured_snr_db": float(files.info["measured_snr_db"])}


def load_real(name: str, data_dir: Path) -> dict[str, Any]:
    """Samson or Jasper Ridge with its ground truth, as pixels ``(N, L)``."""
    scene = {"samson": load_samson, "jasper_ridge": load_jasper_ridge}[name](data_dir)
    L = scene.cube.shape[0]
    k = scene.abundances.shape[0]
    return {"Y": scene.cube.reshape(L, -1).T.astype(np.float64),
            "A": scene.abundances.reshape(k, -1).T.astype(np.float64),
            "M": np.asarray(scene.endmembers, dtype=np.float64), "names": scene.names,
            "shape": [int(s) for s in scene.cube.shape[1:]],
            "kind": "real"}


# ---- configs ----------------------------------------------------------------------------------
def make_config(method: str, seed: int, epochs_scale: float,
                overrides: Mapping[str, Any] | None) -> tuple[Any, list[str]]:
    """The model's default Config with ``seed``; epoch fields scaled; ``overrides`` applied.
    Returns the config (None for models without settings) and the deviations from default."""
    cls = MODELS.get(method).Config
    if not is_dataclass(cls) or not fields(cls):
        if overrides:
            raise ValueError(f"{method} has no settings; cannot override {dict(overrides)}")
        return None, []
    default = cls()
    cfg = replace(default, seed=seed) if "seed" in {f.name for f in fields(cls)} else default
    notes: list[str] = []
    if epochs_scale != 1.0:
        scaled = {f: max(1, round(getattr(cfg, f) * epochs_scale)) for f in EPOCH_FIELDS
                  if hasattr(cfg, f) and getattr(cfg, f) > 0}
        cfg = replace(cfg, **scaled)
        notes += [f"{METHODS[method]}: {f} {getattr(default, f)} -> {v} (--epochs-scale "
                  f"{epochs_scale:g})" for f, v in scaled.items()]
    for key, value in (overrides or {}).items():
        if not hasattr(cfg, key):
            raise ValueError(f"{method}: unknown setting {key!r}")
        cfg = replace(cfg, **{key: value})
        notes.append(f"{METHODS[method]}: {key} {getattr(default, key)!r} -> {value!r} "
                     "(override)")
    return cfg, notes


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---- the run ----------------------------------------------------------------------------------
def run(datasets: Sequence[str] | None = None, *, size: tuple[int, int] = DEFAULT_SIZE,
        seed: int = 0, methods: Sequence[str] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None, epochs_scale: float = 1.0,
        data_dir: Path = DEFAULT_DATA, work_dir: Path | None = None,
        log: Log = _stderr) -> dict[str, Any]:
    """Run every method on every dataset; returns a JSON-ready dict (see :func:`render`).

    ``datasets``: names from :data:`ALL_DATASETS` (default all); ``methods``: registry keys
    from :data:`METHODS` (default all); ``overrides``: ``{method: {config field: value}}``;
    ``epochs_scale`` multiplies each deep model's ``epochs`` / ``synth_epochs``.
    """
    datasets = list(datasets or ALL_DATASETS)
    methods = list(methods or METHODS)
    bad = [d for d in datasets if d not in ALL_DATASETS] + [m for m in methods
                                                           if m not in METHODS]
    if bad:
        raise ValueError(f"unknown dataset/method {bad}; datasets: {ALL_DATASETS}, methods: "
                         f"{tuple(METHODS)}")
    overrides = dict(overrides or {})
    configs: dict[str, Any] = {}
    deviations: list[str] = []
    for m in methods:
        configs[m], notes = make_config(m, seed, epochs_scale, overrides.get(m))
        deviations += notes
    rows: list[dict[str, Any]] = []
    info: dict[str, dict[str, Any]] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        synth_dir = Path(work_dir) if work_dir else Path(tmp)
        for name in datasets:
            data = (load_synthetic(name, size, seed, synth_dir) if name in SYNTHETIC
                    else load_real(name, data_dir))
            Y, A_ref, M_ref = data["Y"], data["A"], data["M"]
            k = M_ref.shape[0]
            t0 = time.perf_counter()
            M_vca, _ = extract_endmembers(Y, k, "vca", seed=seed)
            t_vca = time.perf_counter() - t0
            info[name] = {key: v for key, v in data.items() if key not in ("Y", "A", "M")}
            info[name].update(pixels=int(Y.shape[0]), bands=int(Y.shape[1]), k=int(k),
                              vca_seconds=t_vca)
            for m in methods:
                unmixer: Unmixer = MODELS.get(m)(configs[m], device="cpu")
                t0 = time.perf_counter()
                if is_spatial(unmixer):
                    cube = xr.DataArray(Y.T.reshape(Y.shape[1], *data["shape"]).astype(
                        np.float32), dims=("band", "y", "x"))
                    unmixer.fit(training_patches(cube, unmixer), M_vca)
                    t_fit = time.perf_counter() - t0
                    A_est = spatial_stacked(cube, unmixer, k).values[:k].reshape(k, -1).T
                else:
                    unmixer.fit(Y, M_vca)
                    t_fit = time.perf_counter() - t0
                    A_est = unmixer.abundances(Y)
                t_all = time.perf_counter() - t0
                M_est = np.asarray(unmixer.endmembers, dtype=np.float64)
                s = evaluate(M_ref, M_est, A_ref, A_est)
                rows.append({
                    "dataset": name, "method": m, "label": METHODS[m],
                    "armse": s.armse, "mean_rmse": s.mean_rmse, "mean_sad": s.mean_sad,
                    "mean_sid": s.mean_sid, "rmse": s.rmse, "sad": s.sad, "sid": s.sid,
                    "perm": s.perm, "seconds_fit": t_fit, "seconds_total": t_all,
                    "abundance_sum_range": [float(A_est.sum(1).min()),
                                            float(A_est.sum(1).max())],
                    "fit_info": unmixer.fit_info,
                })
                log(f"[paper_cresdae] {name:>14} {METHODS[m]:>9}: aRMSE {s.armse:.4f}  mRMSE "
                    f"{s.mean_rmse:.4f}  SAD {s.mean_sad:.4f}  SID {s.mean_sid:.4f}  "
                    f"{t_all:6.1f} s")
    result = {
        "settings": {"datasets": datasets, "methods": methods, "size": list(size),
                     "seed": seed, "epochs_scale": epochs_scale,
                     "overrides": {k: dict(v) for k, v in overrides.items()},
                     "library": list(DEFAULT_MINERALS), "bands": DEFAULT_BANDS,
                     "data_dir": str(data_dir),
                     "configs": {m: asdict(c) if c is not None else {}
                                 for m, c in configs.items()}},
        "deviations": deviations, "datasets": info, "results": rows,
        "wall_seconds": time.perf_counter() - t_start,
    }
    result["acceptance"] = acceptance(result)
    return _json_ready(result)


def acceptance(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per bilinear / PNMM dataset: does CResDAE have a lower mean abundance RMSE than both
    VCA+FCLS and LinearAE? (Only where all three were run.)"""
    table = {(r["dataset"], r["method"]): r["mean_rmse"] for r in result["results"]}
    out = []
    for name in result["settings"]["datasets"]:
        if name not in SYNTHETIC or _split_name(name)[0] not in ("bilinear", "pnmm"):
            continue
        vals = {m: table.get((name, m)) for m in ("cresdae", "fcls", "linear_ae")}
        if None in vals.values():
            continue
        ok = vals["cresdae"] < min(vals["fcls"], vals["linear_ae"])
        out.append({"dataset": name, **vals, "pass": bool(ok)})
    return out


# ---- report -----------------------------------------------------------------------------------
def _fmt(v: float | None, bold: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    s = f"{v:.4f}"
    return f"**{s}**" if bold else s


def metric_table(result: Mapping[str, Any], metric: str) -> list[str]:
    """Markdown lines: rows = datasets (+ mean over the synthetic ones), columns = methods
    (lowest value in bold), then the paper's values for the same methods where it has them."""
    methods = result["settings"]["methods"]
    datasets = result["settings"]["datasets"]
    paper_key = METRICS[metric][1]
    paper_methods = [m for m in methods if m in PAPER[paper_key]]
    values = {(r["dataset"], r["method"]): r[metric] for r in result["results"]}
    head = ["dataset", *(METHODS[m] for m in methods),
            *(f"paper {METHODS[m]}" for m in paper_methods)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, ours: list[float | None], paper: list[float | None]) -> str:
        finite = [v for v in ours if v is not None and math.isfinite(v)]
        best = min(finite) if len(finite) > 1 else None
        cells = [_fmt(v, v == best) for v in ours] + [_fmt(v) for v in paper]
        return "| " + " | ".join([label, *cells]) + " |"

    for name in datasets:
        lines.append(row(name, [values.get((name, m)) for m in methods],
                         [PAPER[paper_key][m].get(name) for m in paper_methods]))
    synth = [d for d in datasets if d in SYNTHETIC]
    if len(synth) > 1:
        def mean(vals: list[float | None]) -> float | None:
            return None if any(v is None for v in vals) else float(np.mean(vals))
        lines.append(row(f"mean of {len(synth)} synthetic",
                         [mean([values.get((d, m)) for d in synth]) for m in methods],
                         [mean([PAPER[paper_key][m].get(d) for d in synth])
                          for m in paper_methods]))
    return lines


def protocol_differences(result: Mapping[str, Any]) -> list[str]:
    """What differs from the paper's protocol (static facts plus this run's settings)."""
    st = result["settings"]
    h, w = st["size"]
    info = result["datasets"]
    synth_bands = next((d["bands"] for d in info.values() if d.get("kind") == "synthetic"), None)
    cres = st["configs"].get("cresdae", {})
    out = [
        f"Endmember library: five bundled USGS minerals ({', '.join(st['library'])}) convolved "
        f"to {st['bands']} nm ({synth_bands} bands); the paper uses the Urban 5-endmember "
        "ground truth (asphalt, grass, tree, roof, soil; 162 bands). Minerals are more "
        "separable than urban materials.",
        f"Image size {h}x{w} = {h * w} pixels per synthetic dataset (the paper's size is not "
        "given; the spec infers 128x128). One smooth abundance layout (generator G1, softmax "
        "T = 0.3) shared by the nine datasets; GBM γ ~ U(0, 1), PPNMM b ~ U(-0.3, 0.3), white "
        "noise at the image SNR - all inferred (synthetic.md §2), the paper gives no details.",
        "Metrics are the project's (README \"Metrics\"): abundance aRMSE and mean per-endmember "
        "abundance RMSE, mean endmember SAD in radians, mean endmember SID, after one Hungarian "
        "matching on the SAD matrix. The paper prints RMSE as a reconstruction formula and "
        "never says which vectors its SAD/SID use; its magnitudes (SAD 0.2-1.2, SID 2-7) do "
        "not fit endmember SAD/SID in radians, so the paper columns are for orientation only "
        "and are shown beside both RMSE tables.",
        f"Seeds: one run, seed {st['seed']} for the generator, VCA and every model; the "
        "project README asks for mean ± std over >= 5 seeds, so differences of a few 0.001 "
        "are within run-to-run noise.",
        "Training: one independent model per dataset, fitted on that dataset's own pixels "
        "and evaluated on the same pixels (transductive, as usual for blind unmixing); the "
        "paper trains on the nine datasets 'one after another' (ambiguous) and does not say "
        "how test pixels relate to training pixels.",
        "VCA+FCLS is ours (the paper has no such column). MVC-NMF starts from the VCA "
        "endmembers (baselines.md C1); VCA+K-Hype keeps the VCA endmembers and uses the spec's "
        "Gaussian kernel, sigma = 2, mu = 0.05 (C2, [I]); ConvAE = CNNAEU at the model-zoo "
        "code's 320 epochs (D2), trained on 40x40 patches and applied through the spatial "
        "engine (the synthetic layouts are smooth, so it sees real spatial context).",
        "LinearAE (DAEU, baselines.md §D1) keeps its code default: Glorot-initialised decoder "
        "(not VCA), 2500 sampled training pixels, batch 6, SAD loss, RMSprop; VCA is used only "
        "to order its endmembers. NAE uses the paper [R] settings (50 epochs, batch 512, "
        "encoder lr 1e-4), not its code's (80 / 2048 / 2e-3).",
        "Samson (k = 3) and Jasper Ridge (k = 4) are not in the paper (it transfers its "
        "synthetic models to Urban, Tables 6-7); they are unmixed blind on their own pixels "
        "and have no paper numbers.",
        "Hardware: CPU, one torch thread per model (2 shared cores); the paper used an "
        "RTX 4060 Ti. Times are not comparable with the paper's and approximate here.",
    ]
    if cres:
        out.insert(-2, (
            "CResDAE: the [I] choices of cresdae.md (softmax abundances, SE channel attention, "
            "residual decoder wiring, batch-mean uniformity, L1/2 sparsity, α = β = 1) plus "
            "the project's scene workflow: decoder pretraining, ")
        + (f"synthetic pretraining on {len(cres.get('synth_mixings', []))}x"
           f"{len(cres.get('synth_snr_db', []))} mixtures of the VCA endmembers "
           f"({cres.get('synth_pixels')} pixels each, {cres.get('synth_epochs')} epochs), "
           if cres.get("synthetic_pretrain") else "")
        + f"then {cres.get('epochs')} epochs on the scene. The synthetic stage is a project "
        "design choice, not part of the paper's synthetic experiment.")
    if result["deviations"]:
        out.append("Deviations from the default (paper) configs in this run: "
                   + "; ".join(result["deviations"]) + ".")
    else:
        out.append("No deviation from the models' default (paper) configs in this run.")
    return out


def render(result: Mapping[str, Any]) -> str:
    """The Markdown report of a :func:`run` result."""
    st = result["settings"]
    h, w = st["size"]
    methods = st["methods"]
    out = ["# CResDAE paper benchmark (structure of Zhao et al. 2025, Tables 3-5)", "",
           f"Synthetic size {h}x{w}, seed {st['seed']}, epochs scale {st['epochs_scale']:g}, "
           f"methods {', '.join(METHODS[m] for m in methods)}, datasets "
           f"{len(st['datasets'])}. Lowest value per row in bold. Paper columns: cresdae.md "
           "§7; '—' = not reported.", ""]
    if result["deviations"]:
        out += ["**Deviation from the paper configs:** " + "; ".join(result["deviations"]), ""]
    for metric, (title, paper_key) in METRICS.items():
        out += [f"## {title}", f"(paper columns: {PAPER_TABLE_NAMES[paper_key]})", ""]
        out += [*metric_table(result, metric), ""]
    out += ["## Mean time per method (s, VCA excluded)", "",
            "| method | mean fit+abundances (all) | synthetic | real |", "|---|---|---|---|"]
    kinds = {n: d.get("kind") for n, d in result["datasets"].items()}
    for m in methods:
        rs = [r for r in result["results"] if r["method"] == m]

        def mean_t(kind: str | None, rs: list[dict[str, Any]] = rs) -> float | None:
            t = [r["seconds_total"] for r in rs if kind is None or kinds[r["dataset"]] == kind]
            return float(np.mean(t)) if t else None

        out.append(f"| {METHODS[m]} | " + " | ".join(
            "—" if t is None else f"{t:.1f}"
            for t in (mean_t(None), mean_t("synthetic"), mean_t("real"))) + " |")
    vca = [d["vca_seconds"] for d in result["datasets"].values()]
    out += ["", f"VCA: mean {np.mean(vca):.2f} s per dataset. Wall time of the run: "
            f"{result['wall_seconds']:.0f} s.", ""]
    out += ["## Acceptance: CResDAE beats VCA+FCLS and LinearAE in mean abundance RMSE on the "
            "bilinear and PNMM datasets", "",
            "(mean abundance RMSE = mean per-endmember RMSE; CResDAE must be strictly lower "
            "than both)", ""]
    acc = result["acceptance"]
    if acc:
        out += ["| dataset | CResDAE | VCA+FCLS | LinearAE | result |", "|---|---|---|---|---|"]
        out += [f"| {a['dataset']} | {a['cresdae']:.4f} | {a['fcls']:.4f} | "
                f"{a['linear_ae']:.4f} | {'PASS' if a['pass'] else 'FAIL'} |" for a in acc]
        n_pass = sum(a["pass"] for a in acc)
        verdict = "PASS" if n_pass == len(acc) else "FAIL"
        out += ["", f"Overall: **{verdict}** ({n_pass}/{len(acc)} datasets)."]
    else:
        out.append("Not evaluated: needs bilinear/PNMM datasets and CResDAE, VCA+FCLS and "
                   "LinearAE in the run.")
    out += ["", "## Protocol differences from the paper", ""]
    out += [f"- {d}" for d in protocol_differences(result)]
    return "\n".join(out) + "\n"


def merge(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One result from ``--json`` files of the same seed, size and epochs scale that split the
    datasets and methods over processes (ConvAE takes ~40 minutes per dataset on 2 cores);
    datasets and methods in the script's order, wall seconds summed, acceptance recomputed.
    Raises ValueError for runs of different settings or a (dataset, method) run twice."""
    if not results:
        raise ValueError("nothing to merge")
    key = ("seed", "size", "epochs_scale", "bands", "library")
    first = results[0]["settings"]
    for r in results[1:]:
        diff = [k for k in key if r["settings"].get(k) != first.get(k)]
        if diff:
            raise ValueError(f"runs differ in {', '.join(diff)}; merge runs of one setting")
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for r in results:
        for row in r["results"]:
            pair = (row["dataset"], row["method"])
            if pair in seen:
                raise ValueError(f"{pair[1]} on {pair[0]} is in more than one run")
            seen.add(pair)
            rows.append(dict(row))
    datasets = [d for d in ALL_DATASETS if any(d in r["settings"]["datasets"] for r in results)]
    methods = [m for m in METHODS if any(m in r["settings"]["methods"] for r in results)]
    settings = dict(first, datasets=datasets, methods=methods,
                    configs={m: c for r in results for m, c in r["settings"]["configs"].items()})
    merged = {"settings": settings,
              "deviations": list(dict.fromkeys(d for r in results for d in r["deviations"])),
              "datasets": {k: v for r in results for k, v in r["datasets"].items()},
              "results": rows, "wall_seconds": sum(r["wall_seconds"] for r in results)}
    merged["acceptance"] = acceptance(merged)
    return merged


# ---- CLI --------------------------------------------------------------------------------------
def _names(value: str | None, valid: Sequence[str], what: str) -> list[str] | None:
    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in valid]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {', '.join(valid)}")
    return items


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=None,
                    help=f"synthetic image size (default {DEFAULT_SIZE[0]} {DEFAULT_SIZE[1]}; "
                         f"--quick: {QUICK_SIZE[0]} {QUICK_SIZE[1]})")
    ap.add_argument("--seed", type=int, default=0, help="generator, VCA and model seed")
    ap.add_argument("--datasets", default=None,
                    help=f"comma-separated subset of {', '.join(ALL_DATASETS)}")
    ap.add_argument("--methods", default=None,
                    help=f"comma-separated subset of {', '.join(METHODS)}")
    ap.add_argument("--epochs-scale", type=float, default=None,
                    help="DEVIATION: multiply the deep models' epochs / synth_epochs")
    ap.add_argument("--quick", action="store_true",
                    help=f"DEVIATION: --epochs-scale {QUICK_EPOCHS_SCALE:g} and size "
                         f"{QUICK_SIZE[0]}x{QUICK_SIZE[1]} unless given")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    ap.add_argument("--json", type=Path, default=None, help="write all numbers to this file")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="render the --json files of runs that split one seed's datasets or "
                         "methods over processes, instead of running")
    args = ap.parse_args(argv)
    if args.merge:
        try:
            result = merge([json.loads(p.read_text(encoding="utf-8")) for p in args.merge])
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"--merge: {exc}") from None
        print(render(result), end="")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return 0
    size = tuple(args.size) if args.size else (QUICK_SIZE if args.quick else DEFAULT_SIZE)
    scale = args.epochs_scale if args.epochs_scale is not None else (
        QUICK_EPOCHS_SCALE if args.quick else 1.0)
    if scale <= 0:
        raise SystemExit("--epochs-scale must be > 0")
    if args.quick or scale != 1.0:
        _stderr(f"[paper_cresdae] DEVIATION: epochs scaled by {scale:g}"
                + (" (--quick)" if args.quick else ""))
    _stderr(f"[paper_cresdae] synthetic size {size[0]}x{size[1]}, seed {args.seed}")
    result = run(_names(args.datasets, ALL_DATASETS, "dataset"), size=(size[0], size[1]),
                 seed=args.seed, methods=_names(args.methods, list(METHODS), "method"),
                 epochs_scale=scale, data_dir=args.data)
    print(render(result), end="")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        _stderr(f"[paper_cresdae] numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
