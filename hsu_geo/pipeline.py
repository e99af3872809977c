"""One scene end to end: open -> scan + bad bands -> endmembers -> fit -> apply -> write.

The stages are separate so ``hsu-geo batch`` reuses them: :func:`prepare_scene` (open, refuse
existing outputs, one scan for the pixel sample and band statistics, bad bands),
:func:`fit_model` (endmembers + fitted model), :func:`apply_and_write` (block-wise unmixing and
every output). :func:`run_unmix` chains them for ``hsu-geo unmix``. Every stage is timed into
the run record.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from hsu_geo.config import UnmixOptions
from hsu_geo.cube import take_bands
from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.ingest import open_scene
from hsu_geo.ingest.badbands import BadBandConfig, preprocess
from hsu_geo.scheduler import scheduler
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.adapter import apply_unmixer
from hsu_geo.unmix.base import Unmixer, make_config
from hsu_geo.unmix.device import device_for, resolve_device
from hsu_geo.unmix.sanity import check_endmembers, check_fit, check_sample

if TYPE_CHECKING:
    from hsu_geo.endmembers.library import SpectralLibrary

log = logging.getLogger(__name__)

#: a fitted model's bands and a scene's must agree this closely (nm)
BAND_TOLERANCE_NM = 0.5


@dataclass
class Endmembers:
    """Initial endmembers ``spectra (k, L)`` on the cube's bands, their names and origin."""

    spectra: np.ndarray
    names: list[str]
    source: str
    angles_rad: list[float | None] = field(default_factory=list)
    hysime_k: int | None = None
    pixel_indices: list[int] | None = None
    k_estimate: dict[str, Any] | None = None
    #: per endmember, the evidence of its name (feature naming: decision, confidence, ...)
    naming: list[dict[str, Any]] | None = None
    #: how the ``refined`` extractor chose the set (pure pixels, rare-material rounds)
    extraction: dict[str, Any] | None = None


def scene_id_of(cube: xr.DataArray) -> str:
    """A file-name-safe scene id (the product id)."""
    from hsu_geo.naming import safe_id

    return safe_id(str(cube.attrs.get("product_id") or "scene"))


def _library_source(opts: UnmixOptions) -> tuple[SpectralLibrary, str]:
    """``(SpectralLibrary, source label)`` of ``--endmembers`` or ``--library`` (default: the
    whole bundled USGS library), on the library's own wavelength grid."""
    from hsu_geo.endmembers.library import load_usgs_library
    from hsu_geo.endmembers.library_io import read_library

    if opts.endmembers:
        return read_library(opts.endmembers), f"file:{opts.endmembers}"
    name, _, names = str(opts.library or "usgs").partition(":")
    if name.lower() != "usgs":
        raise ConfigError(f"unknown library {name!r}; the bundled one is 'usgs' "
                          "(e.g. --library usgs:alunite,kaolinite)")
    return (load_usgs_library([n for n in names.split(",") if n] or None),
            f"library:{opts.library or 'usgs'}")


def _library_endmembers(cube: xr.DataArray, opts: UnmixOptions,
                        sparse: bool = False) -> Endmembers:
    """Library/CSV endmembers on the cube's bands; ``sparse`` (sunsal): the whole bundled USGS
    library by default and no limit of one band per endmember."""
    from hsu_geo.endmembers.library import resample_to_bands

    if opts.endmembers and opts.library:
        raise ConfigError("give either --endmembers CSV or --library, not both")
    lib, source = _library_source(opts)
    if cube.attrs.get("quantity") != "reflectance":
        raise EndmemberError(
            f"library/CSV endmembers are reflectance but the scene holds "
            f"{cube.attrs.get('quantity')}; extract endmembers from the scene instead (omit "
            "--endmembers/--library) or unmix an atmospherically corrected product"
        )
    M = resample_to_bands(lib, cube["wavelength"].values, cube["fwhm"].values)
    if M.shape[0] > cube.sizes["band"] and not sparse:
        raise EndmemberError(f"{M.shape[0]} endmembers but only {cube.sizes['band']} bands; "
                             "pick fewer library entries")
    return Endmembers(M.astype("float32"), list(lib.names), source,
                      [None] * M.shape[0])


