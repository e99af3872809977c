"""FCLS throughput benchmark: hsu_geo's batched active-set FCLS against common alternatives.

Usage: ``python benchmarks/fcls.py [--pixels N] [--bands L] [--k K] [--seed S]``

Data: a linear mixture of k endmembers (USGS 1995 library spectra when ``../shared/data`` is
present, else smooth random spectra), Dirichlet(0.7) abundances, white noise at 30 dB SNR,
float32 ``(N, L)``. Timed:

- ``hsu_geo fcls``: :func:`hsu_geo.unmix.classical.fcls` on all N pixels (best of ``--repeat``);
- ``scipy nnls (aug.)``: ``scipy.optimize.nnls`` per pixel on the augmented sum-to-one system
  ``[δMᵀ; 1ᵀ] a = [δy; 1]`` (δ = 1e-3, baselines.md B4), on a subsample, extrapolated;
- ``pysptools FCLS``: ``pysptools.abundance_maps.amaps.FCLS`` (cvxopt QP per pixel), subsample;
- ``matmul floor``: the unconstrained LS floor ``Y @ pinv(M)`` on all N pixels.

Throughput is pixels per second; "ratio" is the throughput of ours divided by the method's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hsu_geo.unmix.classical import fcls, fcls_kkt_residual, scls  # noqa: E402

USGS = ROOT.parent / "shared" / "data" / "libraries" / "usgs_splib" / "USGS_1995_Library.mat"


def endmembers(k: int, L: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """``(k, L)`` float64 endmembers with pairwise spectral angles > 0.1 rad."""
    if USGS.is_file():
        from scipy.io import loadmat

        lib = loadmat(USGS)["datalib"][:, 3:].T  # (498 spectra, 224 bands)
        lib = lib[:, np.linspace(0, lib.shape[1] - 1, L).round().astype(int)]
        lib = lib[(lib > 0).all(axis=1)]
        source = "USGS 1995 library"
    else:
        lib = np.abs(np.cumsum(rng.normal(size=(500, L)), axis=1)) + 1.0
        source = "smooth random spectra"
    unit = lib / np.linalg.norm(lib, axis=1, keepdims=True)
    chosen: list[int] = []
    for i in rng.permutation(lib.shape[0]):
        if all(np.arccos(np.clip(unit[i] @ unit[j], -1, 1)) > 0.1 for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return lib[chosen].astype(np.float64), source


def make_data(n: int, L: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Float32 pixels ``(n, L)`` and float64 endmembers ``(k, L)``."""
    rng = np.random.default_rng(seed)
    M, source = endmembers(k, L, rng)
    M32 = M.astype(np.float32)
    Y = np.empty((n, L), dtype=np.float32)
    chunk = 131_072
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        A = rng.dirichlet(np.full(k, 0.7), size=e - s).astype(np.float32)
        Y[s:e] = A @ M32
    sigma = np.sqrt(np.mean(Y[: min(n, 100_000)].astype(np.float64) ** 2) / 10 ** (30 / 10))
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        Y[s:e] += rng.standard_normal((e - s, L), dtype=np.float32) * np.float32(sigma)
    return Y, M, source


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall-clock seconds and best process CPU seconds (all threads) over ``repeat`` runs."""
    best_wall = best_cpu = np.inf
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        fn()
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu


def scipy_fcls(Y: np.ndarray, M: np.ndarray, delta: float = 1e-3) -> np.ndarray:
    """Hand-written FCLS: ``scipy.optimize.nnls`` per pixel on the augmented system."""
    from scipy.optimize import nnls

    k = M.shape[0]
    Ma = np.vstack([delta * M.T, np.ones((1, k))])
    Ya = np.hstack([delta * Y.astype(np.float64), np.ones((Y.shape[0], 1))])
    out = np.empty((Y.shape[0], k))
    for i in range(Y.shape[0]):
        out[i] = nnls(Ma, Ya[i])[0]
    return out / out.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=1_000_000)
    ap.add_argument("--bands", type=int, default=200)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="best-of repeats of every timing")
    ap.add_argument("--threads", type=int, default=1, help="fcls worker threads")
    ap.add_argument("--scipy-pixels", type=int, default=2000)
    ap.add_argument("--pysptools-pixels", type=int, default=500)
    args = ap.parse_args(argv)

    Y, M, source = make_data(args.pixels, args.bands, args.k, args.seed)
    N = Y.shape[0]
    print(
        f"data: {N} px x {args.bands} bands float32, k={args.k} ({source}), 30 dB SNR; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )

    fcls(Y[: min(N, 10_000)], M, threads=args.threads)  # warm-up (thread pool, BLAS)
    result: dict[str, np.ndarray] = {}

    def ours() -> None:
        result["A"] = fcls(Y, M, threads=args.threads)

    rows: list[tuple[str, int, tuple[float, float] | None, str]] = []
    rows.append(("hsu_geo fcls (ours)", N, best_time(ours, args.repeat), ""))
    A = result["A"]

    n_sc = min(N, args.scipy_pixels)
    scipy_fcls(Y[:50], M)  # warm-up
    t_sc = best_time(lambda: result.__setitem__("sc", scipy_fcls(Y[:n_sc], M)), args.repeat)
    rows.append(("scipy nnls per pixel (aug.)", n_sc, t_sc, ""))
    A_sc = result["sc"]

    n_ps = min(N, args.pysptools_pixels)
    A_ps = None
    try:
        from pysptools.abundance_maps import amaps

        amaps.FCLS(Y[:5].astype(np.float64), M)  # warm-up

        def ps() -> None:
            result["ps"] = amaps.FCLS(Y[:n_ps].astype(np.float64), M)

        rows.append(("pysptools FCLS (cvxopt)", n_ps, best_time(ps, 1), ""))
        A_ps = result["ps"]
    except Exception as exc:  # ImportError (cvxopt missing) or numpy-2 incompatibility
        rows.append(("pysptools FCLS (cvxopt)", n_ps, None, f"unavailable: {exc!r}"))

    P = np.linalg.pinv(M).astype(np.float32)  # (L, k)
    rows.append(("matmul floor Y @ pinv(M)", N, best_time(lambda: Y @ P, args.repeat), ""))

    ours_wall, ours_cpu = rows[0][2]  # type: ignore[misc]
    head = f"{'method':29s} {'pixels':>8s} {'wall s':>9s} {'pixels/s':>10s} {'ours/this':>9s}"
    print(f"{head} {'cpu s':>9s} {'cpu ours/this':>13s}")
    for name, n, t, note in rows:
        if t is None:
            print(f"{name:29s} {n:8d} {'-':>9s} {'-':>10s} {'-':>9s} {'-':>9s} {'-':>13s}  {note}")
            continue
        wall, cpu = t
        ratio_w = (N / ours_wall) / (n / wall)
        ratio_c = (N / ours_cpu) / (n / cpu)
        print(
            f"{name:29s} {n:8d} {wall:9.4f} {n / wall:10.4g} {ratio_w:9.3g} {cpu:9.4f} "
            f"{ratio_c:13.3g}"
        )

    kkt = fcls_kkt_residual(Y, M, A)
    print(f"pixels with an active bound: {np.mean((scls(Y, M) < 0).any(axis=1)):.1%} (SCLS < 0)")
    print(
        f"KKT residual of ours (max over {N} px, float64 check): {kkt:.3g}; "
        f"negative entries: {int((A < 0).sum())}; max |1 - sum a|: "
        f"{np.abs(A.astype(np.float64).sum(axis=1) - 1).max():.2g}"
    )
    print(
        f"max |ours - scipy aug. nnls (delta=1e-3)| on {n_sc} px: "
        f"{np.abs(A[:n_sc] - A_sc).max():.3g}"
    )
    if A_ps is not None:
        print(f"max |ours - pysptools| on {n_ps} px: {np.abs(A[:n_ps] - A_ps).max():.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
