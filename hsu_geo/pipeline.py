"""One scene end to end: open -> bad bands -> endmembers -> fit -> apply -> write.

:func:`run_unmix` is what ``hsu-geo unmix`` (and later ``hsu-geo batch``) calls. Every stage is
timed into the run record; outputs are refused up front if they exist (unless ``overwrite``).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hsu_geo.config import UnmixOptions
from hsu_geo.errors import ConfigError, EndmemberError
from hsu_geo.ingest import open_scene
from hsu_geo.ingest.badbands import BadBandConfig, preprocess
from hsu_geo.scheduler import scheduler
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.adapter import apply_unmixer, sample_pixels
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.device import resolve_device

log = logging.getLogger(__name__)


@dataclass
class Endmembers:
    """Initial endmembers ``spectra (k, L)`` on the cube's bands, their names and origin."""

    spectra: np.ndarray
    names: list[str]
    source: str
    angles_rad: list[float | None] = field(default_factory=list)
    hysime_k: int | None = None
    pixel_indices: list[int] | None = None


def scene_id_of(cube: xr.DataArray) -> str:
    """A file-name-safe scene id (the product id)."""
    pid = str(cube.attrs.get("product_id") or "scene")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", pid).strip("_") or "scene"


def _library_endmembers(cube: xr.DataArray, opts: UnmixOptions) -> Endmembers:
    from hsu_geo.endmembers.library import (
        load_usgs_library,
        read_endmember_csv,
        resample_to_bands,
    )

    if opts.endmembers and opts.library:
        raise ConfigError("give either --endmembers CSV or --library, not both")
    if opts.endmembers:
        lib = read_endmember_csv(opts.endmembers)
        source = f"csv:{opts.endmembers}"
    else:
        name, _, names = str(opts.library).partition(":")
        if name.lower() != "usgs":
            raise ConfigError(f"unknown library {name!r}; the bundled one is 'usgs' "
                              "(e.g. --library usgs:alunite,kaolinite)")
        lib = load_usgs_library([n for n in names.split(",") if n] or None)
        source = f"library:{opts.library}"
    if cube.attrs.get("quantity") != "reflectance":
        raise EndmemberError(
            f"library/CSV endmembers are reflectance but the scene holds "
            f"{cube.attrs.get('quantity')}; extract endmembers from the scene instead (omit "
            "--endmembers/--library) or unmix an atmospherically corrected product"
        )
    M = resample_to_bands(lib, cube["wavelength"].values, cube["fwhm"].values)
    if M.shape[0] > cube.sizes["band"]:
        raise EndmemberError(f"{M.shape[0]} endmembers but only {cube.sizes['band']} bands; "
                             "pick fewer library entries")
    return Endmembers(M.astype("float32"), list(lib.names), source,
                      [None] * M.shape[0])


def _extracted_endmembers(Y: np.ndarray, cube: xr.DataArray, opts: UnmixOptions
                          ) -> Endmembers:
    from hsu_geo.endmembers.extract import extract_endmembers
    from hsu_geo.endmembers.hysime import hysime
    from hsu_geo.endmembers.library import name_endmembers

    L = Y.shape[1]
    hysime_k = None
    if str(opts.k).lower() == "auto":
        hysime_k = int(hysime(Y)[0])
        k = max(2, min(hysime_k, L))
        log.info("HySime estimates %d endmembers", hysime_k)
    else:
        try:
            k = int(opts.k)
        except ValueError:
            raise ConfigError(f"-k {opts.k!r}: give a whole number or 'auto'") from None
    if k < 2:
        raise ConfigError(f"-k {k}: unmixing needs at least 2 endmembers")
    if k > L:
        raise EndmemberError(f"-k {k} is larger than the {L} usable bands; use -k <= {L} "
                             "or -k auto")
    if k > Y.shape[0]:
        raise EndmemberError(f"-k {k} is larger than the {Y.shape[0]} valid pixels sampled")
    M, idx = extract_endmembers(Y, k, method=opts.extractor, seed=opts.seed)
    named = name_endmembers(M, cube["wavelength"].values, cube["fwhm"].values,
                            threshold_rad=opts.name_threshold)
    return Endmembers(np.asarray(M, "float32"), [n for n, _ in named],
                      f"extracted:{opts.extractor}", [float(a) for _, a in named], hysime_k,
                      [int(i) for i in np.asarray(idx).ravel()])