def check_k_applies(opts: UnmixOptions) -> None:
    """Refuse, before any scene I/O, a numeric ``-k`` that the endmember source would ignore:
    ``-m sunsal``/``sunsal_tv`` select from the library themselves, and ``--library`` /
    ``--endmembers`` fix the endmembers (a ``-k`` equal to their number is accepted)."""
    if str(opts.k).lower() == "auto" or opts.load_model:
        return
    if getattr(MODELS.get(opts.model), "selects_from_library", False):
        raise ConfigError(f"-k {opts.k} does not apply to -m {opts.model}: it selects the "
                          "endmembers from the library itself; drop -k (or k: in the preset)")
    if not (opts.library or opts.endmembers) or (opts.library and opts.endmembers):
        return  # no library, or both (_library_endmembers refuses that)
    n = len(_library_source(opts)[0].names)  # an unknown library is named here already
    source = f"--endmembers {opts.endmembers}" if opts.endmembers else f"--library {opts.library}"
    if str(opts.k).strip() != str(n):
        raise ConfigError(f"-k {opts.k} does not match the {n} endmember(s) of {source}, which "
                          "set the endmembers; drop -k (or k: in the preset)")


def _extracted_endmembers(Y: np.ndarray, cube: xr.DataArray, opts: UnmixOptions
                          ) -> Endmembers:
    from hsu_geo.endmembers.count import MIN_NOISE_DOF, estimate_count
    from hsu_geo.endmembers.extract import extract_endmembers
    from hsu_geo.endmembers.library import name_endmembers

    n_valid = Y.shape[0]
    if str(opts.k).lower() == "auto" and n_valid < Y.shape[1] + MIN_NOISE_DOF:
        most = min(n_valid, Y.shape[1])
        hint = ("check the nodata value" if n_valid < 2 else "give -k 2" if most == 2
                else f"give -k N (2 to {most})")
        raise EndmemberError(
            f"{scene_id_of(cube)}: only {n_valid} valid pixels, too few to estimate the number "
            f"of endmembers with -k auto (it needs at least {Y.shape[1] + MIN_NOISE_DOF} for "
            f"the {Y.shape[1]} bands, to estimate the noise); {hint} or unmix a larger scene")
    L = Y.shape[1]
    hysime_k = k_estimate = None
    if str(opts.k).lower() == "auto":
        estimate = estimate_count(Y)
        k_estimate, hysime_k = estimate.to_dict(), estimate.evidence["hysime_k"]
        k = max(2, min(estimate.k, L))
        log.info("-k auto: %d endmembers (%d significant components; HySime would say %d)",
                 estimate.k, estimate.evidence["k_significant"], hysime_k)
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
    evidence: dict[str, Any] = {}
    M, idx = extract_endmembers(Y, k, method=opts.extractor, seed=opts.seed, evidence=evidence)
    _warn_extraction(evidence, k)
    named = name_endmembers(M, cube["wavelength"].values, cube["fwhm"].values,
                            threshold_rad=opts.name_threshold, method=opts.naming)
    return Endmembers(np.asarray(M, "float32"), [n for n, _ in named],
                      f"extracted:{opts.extractor}", [float(a) for _, a in named], hysime_k,
                      [int(i) for i in np.asarray(idx).ravel()], k_estimate,
                      [{"name": n, **getattr(named[i], "info", {})}
                       for i, (n, _) in enumerate(named)], evidence or None)


