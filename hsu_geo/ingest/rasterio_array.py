"""Lazy, band-complete dask arrays over any raster GDAL can read.

Each dask chunk is one rasterio windowed read of all requested bands, so a chunk holds whole
spectra. The reader is picklable (it carries only the path), keeps one open dataset per thread
and process, and opens nothing until a chunk is computed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
from dask.base import tokenize
from rasterio.windows import Window

_local = threading.local()


def _dataset(path: str) -> rasterio.io.DatasetReader:
    cache = getattr(_local, "datasets", None)
    if cache is None:
        cache = _local.datasets = {}
    ds = cache.get(path)
    if ds is None or ds.closed:
        ds = cache[path] = rasterio.open(path)
    return ds


class WindowReader:
    """Array-like ``(bands, rows, cols)`` view of a raster file, read window by window.

    Args:
        path: raster path (any GDAL path, including ``/vsitar/``).
        bands: 1-based band indexes to read, in order (default: all).
        shape: ``(rows, cols)`` of the raster; dtype its data type (both from the header).
    """

    def __init__(self, path: str, bands: Sequence[int], shape: tuple[int, int], dtype: str):
        self.path = path
        self.bands = [int(b) for b in bands]
        self.shape = (len(self.bands), *shape)
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        bsl, ysl, xsl = key
        rows = range(self.shape[1])[ysl]
        cols = range(self.shape[2])[xsl]
        idx = self.bands[bsl]
        if len(rows) == 0 or len(cols) == 0 or not idx:
            return np.empty((len(idx), len(rows), len(cols)), self.dtype)
        window = Window(cols.start, rows.start, len(cols), len(rows))
        return _dataset(self.path).read(idx, window=window)


def lazy_raster(
    path: str | os.PathLike[str],
    chunk_size: int,
    bands: Sequence[int] | None = None,
) -> da.Array:
    """A dask array ``(bands, rows, cols)`` in the file's data type, chunked band-complete.

    Reads only the header now. ``chunk_size`` is rounded to a multiple of the file's block
    height/width when the file is tiled, so chunks never split blocks.
    """
    path = str(path)
    with rasterio.open(path) as src:
        count, rows, cols = src.count, src.height, src.width
        dtype = src.dtypes[0]
        block_h, block_w = src.block_shapes[0]
    band_idx = list(range(1, count + 1)) if bands is None else [int(b) for b in bands]
    cy = _align(chunk_size, block_h, rows)
    cx = _align(chunk_size, block_w, cols)
    reader = WindowReader(path, band_idx, (rows, cols), dtype)
    stat = Path(path).stat() if Path(path).exists() else None
    name = "read-" + tokenize(path, stat.st_mtime_ns if stat else 0, band_idx, cy, cx)
    return da.from_array(
        reader, chunks=(-1, cy, cx), name=name, lock=False, asarray=True,
        meta=np.empty((0, 0, 0), dtype),
    )


def _align(chunk: int, block: int, full: int) -> int:
    """Chunk edge rounded to whole blocks (when blocks are small tiles), capped at ``full``."""
    if 1 < block < chunk and chunk % block:
        chunk = max(block, (chunk // block) * block)
    return max(1, min(chunk, full))
