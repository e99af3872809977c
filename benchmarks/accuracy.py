"""Accuracy benchmark: every registered model on the real and synthetic sets, through the CLI path.

What: every model of ``hsu_geo.unmix.MODELS`` (``hsu-geo models``) on Samson, Jasper Ridge,
Moffett and MUUFL Gulfport (``hsu_geo.datasets``, from the shared data folder) and on the nine
``hsu-geo synth`` sets (linear / bilinear / PNMM x 10 / 20 / 30 dB, generated here with the
command's defaults: five USGS minerals on 400-2500 nm / 10 nm, 128 x 128 pixels, seed 0), for
seeds 0-4, reported as mean ± sample std over seeds.

How, for every (model, dataset, seed): the cube is a GeoTIFF with wavelength tags (the synth
scene.tif as written; the real cubes via ``hsu_geo.datasets.write_geotiff``) and goes through
``hsu_geo.pipeline.run_unmix`` - the code ``hsu-geo unmix`` runs - with ``-k`` = the reference
endmember count, ``--seed`` = the seed, ``--device`` (cpu) and every other option at its
default (endmember extraction, bad bands, model settings), so changes to those defaults show up
here. The written outputs are scored by ``hsu_geo.evaluate.evaluate_folder`` - the code of
``hsu-geo evaluate`` - against the reference written as a truth pair. Metrics (project
definitions, shared/models/README.md "Metrics"): mean endmember SAD in radians and degrees
after one Hungarian matching on the SAD matrix over the bands the run kept; abundance aRMSE
(sqrt of the mean over pixels and endmembers) and mean per-endmember RMSE, for the abundances as
written ("physical") and, on the real sets whose reference abundances follow a known rule, for
our abundances re-derived with that rule from our estimated endmembers ("truth convention":
``hsu-geo evaluate --abundance-convention reference`` for Samson / Jasper Ridge, ``fcls`` for
Moffett; MUUFL's reference follows no rule we can reproduce). Runtime = wall time of
``run_unmix`` (scan, endmembers, fit, unmix and write); memory = peak RSS increase during it,
sampled every 10 ms, each (model, dataset) in a fresh process (``--in-process`` to skip that).
Published numbers are printed beside ours, converted to the project definitions where the
paper's definition is known (see PUBLISHED and the protocol notes in the report).

Deep models are slow on CPU: ``--deep-datasets`` limits them to some datasets,
``--deep-seeds`` to fewer seeds, ``--cell-timeout`` bounds each (model, dataset) cell and
``--set MODEL:KEY=VALUE`` changes a model setting (a deviation, printed as such). Every cell
that was not run is listed with the reason.

    python benchmarks/accuracy.py [--models fcls,cresdae] [--datasets samson,linear_snr30]
        [--seeds 0-4] [--deep-datasets samson,jasper_ridge] [--deep-seeds 0-2]
        [--set cresdae:epochs=10] [--json out.json] [--markdown out.md] [--data ../shared/data]

Output: the Markdown report on stdout (and ``--markdown``), progress on stderr, every number
in ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
DEFAULT_DATA = REPO.parent / "shared" / "data"

REAL = ("samson", "jasper_ridge", "moffett", "muufl")
SNRS = (10, 20, 30)
MIXINGS = ("linear", "bilinear", "pnmm")
SYNTHETIC = tuple(f"{m}_snr{s}" for m in MIXINGS for s in SNRS)
ALL_DATASETS = REAL + SYNTHETIC
SYNTH_SIZE = (128, 128)  # `hsu-geo synth` default
SYNTH_SEED = 0
SYNTH_BANDS = "400:2500:10"  # `hsu-geo synth` default grid

#: wavelength source per dataset, short (the full note is in the JSON)
WAVELENGTHS_SHORT = {
    "samson": "sensor centres (APEX file)",
    "jasper_ridge": "AVIRIS centres (Cuprite file)",
    "moffett": "PLACEHOLDER 400-1300 nm, even (not recorded)",
    "muufl": "assumed 375-1050 nm, even (not in file)",
}

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- published numbers -------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    """A published number converted to a project metric (``mean_sad_rad``, ``mean_rmse`` or
    ``armse``). ``model``: our registry key of the same method, or None (context: compared
    with the best of our models)."""

    dataset: str
    method: str
    model: str | None
    metric: str
    value: float
    source: str
    conversion: str = "same definition"
    protocol: str = ""


_DFFN_REAL = ("DFFN paper's runs: own settings, matching by argmin/greedy, abundances "
              "sum-normalised, scored against the same reference abundances (no convention "
              "change)")
_SSANU = ("SSANU-Net paper; its RMSE is sqrt(mean_n ||a_n - â_n||²) = sqrt(R)·aRMSE, converted; "
          "its SAD compares mean spectra of pixels with â > 0.9, not decoder weights")
_DFFN_SYN = ("DFFN's synthetic data (60x60 block layout + 5x5 mean filter, 5 random USGS "
             "minerals, 188 bands, LMM), not hsu-geo synth's")
_NAE = ("NAE paper (GRSL 2019): 4 USGS endmembers, 224 bands, Dirichlet abundances, 300 000 "
        "pixels; its RMSE is aRMSE. Different data and nonlinearity parameters")

PUBLISHED: tuple[Published, ...] = (
    # dffn.md Table II/III (Samson, Jasper Ridge): DAEU = the LinearAE of baselines.md D1
    Published("samson", "DAEU", "linear_ae", "mean_sad_rad", 0.0353, "dffn.md Table II",
              protocol=_DFFN_REAL),
    Published("samson", "DAEU", "linear_ae", "mean_rmse", 0.0700, "dffn.md Table II",
              protocol=_DFFN_REAL),
    Published("samson", "DFFN", "dffn", "mean_sad_rad", 0.0287, "dffn.md Table II",
              protocol=_DFFN_REAL),
    Published("samson", "DFFN", "dffn", "mean_rmse", 0.0274, "dffn.md Table II",
              protocol=_DFFN_REAL),
    Published("samson", "SSANU-Net", "ssanu_net", "mean_sad_rad", 0.0127,
              "ssanu_net.md Table III", protocol=_SSANU),
    Published("samson", "SSANU-Net", "ssanu_net", "armse", 0.1668 / math.sqrt(3),
              "ssanu_net.md Table III", "0.1668 / sqrt(3)", _SSANU),
    Published("jasper_ridge", "DAEU", "linear_ae", "mean_sad_rad", 0.0711,
              "dffn.md Table III", protocol=_DFFN_REAL),
    Published("jasper_ridge", "DAEU", "linear_ae", "mean_rmse", 0.1319, "dffn.md Table III",
              protocol=_DFFN_REAL),
    Published("jasper_ridge", "DFFN", "dffn", "mean_sad_rad", 0.0308, "dffn.md Table III",
              protocol=_DFFN_REAL),
    Published("jasper_ridge", "DFFN", "dffn", "mean_rmse", 0.0951, "dffn.md Table III",
              protocol=_DFFN_REAL),
    Published("jasper_ridge", "SSANU-Net", "ssanu_net", "mean_sad_rad", 0.0404,
              "ssanu_net.md Table IV", protocol=_SSANU),
    Published("jasper_ridge", "SSANU-Net", "ssanu_net", "armse", 0.1570 / 2.0,
              "ssanu_net.md Table IV", "0.1570 / sqrt(4)", _SSANU),
    # dffn.md Table I: DAEU on DFFN's linear synthetic data at 10/20/30 dB
    *(Published(f"linear_snr{snr}", "DAEU", "linear_ae", metric, value, "dffn.md Table I",
                protocol=_DFFN_SYN)
      for snr, sad_v, rmse_v in ((10, 0.1277, 0.2513), (20, 0.1430, 0.2174),
                                 (30, 0.0796, 0.2170))
      for metric, value in (("mean_sad_rad", sad_v), ("mean_rmse", rmse_v))),
    # auvae_net: no rows. AUVAE-Net publishes no number as text (auvae_net.md §9: README
    # figures on Washington DC Mall only, whose image is not in the shared data)
    # baselines.md D3: NAE paper, abundance aRMSE
    *(Published(f"{mix}_snr{snr}", "NAE", "nae", "armse", value, "baselines.md D3",
                protocol=_NAE)
      for mix, vals in (("linear", (0.0564, 0.0241, 0.0211)),
                        ("bilinear", (0.0621, 0.0427, 0.0427)),
                        ("pnmm", (0.0364, 0.0373, 0.0372)))
      for snr, value in zip(SNRS, vals, strict=True)),
)

#: cresdae.md §7 Tables 3 ("RMSE") and 4 ("SAD"), columns SNR 10 (L, B, P), 20, 30. The paper
#: does not define either (its RMSE is printed as a reconstruction formula, its SAD magnitudes
#: do not fit endmember SAD in radians): shown beside ours, never converted.
_CRESDAE_ORDER = tuple(f"{m}_snr{s}" for s in SNRS for m in MIXINGS)


def _cresdae_paper() -> dict[str, dict[str, dict[str, float]]]:
    """Tables 3-4 of the CResDAE paper, as transcribed once in ``paper_cresdae.py``:
    ``{"RMSE"|"SAD": {method: {dataset: value}}}``."""
    import importlib.util

    path = Path(__file__).with_name("paper_cresdae.py")
    spec = importlib.util.spec_from_file_location("paper_cresdae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"RMSE": module.PAPER["rmse"], "SAD": module.PAPER["sad"]}


CRESDAE_PAPER = _cresdae_paper()


# ---- memory ------------------------------------------------------------------------------------
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakRss:
    """Peak resident set size during a ``with`` block, sampled every ``interval`` s from
    /proc (Linux); ``delta_mb`` = peak minus the RSS at entry (None where /proc is missing)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            now = _rss_bytes()
            if now is not None and self.peak is not None:
                self.peak = max(self.peak, now)

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        now = _rss_bytes()
        if now is not None and self.peak is not None:
            self.peak = max(self.peak, now)

    @property
    def delta_mb(self) -> float | None:
        if self.base is None or self.peak is None:
            return None
        return (self.peak - self.base) / 2**20