def _warn_extraction(evidence: dict[str, Any], k: int) -> None:
    """Say (log and ``evidence["warnings"]``) when the ``refined`` extractor set rare pixels
    aside or kept endmembers with fewer pure pixels than its mapping unit."""
    from hsu_geo.endmembers.refine import DEFAULT_THRESHOLD

    if not evidence:
        return
    notes = []
    if evidence["pixels_set_aside"]:
        notes.append(f"{evidence['pixels_set_aside']} sampled pixels of a rare material (fewer "
                     f"than {evidence['support_needed']} pure pixels) were set aside so that it "
                     f"does not take the place of a class; give -k {k + 1} or more to map it")
    if not evidence["all_supported"]:
        need = evidence["support_needed"]
        short = [i + 1 for i, n in enumerate(evidence["pure_pixels"]) if n < need]
        if len(short) == len(evidence["pure_pixels"]):
            notes.append(f"no endmember has {need} pixels that are >= "
                         f"{DEFAULT_THRESHOLD * 100:.0f} % pure in it: at "
                         f"-k {k} the scene has no pure pixels (highly mixed, or k too large), "
                         "so the endmembers are refined extremes, not class means")
        else:
            notes.append(f"endmember(s) {', '.join(map(str, short))} have fewer than {need} "
                         "pure pixels (no better-supported set found): rare materials or "
                         "mixtures")
    for msg in notes:
        log.warning("%s", msg)
    evidence["warnings"] = notes


@dataclass
class FittedModel:
    """An unmixer fitted once (or loaded), with the bands it expects and its endmembers.

    Attributes:
        wavelength, band: the kept bands (nm, original numbers) the model was fitted on.
        trained_on: scene id the model was fitted on; angles_deg: SAM angle of each name.
    """

    unmixer: Unmixer
    model: str
    names: list[str]
    band: np.ndarray
    wavelength: np.ndarray
    trained_on: str
    endmember_source: str
    angles_deg: list[float | None]
    model_config: dict[str, Any]
    device: str
    hysime_k: int | None = None
    pixel_indices: list[int] | None = None
    sample_pixels: int = 0
    k_estimate: dict[str, Any] | None = None
    naming: list[dict[str, Any]] | None = None  # Endmembers.naming, for run.json
    extraction: dict[str, Any] | None = None  # Endmembers.extraction, for run.json


@dataclass
class PreparedScene:
    """An opened scene reduced to the bands to unmix, with its pixel sample when needed."""

    path: str
    raw: xr.DataArray
    cube: xr.DataArray
    scene_id: str
    sample: np.ndarray | None
    bad_band_pixels: int
    timings: dict[str, float] = field(default_factory=dict)
    #: the existing outputs are all files an earlier hsu-geo run recorded (``replaceable``)
    replace_recorded: bool = False
    #: a patch model's first-round training windows, cut out by the scan ``(n, L, p, p)`` on
    #: the kept bands (:func:`hsu_geo.unmix.spatial.first_round`); None for other models
    first_patches: np.ndarray | None = None
    #: the window request ``first_patches`` answers (``WindowRequest``)
    first_request: Any = None


def _timed(timings: dict[str, float], name: str, t0: float) -> None:
    timings[name] = round(time.perf_counter() - t0, 3)


def select_bands(raw: xr.DataArray, wavelength: np.ndarray, source: str) -> xr.DataArray:
    """The bands of ``raw`` at the model's ``wavelength`` (nm, within 0.5 nm), in order.

    A fitted model needs exactly its training bands; missing ones are an error, extra ones
    are reported as dropped ("not used by the model").
    """
    wl = raw["wavelength"].values
    idx = np.abs(wl[None, :] - np.asarray(wavelength)[:, None]).argmin(axis=1)
    gap = np.abs(wl[idx] - wavelength)
    if gap.size == 0 or float(gap.max()) > BAND_TOLERANCE_NM:
        i = int(np.argmax(gap)) if gap.size else 0
        raise EndmemberError(
            f"{scene_id_of(raw)}: the model from {source} needs a band at "
            f"{wavelength[i]:.2f} nm but the nearest in the scene is {wl[idx[i]]:.2f} nm; "
            "unmix scenes of the same sensor, or refit the model")
    used = set(idx.tolist())
    cube = take_bands(raw, idx).assign_coords(good_band=("band", np.ones(idx.size, bool)))
    cube.attrs = dict(raw.attrs)
    cube.attrs["dropped_bands"] = list(raw.attrs.get("dropped_at_ingest", [])) + [
        {"band": int(b), "wavelength_nm": float(w), "reason": f"not used by the model ({source})"}
        for i, (b, w) in enumerate(zip(raw["band"].values, wl, strict=True)) if i not in used
    ]
    return cube


