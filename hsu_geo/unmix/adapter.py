"""Between cubes and models: block-wise application of a fitted model and re-wrapping.

Models see only ``(N, L)`` float32 arrays (pixel samples come from
:func:`hsu_geo.ingest.scan.scan_cube`); ``apply_unmixer`` maps a fitted model over
the cube with ``xr.apply_ufunc(..., dask="parallelized")`` and returns the result Dataset:
``abundance (endmember, y, x)``, ``reconstruction_rmse (y, x)``, ``endmember_spectrum
(endmember, band)`` and, for models that fit a per-pixel brightness (fcls with
``brightness=scaled``), ``brightness (y, x)``. Abundances, RMSE (of the modelled spectra
``s * A @ M`` when there is a brightness ``s``) and brightness come out of one kernel, so
writing them reads the scene once.
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


def _unmix_block(arr: np.ndarray, unmixer: Unmixer, k: int,
                 brightness: bool = False) -> np.ndarray:
    """Kernel: ``arr (h, w, L)`` -> ``(h, w, k + 1)`` = k abundances + reconstruction RMSE
    (``(h, w, k + 2)`` with the per-pixel brightness last when ``brightness``).

    Works on slabs of whole rows, each made pixel-major ``(pixels, L)`` and contiguous (a
    view when the chunk is already pixel-major, as the window reader delivers it for
    pixel-interleaved files; one small copy otherwise).
    """
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
    stacked = xr.apply_ufunc(
        _unmix_block, cube,
        kwargs={"unmixer": unmixer, "k": k, "brightness": scaled},
        input_core_dims=[["band"]], output_core_dims=[["output"]],
        dask="parallelized", output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {"output": k + 2 if scaled else k + 1}},
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
    ds = xr.Dataset(variables)
    crs, transform = cube_crs(cube), cube_transform(cube)
    if crs is not None:
        ds = ds.rio.write_crs(crs)
    if transform is not None:
        ds = ds.rio.write_transform(transform)
    ds.attrs = {k_: v for k_, v in cube.attrs.items()
                if k_ in ("sensor", "product_id", "rpcs", "acquisition_time", "quantity")}
    ds.attrs.update(attrs or {})
    return ds