def _max_rss_mb() -> float:
    """This process's lifetime peak RSS (MB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# ---- datasets ----------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A scene GeoTIFF with its truth pair, as the CLI sees them."""

    name: str
    kind: str
    scene: str
    truth_abundance: str
    truth_endmembers: str
    k: int
    pixels: int
    bands: int
    convention: str | None  # the rule the reference abundances follow (None: physical only)
    info: dict[str, Any] = field(default_factory=dict)


def _reproduction(scene: Any) -> dict[str, float]:
    """aRMSE of each re-derivation rule applied to the reference endmembers vs the reference
    abundances (shows which rule made the reference)."""
    from hsu_geo.scoring import convention_abundances

    L, k = scene.cube.shape[0], len(scene.names)
    Y, A = scene.cube.reshape(L, -1).T, scene.abundances.reshape(k, -1).T
    return {rule: float(np.sqrt(np.nanmean((convention_abundances(Y, scene.endmembers, rule)
                                            - A) ** 2)))
            for rule in ("reference", "fcls")}


def prepare_real(name: str, data_dir: Path, work: Path) -> Dataset:
    from hsu_geo.datasets import load_scene, write_geotiff, write_truth

    scene = load_scene(name, data_dir)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    tif = write_geotiff(scene, folder / f"{name}.tif")
    ab, em = write_truth(scene, folder / "truth")
    L, rows, cols = scene.cube.shape
    rep = _reproduction(scene)
    return Dataset(name, "real", str(tif), str(ab), str(em), len(scene.names), rows * cols, L,
                   scene.reference_rule,
                   {"size": [rows, cols], "names": scene.names,
                    "wavelengths": scene.wavelength_note,
                    "reference_rule": scene.reference_rule,
                    "reference_reproduction_armse": rep})