def prepare_scene(
    scene: str | Path,
    opts: UnmixOptions,
    *,
    model: str,
    out_dir: Path | None = None,
    overwrite: bool = False,
    extra_targets: list[Path] | None = None,
    bands_of: FittedModel | None = None,
    replaceable: Collection[str] = (),
    say: Callable[[str], None] = lambda _msg: None,
) -> PreparedScene:
    """Open ``scene``, refuse existing outputs and outputs on inputs, and choose its bands.

    ``replaceable``: names of files in ``out_dir`` that an earlier hsu-geo run wrote and
    recorded; existing outputs with these names are replaced without ``overwrite``.

    Without ``bands_of``, one pass over the scene yields the pixel sample and the full-scene
    band statistics that decide the bad bands (and, for a patch model, its first-round
    training windows: ``first_patches``). With ``bands_of`` (a fitted model), the scene
    is cut to the model's bands and nothing is read.
    """
    from hsu_geo.ingest.scan import check_magnitudes, scan_cube_with_windows, valid_rows
    from hsu_geo.write.atomic import check_targets, ensure_writable_dir, recover
    from hsu_geo.write.guard import refuse_inputs_as_outputs
    from hsu_geo.write.outputs import check_name_lengths, output_paths

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    say("opening scene")
    raw = open_scene(scene, sensor=opts.sensor, chunks=opts.chunk_size,
                     wavelengths=opts.wavelengths, scale=opts.scale)
    if opts.window or opts.bounds:
        from hsu_geo.ingest.subset import parse_bounds, parse_window, subset_cube

        raw = subset_cube(raw, window=parse_window(opts.window) if opts.window else None,
                          bounds=parse_bounds(opts.bounds) if opts.bounds else None)
    scene_id = scene_id_of(raw)
    replace_recorded = False
    if out_dir is not None:
        outputs = list(output_paths(out_dir, scene_id, model,
                                    optional_outputs(opts, model, bands_of)).values())
        refuse_inputs_as_outputs(
            [("output", p) for p in outputs] + [("--save-model", p) for p in extra_targets or []],
            [scene, *raw.attrs.get("source_files", [])])
        check_name_lengths(out_dir, [p.name for p in outputs])
        for target in extra_targets or []:
            check_name_lengths(target.parent, [target.name])
        ensure_writable_dir(out_dir)
        recover(out_dir)
        existing = {p.name for p in outputs if p.exists() or p.is_symlink()}
        replace_recorded = bool(existing) and existing <= set(replaceable)
        check_targets(outputs, overwrite=overwrite or replace_recorded)
        check_targets(list(extra_targets or []), overwrite=overwrite)
    _timed(timings, "open", t0)
    t0 = time.perf_counter()
    if bands_of is not None:
        cube = select_bands(raw, bands_of.wavelength, bands_of.trained_on)
        _timed(timings, "bands", t0)
        return PreparedScene(str(scene), raw, cube, scene_id, None, 0, timings,
                             replace_recorded)
    say("scanning the scene (pixel sample, band statistics)")
    request = _training_windows(model, opts, raw)
    sample, stats, windows = scan_cube_with_windows(raw, opts.sample_size, seed=opts.seed,
                                                    windows=request)
    _timed(timings, "scan", t0)
    t0 = time.perf_counter()
    cube, report = preprocess(raw, BadBandConfig(drop=opts.drop_bands, keep=opts.keep_bands,
                                                 seed=opts.seed), stats)
    kept = np.searchsorted(raw["band"].values, cube["band"].values)
    check_magnitudes(stats, kept, raw)
    Y = valid_rows(sample[:, kept])
    if Y.shape[0] == 0:
        raise InvalidSceneError(f"{scene_id}: no pixel is valid in every kept band; check the "
                                "nodata value or --keep-bands")
    first = None if windows is None else np.ascontiguousarray(windows[:, kept])
    del windows
    _timed(timings, "bad_bands", t0)
    return PreparedScene(str(scene), raw, cube, scene_id, Y, report.sample_pixels, timings,
                         replace_recorded, first, request)


