"""``benchmarks/nonlinear.py`` runs end to end on a tiny scene with GBM's γ prior on and off
and exits 0 with its accuracy rows (the speed part is measured, not tested)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("weight", ["12", "0"])
def test_nonlinear_benchmark_accuracy_runs(tmp_path: Path, weight: str) -> None:
    out = tmp_path / "nl.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "nonlinear.py"), "--skip-speed",
         "--seeds", "0", "--datasets", "bilinear_snr30", "--size", "16",
         "--gamma-prior", weight, "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = json.loads(out.read_text())["accuracy"]["runs"]
    assert {r["endmembers"] for r in runs} == {"true", "blind"}
    for r in runs:
        assert 0 <= r["armse_gbm"] < 1 and r["gbm_iterations"] >= 1
        lam = r["gbm_gate"]["gamma_prior"]
        assert (lam > 0) == (weight != "0")
    assert "| bilinear_snr30 |" in res.stdout