def prepare_synthetic(name: str, work: Path, size: tuple[int, int], seed: int) -> Dataset:
    from hsu_geo.endmembers.library import load_usgs_library
    from hsu_geo.synth.datasets import (
        DEFAULT_MINERALS,
        SynthConfig,
        parse_band_spec,
        write_datasets,
    )

    mixing, _, snr = name.partition("_snr")
    cfg = SynthConfig(mixings=(mixing,), snrs_db=(float(snr),), size=size, seed=seed)
    (d,) = write_datasets(work / "synth", load_usgs_library(list(DEFAULT_MINERALS)),
                          parse_band_spec(SYNTH_BANDS), cfg, overwrite=True)
    k = len(DEFAULT_MINERALS)
    return Dataset(name, "synthetic", str(d.scene), str(d.truth_abundance),
                   str(d.truth_endmembers), k, size[0] * size[1],
                   int(d.info["bands"]["count"]), None,
                   {"size": list(size), "names": list(DEFAULT_MINERALS), "mixing": mixing,
                    "snr_db": float(snr), "measured_snr_db": d.info["measured_snr_db"],
                    "synth_seed": seed,
                    "wavelengths": f"hsu-geo synth grid {SYNTH_BANDS} nm"})


# ---- running -----------------------------------------------------------------------------------
def is_deep(model: str) -> bool:
    from hsu_geo.unmix import MODELS
    from hsu_geo.unmix.deep.base import DeepUnmixer

    return issubclass(MODELS.get(model), DeepUnmixer)


def all_models() -> list[str]:
    """Registered models, classical first."""
    from hsu_geo.unmix import MODELS

    return sorted(MODELS.names(), key=lambda m: (is_deep(m), m))


def _warm_up(model: str) -> None:
    """Do the one-off imports a first run would otherwise count in its time and memory: the
    output writers (matplotlib for quicklooks), the model's module (torch for deep models) and
    what torch imports lazily when a deep fit sets deterministic mode (torch._dynamo)."""
    import hsu_geo.write.outputs
    import hsu_geo.write.quicklook  # noqa: F401
    from hsu_geo.unmix import MODELS

    MODELS.get(model)
    if is_deep(model):
        from hsu_geo.unmix.deep._training import deterministic

        with deterministic():
            pass


