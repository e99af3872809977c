"""Between cubes and models: block-wise application of a fitted model and re-wrapping.

Models see only ``(N, L)`` float32 arrays (pixel samples come from
:func:`hsu_geo.ingest.scan.scan_cube`); ``apply_unmixer`` maps a fitted model over
the cube with ``xr.apply_ufunc(..., dask="parallelized")`` and returns the result Dataset:
``abundance (endmember, y, x)``, ``reconstruction_rmse (y, x)``, ``endmember_spectrum
(endmember, band)``. Abundances and RMSE come out of one kernel, so writing both reads the
scene once.
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


def _unmix_block(arr: np.ndarray, unmixer: Unmixer, k: int) -> np.ndarray:
    """Kernel: ``arr (h, w, L)`` -> ``(h, w, k + 1)`` = k abundances + reconstruction RMSE.

    Works on slabs of whole rows, each made pixel-major ``(pixels, L)`` and contiguous (a
    view when the chunk is already pixel-major, as the window reader delivers it for
    pixel-interleaved files; one small copy otherwise).
    """
    h, w, L = arr.shape
    out = np.full((h, w, k + 1), np.nan, dtype="float32")
    rows = max(1, BATCH // max(w, 1))
    for r0 in range(0, h, rows):
        Y = np.ascontiguousarray(arr[r0:r0 + rows].reshape(-1, L))
        res = out[r0:r0 + rows].reshape(-1, k + 1)  # a view of ``out``
        ok = np.isfinite(Y).all(axis=1)
        if not ok.any():
            continue
        if not ok.all():
            Y = Y[ok]
        A = unmixer.abundances(Y)
        R = unmixer.reconstruct(A)
        R = np.subtract(R, Y, out=R if R.flags.writeable and R.dtype == Y.dtype else None)
        rmse = np.sqrt(np.einsum("ij,ij->i", R, R) / L)
        if ok.all():
            res[:, :k] = A
            res[:, k] = rmse
        else:
            res[ok, :k] = A
            res[ok, k] = rmse
    return out


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
    stacked = xr.apply_ufunc(
        _unmix_block, cube,
        kwargs={"unmixer": unmixer, "k": k},
        input_core_dims=[["band"]], output_core_dims=[["output"]],
        dask="parallelized", output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {"output": k + 1}},
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
    ds = xr.Dataset({"abundance": abundance, "reconstruction_rmse": rmse,
                     "endmember_spectrum": spectra})
    crs, transform = cube_crs(cube), cube_transform(cube)
    if crs is not None:
        ds = ds.rio.write_crs(crs)
    if transform is not None:
        ds = ds.rio.write_transform(transform)
    ds.attrs = {k_: v for k_, v in cube.attrs.items()
                if k_ in ("sensor", "product_id", "rpcs", "acquisition_time", "quantity")}
    ds.attrs.update(attrs or {})
    return ds