def run_unmix(
    scene: str | Path,
    out_dir: str | Path,
    opts: UnmixOptions,
    *,
    overwrite: bool = False,
    progress: bool = False,
    on_stage: Callable[[str], None] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Unmix one scene into ``out_dir``; returns ``{"outputs": {key: Path}, "record": …}``.

    ``on_epoch`` receives training progress events of deep models. With
    ``opts.load_model`` the checkpoint replaces endmember extraction and fitting; with
    ``opts.save_model`` the fitted deep model is written there.
    """
    from hsu_geo.write.atomic import check_targets, ensure_writable_dir
    from hsu_geo.write.outputs import output_paths, write_outputs
    from hsu_geo.write.provenance import build_run_record

    timings: dict[str, float] = {}
    say = on_stage or (lambda _msg: None)

    def stage(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 3)

    checkpoint = _read_checkpoint(opts) if opts.load_model else None
    model_cls = MODELS.get(opts.model)
    if checkpoint is not None:
        config = checkpoint.config()
    else:
        config = make_config(model_cls.Config, opts.settings)
        if "seed" in {f.name for f in fields(config)} and "seed" not in opts.settings:
            config = replace(config, seed=opts.seed)
    if opts.save_model:
        from hsu_geo.unmix.deep.base import DeepUnmixer

        if not issubclass(model_cls, DeepUnmixer):
            raise ConfigError(f"--save-model needs a deep model (see `hsu-geo models`); "
                              f"{opts.model} has no trained weights to save")
    device = resolve_device(opts.device)
    out = Path(out_dir)

    t0 = time.perf_counter()
    say("opening scene")
    raw = open_scene(scene, sensor=opts.sensor, chunks=opts.chunk_size,
                     wavelengths=opts.wavelengths)
    scene_id = scene_id_of(raw)
    ensure_writable_dir(out)
    targets = list(output_paths(out, scene_id, opts.model).values())
    check_targets(targets + ([Path(opts.save_model)] if opts.save_model else []),
                  overwrite=overwrite)
    stage("open", t0)

    t0 = time.perf_counter()
    say("checking bands")
    cube, report = preprocess(raw, BadBandConfig(drop=opts.drop_bands, keep=opts.keep_bands,
                                                 seed=opts.seed))
    stage("bad_bands", t0)
    if checkpoint is not None:
        checkpoint.check_bands(cube["wavelength"].values)

    with scheduler(opts.scheduler) as sched:
        Y = None
        if checkpoint is not None:
            t0 = time.perf_counter()
            say(f"loading {opts.model} from {opts.load_model}")
            em = Endmembers(checkpoint.endmembers, checkpoint.endmember_names,
                            f"checkpoint:{opts.load_model}",
                            [None] * len(checkpoint.endmember_names))
            unmixer = checkpoint.build(device)
            stage("load_model", t0)
        else:
            t0 = time.perf_counter()
            say("sampling pixels")
            Y = sample_pixels(cube, opts.sample_size, seed=opts.seed)
            stage("sample", t0)

            t0 = time.perf_counter()
            say("finding endmembers")
            if opts.endmembers or opts.library:
                em = _library_endmembers(cube, opts)
            else:
                em = _extracted_endmembers(Y, cube, opts)
            stage("endmembers", t0)

            t0 = time.perf_counter()
            say(f"fitting {opts.model}")
            unmixer = model_cls(config, device=device)
            if on_epoch is not None and hasattr(unmixer, "progress"):
                unmixer.progress = on_epoch
            unmixer.fit(Y, em.spectra)
            stage("fit", t0)

        if opts.save_model:
            from hsu_geo.unmix.deep.checkpoint import save_checkpoint

            t0 = time.perf_counter()
            save_checkpoint(opts.save_model, unmixer, cube["wavelength"].values, em.names,
                            cube["band"].values)
            stage("save_model", t0)

        result = apply_unmixer(cube, unmixer, em.names, attrs={
            "model": opts.model, "seed": opts.seed, "device": device,
        })
        angles = [None if a is None else math.degrees(a) for a in em.angles_rad]
        record = build_run_record(
            scene_id=scene_id, model=opts.model,
            config={"options": opts.to_dict(), "model_config": _as_dict(config)},
            seed=opts.seed, device=device,
            inputs=[p for p in raw.attrs.get("source_files", []) if Path(p).is_file()],
            timings=timings, endmembers=em.names,
            endmember_angles_deg=[a if a is not None else float("nan") for a in angles],
            extra={
                "scene": str(scene), "reader": raw.attrs.get("reader"),
                "scheduler": sched,
                "endmember_source": em.source,
                "hysime_k": em.hysime_k,
                "endmember_pixel_indices_in_sample": em.pixel_indices,
                "sample_pixels": 0 if Y is None else int(Y.shape[0]),
                "model_checkpoint": {"loaded": opts.load_model, "saved": opts.save_model},
                "bad_band_sample_pixels": report.sample_pixels,
                "bands_used": int(cube.sizes["band"]),
                "dropped_bands": cube.attrs.get("dropped_bands", []),
                "fit": unmixer.fit_info,
            },
        )
        t0 = time.perf_counter()
        say("unmixing and writing")
        outputs = write_outputs(result, out, scene_id, opts.model, overwrite=overwrite,
                                run_record=record, progress=progress)
        stage("unmix_and_write", t0)
    return {"outputs": outputs, "record": record, "scene_id": scene_id,
            "endmembers": em.names, "timings": timings}


def _read_checkpoint(opts: UnmixOptions) -> Any:
    """Read ``--load-model`` and check it against the other options (before any scene I/O)."""
    from hsu_geo.unmix.deep.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(opts.load_model)
    if opts.model != checkpoint.model:
        raise ConfigError(f"--load-model {opts.load_model} holds a {checkpoint.model} model but "
                          f"-m is {opts.model}; use -m {checkpoint.model} or omit -m")
    if opts.settings:
        raise ConfigError("--set cannot change a loaded model; drop --set, or retrain without "
                          "--load-model")
    if opts.endmembers or opts.library:
        raise ConfigError("--endmembers/--library do not apply with --load-model (the model "
                          "carries its endmembers); drop them")
    return checkpoint


def _as_dict(config: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    return asdict(config) if is_dataclass(config) else {}