def model_config(model_cls: type, opts: UnmixOptions) -> Any:
    """``model_cls.Config`` from ``--set`` settings, with ``--seed`` unless ``seed`` is set."""
    config = make_config(model_cls.Config, opts.settings)
    if "seed" in {f.name for f in fields(config)} and "seed" not in opts.settings:
        config = replace(config, seed=opts.seed)
    return config


def _same_windows(request: Any, config: Any, cube: xr.DataArray) -> bool:
    """Whether the scan's window ``request`` is the first round of ``config``'s patches."""
    from hsu_geo.unmix.spatial import patch_request

    if request is None:
        return False
    mine = patch_request(config, int(cube.sizes["y"]), int(cube.sizes["x"]))
    return mine is not None and (mine.height, mine.width) == (request.height, request.width) \
        and np.array_equal(mine.rows, request.rows) and np.array_equal(mine.cols, request.cols)


def _training_windows(model: str, opts: UnmixOptions, raw: xr.DataArray) -> Any:
    """The first-round training windows of a patch model (``WindowRequest``) for the scan to
    cut out, so the model's patches need no second read of the scene; None for pixel models,
    models with their own training sample, and requests over the patch memory limit."""
    from hsu_geo.unmix.spatial import PATCH_BYTES_LIMIT, patch_request

    cls = MODELS.get(model)
    if cls.input == "pixels" or getattr(cls, "trains_on_pixels", False) or \
            hasattr(cls, "training_sample"):
        return None
    request = patch_request(model_config(cls, opts), int(raw.sizes["y"]), int(raw.sizes["x"]))
    if request is None or request.nbytes(int(raw.sizes["band"])) > PATCH_BYTES_LIMIT:
        return None
    return request


def optional_outputs(opts: UnmixOptions, model: str, fitted: FittedModel | None
                     ) -> tuple[str, ...]:
    """The optional outputs (:data:`hsu_geo.write.outputs.OPTIONAL`) this run will write: a
    brightness raster when fcls fits a per-pixel brightness (library endmembers by default);
    the ``extra_outputs`` a model declares (nonlinear models: nonlinearity, fit quality)."""
    from hsu_geo.unmix.adapter import extra_outputs

    if fitted is not None:
        return extra_outputs(fitted.unmixer)
    declared = tuple(getattr(MODELS.get(model), "extra_outputs", ()))
    if declared:
        return declared
    mode = getattr(make_config(MODELS.get(model).Config, opts.settings), "brightness", None)
    library = bool(opts.endmembers or opts.library)
    return ("brightness",) if mode == "scaled" or (mode == "auto" and library) else ()


