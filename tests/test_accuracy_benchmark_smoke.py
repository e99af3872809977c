"""Smoke test of ``benchmarks/accuracy.py``: a tiny run (one 12x12 synthetic set, FCLS and a
1-epoch LinearAE, two seeds, in-process) must give finite numbers through the pipeline and
``hsu-geo evaluate``, a well-formed report with published numbers beside ours, the cells that
were not run listed with their reason, and JSON without NaN. With the shared data, Samson is
also scored under its truth convention. One cell runs in a worker process."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"
TINY = {"linear_ae": {"epochs": "1", "max_train_pixels": "60"}}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("accuracy_benchmark", SCRIPT)
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
    return bench.run(["fcls", "linear_ae"], ["linear_snr30"], seeds=[0, 1], deep_seeds=[0],
                     settings=TINY, synth_size=(12, 12),
                     work_dir=tmp_path_factory.mktemp("acc"), isolate=False,
                     log=lambda _msg: None)


def test_numbers_are_finite(tiny: dict[str, Any]) -> None:
    cells = {c["model"]: c for c in tiny["cells"]}
    assert set(cells) == {"fcls", "linear_ae"}
    for c in cells.values():
        n = 1 if c["deep"] else 2  # --deep-seeds 0
        assert c["dataset"] == "linear_snr30" and c["seeds"] == [0, 1][:n]
        assert len(c["runs"]) == n
        for key in ("mean_sad_rad", "mean_sad_deg", "armse", "mean_rmse", "seconds",
                    "cpu_seconds"):
            s = c["summary"][key]
            assert s["n"] == n and math.isfinite(s["mean"]) and s["mean"] >= 0, key
            assert (s["std"] is None) == (n == 1)
        assert c["summary"]["tc_armse"] is None  # synthetic truth: physical only
        for r in c["runs"]:
            assert r["n_pixels"] == 144 and len(r["sad_rad"]) == 5
            assert math.isclose(r["mean_sad_deg"], math.degrees(r["mean_sad_rad"]))
            assert r["physical"]["convention"] == "physical"
    assert cells["fcls"]["summary"]["mean_sad_rad"]["mean"] < 0.1
    assert tiny["datasets"]["linear_snr30"]["k"] == 5
    json.dumps(tiny, allow_nan=False)


def test_not_run_cells_are_listed(bench: ModuleType, tmp_path: Path) -> None:
    res = bench.run(["nae"], ["linear_snr10"], seeds=[0], deep_datasets=[],
                    synth_size=(8, 8), work_dir=tmp_path, isolate=False, log=lambda _m: None)
    assert res["cells"] == []
    (skip,) = res["not_run"]
    assert skip["model"] == "nae" and "--deep-datasets" in skip["reason"]
    text = bench.render(res)
    assert "| linear_snr10 | " in text and "not run" in text
    assert "- nae on linear_snr10: deep model not run on this dataset (--deep-datasets)" in text


def test_report_structure(bench: ModuleType, tiny: dict[str, Any]) -> None:
    text = bench.render(tiny)
    for title in ("## Datasets", "## Endmember mean SAD, rad (degrees)",
                  "## Abundance aRMSE, physical", "## Published numbers beside ours",
                  "## Runtime per run", "## Not run", "## Protocol"):
        assert title in text, title
    assert "| dataset | fcls | linear_ae |" in text
    assert "linear_ae: epochs = 1 (--set)" in text  # deviations are printed
    assert "deep models ran seeds 0 only (--deep-seeds)" in text
    # DAEU (dffn.md Table I, 30 dB) beside our linear_ae; NAE paper beside nae (not run)
    assert "| linear_snr30 | DAEU | mean SAD (rad) | 0.0796 |" in text
    assert "| linear_snr30 | NAE | aRMSE | 0.0211 | not run (nae) |" in text
    assert "linear_snr30 | 0.349 |" not in text  # CResDAE paper columns are labelled
    assert "paper RMSE" in text


def test_samson_truth_convention(bench: ModuleType, shared_data: Path, tmp_path: Path) -> None:
    res = bench.run(["fcls"], ["samson"], seeds=[0], data_dir=shared_data, work_dir=tmp_path,
                    isolate=False, log=lambda _m: None)
    (cell,) = res["cells"]
    s = cell["summary"]
    info = res["datasets"]["samson"]
    assert info["truth_convention"] == "reference"
    assert info["reference_reproduction_armse"]["reference"] < 0.005
    # the same endmembers, scored under the reference's own rule, are far closer to it
    assert s["tc_armse"]["mean"] < 0.5 * s["armse"]["mean"]
    assert cell["process_peak_rss_mb"] > 0
    text = bench.render(res)
    assert "| samson (reference) | " in text
    assert "| samson | SSANU-Net | aRMSE | 0.0963 |" in text


@pytest.mark.slow
def test_cells_run_in_worker_processes(bench: ModuleType, tmp_path: Path) -> None:
    """The default mode: each (model, dataset) in a fresh process (about 7 s of imports)."""
    res = bench.run(["fcls"], ["linear_snr20"], seeds=[0, 1], synth_size=(12, 12),
                    work_dir=tmp_path, isolate=True, log=lambda _m: None)
    (cell,) = res["cells"]
    assert len(cell["runs"]) == 2 and cell["process_peak_rss_mb"] > 0
    assert res["settings"]["isolated_processes"] is True
    assert math.isfinite(cell["summary"]["mean_sad_rad"]["mean"])
    failed = bench.run(["fcls"], ["linear_snr20"], seeds=[0], synth_size=(12, 12),
                       work_dir=tmp_path / "t", isolate=True, cell_timeout=0.01,
                       log=lambda _m: None)
    assert failed["cells"] == [] and "timed out" in failed["not_run"][0]["reason"]


def test_bad_names_are_rejected(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match="unknown model/dataset"):
        bench.run(["fcls"], ["urban"], seeds=[0], isolate=False)
    with pytest.raises(ValueError, match="MODEL:KEY=VALUE"):
        bench._parse_settings(["cresdae-epochs=3"])
    assert bench._seeds("0-2,5") == [0, 1, 2, 5]
