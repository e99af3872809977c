"""Cloud-Optimized GeoTIFF writer that streams dask arrays and writes north-up grids.

GDAL's COG driver can only copy an existing dataset, so a raster goes through three steps, all
next to the final file and all removed afterwards:

1. every dask chunk is written, as it is computed, into a tiled GTiff on the source grid
   (``*.native.tif``; reopened per window under a lock, so memory is bounded by the chunk
   size and the scheme also works with dask.distributed workers on a shared file system);
2. sources that are not north-up (rotated transform, e.g. AVIRIS-NG) or that only have RPCs
   (GF-5 L1) are warped by GDAL, block-wise, to a north-up grid (``*.warped.tif``): the same
   CRS and pixel size for rotated grids, the scene's UTM zone for RPCs;
3. ``rasterio.shutil.copy(..., driver="COG")`` writes the final layout: 512-pixel tiles, ZSTD
   with the floating-point predictor, AVERAGE overviews, statistics, explicit nodata.

Several rasters computed from one graph (abundance and RMSE) are streamed in one
``dask.array.store`` call (per band of chunk rows) so their shared blocks are computed once.

Memory: step 1 holds a few dask chunks (rasters with several chunk rows are stored one band of
chunk rows at a time, :func:`store_in_bands`, so halo graphs keep no more than that alive);
steps 2-3 run under a bounded GDAL block cache (:data:`GDAL_CACHE_MB`), but GDAL builds
overviews in 512-row strips, so their memory grows with the raster's width, not its area
(about +50 MiB for 3 x 4000 x 4000 float32, measured).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import shutil
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer
from rasterio.warp import reproject
from rasterio.warp import transform as warp_points
from rasterio.windows import Window

from hsu_geo.cube import cube_crs, cube_transform
from hsu_geo.errors import HsuGeoError, OutputError
from hsu_geo.write.atomic import atomic_path
from hsu_geo.write.glt import GltGrid, GltLookup

log = logging.getLogger(__name__)

BLOCK = 512
#: GDAL block cache while warping / copying (MB); bounds memory independently of scene size
GDAL_CACHE_MB = 256
#: GDAL warper working memory (MB)
WARP_MEM_MB = 128
COG_OPTIONS: dict[str, str] = {
    "BLOCKSIZE": str(BLOCK),
    "COMPRESS": "ZSTD",
    "PREDICTOR": "YES",  # floating-point predictor (3) for float32
    "OVERVIEWS": "AUTO",
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
    "STATISTICS": "YES",
}
#: the intermediate tiled GTiff is uncompressed: every window write happens under a lock, and
#: ZSTD there serialised the workers (2000 x 2000 scene, k = 8: 3.9 s of window writes with
#: ZSTD level 1, 0.15 s without). It costs (k + 1) x 4 bytes per pixel of temporary disk
#: space next to the outputs until the COG copy, which compresses.
_SCRATCH_OPTIONS: dict[str, Any] = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": BLOCK,
    "blockysize": BLOCK,
    "compress": "NONE",
    "bigtiff": "IF_SAFER",
}


@dataclass(frozen=True)
class SourceGrid:
    """Georeferencing of the arrays to write.

    ``transform`` maps (col, row) to CRS coordinates and may be rotated; ``rpcs`` replaces
    crs/transform for sensor-geometry products (then ``rpc_options`` such as ``RPC_DEM`` go to
    GDAL's RPC transformer; without ``RPC_HEIGHT``/``RPC_DEM`` the RPC mean height is used);
    ``glt`` does so for products with a geometry lookup table (EMIT).
    """

    crs: CRS | None = None
    transform: Affine | None = None
    rpcs: RPC | None = None
    rpc_options: Mapping[str, str] = field(default_factory=dict)
    glt: GltGrid | None = None

    @property
    def north_up(self) -> bool:
        """True when pixels can be written as they are (no rotation, rows go south, no RPC
        or GLT)."""
        if self.rpcs is not None or self.glt is not None:
            return False
        t = self.transform
        return t is None or (t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0)

    def transformer_options(self) -> dict[str, str]:
        """GDAL RPC transformer options, defaulting the height to the RPC height offset."""
        opts = {str(k): str(v) for k, v in self.rpc_options.items()}
        if self.rpcs is not None and "RPC_HEIGHT" not in opts and "RPC_DEM" not in opts:
            opts["RPC_HEIGHT"] = repr(float(self.rpcs.height_off))
        return opts


@dataclass(frozen=True)
class TargetGrid:
    """A north-up output grid: CRS, transform (pixel corner), size in pixels."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int


@dataclass(frozen=True)
class RasterSpec:
    """One raster to write: lazy data ``(bands, y, x)`` and what QGIS should show for it."""

    data: da.Array
    band_names: Sequence[str]
    band_tags: Sequence[Mapping[str, Any]] = ()
    units: str | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    nodata: float = math.nan


def as_rpc(rpcs: RPC | Mapping[str, Any] | None) -> RPC | None:
    """Accept an :class:`~rasterio.rpc.RPC`, its ``to_dict()`` form or GDAL's string dict."""
    if rpcs is None or isinstance(rpcs, RPC):
        return rpcs
    d = dict(rpcs)
    if any(k.isupper() for k in d):  # GDAL metadata-domain form, e.g. from src.tags(ns="RPC")
        return RPC.from_gdal(d)
    return RPC(**d)


def source_grid(obj: xr.DataArray | xr.Dataset, *,
                rpc_options: Mapping[str, str] | None = None) -> SourceGrid:
    """Georeferencing of a cube/result object (rioxarray CRS + GeoTransform, or attrs rpcs)."""
    arr = obj if isinstance(obj, xr.DataArray) else next(iter(obj.data_vars.values()))
    opts = dict(rpc_options or {})
    glt = GltGrid.from_attrs(obj.attrs.get("glt"))
    if glt is not None:
        return SourceGrid(glt=glt, rpc_options=opts)
    crs = cube_crs(arr)
    rpcs = as_rpc(obj.attrs.get("rpcs"))
    if rpcs is not None and crs is None:
        return SourceGrid(rpcs=rpcs, rpc_options=opts)
    transform = cube_transform(arr)
    if transform is None and "x" in arr.coords and "y" in arr.coords and arr["x"].ndim == 1:
        transform = arr.rio.transform()
    return SourceGrid(crs=crs, transform=transform, rpc_options=opts)


def north_up_grid(grid: SourceGrid, height: int, width: int) -> TargetGrid:
    """Smallest north-up grid covering a (possibly rotated) source grid, same pixel size."""
    t = grid.transform
    if t is None:
        raise HsuGeoError("internal error: north_up_grid needs an affine transform")
    if grid.north_up:
        return TargetGrid(grid.crs, t, width, height)
    xs, ys = zip(*(t @ (c, r) for c in (0, width) for r in (0, height)), strict=True)
    xres, yres = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    left, top = min(xs), max(ys)
    w = max(1, math.ceil((max(xs) - left) / xres - 1e-6))
    h = max(1, math.ceil((top - min(ys)) / yres - 1e-6))
    return TargetGrid(grid.crs, Affine(xres, 0.0, left, 0.0, -yres, top), w, h)


def utm_crs(lon: float, lat: float) -> CRS:
    """WGS 84 / UTM zone of a point (EPSG 326zz north, 327zz south)."""
    zone = min(60, max(1, math.floor((lon + 180.0) / 6.0) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def rpc_utm_grid(grid: SourceGrid, height: int, width: int, samples: int = 21) -> TargetGrid:
    """North-up UTM grid covering an RPC scene; pixel size from the footprint, in whole metres.

    The image outline (``samples`` points per edge) is projected with the RPCs, the UTM zone is
    taken from the scene centre, and the pixel size is the mean ground length of the edges
    divided by their pixel counts, rounded to metres; the extent is snapped to that size.
    """
    if grid.rpcs is None:
        raise HsuGeoError("internal error: rpc_utm_grid needs RPCs")
    opts = grid.transformer_options()
    t = np.linspace(0.0, 1.0, samples)
    edges = {
        "top": (np.zeros_like(t), t * width),
        "bottom": (np.full_like(t, height), t * width),
        "left": (t * height, np.zeros_like(t)),
        "right": (t * height, np.full_like(t, width)),
    }
    with RPCTransformer(grid.rpcs, **opts) as tr:
        lonlat = {k: tr.xy(rows, cols, offset="ul") for k, (rows, cols) in edges.items()}
        clon, clat = tr.xy([height / 2], [width / 2], offset="ul")
    crs = utm_crs(float(np.ravel(clon)[0]), float(np.ravel(clat)[0]))
    xy = {k: np.array(warp_points("EPSG:4326", crs, np.ravel(lo), np.ravel(la)))
          for k, (lo, la) in lonlat.items()}
    if not all(np.all(np.isfinite(v)) for v in xy.values()):
        raise OutputError("the scene's RPCs do not project to the ground; check the product's RPC")

    def length(k: str) -> float:
        return float(np.hypot(*np.diff(xy[k], axis=1)).sum())

    res_x = (length("top") + length("bottom")) / (2 * width)
    res_y = (length("left") + length("right")) / (2 * height)
    res = max(1.0, float(round((res_x + res_y) / 2)))
    allx = np.concatenate([v[0] for v in xy.values()])
    ally = np.concatenate([v[1] for v in xy.values()])
    left, right = math.floor(allx.min() / res) * res, math.ceil(allx.max() / res) * res
    bottom, top = math.floor(ally.min() / res) * res, math.ceil(ally.max() / res) * res
    w, h = round((right - left) / res), round((top - bottom) / res)
    return TargetGrid(crs, Affine(res, 0.0, left, 0.0, -res, top), int(w), int(h))


def target_grid(grid: SourceGrid, height: int, width: int) -> TargetGrid:
    """The north-up grid the COG will have for data of ``height`` x ``width`` on ``grid``."""
    if grid.glt is not None:
        rows, cols = grid.glt.shape
        return TargetGrid(grid.glt.crs, grid.glt.transform, cols, rows)
    if grid.rpcs is not None:
        return rpc_utm_grid(grid, height, width)
    if grid.transform is None:
        return TargetGrid(grid.crs, Affine.identity(), width, height)
    return north_up_grid(grid, height, width)


class WindowWriter:
    """``dask.array.store`` target that writes each stored region as a GeoTIFF window.

    The file is reopened (``r+``) for every region and closed again, under ``lock``; this
    flushes each window to disk at once and needs no shared handle, so it is safe with
    threads and with dask.distributed (pass a ``distributed.Lock``).
    """

    def __init__(self, path: Path, shape: tuple[int, int, int], lock: Any) -> None:
        self.path = Path(path)
        self.shape = shape
        self.dtype = np.dtype("float32")
        self.ndim = 3
        self.lock = lock

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        bands, rows, cols = (k.indices(n) for k, n in zip(key, self.shape, strict=True))
        indexes = list(range(bands[0] + 1, bands[1] + 1))
        window = Window.from_slices((rows[0], rows[1]), (cols[0], cols[1]))
        with self.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(self.path, "r+") as dst:
                dst.write(np.asarray(value, dtype="float32"), indexes=indexes, window=window)


def _write_lock() -> Any:
    """A lock that works for the active dask scheduler (distributed client or threads)."""
    try:
        from distributed import Lock, default_client

        default_client()
    except (ImportError, ValueError):
        return threading.Lock()
    return Lock("hsu-geo-write")


def _as_bands(data: da.Array | np.ndarray) -> da.Array:
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=BLOCK)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise HsuGeoError(f"raster data must be (bands, y, x) or (y, x), got shape {arr.shape}")
    return arr.astype("float32")


def _set_metadata(dst: Any, spec: RasterSpec) -> None:
    dst.update_tags(**{k: _tag(v) for k, v in spec.tags.items()})
    for i, name in enumerate(spec.band_names, start=1):
        dst.set_band_description(i, str(name))
        if spec.units:
            dst.set_band_unit(i, spec.units)
    for i, btags in enumerate(spec.band_tags, start=1):
        dst.update_tags(i, **{k: _tag(v) for k, v in btags.items()})


def _tag(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _scratch(path: Path, kind: str) -> Path:
    """Intermediate file next to ``path`` (keeps its transaction token in the name)."""
    return path.with_name(f"{path.stem}.{kind}.tif")


@contextlib.contextmanager
def _quiet_gdal() -> Iterator[None]:
    # rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64 as bytes, not MB
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _create_native(path: Path, spec: RasterSpec, arr: da.Array, grid: SourceGrid) -> None:
    count, height, width = arr.shape
    profile: dict[str, Any] = dict(_SCRATCH_OPTIONS, width=width, height=height, count=count,
                                   dtype="float32", nodata=spec.nodata)
    if grid.crs is not None:
        profile["crs"] = grid.crs
    if grid.transform is not None and grid.rpcs is None:
        profile["transform"] = grid.transform
    with rasterio.open(path, "w", **profile) as dst:
        if grid.rpcs is not None:
            dst.rpcs = grid.rpcs
        _set_metadata(dst, spec)


def _target_profile(count: int, spec: RasterSpec, target: TargetGrid) -> dict[str, Any]:
    """Scratch GTiff profile of ``count`` float32 bands on ``target`` (warp and GLT output)."""
    return dict(_SCRATCH_OPTIONS, width=target.width, height=target.height, count=count,
                dtype="float32", nodata=spec.nodata, crs=target.crs, transform=target.transform)


def _warp(native: Path, warped: Path, spec: RasterSpec, grid: SourceGrid, target: TargetGrid,
          resampling: Resampling) -> None:
    """GDAL-warp ``native`` onto ``target`` block by block (memory set by WARP_MEM_MB)."""
    with rasterio.open(native) as src:
        profile = _target_profile(src.count, spec, target)
        with rasterio.open(warped, "w", **profile) as dst:
            _set_metadata(dst, spec)
            idx = list(range(1, src.count + 1))
            # the target keeps the source pixel size: without XSCALE/YSCALE GDAL estimates a
            # scale < 1 for rotated grids and widens (smooths) the bilinear kernel
            kwargs: dict[str, Any] = {"XSCALE": "1", "YSCALE": "1"}
            if grid.rpcs is not None:
                kwargs.update(rpcs=grid.rpcs, src_crs="EPSG:4326", **grid.transformer_options())
            reproject(rasterio.band(src, idx), rasterio.band(dst, idx),
                      src_nodata=spec.nodata, dst_nodata=spec.nodata, resampling=resampling,
                      warp_mem_limit=WARP_MEM_MB, num_threads=min(4, os.cpu_count() or 1),
                      **kwargs)


def _glt_ortho(native: Path, ortho: Path, spec: RasterSpec, target: TargetGrid,
               lookup: GltLookup) -> None:
    """Copy ``native`` (sensor geometry) onto the GLT grid ``target``, one band at a time
    (memory: one sensor band + one ortho band + the lookup)."""
    with rasterio.open(native) as src:
        profile = _target_profile(src.count, spec, target)
        with rasterio.open(ortho, "w", **profile) as dst:
            _set_metadata(dst, spec)
            for i in range(1, src.count + 1):
                dst.write(lookup.apply(src.read(i), spec.nodata), i)


#: chunk rows stored per :func:`dask.array.store` call for halo (``map_overlap``) graphs with
#: more chunk rows than this. CNNAEU, 2000 x 2000 x 300, chunk 256, 2 threads, written as COGs:
#: one store 4.58 GiB peak RSS, bands of 2 rows 2.56 GiB, of 1 row 2.20 GiB (about 20 % slower
#: than one store: the input chunks next to a band edge are read again for the next band)
STORE_BAND_ROWS = 1


def _has_halo(arr: da.Array) -> bool:
    """True when ``arr``'s graph contains a ``map_overlap`` (dask ``ArrayOverlapLayer``)."""
    return any(type(layer).__name__ == "ArrayOverlapLayer" or str(name).startswith("overlap-")
               for name, layer in arr.dask.layers.items())


def store_in_bands(arrays: Sequence[da.Array], targets: Sequence[Any],
                   band_rows: int | None = None) -> None:
    """Store ``(bands, y, x)`` arrays into ``targets`` in successive bands of ``band_rows``
    chunk rows when their graphs have halos (one pass when they have none, e.g. per-pixel
    models, or no more chunk rows than ``band_rows``).

    A single ``store`` of an overlapping (``map_overlap``) graph lets dask keep neighbouring
    input chunks alive until their halos are used, so peak memory grew with the scene's area;
    one store per band of chunk rows bounds it by the scene's width. All arrays go into each
    call together, so blocks shared by several arrays (abundances and RMSE from one stacked
    kernel) are still computed once; only the input chunks of a halo next to a band edge are
    read twice. The band edges are the first array's row chunks.
    """
    band_rows = STORE_BAND_ROWS if band_rows is None else max(1, band_rows)
    rows = arrays[0].chunks[1]
    if len(rows) <= band_rows or not any(_has_halo(a) for a in arrays):
        da.store(arrays, targets, lock=False)
        return
    edges = np.cumsum((0, *rows))[::band_rows].tolist()
    if edges[-1] != arrays[0].shape[1]:
        edges.append(arrays[0].shape[1])
    for r0, r1 in itertools.pairwise(edges):
        region = (slice(None), slice(r0, r1), slice(None))
        da.store([a[:, r0:r1, :] for a in arrays], targets, regions=[region] * len(arrays),
                 lock=False)


def write_cogs(items: Sequence[tuple[RasterSpec, Path]], grid: SourceGrid, *,
               progress: bool = False,
               resampling: Resampling = Resampling.bilinear,
               creation_options: Mapping[str, str] | None = None) -> TargetGrid:
    """Write several rasters on one grid as COGs, computing their dask graphs in one pass.

    ``items`` pairs each spec with the path to write (written in place: wrap the call in an
    :class:`~hsu_geo.write.atomic.OutputTransaction` for atomic names). All arrays must share
    the same (y, x) shape. ``resampling`` is used only when warping (bilinear suits fractions).
    ``creation_options`` (checked by :func:`hsu_geo.write.creation.check_creation_options`)
    override :data:`COG_OPTIONS`.
    Returns the grid of the written files.
    """
    arrays = [_as_bands(spec.data) for spec, _ in items]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise HsuGeoError(f"rasters written together must share one (y, x) shape, got {shapes}")
    height, width = shapes.pop()
    for (spec, _), arr in zip(items, arrays, strict=True):
        if len(spec.band_names) != arr.shape[0]:
            raise HsuGeoError(f"{len(spec.band_names)} band names for {arr.shape[0]} bands")
    target = target_grid(grid, height, width)
    lookup = grid.glt.lookup(height, width) if grid.glt is not None else None
    natives = [_scratch(Path(path), "native") for _, path in items]
    warped = [_scratch(Path(path), "warped") for _, path in items]
    try:
        with _quiet_gdal():
            for (spec, _), arr, native in zip(items, arrays, natives, strict=True):
                _create_native(native, spec, arr, grid)
            lock = _write_lock()
            targets = [WindowWriter(n, a.shape, lock) for n, a in zip(natives, arrays, strict=True)]
            with _progress(progress):
                store_in_bands(arrays, targets)
            for (spec, path), native, tmp in zip(items, natives, warped, strict=True):
                source = native
                if lookup is not None:
                    log.info("orthorectifying %s through the GLT", Path(path).name)
                    _glt_ortho(native, tmp, spec, target, lookup)
                    native.unlink()
                    source = tmp
                elif not grid.north_up:
                    log.info("warping %s to a north-up grid (%s)", Path(path).name, target.crs)
                    _warp(native, tmp, spec, grid, target, resampling)
                    native.unlink()
                    source = tmp
                rasterio.shutil.copy(source, path, driver="COG",
                                     **{**COG_OPTIONS, **(creation_options or {})})
    except Exception as exc:
        full = _disk_full(exc, Path(items[0][1]).parent) if items else None
        if full is None:
            raise
        raise full from exc
    finally:
        for scratch in (*natives, *warped):
            for f in (scratch, scratch.with_name(scratch.name + ".aux.xml")):
                with contextlib.suppress(OSError):
                    f.unlink()
    return target


#: when GDAL fails to write and less than this is free, the disk counts as full: GDAL reports
#: only "Write failed" / "Write error at scanline", and a failed tile or overview write can
#: leave several MiB free (512 x 512 x bands x 4 bytes per tile; measured on a full tmpfs)
FULL_DISK_BYTES = 256 << 20


def _disk_full(exc: BaseException, folder: Path) -> OSError | None:
    """An ENOSPC :class:`OSError` for a failed write into ``folder`` when its file system is
    (nearly) full, measured before the scratch files are deleted; None otherwise."""
    if isinstance(exc, HsuGeoError) or "read failed" in str(exc).lower():
        return None  # our own errors, and failures reading the input scene
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free >= FULL_DISK_BYTES:
        return None
    return OSError(errno.ENOSPC, f"No space left on device ({free / 2**20:.1f} MiB free)",
                   str(folder))


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[None]:
    """A tqdm bar of the dask tasks on stderr (:func:`hsu_geo.console.dask_bar`)."""
    from hsu_geo.console import dask_bar

    with dask_bar("unmixing and writing", enabled=enabled):
        yield


def write_cog(
    data: xr.DataArray | da.Array | np.ndarray,
    path: str | Path,
    *,
    band_names: Sequence[str] | None = None,
    crs: CRS | str | None = None,
    transform: Affine | None = None,
    rpcs: RPC | Mapping[str, Any] | None = None,
    rpc_options: Mapping[str, str] | None = None,
    nodata: float = math.nan,
    units: str | None = None,
    tags: Mapping[str, Any] | None = None,
    band_tags: Sequence[Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    resampling: Resampling = Resampling.bilinear,
) -> Path:
    """Write ``data`` (bands, y, x) or (y, x), float32, as one COG at ``path``, atomically.

    Georeferencing comes from the arguments, else from ``data`` when it is a DataArray
    (rioxarray CRS + GeoTransform, or ``attrs["rpcs"]``). Rotated grids are written north-up,
    RPC grids orthorectified to UTM. Band descriptions default to the ``band``/first-dim
    coordinate of a DataArray, else ``band_1..``. Refuses an existing file unless ``overwrite``.
    """
    path = Path(path)
    grid = SourceGrid()
    if isinstance(data, xr.DataArray):
        grid = source_grid(data, rpc_options=rpc_options)
        if band_names is None and data.ndim == 3:
            band_names = [str(v) for v in data[data.dims[0]].values]
        data = data.data
    arr = _as_bands(data)
    if crs is not None or transform is not None or rpcs is not None:
        grid = SourceGrid(crs=CRS.from_user_input(crs) if crs is not None else None,
                          transform=transform, rpcs=as_rpc(rpcs),
                          rpc_options=dict(rpc_options or {}))
    names = list(band_names) if band_names is not None else [
        f"band_{i}" for i in range(1, arr.shape[0] + 1)]
    spec = RasterSpec(arr, names, list(band_tags or ()), units, dict(tags or {}), nodata)
    with atomic_path(path, overwrite=overwrite) as tmp:
        write_cogs([(spec, tmp)], grid, progress=progress, resampling=resampling)
    return path
