"""``benchmarks/gpu.py`` runs end to end (CPU dry run: the CUDA-vs-CPU comparison against a
second CPU copy, training and inference timings) and exits 0 with every model's row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_dry_run_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--compare",
         "--models", "linear_ae,cnnaeu", "--size", "96", "--bands", "20", "--chunk", "48",
         "--steps", "1", "--check-steps", "1", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"linear_ae", "cnnaeu"}
    for r in rows.values():
        assert r["matches_cpu"] and r["max_abs_diff_vs_cpu"] == 0.0  # same weights, same device
        assert r["train_steps"] >= 1 and r["train_px_per_s"] > 0
        assert r["infer_px_per_s"] > 0 and r["infer_finite"]
    assert "| cnnaeu |" in res.stdout


def test_gpu_benchmark_skips_models_past_its_time_budget(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu",
         "--models", "linear_ae,nae", "--budget-seconds", "0", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["linear_ae", "nae"]
    assert all("--budget-seconds" in r["skipped"] and "fit_seconds" not in r for r in rows)