def run_cell(spec: Mapping[str, Any]) -> dict[str, Any]:
    """All seeds of one (model, dataset): unmix through the pipeline, score with evaluate."""
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)  # the real cubes
    _warm_up(spec["model"])
    from hsu_geo.config import UnmixOptions
    from hsu_geo.evaluate import evaluate_folder
    from hsu_geo.pipeline import run_unmix
    from hsu_geo.unmix import MODELS

    # sparse unmixing selects its own endmembers from the library: -k does not apply
    k = "auto" if getattr(MODELS.get(spec["model"]), "selects_from_library", False) \
        else str(spec["k"])
    runs = []
    for seed in spec["seeds"]:
        out = Path(spec["out"]) / f"seed{seed}"
        opts = UnmixOptions(model=spec["model"], k=k, seed=int(seed),
                            device=spec["device"], settings=dict(spec["settings"]),
                            **({"extractor": spec["extractor"]} if spec["extractor"] else {}))
        t0, c0 = time.perf_counter(), time.process_time()
        with PeakRss() as mem:
            res = run_unmix(spec["scene"], out, opts, overwrite=True)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        row: dict[str, Any] = {"seed": int(seed), "seconds": seconds, "cpu_seconds": cpu,
                               "peak_rss_delta_mb": mem.delta_mb,
                               "bands_used": int(res["record"]["extra"]["bands_used"]),
                               "timings": res["timings"]}
        for conv in ["physical", *([spec["convention"]] if spec["convention"] else [])]:
            (ev,) = evaluate_folder(out, truth_abundance=spec["truth_abundance"],
                                    truth_endmembers=spec["truth_endmembers"],
                                    reconstruct=conv == "physical", abundance_convention=conv)
            key = "physical" if conv == "physical" else "truth_convention"
            row[key] = {"convention": conv, "armse": ev.armse, "mean_rmse": ev.mean_rmse,
                        "rmse": [e.rmse for e in ev.endmembers], "notes": ev.notes}
            if conv == "physical":
                row.update(mean_sad_rad=ev.mean_sad_rad,
                           mean_sad_deg=math.degrees(ev.mean_sad_rad),
                           sad_rad=[e.sad_rad for e in ev.endmembers],
                           mean_sid=ev.mean_sid, n_pixels=ev.n_pixels,
                           recon_rmse=ev.reconstruction.rmse if ev.reconstruction else None,
                           matched=[(e.reference, e.estimate) for e in ev.endmembers])
        runs.append(row)
    return {"runs": runs, "process_peak_rss_mb": _max_rss_mb()}


def _run_isolated(spec: Mapping[str, Any], timeout: float | None) -> dict[str, Any]:
    """:func:`run_cell` in a fresh Python process (clean memory numbers)."""
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = out / "cell_spec.json", out / "cell_result.json"
    spec_path.write_text(json.dumps({**spec, "result": str(result_path)}), encoding="utf-8")
    try:
        proc = subprocess.run([sys.executable, str(SCRIPT), "--worker", str(spec_path)],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"cell timed out after {timeout:g} s (--cell-timeout)") from None
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"worker exited with {proc.returncode}: {' | '.join(tail)}")
    return json.loads(result_path.read_text(encoding="utf-8"))


def _worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = run_cell(spec)
    Path(spec["result"]).write_text(json.dumps(_json_ready(result)), encoding="utf-8")
    return 0


def _stats(values: Sequence[float | None]) -> dict[str, Any] | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
            "n": len(v), "values": v}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """mean ± sample std over seeds of every reported number of one cell."""
    def pick(path: tuple[str, ...]) -> list[float | None]:
        out = []
        for r in runs:
            v: Any = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            out.append(v)
        return out

    keys = {"mean_sad_rad": ("mean_sad_rad",), "mean_sad_deg": ("mean_sad_deg",),
            "armse": ("physical", "armse"), "mean_rmse": ("physical", "mean_rmse"),
            "tc_armse": ("truth_convention", "armse"),
            "tc_mean_rmse": ("truth_convention", "mean_rmse"),
            "seconds": ("seconds",), "cpu_seconds": ("cpu_seconds",),
            "peak_rss_delta_mb": ("peak_rss_delta_mb",),
            "bands_used": ("bands_used",), "mean_sid": ("mean_sid",)}
    return {k: _stats(pick(p)) for k, p in keys.items()}


