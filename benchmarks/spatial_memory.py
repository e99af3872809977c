"""Spatial engine memory and speed: inference of a spatial model (``--model``, default CNNAEU;
``hsu_geo.unmix.spatial``) on lazily generated ``L x S x S`` scenes, peak RSS per scene size.

Each size runs in a fresh child process: the model's network with its seeded initial weights
(the cost of a forward pass does not depend on the weight values), a dask cube of uniform random
reflectances generated chunk by chunk (never held whole), and the ``(k + 1, S, S)`` output
reduced per chunk (a sum), so the measured memory is the engine's: chunks in flight x the
per-chunk working set of :func:`hsu_geo.unmix.spatial.chunk_memory_bytes`, plus the input
chunk generator (float64 then float32). Prints px/s and peak RSS (ru_maxrss) per size.

    python -P benchmarks/spatial_memory.py --sizes 1000 2000 --bands 300 --chunk 256
    python -P benchmarks/spatial_memory.py --source envi ...   # through the ENVI reader
    python -P benchmarks/spatial_memory.py --sink cog ...      # abundance + RMSE COGs written
    python -P benchmarks/spatial_memory.py --model ssanu_net ...  # any registered spatial model

``--sink cog`` writes the abundance and RMSE rasters with :func:`hsu_geo.write.cog.write_cogs`
(as ``hsu-geo unmix`` does) into a temporary folder under ``--tmp`` instead of summing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def write_envi(path: str, size: int, bands: int) -> str:
    """A ``bands x size x size`` float32 BIL ENVI file of seeded random reflectances, written
    row by row (never held whole); returns the header path."""
    import numpy as np

    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for _ in range(size):
            f.write(rng.random((bands, size), dtype=np.float32).tobytes())
    wl = ", ".join(f"{400 + 2000 * i / (bands - 1):.2f}" for i in range(bands))
    hdr = path + ".hdr"
    with open(hdr, "w") as f:
        f.write(f"ENVI\nsamples = {size}\nlines = {size}\nbands = {bands}\nheader offset = 0\n"
                f"file type = ENVI Standard\ndata type = 4\ninterleave = bil\nbyte order = 0\n"
                f"wavelength units = Nanometers\nwavelength = {{{wl}}}\n")
    return hdr


def child(size: int, bands: int, chunk: int, threads: int, source: str, sink: str = "sum",
          tmp: str = "/tmp", model_name: str = "cnnaeu") -> dict:
    import dask
    import dask.array as da
    import numpy as np
    import xarray as xr

    from hsu_geo.unmix import MODELS
    from hsu_geo.unmix.spatial import chunk_memory_bytes, spatial_stacked

    k = 3
    model = MODELS.get(model_name)()
    model.network = model.new_network(bands, k).eval()
    model.scale, model.n_bands, model.k = 1.0, bands, k
    model.fill_spectrum = np.full(bands, 0.5, np.float32)
    if source == "random":
        rs = da.random.RandomState(0)
        cube = rs.random_sample((bands, size, size), chunks=(bands, chunk, chunk)
                                ).astype("float32")
        arr = xr.DataArray(cube, dims=("band", "y", "x"))
    else:  # an ENVI file through the reader hsu-geo unmix uses
        from hsu_geo.ingest import open_scene

        arr = open_scene(source, chunks=chunk)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=threads):
        stacked = spatial_stacked(arr, model, k)
        if sink == "sum":
            total = stacked.sum(axis=(1, 2)).compute().values
        else:
            import tempfile

            import rasterio

            from hsu_geo.write.cog import RasterSpec, SourceGrid, write_cogs

            with tempfile.TemporaryDirectory(dir=tmp) as d:
                paths = [Path(d) / "abundance.tif", Path(d) / "rmse.tif"]
                specs = [RasterSpec(stacked.data[:k], [f"em{i}" for i in range(k)]),
                         RasterSpec(stacked.data[k:], ["rmse"])]
                write_cogs(list(zip(specs, paths, strict=True)), SourceGrid())
                with rasterio.open(paths[1]) as src:  # RMSE, from the smallest overview
                    total = src.read(1, out_shape=(16, 16))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert np.isfinite(total).all()
    return {"model": model_name, "source": "random" if source == "random" else "envi",
            "sink": sink, "size": size,
            "bands": bands, "chunk": chunk, "threads": threads,
            "seconds": round(seconds, 2), "px_per_s": round(size * size / seconds),
            "peak_rss_gib": round(peak, 3), "rss_before_gib": round(base, 3),
            "formula_per_chunk_gib": round(chunk_memory_bytes(
                chunk, bands, model.halo, k, hidden=model.hidden_width(bands, k))
                                           / 2**30, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000])
    ap.add_argument("--bands", type=int, default=300)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--source", choices=("random", "envi"), default="random",
                    help="dask random cube, or an ENVI file written to --tmp first")
    ap.add_argument("--sink", choices=("sum", "cog"), default="sum",
                    help="sum the outputs per chunk, or write them as COGs under --tmp")
    ap.add_argument("--tmp", default="/tmp", help="folder for the ENVI files")
    ap.add_argument("--model", default="cnnaeu", help="registered spatial model (default cnnaeu)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.sizes[0], args.bands, args.chunk, args.threads,
                               args.child, args.sink, args.tmp, args.model)))
        return
    rows = []
    for size in args.sizes:
        src = "random"
        if args.source == "envi":
            src = write_envi(str(Path(args.tmp) / f"spatial_mem_{size}.bil"), size, args.bands)
        out = subprocess.run([sys.executable, "-P", __file__, "--child", src, "--sizes", str(size),
                              "--bands", str(args.bands), "--chunk", str(args.chunk),
                              "--threads", str(args.threads), "--sink", args.sink,
                              "--tmp", args.tmp, "--model", args.model],
                             check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
        if args.source == "envi":
            for f in (src, src[:-4]):
                Path(f).unlink()
    if len(rows) >= 2:
        growth = rows[-1]["peak_rss_gib"] / rows[0]["peak_rss_gib"] - 1
        print(f"peak RSS growth {rows[0]['size']}^2 -> {rows[-1]['size']}^2: {growth:+.1%}")


if __name__ == "__main__":
    main()
