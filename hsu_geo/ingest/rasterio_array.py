"""Lazy, band-complete dask arrays over any raster GDAL can read.

Each dask chunk is one rasterio windowed read of all requested bands, so a chunk holds whole
spectra. The reader is picklable (it carries only the path), keeps one open dataset per thread
and process, and opens nothing until a chunk is computed.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import rasterio.env
from dask.base import tokenize
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from hsu_geo.ingest.calibration import Calibration, exact_in_float32

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
#: GTIFF_DIRECT_IO=YES: windowed reads of uncompressed GeoTIFFs go straight from the file into
#: our buffer, bypassing the block cache (GDAL ignores it for compressed files). Measured on the
#: 2000 x 2000 x 300 int16 pixel-interleaved benchmark scene, all 16 chunks into float32
#: pixel-major buffers, one thread: 2.4-3.3 s with it, 10.6-12.6 s without. A value set by the
#: user wins.
GDAL_READ_OPTIONS = {"GTIFF_DIRECT_IO": "YES"}


def _configure_gdal() -> None:
    """Set our GDAL read options once per thread, never overriding the user's.

    rasterio sets config options globally from the main thread but thread-locally from any
    other thread (dask workers), so each reading thread sets them for itself.
    """
    if getattr(_local, "configured", False):
        return
    if "GDAL_CACHEMAX" not in os.environ:
        rasterio.env.set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_MB * 2**20)
    for key, value in GDAL_READ_OPTIONS.items():
        if key not in os.environ and rasterio.env.get_gdal_config(key) is None:
            rasterio.env.set_gdal_config(key, value)
    _local.configured = True


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
    _configure_gdal()
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
        self.raw_dtype = np.dtype(dtype)
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
            out = self._read(b, window)
            out = out[:, _window_index(r, r0)][:, :, _window_index(c, c0)]
        squeeze = tuple(ax for ax, idx in enumerate((band_pos, rows, cols)) if np.ndim(idx) == 0)
        return out.squeeze(axis=squeeze) if squeeze else out

    def _read(self, band_pos: np.ndarray, window: Window) -> np.ndarray:
        """One windowed read of the bands at ``band_pos``: ``(bands, rows, cols)``.

        Pixel-interleaved files are read into pixel-major memory (a ``(rows, cols, bands)``
        buffer seen through a transposed view), which GDAL fills without de-interleaving and
        which is the layout the unmixing kernels want. When the raw type is exact in float32,
        GDAL converts while reading and calibration runs in place: one buffer, no raw copy.
        """
        bands = [self.bands[i] for i in band_pos]
        h, w = int(window.height), int(window.width)
        ds = _dataset(self.path)
        pixel_major = _is_pixel_interleaved(ds)
        cal = None if self.calibration is None else _subset_calibration(self.calibration,
                                                                         band_pos)
        read_dtype = (self.dtype if cal is None or exact_in_float32(self.raw_dtype)
                      else self.raw_dtype)
        if pixel_major:
            buf = np.empty((h, w, len(bands)), read_dtype)
            with _read_lock(self.path):
                _read_pixel_major(ds, bands, window, buf)
            view = buf.transpose(2, 0, 1)
        else:
            view = np.empty((len(bands), h, w), read_dtype)
            with _read_lock(self.path):
                ds.read(bands, window=window, out=view)
        if cal is None:
            return view
        pixels = view.transpose(1, 2, 0)
        out = pixels if read_dtype == np.float32 else np.empty(pixels.shape, "float32")
        cal.apply_pixels(pixels, out)
        return out.transpose(2, 0, 1)


#: rows per read when a band subset of a pixel-interleaved file is gathered
GATHER_ROWS = 32


def _read_pixel_major(ds: rasterio.io.DatasetReader, bands: list[int], window: Window,
                      out: np.ndarray) -> None:
    """Fill ``out (rows, cols, len(bands))`` with ``bands`` (1-based) of ``window``.

    GDAL's fast paths (and GTIFF_DIRECT_IO) need the buffer's pixel stride to equal the
    request's band count and a run of consecutive bands; a subset with gaps (bad bands
    dropped) through one call fell to a per-band path 20x slower. So a subset is read as the
    whole band span, ``GATHER_ROWS`` rows at a time into a small buffer, and its runs of
    consecutive bands are copied out.
    """
    lo, hi = min(bands), max(bands)
    if bands == list(range(lo, hi + 1)):
        ds.read(bands, window=window, out=out.transpose(2, 0, 1))
        return
    runs = _runs(np.asarray(bands) - lo)
    rows = min(GATHER_ROWS, out.shape[0])
    tmp = np.empty((rows, out.shape[1], hi - lo + 1), out.dtype)
    span = list(range(lo, hi + 1))
    for r0 in range(0, out.shape[0], rows):
        n = min(rows, out.shape[0] - r0)
        part = tmp[:n]
        ds.read(span, out=part.transpose(2, 0, 1),
                window=Window(window.col_off, window.row_off + r0, window.width, n))
        for src, dst in runs:
            out[r0:r0 + n, :, dst] = part[:, :, src]


def _runs(src: np.ndarray) -> list[tuple[slice, slice]]:
    """``[(source slice, destination slice)]`` covering ``src`` (indexes into a span) with
    runs that are consecutive in both."""
    breaks = np.flatnonzero(np.diff(src) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [src.size]])
    return [(slice(int(src[a]), int(src[a]) + int(b - a)), slice(int(a), int(b)))
            for a, b in zip(starts, stops, strict=True)]


def _is_pixel_interleaved(ds: rasterio.io.DatasetReader) -> bool:
    interleave = ds.interleaving
    return interleave is not None and interleave.value == "PIXEL" and ds.count > 1


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
    return _as_dask(reader, cy, cx)


#: dask array name -> the reader behind it, for :func:`take_bands` (the graph holds the reader,
#: so an entry lives exactly as long as some array that reads through it)
_READERS: weakref.WeakValueDictionary[str, WindowReader] = weakref.WeakValueDictionary()


def _as_dask(reader: WindowReader, cy: int, cx: int) -> da.Array:
    stat = Path(reader.path).stat() if Path(reader.path).exists() else None
    name = "read-" + tokenize(reader.path, stat.st_mtime_ns if stat else 0, reader.bands, cy,
                              cx, reader.calibration)
    arr = da.from_array(
        reader, chunks=(-1, cy, cx), name=name, lock=False, asarray=True,
        meta=np.empty((0, 0, 0), reader.dtype),
    )
    _READERS[arr.name] = reader
    return arr


def take_bands(arr: da.Array, index: Sequence[int] | np.ndarray) -> da.Array:
    """``arr[index]`` along the band axis, with the selection pushed into the file read.

    For an array straight from :func:`lazy_raster`, a new array reads only the chosen bands
    (bad bands are never read, and chunks stay pixel-major); any other array is indexed by
    dask. ``index``: 0-based band positions, any order.
    """
    index = np.asarray(index, dtype=int)
    r = _READERS.get(arr.name)
    if r is None or len(arr.chunks[0]) != 1:
        return arr[index]
    cal = None if r.calibration is None else _subset_calibration(r.calibration, index)
    sub = WindowReader(r.path, [r.bands[i] for i in index], r.shape[1:], r.raw_dtype.name,
                       cal)
    return _as_dask(sub, arr.chunks[1][0], arr.chunks[2][0])


def scale_values(arr: da.Array, factor: float) -> da.Array:
    """``arr * factor`` as float32; for an array straight from :func:`lazy_raster` the factor
    is folded into the read's calibration (so :func:`take_bands` still reaches the file)."""
    r = _READERS.get(arr.name)
    f = np.float32(factor)
    if r is None or len(arr.chunks[0]) != 1:
        return (arr * f).astype("float32")
    n = len(r.bands)
    cal = r.calibration or Calibration()
    gain = np.full(n, f, "float32") if cal.gain is None else (cal.gain * f).astype("float32")
    offset = None if cal.offset is None else (cal.offset * f).astype("float32")
    scaled = Calibration(gain, offset, cal.nodata, cal.zero_is_nodata)
    sub = WindowReader(r.path, r.bands, r.shape[1:], r.raw_dtype.name, scaled)
    return _as_dask(sub, arr.chunks[1][0], arr.chunks[2][0])


def _align(chunk: int, block: int, full: int) -> int:
    """Chunk edge rounded to whole blocks (when blocks are small tiles), capped at ``full``."""
    if 1 < block < chunk and chunk % block:
        chunk = max(block, (chunk // block) * block)
    return max(1, min(chunk, full))
