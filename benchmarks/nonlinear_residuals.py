"""What the nonlinear terms explain on real scenes: why the blind gate lets PPNMM/GBM through.

For each scene, with blindly extracted endmembers (``extract_endmembers`` with the CLI default
extractor, the reference ``k``, seed 0; the real scenes as ``hsu_geo.datasets`` loads them, so
bands may differ slightly from a CLI run), the mean residual sum of squares per pixel of:

- FCLS (the linear model, abundances on the simplex), also divided by ``L σ̂²`` (σ̂: the
  gate's noise estimate, :func:`hsu_geo.endmembers.count.signal_spectrum`): 1 when the linear
  model fits to the noise, far above 1 when something else (variability, missing materials,
  nonlinearity) dominates;
- NNLS (non-negative abundances without the sum-to-one: one free brightness scale per pixel,
  the same number of extra parameters as PPNMM's ``b``), PPNMM and GBM, as fractions of
  FCLS's: what each extra degree of freedom explains;
- the gate's decision (``linearity_gate``, default threshold) for PPNMM and GBM.

No ground truth is read. Synthetic scenes (``hsu-geo synth``'s sets, 64 x 64, design seeds
100-101, the same blind endmembers) show the values where the mixing is known.

    python benchmarks/nonlinear_residuals.py [--data ../shared/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hsu_geo.datasets import load_scene  # noqa: E402
from hsu_geo.endmembers.count import signal_spectrum  # noqa: E402
from hsu_geo.endmembers.extract import extract_endmembers  # noqa: E402
from hsu_geo.unmix.classical import fcls, nnls  # noqa: E402
from hsu_geo.unmix.classical.nonlinear import fit_nonlinear, linearity_gate  # noqa: E402

REAL = ("samson", "jasper_ridge", "moffett", "muufl")
SYNTH = ("linear_snr20", "linear_snr30", "bilinear_snr20", "bilinear_snr30", "pnmm_snr20",
         "pnmm_snr30")


def _synth_scene() -> Any:
    spec = importlib.util.spec_from_file_location("nonlinear_bench", ROOT / "benchmarks" /
                                                  "nonlinear.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._scene


def measure(name: str, Y: np.ndarray, k: int) -> dict[str, Any]:
    Y = np.ascontiguousarray(Y[np.isfinite(Y).all(axis=1)], dtype=np.float64)
    M, _ = extract_endmembers(Y, k, seed=0)
    sigma = float(signal_spectrum(Y)["noise_std_median"])
    r_fcls = float(np.mean(np.sum((Y - fcls(Y, M) @ M) ** 2, axis=1)))
    r_nnls = float(np.mean(np.sum((Y - nnls(Y, M) @ M) ** 2, axis=1)))
    row: dict[str, Any] = {"scene": name, "pixels": int(Y.shape[0]), "bands": int(Y.shape[1]),
                           "k": k, "noise_std": sigma,
                           "fcls_rss_over_noise": r_fcls / (Y.shape[1] * sigma ** 2),
                           "nnls_fraction": r_nnls / r_fcls}
    for kind in ("ppnmm", "gbm"):
        fit = fit_nonlinear(Y, M, kind)
        row[f"{kind}_fraction"] = float(np.mean(fit.rss)) / r_fcls
        use, _ = linearity_gate(Y, M, kind, fit=fit if Y.shape[0] <= 20_000 else None)
        row[f"{kind}_gate"] = "nonlinear" if use else "linear"
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for name in REAL:
        scene = load_scene(name, args.data)
        L = scene.cube.shape[0]
        rows.append(measure(name, scene.cube.reshape(L, -1).T, scene.endmembers.shape[0]))
        print(f"[residuals] {rows[-1]}", file=sys.stderr, flush=True)
    scene_of = _synth_scene()
    with tempfile.TemporaryDirectory() as tmp:
        for name in SYNTH:
            for seed in (100, 101):
                s = scene_of(Path(tmp), name, seed, 64)
                cube = s["cube"]
                rows.append(measure(f"{name} s{seed}", cube.reshape(-1, cube.shape[2]),
                                    s["M"].shape[0]))
                print(f"[residuals] {rows[-1]}", file=sys.stderr, flush=True)
    print("| scene | FCLS rss / (L σ̂²) | NNLS / FCLS rss | PPNMM / FCLS | GBM / FCLS | gate "
          "PPNMM | gate GBM |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scene']} | {r['fcls_rss_over_noise']:.1f} | {r['nnls_fraction']:.3f} | "
              f"{r['ppnmm_fraction']:.3f} | {r['gbm_fraction']:.3f} | {r['ppnmm_gate']} | "
              f"{r['gbm_gate']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