def fit_model(
    prepared: PreparedScene,
    opts: UnmixOptions,
    *,
    on_epoch: Callable[[Any], None] | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> FittedModel:
    """Endmembers (library, CSV or extracted) and the fitted ``opts.model`` for a scene."""
    if prepared.sample is None:
        raise ConfigError("fit_model needs a scene prepared with its pixel sample")
    model_cls = MODELS.get(opts.model)
    config = model_config(model_cls, opts)
    sparse = bool(getattr(model_cls, "selects_from_library", False))  # sunsal: whole library
    library = bool(opts.endmembers or opts.library) or sparse
    if getattr(config, "brightness", None) == "auto":  # library spectra: fit a brightness
        config = replace(config, brightness="scaled" if library else "none")
    device = device_for(model_cls, opts.device)
    cube, Y = prepared.cube, prepared.sample
    check_sample(Y, prepared.scene_id)
    value_range = _reflectance_range(Y, prepared.raw)
    t0 = time.perf_counter()
    say("finding endmembers")
    em = _library_endmembers(cube, opts, sparse) if library else \
        _extracted_endmembers(Y, cube, opts)
    scale = _library_scale(Y, em, config) if library else None  # may refuse: before the fit
    _timed(prepared.timings, "endmembers", t0)
    t0 = time.perf_counter()
    say(f"fitting {opts.model}")
    unmixer = model_cls(config, device=device)
    if opts.device.strip().lower() == "auto" and hasattr(unmixer, "device_request"):
        unmixer.device_request = "auto"  # resolved again on each dask worker
    if on_epoch is not None and hasattr(unmixer, "progress"):
        unmixer.progress = on_epoch
    check_endmembers(em.spectra, Y, prepared.scene_id)
    if model_cls.input != "pixels" and not getattr(model_cls, "trains_on_pixels", False):
        # spatial models train on seeded patches of the scene
        from hsu_geo.unmix.spatial import training_patches

        own = getattr(unmixer, "training_sample", None)  # a model may read its own (dffn)
        first = prepared.first_patches if _same_windows(
            prepared.first_request, unmixer.config, cube) else None
        unmixer.fit(own(cube) if own else training_patches(cube, unmixer, first), em.spectra)
    else:
        unmixer.fit(Y, em.spectra)
    if sparse:  # the fit kept only the library members present in the scene
        keep = list(unmixer.selected)  # type: ignore[attr-defined]
        info = unmixer.fit_info["sunsal"]  # run.json: library indices -> names
        info["selected"] = [em.names[i] for i in keep]
        info["pruned"] = [{"name": em.names[d["row"]], "rise": d["rise"]} for d in info["pruned"]]
        info["group_candidates"] = [em.names[i] for i in info.get("group_candidates", [])]
        info["library_mean_fraction"] = dict(zip(em.names, info["library_mean_fraction"],
                                                 strict=True))
        em = replace(em, spectra=em.spectra[keep], names=[em.names[i] for i in keep],
                     angles_rad=[em.angles_rad[i] for i in keep])
    if hasattr(unmixer, "progress"):
        unmixer.progress = None  # the fitted model travels to workers without the callback
    _timed(prepared.timings, "fit", t0)
    check_fit(Y, unmixer, list(em.names), prepared.scene_id)
    unmixer.fit_info["reflectance_range"] = value_range
    if value_range["warning"]:
        unmixer.fit_info["warnings"] = [*unmixer.fit_info.get("warnings", []),
                                        value_range["warning"]]
    if scale is not None:
        t0 = time.perf_counter()
        _record_library_fit(unmixer, Y, em, *scale)
        _timed(prepared.timings, "library_checks", t0)
    return FittedModel(
        unmixer, opts.model, list(em.names), np.asarray(cube["band"].values),
        np.asarray(cube["wavelength"].values, "float64"), prepared.scene_id, em.source,
        [None if a is None else math.degrees(a) for a in em.angles_rad],
        _as_dict(config), device, em.hysime_k, em.pixel_indices, int(Y.shape[0]),
        em.k_estimate, em.naming, em.extraction)


def _reflectance_range(Y: np.ndarray, raw: xr.DataArray) -> dict[str, Any]:
    """Level of the pixel sample (:func:`hsu_geo.ingest.scale.range_record`); an implausible
    one (e.g. x10000 without a scale factor) is logged now, before any training, and goes
    into run.json ``extra.fit.warnings`` with the fit."""
    from hsu_geo.ingest.scale import range_record

    rec = range_record(Y, raw)
    if rec["warning"]:
        log.warning("%s", rec["warning"])
    return rec


def _library_scale(Y: np.ndarray, em: Endmembers, config: Any) -> tuple[dict, list[str]]:
    """Scene vs library level (:func:`~hsu_geo.endmembers.library.library_scale_check`)."""
    from hsu_geo.endmembers.library import library_scale_check

    mode = getattr(config, "brightness", None)
    return library_scale_check(Y, em.spectra, scaled=None if mode is None else mode == "scaled")


def _record_library_fit(unmixer: Unmixer, Y: np.ndarray, em: Endmembers, scale: dict,
                        warnings: list[str]) -> None:
    """Fit quality of library endmembers on the pixel sample into ``unmixer.fit_info``
    (``library_fit``, ``warnings``: run.json ``extra.fit``); each warning is logged."""
    from hsu_geo.endmembers.library import library_fit_diagnostics
    from hsu_geo.unmix.adapter import fits_brightness

    if fits_brightness(unmixer):
        A, s = unmixer.abundances_and_brightness(Y)  # type: ignore[attr-defined]
    else:
        A, s = unmixer.abundances(Y), None
    info, more = library_fit_diagnostics(Y, em.spectra, A, s, em.names,
                                         reconstruct=unmixer.reconstruct)
    info["brightness_mode"] = getattr(unmixer.config, "brightness", None)
    info["scale"] = scale
    unmixer.fit_info["library_fit"] = info
    unmixer.fit_info["warnings"] = list(unmixer.fit_info.get("warnings", [])) + warnings + more
    for msg in warnings + more:
        log.warning("%s", msg)


def model_from_checkpoint(path: str, opts: UnmixOptions) -> FittedModel:
    """A :class:`FittedModel` from ``--load-model`` (checked against the other options)."""
    checkpoint = _read_checkpoint(opts)
    device = resolve_device(opts.device)
    unmixer = checkpoint.build(device)
    if opts.device.strip().lower() == "auto" and hasattr(unmixer, "device_request"):
        unmixer.device_request = "auto"  # resolved again on each dask worker
    return FittedModel(
        unmixer, checkpoint.model, list(checkpoint.endmember_names),
        np.asarray(checkpoint.payload.get("band_numbers") or [], dtype=int),
        np.asarray(checkpoint.wavelengths, "float64"), f"checkpoint {Path(path).name}",
        f"checkpoint:{path}", [None] * len(checkpoint.endmember_names),
        _as_dict(checkpoint.config()), device)


def apply_and_write(
    prepared: PreparedScene,
    fitted: FittedModel,
    out_dir: str | Path,
    opts: UnmixOptions,
    *,
    overwrite: bool = False,
    progress: bool = False,
    scheduler_name: str = "threads",
    extra: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Apply ``fitted`` block by block over the prepared scene and write every output."""
    from hsu_geo.write.creation import check_creation_options
    from hsu_geo.write.outputs import write_outputs
    from hsu_geo.write.provenance import build_run_record

    cube, raw = prepared.cube, prepared.raw
    result = apply_unmixer(cube, fitted.unmixer, fitted.names, attrs={
        "model": fitted.model, "seed": opts.seed, "device": fitted.device,
        "units": cube.attrs.get("units")})  # RMSE unit, quicklook axis
    record = build_run_record(
        scene_id=prepared.scene_id, model=fitted.model,
        config={"options": opts.to_dict(), "model_config": fitted.model_config},
        seed=opts.seed, device=fitted.device,
        inputs=[p for p in raw.attrs.get("source_files", []) if Path(p).is_file()],
        timings=prepared.timings, endmembers=fitted.names,
        endmember_angles_deg=[a if a is not None else float("nan")
                              for a in fitted.angles_deg],
        extra={
            "scene": prepared.path, "reader": raw.attrs.get("reader"),
            "acquisition_time": raw.attrs.get("acquisition_time") or None,
            "scheduler": scheduler_name,
            "trained_on": fitted.trained_on,
            "endmember_source": fitted.endmember_source,
            "hysime_k": fitted.hysime_k,
            "k_estimate": fitted.k_estimate,
            "endmember_naming": fitted.naming,
            "endmember_extraction": fitted.extraction,
            "endmember_pixel_indices_in_sample": fitted.pixel_indices,
            "sample_pixels": fitted.sample_pixels,
            "band_statistics_pixels": prepared.bad_band_pixels,
            "bands_used": int(cube.sizes["band"]),
            "dropped_bands": cube.attrs.get("dropped_bands", []),
            "fit": fitted.unmixer.fit_info,
            **(extra or {}),
        },
    )
    t0 = time.perf_counter()
    say("unmixing and writing")
    outputs = write_outputs(result, Path(out_dir), prepared.scene_id, fitted.model,
                            overwrite=overwrite or prepared.replace_recorded,
                            run_record=record, progress=progress,
                            creation_options=check_creation_options(opts.creation_options))
    _timed(prepared.timings, "unmix_and_write", t0)
    return {"outputs": outputs, "record": record, "scene_id": prepared.scene_id,
            "endmembers": fitted.names, "timings": prepared.timings}


def run_unmix(
    scene: str | Path,
    out_dir: str | Path,
    opts: UnmixOptions,
    *,
    overwrite: bool = False,
    progress: bool = False,
    on_stage: Callable[[str], None] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    replaceable: Collection[str] = (),
) -> dict[str, Any]:
    """Unmix one scene into ``out_dir``; returns ``{"outputs": {key: Path}, "record": …}``.

    Reads the scene twice at most: one scan (pixel sample + band statistics) and the
    unmixing pass. With ``opts.load_model`` the checkpoint replaces endmember extraction
    and fitting (and the scan); with ``opts.save_model`` the fitted deep model is saved.
    """
    say = on_stage or (lambda _msg: None)
    t_load = time.perf_counter()
    loaded = model_from_checkpoint(opts.load_model, opts) if opts.load_model else None
    t_load = round(time.perf_counter() - t_load, 3)
    model = loaded.model if loaded else opts.model
    if loaded is None:
        MODELS.get(opts.model)  # unknown model: fail before any I/O
        make_config(MODELS.get(opts.model).Config, opts.settings)
        device_for(MODELS.get(opts.model), opts.device)
        check_k_applies(opts)
    if opts.save_model:
        from hsu_geo.unmix.deep.base import DeepUnmixer

        if not issubclass(MODELS.get(model), DeepUnmixer):
            raise ConfigError(f"--save-model needs a deep model (see `hsu-geo models`); "
                              f"{model} has no trained weights to save")
    out = Path(out_dir)
    created = not out.exists()
    try:
        return _run_stages(scene, out, opts, model, loaded, t_load, overwrite=overwrite,
                           progress=progress, on_epoch=on_epoch, say=say,
                           replaceable=replaceable)
    except BaseException:
        if created:  # a failed run leaves no empty -o folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _run_stages(scene: str | Path, out: Path, opts: UnmixOptions, model: str,
                loaded: FittedModel | None, t_load: float, *, overwrite: bool, progress: bool,
                on_epoch: Callable[[Any], None] | None, say: Callable[[str], None],
                replaceable: Collection[str]) -> dict[str, Any]:
    """:func:`run_unmix` after its option checks: prepare, fit (or load), save, apply."""
    with scheduler(opts.scheduler) as sched:
        prepared = prepare_scene(
            scene, opts, model=model, out_dir=out, overwrite=overwrite,
            extra_targets=[Path(opts.save_model)] if opts.save_model else None,
            bands_of=loaded, replaceable=replaceable, say=say)
        if loaded is not None:
            prepared.timings["load_model"] = t_load
        fitted = loaded or fit_model(prepared, opts, on_epoch=on_epoch, say=say)
        if opts.save_model:
            from hsu_geo.unmix.deep.checkpoint import save_checkpoint

            t0 = time.perf_counter()
            save_checkpoint(opts.save_model, fitted.unmixer, fitted.wavelength, fitted.names,
                            fitted.band)
            _timed(prepared.timings, "save_model", t0)
        return apply_and_write(
            prepared, fitted, out, opts, overwrite=overwrite, progress=progress,
            scheduler_name=sched, say=say,
            extra={"model_checkpoint": {"loaded": opts.load_model, "saved": opts.save_model}})


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
