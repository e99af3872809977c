"""Smoke test of ``benchmarks/paper_cresdae.py``: a tiny run (one synthetic dataset, 12x12
pixels, all four methods, 1 epoch and a few pretraining steps via config overrides) must give
finite numbers, well-formed Markdown tables, the acceptance check and a JSON-serialisable
result. Real data is not needed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_cresdae.py"

TINY: dict[str, dict[str, Any]] = {
    "linear_ae": {"epochs": 1, "max_train_pixels": 60, "min_steps": 0},
    "nae": {"epochs": 1, "pretrain_steps": 3, "min_steps": 0},
    "cresdae": {"epochs": 1, "pretrain_steps": 3, "min_steps": 0, "synth_epochs": 1,
                "synth_pixels": 32,
                "synth_snr_db": (30.0,)},
}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paper_cresdae", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load()


@pytest.fixture(scope="module")
def tiny(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return bench.run(datasets=["bilinear_snr30"], size=(12, 12),
                     methods=["fcls", "linear_ae", "nae", "cresdae"], overrides=TINY,
                     work_dir=tmp_path_factory.mktemp("synth"), log=lambda _msg: None)


def test_numbers_are_finite(tiny: dict[str, Any]) -> None:
    rows = tiny["results"]
    assert [r["method"] for r in rows] == ["fcls", "linear_ae", "nae", "cresdae"]
    for r in rows:
        assert r["dataset"] == "bilinear_snr30"
        for key in ("armse", "mean_rmse", "mean_sad", "mean_sid", "seconds_total"):
            assert math.isfinite(r[key]) and r[key] >= 0, (r["method"], key)
        assert len(r["rmse"]) == len(r["sad"]) == 5
        lo, hi = r["abundance_sum_range"]
        assert math.isfinite(lo) and math.isfinite(hi)
    info = tiny["datasets"]["bilinear_snr30"]
    assert (info["pixels"], info["k"], info["kind"]) == (144, 5, "synthetic")
    json.dumps(tiny, allow_nan=False)  # the --json dump has no NaN/inf


def test_overrides_are_reported_as_deviations(tiny: dict[str, Any]) -> None:
    text = " ".join(tiny["deviations"])
    assert "CResDAE: epochs 40 -> 1 (override)" in text
    assert "NAE: pretrain_steps 2000 -> 3 (override)" in text
    assert tiny["settings"]["configs"]["cresdae"]["epochs"] == 1
    assert tiny["settings"]["configs"]["fcls"] == {"brightness": "auto"}  # the default


def test_report_structure(bench: ModuleType, tiny: dict[str, Any]) -> None:
    text = bench.render(tiny)
    header = ("| dataset | VCA+FCLS | LinearAE | NAE | CResDAE | paper LinearAE | paper NAE | "
              "paper CResDAE |")
    assert text.count(header) == 4  # aRMSE, mean RMSE, SAD, SID
    for title, _ in bench.METRICS.values():
        assert f"## {title}" in text
    data_rows = [line for line in text.splitlines() if line.startswith("| bilinear_snr30 |")]
    assert len(data_rows) == 4 + 1  # four metric tables + the acceptance table
    table_rows = data_rows[:4]
    for line, paper in zip(table_rows, ("0.3566", "0.3566", "1.0671", "5.4662"), strict=True):
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        assert len(cells) == 8
        assert all(math.isfinite(float(c)) for c in cells[1:])
        assert cells[5] == paper  # paper LinearAE, 30 dB bilinear (cresdae.md §7)
    assert text.count("PASS") + text.count("FAIL") >= 2  # per dataset + overall
    assert "## Protocol differences from the paper" in text
    assert "Deviation" in text
    acc = tiny["acceptance"]
    assert len(acc) == 1 and acc[0]["dataset"] == "bilinear_snr30"
    assert acc[0]["pass"] == (acc[0]["cresdae"] < min(acc[0]["fcls"], acc[0]["linear_ae"]))


def test_unknown_names_are_rejected(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match="unknown dataset/method"):
        bench.run(datasets=["urban"], size=(12, 12), methods=["fcls"])
    with pytest.raises(ValueError, match="unknown setting"):
        bench.make_config("nae", 0, 1.0, {"no_such_field": 1})


def test_epochs_scale(bench: ModuleType) -> None:
    cfg, notes = bench.make_config("cresdae", 3, 0.1, None)
    assert (cfg.seed, cfg.epochs, cfg.synth_epochs) == (3, 4, 4)
    assert any("--epochs-scale 0.1" in n for n in notes)
    fcls_cfg, fcls_notes = bench.make_config("fcls", 0, 0.5, None)  # no epochs to scale
    assert fcls_notes == [] and fcls_cfg.brightness == "auto"


def test_the_other_comparators_run_too(bench: ModuleType,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """MVC-NMF, VCA+K-Hype and ConvAE (the spatial one, through the block engine) give
    finite rows and their columns in the report."""
    res = bench.run(datasets=["linear_snr30"], size=(16, 16),
                    methods=["mvc_nmf", "khype", "convae"],
                    overrides={"mvc_nmf": {"max_iter": 5},
                               "convae": {"epochs": 1, "n_patches": 2}},
                    work_dir=tmp_path_factory.mktemp("synth2"), log=lambda _msg: None)
    assert [r["method"] for r in res["results"]] == ["mvc_nmf", "khype", "convae"]
    for r in res["results"]:
        assert all(math.isfinite(r[key]) for key in ("armse", "mean_sad", "seconds_total"))
        assert len(r["sad"]) == 5
    text = bench.render(res)
    assert "| dataset | MVC-NMF | VCA+K-Hype | ConvAE |" in text
    assert "ConvAE: epochs 320 -> 1 (override)" in " ".join(res["deviations"])


def test_merge_joins_split_runs_and_refuses_overlaps(bench: ModuleType, tiny: dict[str, Any],
                                                      tmp_path: Path) -> None:
    other = bench.run(datasets=["linear_snr30"], size=(12, 12), methods=["fcls"],
                      work_dir=tmp_path, log=lambda _msg: None)
    merged = bench.merge([json.loads(json.dumps(other)), json.loads(json.dumps(tiny))])
    # datasets and methods in the script's order, every row kept, acceptance recomputed
    assert merged["settings"]["datasets"] == ["linear_snr30", "bilinear_snr30"]
    assert merged["settings"]["methods"] == ["fcls", "linear_ae", "nae", "cresdae"]
    assert len(merged["results"]) == len(tiny["results"]) + 1
    assert [a["dataset"] for a in merged["acceptance"]] == ["bilinear_snr30"]
    assert "| linear_snr30 |" in bench.render(merged)
    with pytest.raises(ValueError, match="more than one run"):
        bench.merge([tiny, tiny])
    with pytest.raises(ValueError, match="seed"):
        bench.merge([tiny, dict(other, settings=dict(other["settings"], seed=1))])