def _parse_settings(items: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        model, sep, kv = item.partition(":")
        key, eq, value = kv.partition("=")
        if not (sep and eq and model and key):
            raise ValueError(f"--set {item!r}: use MODEL:KEY=VALUE, e.g. cresdae:epochs=10")
        out.setdefault(model.strip(), {})[key.strip()] = value.strip()
    return out


def run(models: Sequence[str] | None = None, datasets: Sequence[str] | None = None, *,
        seeds: Sequence[int] = (0, 1, 2, 3, 4), deep_datasets: Sequence[str] | None = None,
        deep_seeds: Sequence[int] | None = None,
        settings: Mapping[str, Mapping[str, str]] | None = None,
        extractors: Sequence[str | None] = (None,), device: str = "cpu",
        synth_size: tuple[int, int] = SYNTH_SIZE, synth_seed: int = SYNTH_SEED,
        data_dir: Path = DEFAULT_DATA, work_dir: Path | None = None, isolate: bool = True,
        cell_timeout: float | None = None, log: Log = _stderr) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-ready dict (see :func:`render`).

    ``extractors``: None = the CLI default (``hsu-geo unmix``'s ``--extractor``); others are
    extra variants labelled ``model+extractor``. ``settings``: ``{model: {key: value}}`` as
    ``--set`` (deviations). Deep models run only on ``deep_datasets`` (default: all) with
    ``deep_seeds`` (default: ``seeds``).
    """
    from hsu_geo.unmix import MODELS

    models = list(models or all_models())
    datasets = [d for d in ALL_DATASETS if d in (datasets or ALL_DATASETS)] + \
        [d for d in datasets or () if d not in ALL_DATASETS]
    bad = [m for m in models if m not in MODELS] + [d for d in datasets
                                                   if d not in ALL_DATASETS]
    bad += [d for d in deep_datasets or () if d not in ALL_DATASETS]
    if bad:
        raise ValueError(f"unknown model/dataset {bad}; models: {', '.join(MODELS.names())}; "
                         f"datasets: {', '.join(ALL_DATASETS)}")
    settings = {m: dict(v) for m, v in (settings or {}).items()}
    unknown = [m for m in settings if m not in models]
    if unknown:
        raise ValueError(f"--set for model(s) {unknown} that are not run")
    deep = {m: is_deep(m) for m in models}
    deep_seeds = list(seeds if deep_seeds is None else deep_seeds)
    t_start = time.perf_counter()
    cells: list[dict[str, Any]] = []
    not_run: list[dict[str, str]] = []
    info: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hsu_accuracy_") as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        for name in datasets:
            try:
                ds = (prepare_real(name, data_dir, work) if name in REAL
                      else prepare_synthetic(name, work, synth_size, synth_seed))
            except Exception as exc:  # a missing data file must not hide the other datasets
                log(f"[accuracy] {name}: not available ({exc})")
                not_run += [{"model": m, "dataset": name, "reason": f"dataset not available: "
                             f"{exc}"} for m in models]
                continue
            info[name] = {"kind": ds.kind, "k": ds.k, "pixels": ds.pixels, "bands": ds.bands,
                          "truth_convention": ds.convention, **ds.info}
            for model in models:
                if deep[model] and deep_datasets is not None and name not in deep_datasets:
                    not_run.append({"model": model, "dataset": name,
                                    "reason": "deep model not run on this dataset "
                                              "(--deep-datasets)"})
                    continue
                cell_seeds = deep_seeds if deep[model] else list(seeds)
                for extractor in extractors:
                    label = model if extractor is None else f"{model}+{extractor}"
                    spec = {"model": model, "extractor": extractor, "k": ds.k,
                            "seeds": cell_seeds, "device": device,
                            "settings": settings.get(model, {}), "scene": ds.scene,
                            "truth_abundance": ds.truth_abundance,
                            "truth_endmembers": ds.truth_endmembers,
                            "convention": ds.convention,
                            "out": str(work / "runs" / name / label)}
                    t0 = time.perf_counter()
                    try:
                        result = (_run_isolated(spec, cell_timeout) if isolate
                                  else run_cell(spec))
                    except Exception as exc:
                        reason = f"failed: {type(exc).__name__}: {exc}"
                        if not isolate:
                            reason += " | " + traceback.format_exc().strip().splitlines()[-1]
                        log(f"[accuracy] {name:>13} {label:>12}: {reason}")
                        not_run.append({"model": label, "dataset": name, "reason": reason})
                        continue
                    summary = summarise(result["runs"])
                    cells.append({"dataset": name, "model": label, "base_model": model,
                                  "extractor": extractor, "deep": deep[model],
                                  "seeds": cell_seeds, "summary": summary,
                                  "runs": result["runs"],
                                  "process_peak_rss_mb": result["process_peak_rss_mb"],
                                  "cell_seconds": time.perf_counter() - t0})
                    s = summary
                    log(f"[accuracy] {name:>13} {label:>12}: SAD {_ms(s['mean_sad_rad'])} rad"
                        f"  aRMSE {_ms(s['armse'])}"
                        + (f"  aRMSE[{ds.convention}] {_ms(s['tc_armse'])}"
                           if ds.convention else "")
                        + f"  {_ms(s['seconds'], 1)} s/run  ({len(cell_seeds)} seeds)")
    deviations = [f"{m}: {k} = {v} (--set)" for m, kv in settings.items()
                  for k, v in kv.items()]
    if tuple(synth_size) != SYNTH_SIZE:
        deviations.append(f"synthetic size {synth_size[0]}x{synth_size[1]} instead of "
                          f"hsu-geo synth's {SYNTH_SIZE[0]}x{SYNTH_SIZE[1]}")
    if deep_seeds != list(seeds) and any(deep.values()):
        deviations.append(f"deep models ran seeds {_seed_text(deep_seeds)} only (--deep-seeds)")
    result = {
        "settings": {"models": models, "datasets": datasets, "seeds": list(seeds),
                     "deep_seeds": deep_seeds, "deep_datasets": list(deep_datasets)
                     if deep_datasets is not None else None,
                     "extractors": list(extractors), "device": device,
                     "settings": settings, "synth_size": list(synth_size),
                     "synth_seed": synth_seed, "synth_bands": SYNTH_BANDS,
                     "data_dir": str(data_dir), "isolated_processes": isolate,
                     "cell_timeout_s": cell_timeout,
                     "machine": {"python": platform.python_version(),
                                 "platform": platform.platform(),
                                 "cpu_count": os.cpu_count()}},
        "deviations": deviations, "datasets": info, "cells": cells, "not_run": not_run,
        "published": [p.__dict__ for p in PUBLISHED if p.dataset in info],
        "wall_seconds": time.perf_counter() - t_start,
    }
    return _json_ready(result)


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        return _json_ready(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---- report ------------------------------------------------------------------------------------
def _ms(s: Mapping[str, Any] | None, digits: int = 4) -> str:
    """``mean ± std`` (std omitted for one value); '—' for nothing."""
    if not s:
        return "—"
    if s.get("std") is None:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _seed_text(seeds: Sequence[int]) -> str:
    s = sorted(seeds)
    if s and s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"{s[0]}-{s[-1]}"
    return ",".join(map(str, s))


def _grid(result: Mapping[str, Any], datasets: Sequence[str],
          cell: Callable[[dict[str, Any]], str], show_rule: bool = False) -> list[str]:
    """Markdown rows = datasets, columns = methods; cells not run show 'not run'."""
    labels = list(dict.fromkeys(c["model"] for c in result["cells"]))
    labels += [m for m in result["settings"]["models"] if m not in labels
               and result["settings"]["extractors"] == [None]]
    by = {(c["dataset"], c["model"]): c for c in result["cells"]}
    lines = ["| dataset | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for d in datasets:
        cells = [cell(by[(d, m)]) if (d, m) in by else "not run" for m in labels]
        rule = result["datasets"][d].get("truth_convention") if show_rule else None
        lines.append(f"| {d}{f' ({rule})' if rule else ''} | " + " | ".join(cells) + " |")
    return lines


def _best_of_ours(result: Mapping[str, Any], dataset: str, metric: str,
                  key: str) -> tuple[str, dict[str, Any] | None]:
    best: tuple[str, dict[str, Any] | None] = ("—", None)
    for c in result["cells"]:
        s = c["summary"].get(key)
        if c["dataset"] == dataset and s and (best[1] is None or s["mean"] < best[1]["mean"]):
            best = (c["model"], s)
    return best


_TC_KEY = {"mean_sad_rad": None, "armse": "tc_armse", "mean_rmse": "tc_mean_rmse"}
_METRIC_TEXT = {"mean_sad_rad": "mean SAD (rad)", "armse": "aRMSE", "mean_rmse": "mean RMSE"}


def published_lines(result: Mapping[str, Any]) -> list[str]:
    """Published numbers (converted) beside ours: the same model where we have it, else the
    best of our models (marked 'best: model')."""
    rows = [p for p in result["published"]]
    if not rows:
        return ["No published number for the datasets of this run."]
    by = {(c["dataset"], c["model"]): c for c in result["cells"]}
    lines = ["| dataset | published method | metric | published | ours | ours, truth "
             "convention | source; conversion |", "|---|---|---|---|---|---|---|"]
    for p in rows:
        key = p["metric"]
        if p["model"] is not None:
            c = by.get((p["dataset"], p["model"]))
            who, s = p["model"], (c["summary"].get(key) if c else None)
            tc = c["summary"].get(_TC_KEY[key]) if (c and _TC_KEY[key]) else None
            ours = f"{_ms(s)} ({who})" if s else f"not run ({who})"
        else:
            who, s = _best_of_ours(result, p["dataset"], key, key)
            ours = f"{_ms(s)} (best: {who})" if s else "—"
            tc_who, tc = (_best_of_ours(result, p["dataset"], key, _TC_KEY[key])
                          if _TC_KEY[key] else ("", None))
            if tc:
                tc = {**tc, "_who": tc_who}
        tc_text = "same as ours (SAD)" if key == "mean_sad_rad" else (
            "—" if not tc else _ms(tc) + (f" (best: {tc['_who']})" if "_who" in tc else ""))
        lines.append(f"| {p['dataset']} | {p['method']} | {_METRIC_TEXT[key]} | "
                     f"{p['value']:.4f} | {ours} | {tc_text} | {p['source']}; "
                     f"{p['conversion']} |")
    return lines


def cresdae_paper_lines(result: Mapping[str, Any]) -> list[str]:
    """CResDAE paper Tables 3-4 beside our aRMSE / mean SAD (orientation only)."""
    by = {(c["dataset"], c["model"]): c for c in result["cells"]}
    models = [m for m in ("linear_ae", "nae", "cresdae") if m in result["settings"]["models"]]
    sets = [d for d in _CRESDAE_ORDER if d in result["datasets"]]
    if not models or not sets:
        return []
    head = ["dataset"] + [f"{m} {w}" for m in models for w in ("ours aRMSE", "paper RMSE",
                                                               "ours SAD", "paper SAD")]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for d in sets:
        cells = []
        for m in models:
            s = by[(d, m)]["summary"] if (d, m) in by else {}
            cells += [_ms(s.get("armse"), 3), f"{CRESDAE_PAPER['RMSE'][m][d]:.3f}",
                      _ms(s.get("mean_sad_rad"), 3), f"{CRESDAE_PAPER['SAD'][m][d]:.3f}"]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return lines


def protocol_notes(result: Mapping[str, Any]) -> list[str]:
    st = result["settings"]
    h, w = st["synth_size"]
    return [
        "Every run goes through `hsu_geo.pipeline.run_unmix` (what `hsu-geo unmix` runs) on a "
        "GeoTIFF of the cube with -k = the reference count, --seed = the seed, --device "
        f"{st['device']} and every other option at its default (VCA endmembers unless a "
        "+extractor variant, default bad-band detection, model defaults); outputs are scored "
        "by `hsu_geo.evaluate.evaluate_folder` (what `hsu-geo evaluate` runs).",
        "SAD: mean over endmembers of the spectral angle after one Hungarian matching on the "
        "SAD matrix over the bands the run kept; it does not depend on the abundance "
        "convention. aRMSE = sqrt(mean over pixels and endmembers of (a - â)²); mean RMSE = "
        "mean over endmembers of sqrt(mean over pixels) (DFFN's and AUVAE's mRMSE).",
        "Truth convention: Samson's and Jasper Ridge's reference abundances are NNLS on the "
        "max-normalised reference endmembers divided by their per-pixel sum; Moffett's are "
        "FCLS on its reference endmembers (see 'Datasets' for how well each rule reproduces "
        "them). Our abundances re-derived with that rule from our estimated endmembers and the "
        "scene (`hsu-geo evaluate --abundance-convention reference|fcls`) remove the "
        "convention difference, so that column measures the endmembers. MUUFL's reference "
        "follows no such rule: physical only.",
        "Published numbers are the papers' own runs (their settings, their matching - greedy or "
        "argmin, not Hungarian - and sum-normalised network abundances) on the same reference "
        "files for Samson and Jasper Ridge; on synthetic data they use other data "
        "(DFFN: 60x60 block-layout LMM, 188 bands; NAE: Dirichlet abundances, 4 endmembers, "
        f"224 bands) than hsu-geo synth's ({h}x{w}, 5 USGS minerals, 211 bands, smooth "
        "softmax fields), so only orders of magnitude compare. No published numbers exist in "
        "the model specs for Moffett or MUUFL (ACR-Net's Muffle tables are unavailable).",
        "The CResDAE paper's Table 3 'RMSE' and Table 4 'SAD' are undefined (a reconstruction "
        "formula; magnitudes that do not fit endmember SAD in radians) and its synthetic data "
        "use the Urban library: printed beside ours unconverted, for orientation only.",
        "Wavelengths: Samson from the shared APEX file; Jasper Ridge from the Cuprite file's "
        "AVIRIS centres; MUUFL evenly spaced 375-1050 nm (not in the file); Moffett "
        "PLACEHOLDER centres 400-1300 nm (its bands are not recorded) - only the band order is "
        "real, so no absorption-window rule applies and library-based names are meaningless.",
        f"Seeds {_seed_text(st['seeds'])} drive VCA and the model; the data are fixed "
        f"(synthetic generator seed {st['synth_seed']}). ± is the sample std over seeds; "
        "deterministic methods show std 0.",
        "Runtime: wall time of run_unmix per run (scan, endmembers, fit, unmix, write; "
        "evaluation excluded), mean ± std over seeds, and in brackets the process CPU time "
        "(all threads; less sensitive to other load on the machine). Imports are done before "
        "the timing. "
        "Memory: peak RSS increase during the run over the RSS before it, sampled every 10 ms"
        + (", each (model, dataset) in a fresh process." if st["isolated_processes"] else
           "; in-process, so memory reused from earlier runs is not counted (lower bound).")
        + f" CPU only, {st['machine']['cpu_count']} cores visible; deep models use one torch "
        "thread for training (their default).",
    ]


def render(result: Mapping[str, Any]) -> str:
    """The Markdown report of a :func:`run` result."""
    st = result["settings"]
    datasets = [d for d in st["datasets"] if d in result["datasets"]]
    real = [d for d in datasets if d in REAL]
    with_tc = [d for d in real if result["datasets"][d].get("truth_convention")]
    out = ["# Accuracy benchmark (`python benchmarks/accuracy.py`)", "",
           f"Models {', '.join(st['models'])}; seeds {_seed_text(st['seeds'])}"
           + (f" (deep models: {_seed_text(st['deep_seeds'])})"
              if st["deep_seeds"] != st["seeds"] else "")
           + f"; device {st['device']}; synthetic {st['synth_size'][0]}x"
           f"{st['synth_size'][1]}. Mean ± sample std over seeds. Wall time "
           f"{result['wall_seconds']:.0f} s.", ""]
    if result["deviations"]:
        out += ["**Deviations from the defaults:** " + "; ".join(result["deviations"]) + ".", ""]
    out += ["## Datasets", "", "| dataset | pixels | bands (kept by the runs) | k | wavelengths "
            "| reference abundances reproduced by (aRMSE) |", "|---|---|---|---|---|---|"]
    for d in datasets:
        i = result["datasets"][d]
        kept = sorted({int(v) for c in result["cells"] if c["dataset"] == d
                       for v in (c["summary"]["bands_used"] or {}).get("values", [])})
        bands = f"{i['bands']} ({kept[0]}" + (f"-{kept[-1]}" if len(kept) > 1 else "") + ")" \
            if kept else str(i["bands"])
        rep = i.get("reference_reproduction_armse")
        if rep:
            rule = i.get("truth_convention")
            text = (f"{rule}: {rep[rule]:.4f}" if rule else
                    "neither (reference " + f"{rep['reference']:.3f}, fcls {rep['fcls']:.3f})")
        else:
            text = "generator truth (physical)"
        wl = WAVELENGTHS_SHORT.get(d, f"hsu-geo synth grid {SYNTH_BANDS}")
        out.append(f"| {d} | {i['pixels']} | {bands} | {i['k']} | {wl} | {text} |")
    out += ["", "## Endmember mean SAD, rad (degrees)", ""]
    out += _grid(result, datasets, lambda c: f"{_ms(c['summary']['mean_sad_rad'])} "
                 f"({_ms(c['summary']['mean_sad_deg'], 2)}°)")
    out += ["", "## Abundance aRMSE, physical (the abundances as written)", ""]
    out += _grid(result, datasets, lambda c: _ms(c["summary"]["armse"]))
    out += ["", "## Abundance mean per-endmember RMSE, physical", ""]
    out += _grid(result, datasets, lambda c: _ms(c["summary"]["mean_rmse"]))
    if with_tc:
        out += ["", "## Abundance aRMSE, truth convention (re-derived from our endmembers with "
                "the rule the reference abundances follow)", ""]
        out += _grid(result, with_tc, lambda c: _ms(c["summary"]["tc_armse"]), True)
        out += ["", "## Abundance mean per-endmember RMSE, truth convention", ""]
        out += _grid(result, with_tc, lambda c: _ms(c["summary"]["tc_mean_rmse"]), True)
    out += ["", "## Published numbers beside ours (project definitions)", ""]
    out += published_lines(result)
    cres = cresdae_paper_lines(result)
    if cres:
        out += ["", "## CResDAE paper Tables 3-4 (undefined metrics, Urban-library data; "
                "orientation only)", "", *cres]
    out += ["", "## Runtime per run: wall s (CPU s) / peak RSS increase MB", ""]
    out += _grid(result, datasets, lambda c: f"{_ms(c['summary']['seconds'], 1)} "
                 f"({c['summary']['cpu_seconds']['mean']:.1f}) / "
                 + (f"{c['summary']['peak_rss_delta_mb']['mean']:.0f}"
                    if c["summary"]["peak_rss_delta_mb"] else "—"))
    out += ["", "## Not run", ""]
    if result["not_run"]:
        out += [f"- {r['model']} on {r['dataset']}: {r['reason']}" for r in result["not_run"]]
    else:
        out.append("Every (model, dataset) cell was run.")
    out += ["", "## Protocol", ""] + [f"- {n}" for n in protocol_notes(result)]
    return "\n".join(out) + "\n"


# ---- CLI ---------------------------------------------------------------------------------------
def _list(value: str | None, valid: Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if valid is not None and v not in valid]
    if bad:
        raise SystemExit(f"unknown {what} {bad}; choose from {', '.join(valid or [])}")
    return items


def _seeds(value: str) -> list[int]:
    out: list[int] = []
    for part in value.split(","):
        a, sep, b = part.strip().partition("-")
        try:
            out += list(range(int(a), int(b) + 1)) if sep else [int(a)]
        except ValueError:
            raise SystemExit(f"--seeds {value!r}: use e.g. 0-4 or 0,2,5") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--worker"]:
        return _worker(args_in[1])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated registry names "
                    "(default: every registered model)")
    ap.add_argument("--datasets", default=None,
                    help=f"comma-separated subset of {', '.join(ALL_DATASETS)}")
    ap.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 or 0,3 (default 0-4)")
    ap.add_argument("--deep-datasets", default=None,
                    help="run deep models only on these datasets (the others are listed as "
                         "not run)")
    ap.add_argument("--deep-seeds", default=None, help="seeds for deep models (default: --seeds)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="MODEL:KEY=VALUE",
                    help="DEVIATION: a model setting, as hsu-geo unmix --set (repeatable)")
    ap.add_argument("--extractors", default=None,
                    help="endmember extractors to run, e.g. default,vca ('default' = the CLI "
                         "default; others are labelled model+extractor); without it: the CLI "
                         "default only")
    ap.add_argument("--device", default="cpu", help="--device of hsu-geo unmix (default cpu)")
    ap.add_argument("--synth-size", nargs=2, type=int, default=list(SYNTH_SIZE),
                    metavar=("H", "W"), help="synthetic size (default 128 128, as hsu-geo synth)")
    ap.add_argument("--cell-timeout", type=float, default=None,
                    help="seconds per (model, dataset) cell, all seeds; a cell over it is "
                         "reported as not run")
    ap.add_argument("--in-process", action="store_true",
                    help="run every cell in this process (faster start, memory numbers are "
                         "lower bounds)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep scenes and outputs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the report here")
    args = ap.parse_args(args_in)
    from hsu_geo.unmix import MODELS

    models = _list(args.models, MODELS.names(), "model")
    extractors: list[str | None] = [None]
    if args.extractors:
        extractors = [None if e == "default" else e
                      for e in _list(args.extractors, None, "extractor") or []]
    try:
        result = run(models, _list(args.datasets, ALL_DATASETS, "dataset"),
                     seeds=_seeds(args.seeds),
                     deep_datasets=_list(args.deep_datasets, ALL_DATASETS, "dataset"),
                     deep_seeds=_seeds(args.deep_seeds) if args.deep_seeds else None,
                     settings=_parse_settings(args.sets), extractors=extractors,
                     device=args.device, synth_size=(args.synth_size[0], args.synth_size[1]),
                     data_dir=args.data, work_dir=args.work, isolate=not args.in_process,
                     cell_timeout=args.cell_timeout)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    text = render(result)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n",
                             encoding="utf-8")
        _stderr(f"[accuracy] numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
