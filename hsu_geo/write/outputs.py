"""Write every output of one unmixing run, all or nothing.

For scene id ``S`` and model ``M`` in ``out_dir``: ``S_M_abundance.tif`` (COG, band k =
endmember k), ``S_M_rmse.tif``, ``S_M_endmembers.csv``, ``S_M_endmembers.sli`` + ``.hdr``,
``S_M_abundance.qml``, ``S_M_quicklook.png`` and, renamed last, ``S_M_run.json``. Every name is
checked before anything is computed; all files are written under temporary names and renamed
only when every one is complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

import hsu_geo
from hsu_geo.errors import HsuGeoError, OutputError
from hsu_geo.write.atomic import OutputTransaction
from hsu_geo.write.cog import RasterSpec, source_grid, write_cogs
from hsu_geo.write.provenance import build_run_record, dump_run_json
from hsu_geo.write.quicklook import read_decimated, write_quicklook
from hsu_geo.write.style import write_abundance_qml
from hsu_geo.write.tables import table_from_result, write_endmember_csv, write_spectral_library

#: output key -> file-name suffix after ``<scene>_<model>_``; run.json last (renamed last)
SUFFIXES: dict[str, str] = {
    "abundance": "abundance.tif",
    "rmse": "rmse.tif",
    "endmembers_csv": "endmembers.csv",
    "endmembers_sli": "endmembers.sli",
    "endmembers_hdr": "endmembers.hdr",
    "style": "abundance.qml",
    "quicklook": "quicklook.png",
    "run": "run.json",
}
#: result attrs copied into the COGs' dataset metadata when present
_ATTR_TAGS = {"product_id": "SOURCE_PRODUCT", "sensor": "SOURCE_SENSOR",
              "acquisition_time": "ACQUISITION_TIME", "bad_bands": "BAD_BANDS",
              "quantity": "SOURCE_QUANTITY"}


def output_names(scene_id: str, model: str) -> dict[str, str]:
    """File names of every output, keyed like :data:`SUFFIXES`."""
    for label, value in (("scene id", scene_id), ("model", model)):
        if not value or any(c in value for c in "/\\\0") or value in (".", ".."):
            raise OutputError(f"{label} {value!r} cannot be part of a file name; rename it")
    return {key: f"{scene_id}_{model}_{suffix}" for key, suffix in SUFFIXES.items()}


def output_paths(out_dir: str | os.PathLike[str], scene_id: str, model: str) -> dict[str, Path]:
    """Final paths of every output (for up-front checks and messages)."""
    return {k: Path(out_dir) / n for k, n in output_names(scene_id, model).items()}


def _check_result(result: xr.Dataset) -> None:
    expected = {"abundance": ("endmember", "y", "x"), "reconstruction_rmse": ("y", "x"),
                "endmember_spectrum": ("endmember", "band")}
    for name, dims in expected.items():
        if name not in result.data_vars:
            raise HsuGeoError(f"result lacks {name!r}; the unmixing step must provide it")
        if result[name].dims != dims:
            raise HsuGeoError(f"result {name!r} has dims {result[name].dims}; expected {dims}")
    if "wavelength" not in result.coords:
        raise HsuGeoError("result lacks the 'wavelength' coordinate on 'band'")


def _dataset_tags(result: xr.Dataset, scene_id: str, model: str) -> dict[str, str]:
    tags = {"HSU_MODEL": model, "HSU_VERSION": hsu_geo.__version__, "HSU_SCENE_ID": scene_id}
    for attr, tag in _ATTR_TAGS.items():
        if result.attrs.get(attr) not in (None, ""):
            tags[tag] = str(result.attrs[attr])
    tags.setdefault("SOURCE_PRODUCT", scene_id)
    for attr in ("seed", "device"):
        if result.attrs.get(attr) is not None:
            tags[f"HSU_{attr.upper()}"] = str(result.attrs[attr])
    return tags


def _lazy(arr: xr.DataArray) -> da.Array:
    data = arr.data
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=512)


def write_outputs(
    result: xr.Dataset,
    out_dir: str | os.PathLike[str],
    scene_id: str,
    model: str,
    *,
    overwrite: bool = False,
    run_record: Mapping[str, Any] | None = None,
    progress: bool = False,
    rpc_options: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write all outputs of ``result`` to ``out_dir``; return their final paths by key.

    ``result`` follows the result contract (``abundance (endmember, y, x)``,
    ``reconstruction_rmse (y, x)``, ``endmember_spectrum (endmember, band)``, georeferencing
    via rioxarray or ``attrs["rpcs"]``). Abundance and RMSE are computed in one dask pass.
    ``run_record`` (from :func:`~hsu_geo.write.provenance.build_run_record`) is completed
    with the output names and write timings; without it a record is built from
    ``result.attrs``. ``progress`` shows a dask progress bar on stderr. Raises
    :class:`~hsu_geo.errors.OutputExistsError` before computing anything if an output exists
    and ``overwrite`` is False.
    """
    _check_result(result)
    names = output_names(scene_id, model)
    endmembers = [str(n) for n in result["endmember"].values]
    spectra = np.asarray(result["endmember_spectrum"].values, dtype="float32")
    wavelength = np.asarray(result["wavelength"].values, dtype="float64")
    band = result["band"].values if "band" in result.coords else np.arange(1, len(wavelength) + 1)
    fwhm = result["fwhm"].values if "fwhm" in result.coords else None
    table = table_from_result(endmembers, spectra, band, wavelength, fwhm)
    tags = _dataset_tags(result, scene_id, model)
    abundance = RasterSpec(
        _lazy(result["abundance"]), endmembers,
        [{"ENDMEMBER": n, "ENDMEMBER_INDEX": i} for i, n in enumerate(endmembers, start=1)],
        units="fraction", tags={**tags, "HSU_PRODUCT": "abundance"},
    )
    rmse = RasterSpec(
        _lazy(result["reconstruction_rmse"])[None], ["reconstruction_rmse"], [],
        units=str(result.attrs.get("units") or "") or None,
        tags={**tags, "HSU_PRODUCT": "reconstruction_rmse"},
    )
    grid = source_grid(result["abundance"].assign_attrs(result.attrs), rpc_options=rpc_options)
    timings: dict[str, float] = {}

    with OutputTransaction(out_dir, list(names.values()), overwrite=overwrite) as tx:
        def tmp(key: str) -> Path:
            return tx.temp(names[key])

        t0 = time.perf_counter()
        target = write_cogs([(abundance, tmp("abundance")), (rmse, tmp("rmse"))], grid,
                            progress=progress)
        timings["write_rasters"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_endmember_csv(tmp("endmembers_csv"), table)
        write_spectral_library(tmp("endmembers_sli"), table,
                               description=f"hsu-geo {model} endmembers of {scene_id}")
        write_abundance_qml(tmp("style"), endmembers)
        write_quicklook(
            tmp("quicklook"), read_decimated(tmp("abundance")), endmembers, wavelength,
            spectra, rmse=read_decimated(tmp("rmse"))[0], title=f"{scene_id} — {model}",
        )
        timings["write_sidecars"] = time.perf_counter() - t0

        record = dict(run_record) if run_record is not None else build_run_record(
            scene_id=scene_id, model=model, config=result.attrs.get("config", {}),
            seed=result.attrs.get("seed"), device=str(result.attrs.get("device", "")),
            endmembers=endmembers,
        )
        record["timings_s"] = {**dict(record.get("timings_s", {})), **timings}
        record["outputs"] = {k: n for k, n in names.items() if k != "run"}
        record["output_grid"] = {
            "crs": target.crs.to_string() if target.crs is not None else None,
            "transform": list(target.transform)[:6], "width": target.width,
            "height": target.height,
            "orthorectified_from_rpc": grid.rpcs is not None,
            "warped_north_up": not grid.north_up,
        }
        dump_run_json(tmp("run"), record)
    return {key: tx.final(name) for key, name in names.items()}
