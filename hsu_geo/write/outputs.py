"""Write every output of one unmixing run, all or nothing.

For scene id ``S`` and model ``M`` in ``out_dir``: ``S_M_abundance.tif`` (COG, band k =
endmember k), ``S_M_rmse.tif``, ``S_M_endmembers.csv``, ``S_M_endmembers.sli`` + ``.hdr``,
``S_M_abundance.qml``, ``S_M_rmse.qml``, ``S_M_dominant.tif`` (class = argmax of the
abundances) + ``S_M_dominant.qml``, ``S_M_quicklook.png``, ``S_M_brightness.tif`` when the
model fits a per-pixel brightness (fcls with library endmembers), ``S_M_nonlinearity.tif`` and
``S_M_fit_quality.tif`` for the nonlinear models (ppnmm, gbm), and ``S_M_run.json``. Every name is
checked before anything is computed; all files are written under temporary names and renamed
only when every one is complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

import hsu_geo
from hsu_geo.errors import HsuGeoError, OutputError
from hsu_geo.write.atomic import OutputTransaction
from hsu_geo.write.cog import RasterSpec, source_grid, write_cogs
from hsu_geo.write.dominant import write_dominant
from hsu_geo.write.palette import display_range
from hsu_geo.write.provenance import build_run_record, dump_run_json
from hsu_geo.write.quicklook import read_decimated, value_label, write_quicklook
from hsu_geo.write.style import write_abundance_qml, write_dominant_qml, write_rmse_qml
from hsu_geo.write.tables import table_from_result, write_endmember_csv, write_spectral_library

#: output key -> file-name suffix after ``<scene>_<model>_``; run.json last (renamed last)
SUFFIXES: dict[str, str] = {
    "abundance": "abundance.tif",
    "rmse": "rmse.tif",
    "endmembers_csv": "endmembers.csv",
    "endmembers_sli": "endmembers.sli",
    "endmembers_hdr": "endmembers.hdr",
    "style": "abundance.qml",
    "rmse_style": "rmse.qml",
    "dominant": "dominant.tif",
    "dominant_style": "dominant.qml",
    "quicklook": "quicklook.png",
    "run": "run.json",
}
#: outputs written only when the result has them (result variable = key)
OPTIONAL: dict[str, str] = {"brightness": "brightness.tif",
                             "nonlinearity": "nonlinearity.tif",
                             "fit_quality": "fit_quality.tif"}
#: units tag of each optional raster
_OPTIONAL_UNITS = {"brightness": "factor", "nonlinearity": "unitless",
                   "fit_quality": "code (0 converged, 1 not converged, 2 linear kept)"}
#: result attrs copied into the COGs' dataset metadata when present
_ATTR_TAGS = {"product_id": "SOURCE_PRODUCT", "sensor": "SOURCE_SENSOR",
              "acquisition_time": "ACQUISITION_TIME", "bad_bands": "BAD_BANDS",
              "quantity": "SOURCE_QUANTITY"}


def output_names(scene_id: str, model: str, optional: tuple[str, ...] = ()
                 ) -> dict[str, str]:
    """File names of every output, keyed like :data:`SUFFIXES` (plus the ``optional`` keys of
    :data:`OPTIONAL` asked for, before ``run``)."""
    for label, value in (("scene id", scene_id), ("model", model)):
        if not value or any(c in value for c in "/\\\0") or value in (".", ".."):
            raise OutputError(f"{label} {value!r} cannot be part of a file name; rename it")
    suffixes = {k: v for k, v in SUFFIXES.items() if k != "run"}
    suffixes.update({k: OPTIONAL[k] for k in optional})
    suffixes["run"] = SUFFIXES["run"]
    return {key: f"{scene_id}_{model}_{suffix}" for key, suffix in suffixes.items()}


def output_paths(out_dir: str | os.PathLike[str], scene_id: str, model: str,
                 optional: tuple[str, ...] = ()) -> dict[str, Path]:
    """Final paths of every output (for up-front checks and messages)."""
    return {k: Path(out_dir) / n for k, n in output_names(scene_id, model, optional).items()}


#: longest file name (bytes) when the file system cannot be asked (ext4, XFS, APFS, NTFS)
NAME_MAX = 255


def _name_max(folder: Path) -> int:
    """The longest file name in bytes that the file system holding ``folder`` allows."""
    probe = folder
    while not os.path.exists(probe) and probe.parent != probe:
        probe = probe.parent
    try:
        limit = int(os.pathconf(probe, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf on Windows
        return NAME_MAX
    return limit if limit > 0 else NAME_MAX


def _shown(name: str) -> str:
    return name if len(name) <= 60 else f"{name[:32]}…{name[-24:]}"


def check_name_lengths(out_dir: str | os.PathLike[str], names: list[str]) -> None:
    """Refuse, before anything is computed, names the file system cannot hold.

    Checks the output folder's own name (when it does not exist yet: batch names scene folders
    after the scene) and, for every final name, each name written on the way to it: the
    transaction's staging names and the COG writer's scratch files.
    """
    from hsu_geo.write.cog import _scratch

    folder = Path(out_dir)
    limit = _name_max(folder)
    size = len(os.fsencode(folder.name))
    if size > limit and not os.path.exists(folder):
        raise OutputError(
            f"output folder name {_shown(folder.name)} has {size} bytes, more than the {limit} "
            "this file system allows; choose a shorter -o (batch names a scene's folder after "
            "the scene: rename the scene file)")
    tx = OutputTransaction(folder, list(names))
    for name in names:
        temp = tx.temp(name)
        written = [name, *temp.relative_to(folder).parts]
        if temp.suffix.lower() == ".tif":
            written += [_scratch(temp, kind).name for kind in ("native", "warped")]
        longest = max(written, key=lambda n: len(os.fsencode(n)))
        size = len(os.fsencode(longest))
        if size > limit:
            raise OutputError(
                f"output name {_shown(name)} is too long: writing it needs the file name "
                f"{_shown(longest)} of {size} bytes, more than the {limit} this file system "
                f"allows; rename the scene file (or use a shorter model name) so that names "
                f"are at least {size - limit} byte{'s' if size - limit > 1 else ''} shorter")


#: errno values meaning the output file system is full (disk or quota)
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def output_error_for(exc: BaseException, out_dir: Path, names: list[str]) -> OutputError | None:
    """The one-line :class:`OutputError` for ``exc`` raised while writing ``names`` into
    ``out_dir``; None when ``exc`` is no write failure (our own errors, input read errors).

    A full disk is ENOSPC/EDQUOT anywhere in the exception chain (the COG writer turns GDAL's
    bare "Write failed" on a full disk into ENOSPC); other GDAL write errors and errors naming
    an output file are reported as a failed write.
    """
    if isinstance(exc, HsuGeoError):
        return None
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, OSError) and e.errno in _FULL for e in chain) \
            or "no space left" in text.lower():
        return OutputError(f"no space left on device writing {out_dir}; free space or choose "
                           "another -o")
    ours = any(os.path.splitext(n)[0] in text for n in names)
    gdal_write = "write" in text.lower() and any(
        type(e).__module__.startswith("rasterio") for e in chain)
    if not (ours or gdal_write):
        return None
    detail = (str(exc).splitlines() or [type(exc).__name__])[0]
    return OutputError(f"cannot write the outputs in {out_dir} ({detail}); check free space "
                       "and permissions, or choose another -o")


@contextlib.contextmanager
def write_errors(out_dir: Path, names: list[str]) -> Iterator[None]:
    """Turn a failed write of ``names`` in ``out_dir`` (full disk, GDAL write error) into one
    :class:`OutputError`; other exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        err = output_error_for(exc, out_dir, names)
        if err is None:
            raise
        raise err from exc


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
    creation_options: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write all outputs of ``result`` to ``out_dir``; return their final paths by key.

    ``result`` follows the result contract (``abundance (endmember, y, x)``,
    ``reconstruction_rmse (y, x)``, ``endmember_spectrum (endmember, band)``, georeferencing
    via rioxarray or ``attrs["rpcs"]``). Abundance and RMSE are computed in one dask pass.
    ``run_record`` (from :func:`~hsu_geo.write.provenance.build_run_record`) is completed
    with the output names and write timings; without it a record is built from
    ``result.attrs``. ``creation_options``: GDAL COG options (``--co``) over the defaults.
    ``progress`` shows a dask progress bar on stderr. Raises
    :class:`~hsu_geo.errors.OutputExistsError` before computing anything if an output exists
    and ``overwrite`` is False.
    """
    _check_result(result)
    names = output_names(scene_id, model, tuple(k for k in OPTIONAL if k in result.data_vars))
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
    quantity = str(result.attrs.get("quantity") or "") or None
    units = str(result.attrs["units"]) if result.attrs.get("units") is not None else None
    rmse_unit = value_label(quantity, units)  # e.g. "reflectance (unitless)"
    rmse = RasterSpec(
        _lazy(result["reconstruction_rmse"])[None], ["reconstruction_rmse"],
        [{"UNITS": rmse_unit, "QUANTITY": quantity or "",
          "DEFINITION": "root-mean-square of (input - reconstruction) over the kept bands"}],
        units=units or None, tags={**tags, "HSU_PRODUCT": "reconstruction_rmse"},
    )
    grid = source_grid(result["abundance"].assign_attrs(result.attrs), rpc_options=rpc_options)
    timings: dict[str, float] = {}

    with OutputTransaction(out_dir, list(names.values()), overwrite=overwrite) as tx, \
            write_errors(Path(out_dir), list(names.values())):
        def tmp(key: str) -> Path:
            return tx.temp(names[key])

        t0 = time.perf_counter()
        rasters = [(abundance, tmp("abundance")), (rmse, tmp("rmse"))]
        for key in OPTIONAL:
            if key in names:
                rasters.append((RasterSpec(
                    _lazy(result[key])[None], [key], [], units=_OPTIONAL_UNITS[key],
                    tags={**tags, "HSU_PRODUCT": key}), tmp(key)))
        target = write_cogs(rasters, grid, progress=progress,
                            creation_options=creation_options)
        write_dominant(tmp("abundance"), tmp("dominant"), endmembers,
                       tags={**tags, "HSU_PRODUCT": "dominant_endmember"})
        timings["write_rasters"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_endmember_csv(tmp("endmembers_csv"), table)
        write_spectral_library(tmp("endmembers_sli"), table,
                               description=f"hsu-geo {model} endmembers of {scene_id}")
        write_abundance_qml(tmp("style"), endmembers)
        small_rmse = read_decimated(tmp("rmse"))[0]
        write_rmse_qml(tmp("rmse_style"), *display_range(small_rmse), rmse_unit)
        write_dominant_qml(tmp("dominant_style"), endmembers)
        write_quicklook(
            tmp("quicklook"), read_decimated(tmp("abundance")), endmembers, wavelength,
            spectra, rmse=small_rmse, title=f"{scene_id} — {model}", band=band,
            quantity=quantity, units=units,
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
            "orthorectified_from_glt": grid.glt is not None,
            "warped_north_up": not grid.north_up,
        }
        dump_run_json(tmp("run"), record)
    return {key: tx.final(name) for key, name in names.items()}
