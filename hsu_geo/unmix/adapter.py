"""Between cubes and models: block-wise application of a fitted model and re-wrapping.

Models see only ``(N, L)`` float32 arrays (pixel samples come from
:func:`hsu_geo.ingest.scan.scan_cube`); ``apply_unmixer`` maps a fitted model over
the cube with ``xr.apply_ufunc(..., dask="parallelized")`` and returns the result Dataset:
``abundance (endmember, y, x)``, ``reconstruction_rmse (y, x)``, ``endmember_spectrum
(endmember, band)`` and, for models that fit a per-pixel brightness (fcls with
``brightness=scaled``), ``brightness (y, x)``; for models with ``extra_outputs``
(``ppnmm``, ``gbm``) one ``(y, x)`` variable per extra output. Abundances, RMSE (of the
modelled spectra ``s * A @ M`` when there is a brightness ``s``, of the nonlinear model's
spectra for nonlinear models) and the extras come out of one kernel, so writing them reads
the scene once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from hsu_geo.cube import cube_crs, cube_transform
from hsu_geo.errors import InvalidSceneError
from hsu_geo.unmix.base import Unmixer

#: pixels per model call inside a chunk (bounds temporaries to ~batch x bands floats; small
#: enough that a batch and its reconstruction stay in cache-friendly sizes)
BATCH = 16384


def fits_brightness(unmixer: Unmixer) -> bool:
    """Whether ``unmixer`` returns a per-pixel brightness (``abundances_and_brightness``)."""
    return bool(getattr(unmixer, "fits_brightness", False))


def extra_outputs(unmixer: Unmixer) -> tuple[str, ...]:
    """Per-pixel outputs beyond abundances and RMSE: ``("brightness",)`` for fcls with a
    brightness, else the model's ``extra_outputs`` (nonlinear models: ``nonlinearity``,
    ``fit_quality``; they come from ``abundances_and_extras``)."""
    if fits_brightness(unmixer):
        return ("brightness",)
    return tuple(getattr(unmixer, "extra_outputs", ()))


def _neighbourhood_mean(arr: np.ndarray, window: int) -> np.ndarray:
    """``arr (h, w, L)`` averaged over ``window x window`` valid neighbours (NaN pixels are
    left out of the mean and stay NaN); edges use the pixels inside the chunk."""
    from scipy.ndimage import uniform_filter

    ok = np.isfinite(arr).all(axis=2)
    data = np.where(ok[:, :, None], arr, 0).astype("float32", copy=False)
    size = (window, window, 1)
    total = uniform_filter(data, size=size, mode="constant")
    count = uniform_filter(ok.astype("float32"), size=(window, window), mode="constant")
    out = total / np.maximum(count, 1e-6)[:, :, None]
    out[~ok] = np.nan
    return out


def _cube_mean_block(block: np.ndarray, window: int) -> np.ndarray:
    """:func:`_neighbourhood_mean` of a ``(L, h, w)`` block (the layout of the cube)."""
    return np.moveaxis(_neighbourhood_mean(np.moveaxis(block, 0, -1), window), -1, 0)


def neighbourhood_mean_cube(cube: xr.DataArray, window: int) -> xr.DataArray:
    """Lazy ``window x window`` mean of the valid neighbours of every pixel of ``cube (band,
    y, x)``, computed block by block with a halo of ``window // 2`` pixels
    (``dask.array.map_overlap``), so it does not depend on the chunking; at the scene edge the
    mean is over the neighbours inside the scene. NaN pixels stay NaN and are left out."""
    import dask.array as da

    d = window // 2
    data = cube.data if isinstance(cube.data, da.Array) else da.from_array(cube.values)
    data = data.rechunk({0: -1})
    smooth = da.map_overlap(_cube_mean_block, data, depth={0: 0, 1: d, 2: d},
                            boundary="none", trim=True, window=window, dtype=np.float32,
                            meta=np.empty((0, 0, 0), np.float32))
    return cube.copy(data=smooth.rechunk(cube.data.chunks) if isinstance(cube.data, da.Array)
                     else smooth)


def _unmix_extras_block(arr: np.ndarray, unmixer: Unmixer, k: int, n_extra: int,
                        fit_arr: np.ndarray | None = None) -> np.ndarray:
    """Kernel of models with ``extra_outputs``: ``(h, w, k + 1 + n_extra)`` = abundances,
    RMSE of the model's own modelled spectra against the data, then the extra outputs in
    ``extra_outputs`` order. With ``spatial_window`` the fit sees ``fit_arr (h, w, L)``, the
    neighbourhood mean of the scene (:func:`neighbourhood_mean_cube`; without it, of the chunk
    alone); the RMSE is still against each pixel's own spectrum."""
    h, w, L = arr.shape
    n_out = k + 1 + n_extra
    names = extra_outputs(unmixer)
    out = np.full((h, w, n_out), np.nan, dtype="float32")
    window = int(getattr(unmixer, "spatial_window", 0) or 0)
    if window <= 1:
        fit_arr = arr
    elif fit_arr is None:
        fit_arr = _neighbourhood_mean(arr, window)
    rows = max(1, BATCH // max(w, 1))
    for r0 in range(0, h, rows):
        Y = np.ascontiguousarray(arr[r0:r0 + rows].reshape(-1, L))
        Yf = np.ascontiguousarray(fit_arr[r0:r0 + rows].reshape(-1, L)) if window > 1 else Y
        res = out[r0:r0 + rows].reshape(-1, n_out)
        ok = np.isfinite(Y).all(axis=1)
        if not ok.any():
            continue
        A, extras, R = unmixer.abundances_and_extras(  # type: ignore[attr-defined]
            Yf[ok] if not ok.all() else Yf)
        D = np.subtract(R, Y[ok] if not ok.all() else Y, dtype="float32")
        block = np.empty((A.shape[0], n_out), dtype="float32")
        block[:, :k] = A
        block[:, k] = np.sqrt(np.einsum("ij,ij->i", D, D) / L)
        for i, name in enumerate(names):
            block[:, k + 1 + i] = extras[name]
        res[ok] = block
    return out


def _unmix_block(arr: np.ndarray, unmixer: Unmixer, k: int,
                 brightness: bool = False, n_extra: int = 0,
                 fit_arr: np.ndarray | None = None) -> np.ndarray:
    """Kernel: ``arr (h, w, L)`` -> ``(h, w, k + 1)`` = k abundances + reconstruction RMSE
    (``(h, w, k + 2)`` with the per-pixel brightness last when ``brightness``; models with
    ``n_extra`` extra outputs: :func:`_unmix_extras_block`).

    Works on slabs of whole rows, each made pixel-major ``(pixels, L)`` and contiguous (a
    view when the chunk is already pixel-major, as the window reader delivers it for
    pixel-interleaved files; one small copy otherwise).
    """
    if n_extra and not brightness:
        return _unmix_extras_block(arr, unmixer, k, n_extra, fit_arr)
    h, w, L = arr.shape
    n_out = k + 2 if brightness else k + 1
    out = np.full((h, w, n_out), np.nan, dtype="float32")
    rows = max(1, BATCH // max(w, 1))
    for r0 in range(0, h, rows):
        Y = np.ascontiguousarray(arr[r0:r0 + rows].reshape(-1, L))
        res = out[r0:r0 + rows].reshape(-1, n_out)  # a view of ``out``
        ok = np.isfinite(Y).all(axis=1)
        if not ok.any():
            continue
        if not ok.all():
            Y = Y[ok]
        s = None
        if brightness:
            A, s = unmixer.abundances_and_brightness(Y)  # type: ignore[attr-defined]
        else:
            A = unmixer.abundances(Y)
        R = unmixer.reconstruct(A)
        if s is not None:
            R = R * s[:, None]  # modelled spectra of the scaled fit
        R = np.subtract(R, Y, out=R if R.flags.writeable and R.dtype == Y.dtype else None)
        rmse = np.sqrt(np.einsum("ij,ij->i", R, R) / L)
        if ok.all():
            res[:, :k] = A
            res[:, k] = rmse
            if s is not None:
                res[:, k + 1] = s
        else:
            res[ok, :k] = A
            res[ok, k] = rmse
            if s is not None:
                res[ok, k + 1] = s
    return out


def _unmix_block_prior(arr: np.ndarray, fit_arr: np.ndarray, **kw: Any) -> np.ndarray:
    """:func:`_unmix_block` with the neighbourhood-mean pixels ``fit_arr`` the fit sees."""
    return _unmix_block(arr, fit_arr=fit_arr, **kw)


def apply_unmixer(
    cube: xr.DataArray,
    unmixer: Unmixer,
    names: Sequence[str],
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Lazy result Dataset of a fitted ``unmixer`` over ``cube`` (nodata stays NaN)."""
    M = unmixer.endmembers
    if M is None:
        raise InvalidSceneError("the model has no endmembers; fit it before applying")
    k = M.shape[0]
    if len(names) != k:
        raise InvalidSceneError(f"{len(names)} endmember names for {k} endmembers")
    scaled = fits_brightness(unmixer)
    extras = () if scaled else extra_outputs(unmixer)
    from hsu_geo.unmix.spatial import is_spatial, spatial_stacked  # halo blocks (spatial.py)

    window = int(getattr(unmixer, "spatial_window", 0) or 0)
    prior = window > 1 and bool(extras) and not is_spatial(unmixer)
    # a spatial prior fits each pixel to its neighbourhood mean, computed with a halo
    inputs = [cube, neighbourhood_mean_cube(cube, window)] if prior else [cube]
    stacked = spatial_stacked(cube, unmixer, k) if is_spatial(unmixer) else xr.apply_ufunc(
        _unmix_block_prior if prior else _unmix_block, *inputs,
        kwargs={"unmixer": unmixer, "k": k, "brightness": scaled, "n_extra": len(extras)},
        input_core_dims=[["band"]] * len(inputs), output_core_dims=[["output"]],
        dask="parallelized", output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {"output": k + 2 if scaled
                                             else k + 1 + len(extras)}},
    ).transpose("output", "y", "x")
    abundance = stacked.isel(output=slice(0, k)).rename(output="endmember")
    abundance = abundance.assign_coords(endmember=list(names))
    rmse = stacked.isel(output=k, drop=True)
    spectra = xr.DataArray(
        np.asarray(M, dtype="float32"), dims=("endmember", "band"),
        coords={"endmember": list(names), "band": cube["band"].values,
                "wavelength": ("band", cube["wavelength"].values),
                "fwhm": ("band", cube["fwhm"].values)},
    )
    variables = {"abundance": abundance, "reconstruction_rmse": rmse,
                 "endmember_spectrum": spectra}
    if scaled:
        variables["brightness"] = stacked.isel(output=k + 1, drop=True)
    for i, name in enumerate(extras):
        variables[name] = stacked.isel(output=k + 1 + i, drop=True)
    ds = xr.Dataset(variables)
    crs, transform = cube_crs(cube), cube_transform(cube)
    if crs is not None:
        ds = ds.rio.write_crs(crs)
    if transform is not None:
        ds = ds.rio.write_transform(transform)
    ds.attrs = {k_: v for k_, v in cube.attrs.items()
                if k_ in ("sensor", "product_id", "rpcs", "glt", "acquisition_time",
                          "quantity")}
    ds.attrs.update(attrs or {})
    return ds
