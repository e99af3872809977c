"""Lazy, band-complete dask arrays over any raster GDAL can read.

Each dask chunk is one rasterio windowed read of all requested bands, so a chunk holds whole
spectra. The reader is picklable (it carries only the path), keeps one open dataset per thread
and process, and opens nothing until a chunk is computed.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import rasterio.env
from dask.base import tokenize
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from hsu_geo.ingest.calibration import Calibration

_local = threading.local()


def open_quietly(path: str) -> rasterio.io.DatasetReader:
    """``rasterio.open`` without the NotGeoreferencedWarning for rasters that have no map
    (ENVI crops without map info, IGM-geolocated products): the cube simply has no CRS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


#: GDAL block cache for our reads (MB). Chunks are read once, so a large cache only holds idle
#: memory (GDAL's default is 5 % of RAM); a tile-sized cache keeps de-interleaving fast (2000 x
#: 2000 x 300 int16 scene: 9.3 s with 512 MB, 11.8 s with none). A GDAL_CACHEMAX set by the
#: user wins. rasterio hands integers to GDALSetCacheMax64 as BYTES, hence the conversion.
GDAL_CACHE_MB = 256
_cache_set = False


def _limit_gdal_cache() -> None:
    global _cache_set
    if not _cache_set and "GDAL_CACHEMAX" not in os.environ:
        rasterio.env.set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB * 2**20)
    _cache_set = True


_read_locks: dict[str, threading.Lock] = {}
_read_locks_guard = threading.Lock()


def _read_lock(path: str) -> threading.Lock:
    """One lock per file: GDAL reads of one file are serialised within a process.

    Concurrent windowed reads of a pixel-interleaved file contend on GDAL's block-cache mutex
    and were slower than sequential ones (2000 x 2000 x 300 int16: 10.7 s with 2 threads
    reading concurrently, 7.6 s with reads serialised while calibration and unmixing of
    other chunks run in parallel).
    """
    with _read_locks_guard:
        lock = _read_locks.get(path)
        if lock is None:
            lock = _read_locks[path] = threading.Lock()
        return lock


def _dataset(path: str) -> rasterio.io.DatasetReader:
    _limit_gdal_cache()
    cache = getattr(_local, "datasets", None)
    if cache is None:
        cache = _local.datasets = {}
    ds = cache.get(path)
    if ds is None or ds.closed:
        ds = cache[path] = open_quietly(path)
    return ds


class WindowReader:
    """Array-like ``(bands, rows, cols)`` view of a raster file, read window by window.

    Args:
        path: raster path (any GDAL path, including ``/vsitar/``).
        bands: 1-based band indexes to read, in order (default: all).
        shape: ``(rows, cols)`` of the raster; dtype its data type (both from the header).
        calibration: applied to each window read (float32 out); None keeps raw values.

    Calibrating inside the read (not in a later ``map_blocks``) lets dask push slices of the
    array down into the read, so sampling a few small windows reads only those windows.
    """

    def __init__(self, path: str, bands: Sequence[int], shape: tuple[int, int], dtype: str,
                 calibration: Calibration | None = None):
        self.path = path
        self.bands = [int(b) for b in bands]
        self.shape = (len(self.bands), *shape)
        self.calibration = calibration
        self.dtype = np.dtype("float32" if calibration is not None else dtype)
        self.ndim = 3

    def __getitem__(self, key: tuple) -> np.ndarray:
        """Read ``key`` (ints, slices or index arrays per axis) through one windowed read."""
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        band_pos = np.arange(self.shape[0])[key[0]]
        rows = np.arange(self.shape[1])[key[1]]
        cols = np.arange(self.shape[2])[key[2]]
        b = np.atleast_1d(band_pos)
        r = np.atleast_1d(rows)
        c = np.atleast_1d(cols)
        if b.size == 0 or r.size == 0 or c.size == 0:
            out = np.empty((b.size, r.size, c.size), self.dtype)
        else:
            r0, c0 = int(r.min()), int(c.min())
            window = Window(c0, r0, int(c.max()) - c0 + 1, int(r.max()) - r0 + 1)
            with _read_lock(self.path):
                raw = _dataset(self.path).read([self.bands[i] for i in b], window=window)
            raw = raw[:, _window_index(r, r0)][:, :, _window_index(c, c0)]
            out = raw if self.calibration is None else \
                _subset_calibration(self.calibration, b)(raw)
        squeeze = tuple(ax for ax, idx in enumerate((band_pos, rows, cols)) if np.ndim(idx) == 0)
        return out.squeeze(axis=squeeze) if squeeze else out


def _window_index(idx: np.ndarray, start: int) -> slice | np.ndarray:
    """Index into the read window: a slice (a view, no copy) for a contiguous ascending run,
    which is what every dask chunk asks for; the index array otherwise (steps, reversals)."""
    if idx.size and int(idx[-1]) - int(idx[0]) + 1 == idx.size and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]) - start, int(idx[-1]) - start + 1)
    return idx - start


def _subset_calibration(cal: Calibration, idx: np.ndarray) -> Calibration:
    if cal.gain is not None and idx.size == cal.gain.size and np.all(idx == np.arange(idx.size)):
        return cal
    return Calibration(
        None if cal.gain is None else cal.gain[idx],
        None if cal.offset is None else cal.offset[idx],
        cal.nodata, cal.zero_is_nodata,
    )


def lazy_raster(
    path: str | os.PathLike[str],
    chunk_size: int,
    bands: Sequence[int] | None = None,
    calibration: Calibration | None = None,
) -> da.Array:
    """A dask array ``(bands, rows, cols)``, chunked band-complete.

    Values are the file's data type, or float32 when ``calibration`` is given. Reads only
    the header now. ``chunk_size`` is rounded to a multiple of the file's block
    height/width when the file is tiled, so chunks never split blocks.
    """
    path = str(path)
    with open_quietly(path) as src:
        count, rows, cols = src.count, src.height, src.width
        dtype = src.dtypes[0]
        block_h, block_w = src.block_shapes[0]
        # strips span the full width; only tiles (blocks narrower than the raster) are aligned
        tiled = bool(src.profile.get("tiled")) or block_w < cols
    band_idx = list(range(1, count + 1)) if bands is None else [int(b) for b in bands]
    cy = _align(chunk_size, block_h if tiled else 1, rows)
    cx = _align(chunk_size, block_w if tiled else 1, cols)
    reader = WindowReader(path, band_idx, (rows, cols), dtype, calibration)
    stat = Path(path).stat() if Path(path).exists() else None
    name = "read-" + tokenize(path, stat.st_mtime_ns if stat else 0, band_idx, cy, cx,
                              calibration)
    return da.from_array(
        reader, chunks=(-1, cy, cx), name=name, lock=False, asarray=True,
        meta=np.empty((0, 0, 0), reader.dtype),
    )


def _align(chunk: int, block: int, full: int) -> int:
    """Chunk edge rounded to whole blocks (when blocks are small tiles), capped at ``full``."""
    if 1 < block < chunk and chunk % block:
        chunk = max(block, (chunk // block) * block)
    return max(1, min(chunk, full))
