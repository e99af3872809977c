"""Score ``hsu-geo unmix`` outputs against known truth (``hsu-geo evaluate``).

Inputs: an unmix output folder (``S_M_abundance.tif`` + ``S_M_endmembers.csv``, optionally
``S_M_rmse.tif`` and ``S_M_run.json``) and a truth pair (``<stem>_abundance.tif`` with one band
per reference endmember, ``<stem>_endmembers.csv``), as written by ``hsu-geo synth`` and
``sample_data/make_sample_data.py``.

Method (models/README.md "Metrics"): the run's bands are paired with the truth's (by band
number when both CSVs carry it, else by wavelength within 0.5 nm); the estimated endmembers are
matched to the reference ones by one Hungarian assignment on the SAD matrix over those bands;
the same permutation is applied to the abundance maps. Pixels count where both abundance
rasters are finite; the two rasters must be on the same grid.

Reconstruction: when the scene the run read can be found (``--scene``, else ``extra.scene`` of
``S_M_run.json``, else its single recorded input) and is unchanged (sha256 in the run record)
and on the output grid, RMSE_rec, PSNR (MAX = the scene's maximum on the kept bands) and RE
are computed from ``Y_hat = A · M`` on the kept bands, block by block. That is the linear
reconstruction; a model with a nonlinear decoder reconstructs differently, which is why the
model's own value from ``S_M_rmse.tif`` (``sqrt(mean(rmse_px²))``) is reported as well.

Abundance convention (``abundance_convention``, :data:`~hsu_geo.scoring.ABUNDANCE_CONVENTIONS`):
``physical`` scores the abundance raster as written. ``reference`` and ``fcls`` re-derive the
abundances from the run's estimated endmembers (its CSV, on the kept bands) and the scene the
run read, with the rule a reference set was made by (Samson / Jasper Ridge: NNLS on
max-normalised endmembers, then per-pixel sum normalisation; Moffett: FCLS), and score those,
so an abundance RMSE against such a reference measures the endmembers rather than the
difference of conventions. Endmember SAD/SID and the matching do not depend on the convention.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.errors import RasterioIOError

from hsu_geo.cube import take_bands
from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError, SceneNotFoundError
from hsu_geo.ingest.rasterio_array import open_quietly
from hsu_geo.scoring import (
    ABUNDANCE_CONVENTIONS,
    ReconstructionScores,
    convention_abundances,
    match_bands,
    reconstruction_scores,
)
from hsu_geo.unmix.metrics import evaluate as score
from hsu_geo.write import tables

ABUNDANCE_SUFFIX = "_abundance.tif"
ENDMEMBERS_SUFFIX = "_endmembers.csv"
ROWS_PER_BLOCK = 256
TRUTH_SUBDIR = "truth"


@dataclass(frozen=True)
class RunFiles:
    """One unmix run ``run_id`` = ``S_M`` in an output folder (rmse/run.json may be absent)."""

    run_id: str
    abundance: Path
    endmembers: Path
    rmse: Path | None
    run_json: Path | None


@dataclass(frozen=True)
class TruthFiles:
    """Reference abundances (k, rows, cols) GeoTIFF and endmember CSV."""

    abundance: Path
    endmembers: Path


@dataclass(frozen=True)
class Spectra:
    """Endmember spectra ``(k, L)`` with names, wavelengths (nm) and band numbers (or None)."""

    names: tuple[str, ...]
    band: np.ndarray | None
    wavelength_nm: np.ndarray
    spectra: np.ndarray


@dataclass(frozen=True)
class Raster:
    """A ``(count, rows, cols)`` float64 raster with its band descriptions and grid."""

    data: np.ndarray
    descriptions: tuple[str | None, ...]
    crs: Any
    transform: Any
    path: Path


@dataclass(frozen=True)
class EndmemberScore:
    """Scores of reference endmember ``reference`` matched to estimate ``estimate`` (1-based
    band ``estimate_band`` of the abundance raster). SAD in radians."""

    reference: str
    estimate: str
    estimate_band: int
    sad_rad: float
    sid: float
    rmse: float


@dataclass(frozen=True)
class Evaluation:
    """Everything ``hsu-geo evaluate`` reports for one run."""

    run_id: str
    files: dict[str, str]
    band_matching: str
    n_bands: int
    n_pixels: int
    endmembers: list[EndmemberScore]
    mean_sad_rad: float
    mean_sid: float
    mean_rmse: float
    armse: float
    reconstruction: ReconstructionScores | None = None
    reconstruction_scene: str | None = None
    model_recon_rmse: float | None = None
    notes: list[str] = field(default_factory=list)
    abundance_convention: str = "physical"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers, e.g. the PSNR of a perfect fit, become None)."""
        rec = None
        if self.reconstruction is not None:
            r = self.reconstruction
            rec = {"source": "A·M on the scene's kept bands", "scene": self.reconstruction_scene,
                   "rmse": _num(r.rmse), "psnr_db": _num(r.psnr), "psnr_max_value":
                   _num(r.max_value), "re_rad": _num(r.re), "n_pixels": r.n_pixels}
        return {
            "run_id": self.run_id, "files": self.files, "band_matching": self.band_matching,
            "n_bands": self.n_bands, "n_pixels": self.n_pixels,
            "endmembers": [{"reference": e.reference, "estimate": e.estimate,
                            "estimate_band": e.estimate_band, "sad_rad": _num(e.sad_rad),
                            "sad_deg": _num(math.degrees(e.sad_rad)), "sid": _num(e.sid),
                            "rmse": _num(e.rmse)} for e in self.endmembers],
            "mean_sad_rad": _num(self.mean_sad_rad),
            "mean_sad_deg": _num(math.degrees(self.mean_sad_rad)),
            "mean_sid": _num(self.mean_sid), "mean_rmse": _num(self.mean_rmse),
            "armse": _num(self.armse), "reconstruction": rec,
            "model_recon_rmse": _num(self.model_recon_rmse), "notes": list(self.notes),
            "abundance_convention": {
                "name": self.abundance_convention,
                "definition": ABUNDANCE_CONVENTIONS[self.abundance_convention]},
        }


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# --------------------------------------------------------------------------------------------
# Finding files


def find_runs(output_dir: str | os.PathLike[str], run: str | None = None) -> list[RunFiles]:
    """Runs in an unmix output folder (every ``S_M_abundance.tif`` with its endmember CSV),
    sorted by id; only ``run`` (``S_M``) when given."""
    folder = Path(output_dir)
    if not folder.exists():
        raise SceneNotFoundError(f"output folder {folder} does not exist")
    if not folder.is_dir():
        raise InvalidSceneError(f"{folder} is not a folder; give the -o folder of hsu-geo unmix")
    ids = sorted(p.name[: -len(ABUNDANCE_SUFFIX)] for p in folder.glob(f"*{ABUNDANCE_SUFFIX}")
                 if not p.name.startswith("."))
    if run is not None:
        if run not in ids:
            have = ", ".join(ids) or "none"
            raise SceneNotFoundError(f"no run {run!r} in {folder} (runs: {have})")
        ids = [run]
    runs = []
    for rid in ids:
        csv = folder / f"{rid}{ENDMEMBERS_SUFFIX}"
        if not csv.is_file():
            if run is not None:
                raise SceneNotFoundError(f"{csv} is missing; the run {rid} is incomplete")
            continue
        rmse, rec = folder / f"{rid}_rmse.tif", folder / f"{rid}_run.json"
        runs.append(RunFiles(rid, folder / f"{rid}{ABUNDANCE_SUFFIX}", csv,
                             rmse if rmse.is_file() else None, rec if rec.is_file() else None))
    if not runs:
        raise SceneNotFoundError(f"no unmix outputs (S_M{ABUNDANCE_SUFFIX} with "
                                 f"S_M{ENDMEMBERS_SUFFIX}) in {folder}")
    return runs


def find_truth(path: str | os.PathLike[str], scene_id: str | None = None) -> TruthFiles:
    """Truth pair in a synth truth folder or dataset folder (its ``truth/`` subfolder).

    With several pairs, the one whose stem is ``scene_id`` is taken.
    """
    folder = Path(path)
    if not folder.exists():
        raise SceneNotFoundError(f"truth folder {folder} does not exist")
    if not folder.is_dir():
        raise InvalidSceneError(f"--truth {folder} is a file; give a synth truth or dataset "
                                "folder, or --truth-abundance TIF with --truth-endmembers CSV")
    if (folder / TRUTH_SUBDIR).is_dir():
        folder = folder / TRUTH_SUBDIR
    tifs = {p.name[: -len(ABUNDANCE_SUFFIX)] for p in folder.glob(f"*{ABUNDANCE_SUFFIX}")}
    csvs = {p.name[: -len(ENDMEMBERS_SUFFIX)] for p in folder.glob(f"*{ENDMEMBERS_SUFFIX}")}
    stems = sorted(tifs & csvs)
    if not stems:
        lone = sorted(tifs ^ csvs)
        if lone:
            stem = lone[0]
            missing = (f"{stem}{ENDMEMBERS_SUFFIX}" if stem in tifs
                       else f"{stem}{ABUNDANCE_SUFFIX}")
            raise SceneNotFoundError(f"truth file {folder / missing} is missing")
        raise SceneNotFoundError(f"no truth files (*{ABUNDANCE_SUFFIX} with "
                                 f"*{ENDMEMBERS_SUFFIX}) in {folder}")
    if len(stems) > 1:
        if scene_id not in stems:
            raise InvalidSceneError(
                f"{folder} holds truth for {', '.join(stems)}; pass --truth-abundance and "
                "--truth-endmembers to choose"
            )
        stems = [scene_id]
    return TruthFiles(folder / f"{stems[0]}{ABUNDANCE_SUFFIX}",
                      folder / f"{stems[0]}{ENDMEMBERS_SUFFIX}")


def truth_files(abundance: str | os.PathLike[str],
                endmembers: str | os.PathLike[str]) -> TruthFiles:
    """An explicit truth pair (both files must exist)."""
    for p in (Path(abundance), Path(endmembers)):
        if not p.is_file():
            raise SceneNotFoundError(f"truth file {p} does not exist")
    return TruthFiles(Path(abundance), Path(endmembers))


# --------------------------------------------------------------------------------------------
# Reading


def read_spectra(path: Path) -> Spectra:
    """Endmembers from an hsu-geo CSV (``band,wavelength_nm,<names>``) or, failing that, a
    library-style CSV (``wavelength_nm,<names>``, no band numbers)."""
    try:
        t = tables.read_endmember_csv(path)
        return Spectra(t.names, np.asarray(t.band), np.asarray(t.wavelength_nm, float),
                       np.asarray(t.spectra, float))
    except (EndmemberError, UnicodeDecodeError):
        from hsu_geo.endmembers.library import read_endmember_csv

        lib = read_endmember_csv(path)
        return Spectra(tuple(lib.names), None, lib.wavelength_nm, lib.spectra)


def read_raster(path: Path, what: str) -> Raster:
    """All bands of a GeoTIFF as float64 ``(count, rows, cols)``; nodata -> NaN."""
    try:
        with open_quietly(str(path)) as src:  # a truth grid may carry no georeferencing
            data = src.read(masked=True).astype("float64").filled(np.nan)
            return Raster(data, tuple(src.descriptions), src.crs, src.transform, path)
    except RasterioIOError as exc:
        raise InvalidSceneError(f"cannot read {what} {path} ({exc})") from None


def _ordered_truth(raster: Raster, names: tuple[str, ...]) -> np.ndarray:
    """Truth abundances in endmember-CSV order, using the raster's band descriptions."""
    data, desc = raster.data, raster.descriptions
    if data.shape[0] != len(names):
        raise InvalidSceneError(f"truth {raster.path} has {data.shape[0]} bands but the truth "
                                f"endmember CSV has {len(names)} endmembers")
    if all(desc):
        if sorted(map(str, desc)) != sorted(names):
            raise InvalidSceneError(f"truth {raster.path} band names {list(desc)} differ from "
                                    f"the endmember CSV's {list(names)}")
        return data[[desc.index(n) for n in names]]
    return data


def check_same_grid(est: Raster, ref: Raster) -> None:
    """Same rows/cols and, when both are georeferenced, the same CRS and transform."""
    if est.data.shape[1:] != ref.data.shape[1:]:
        raise InvalidSceneError(
            f"grids differ: {est.path.name} is {est.data.shape[1]}x{est.data.shape[2]} pixels, "
            f"truth {ref.path.name} is {ref.data.shape[1]}x{ref.data.shape[2]}; the truth must be "
            "on the output grid (RPC and rotated scenes are written orthorectified/north-up)"
        )
    if est.crs is None or ref.crs is None:
        return
    size = max(abs(ref.transform.a), abs(ref.transform.e), 1e-12)
    same_t = all(abs(a - b) <= 1e-6 * size for a, b in
                 zip(tuple(est.transform)[:6], tuple(ref.transform)[:6], strict=True))
    if est.crs != ref.crs or not same_t:
        raise InvalidSceneError(
            f"grids differ: {est.path.name} has {est.crs} {tuple(est.transform)[:6]}, truth "
            f"{ref.path.name} has {ref.crs} {tuple(ref.transform)[:6]}; evaluate on the grid "
            "the truth was made for"
        )


def read_run_record(path: Path | None) -> dict[str, Any]:
    """``S_M_run.json`` as a dict ({} when absent)."""
    if path is None:
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidSceneError(f"cannot read run record {path} ({exc})") from None
    if not isinstance(record, dict):
        raise InvalidSceneError(f"run record {path} is not a JSON object")
    return record


# --------------------------------------------------------------------------------------------
# Reconstruction


def _extra(record: dict[str, Any]) -> dict[str, Any]:
    extra = record.get("extra")
    return extra if isinstance(extra, dict) else {}


def _unchanged(scene: Path, record: dict[str, Any]) -> bool:
    """False when ``scene`` is a file whose sha256 is not among the run's recorded inputs."""
    from hsu_geo.write.provenance import sha256_file

    digests = {i.get("sha256") for i in record.get("inputs") or [] if isinstance(i, dict)}
    return not (scene.is_file() and digests) or sha256_file(scene) in digests


def locate_scene(record: dict[str, Any], scene: str | os.PathLike[str] | None) -> Path | None:
    """The scene the run read: ``scene`` if given, else the run record's ``extra.scene`` or its
    single recorded input file, whichever exists and is unchanged; None if neither exists.

    Raises :class:`~hsu_geo.errors.InvalidSceneError` when the file found is not the one the
    run read (sha256 differs from the record).
    """
    if scene is not None:
        candidates = [Path(scene)]
        if not candidates[0].exists():
            raise SceneNotFoundError(f"scene {candidates[0]} does not exist")
    else:
        inputs = record.get("inputs") or []
        paths = [_extra(record).get("scene")]
        if len(inputs) == 1 and isinstance(inputs[0], dict):
            paths.append(inputs[0].get("path"))
        candidates = [Path(c) for c in paths if c and Path(c).exists()]
    if not candidates:
        return None
    found = next((c for c in candidates if _unchanged(c, record)), None)
    if found is None:
        raise InvalidSceneError(f"scene {candidates[0]} is not the file the run read (sha256 "
                                "differs); pass --scene with the original or --no-scene")
    return found


def _scene_rows(scene: Path, record: dict[str, Any], em: Spectra, shape: tuple[int, int]
                ) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(y0, y1, Y)`` row blocks of the scene on the run's kept bands, ``Y ((y1-y0)·cols, L)``
    float64 in raster order; the scene must be ``shape`` = (rows, cols) pixels."""
    from hsu_geo.ingest import open_scene

    options = record.get("config", {}).get("options", {})
    cube = open_scene(scene, sensor=_extra(record).get("reader") or "auto",
                      wavelengths=options.get("wavelengths"), scale=options.get("scale"))
    if (cube.sizes["y"], cube.sizes["x"]) != tuple(shape):
        raise InvalidSceneError(f"scene {scene} is {cube.sizes['y']}x{cube.sizes['x']} pixels "
                                f"but the abundances are {shape[0]}x{shape[1]}")
    try:
        bands = match_bands(em.band, em.wavelength_nm, cube["band"].values,
                            cube["wavelength"].values)
    except EndmemberError as exc:
        raise InvalidSceneError(f"scene {scene} does not hold the run's bands: {exc}") from None
    cube = take_bands(cube, bands.ref_index)
    for y0 in range(0, shape[0], ROWS_PER_BLOCK):
        y1 = min(y0 + ROWS_PER_BLOCK, shape[0])
        Y = np.asarray(cube.isel(y=slice(y0, y1)).values, "float64")
        yield y0, y1, Y.reshape(Y.shape[0], -1).T


def _scene_blocks(scene: Path, record: dict[str, Any], em: Spectra, A: np.ndarray
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(Y, A·M)`` pixel blocks ``(n, L)`` on the run's kept bands; ``A (k, rows, cols)``."""
    M = em.spectra
    for y0, y1, Y in _scene_rows(scene, record, em, A.shape[1:]):
        Ab = A[:, y0:y1].reshape(A.shape[0], -1).T
        ok = np.isfinite(Y).all(axis=1) & np.isfinite(Ab).all(axis=1)
        yield Y[ok], Ab[ok] @ M


def convention_maps(scene: Path, record: dict[str, Any], em: Spectra, shape: tuple[int, int],
                    convention: str) -> np.ndarray:
    """Abundances ``(k, rows, cols)`` re-derived from the run's endmembers ``em`` and the scene
    under ``convention`` (:func:`~hsu_geo.scoring.convention_abundances`); NaN where a pixel is
    not finite or has no solution under the convention."""
    k = em.spectra.shape[0]
    out = np.full((k, *shape), np.nan)
    for y0, y1, Y in _scene_rows(scene, record, em, shape):
        A = convention_abundances(Y, em.spectra, convention)
        out[:, y0:y1] = A.T.reshape(k, y1 - y0, shape[1])
    return out


def _scene_on_output_grid(record: dict[str, Any]) -> bool:
    grid = record.get("output_grid") or {}
    return not (grid.get("orthorectified_from_rpc") or grid.get("warped_north_up"))


def model_rmse(path: Path | None) -> float | None:
    """Overall reconstruction RMSE of the model from ``S_M_rmse.tif``: sqrt(mean(rmse_px²))."""
    if path is None:
        return None
    band = read_raster(path, "RMSE map").data[0]
    values = band[np.isfinite(band)]
    return float(np.sqrt(np.mean(values**2))) if values.size else None


# --------------------------------------------------------------------------------------------
# Evaluation


def evaluate_run(run: RunFiles, truth: TruthFiles, *, scene: str | os.PathLike[str] | None = None,
                 reconstruct: bool = True, abundance_convention: str = "physical"
                 ) -> Evaluation:
    """Score one run against ``truth`` (see the module doc for the method)."""
    if abundance_convention not in ABUNDANCE_CONVENTIONS:
        raise ConfigError(f"abundance convention {abundance_convention!r}: choose one of "
                          f"{', '.join(ABUNDANCE_CONVENTIONS)}")
    est_em = read_spectra(run.endmembers)
    ref_em = read_spectra(truth.endmembers)
    est = read_raster(run.abundance, "abundance")
    ref = read_raster(truth.abundance, "truth abundance")
    if est.data.shape[0] != len(est_em.names):
        raise InvalidSceneError(f"{run.abundance.name} has {est.data.shape[0]} bands but "
                                f"{run.endmembers.name} has {len(est_em.names)} endmembers")
    check_same_grid(est, ref)
    bands = match_bands(est_em.band, est_em.wavelength_nm, ref_em.band, ref_em.wavelength_nm)
    M_ref = ref_em.spectra[:, bands.ref_index]
    A_ref = _ordered_truth(ref, ref_em.names)
    record = read_run_record(run.run_json)
    notes: list[str] = []
    A_est = est.data
    if abundance_convention != "physical":
        A_est = _rederived(run, record, scene, est_em, est.data, abundance_convention, notes)
    ok = np.isfinite(A_est).all(axis=0) & np.isfinite(A_ref).all(axis=0)
    if not ok.any():
        raise InvalidSceneError(f"no pixel has finite abundances in both {run.abundance.name} "
                                f"and {truth.abundance.name}")
    s = score(M_ref, est_em.spectra, A_ref[:, ok].T, A_est[:, ok].T)
    rmse = np.asarray(s.rmse, float)
    rows = [EndmemberScore(name, est_em.names[int(j)], int(j) + 1, float(s.sad[i]),
                           float(s.sid[i]), float(rmse[i]))
            for i, (name, j) in enumerate(zip(ref_em.names, s.perm, strict=True))]
    recon = recon_scene = None
    if reconstruct:
        path = locate_scene(record, scene)
        if path is None:
            notes.append("scene not found (run.json extra.scene / inputs); reconstruction "
                         "metrics from the scene skipped, pass --scene")
        elif not _scene_on_output_grid(record):
            notes.append("the run warped the scene to a new grid; reconstruction from the "
                         "scene skipped")
        else:
            recon = reconstruction_scores(_scene_blocks(path, record, est_em, est.data))
            recon_scene = str(path)
    files = {"abundance": str(run.abundance), "endmembers": str(run.endmembers),
             "truth_abundance": str(truth.abundance), "truth_endmembers": str(truth.endmembers)}
    return Evaluation(
        run_id=run.run_id, files=files, band_matching=bands.method,
        n_bands=int(M_ref.shape[1]), n_pixels=int(ok.sum()), endmembers=rows,
        mean_sad_rad=s.mean_sad, mean_sid=s.mean_sid, mean_rmse=float(rmse.mean()),
        armse=float(s.armse or 0.0),
        reconstruction=recon, reconstruction_scene=recon_scene,
        model_recon_rmse=model_rmse(run.rmse), notes=notes,
        abundance_convention=abundance_convention,
    )


def _rederived(run: RunFiles, record: dict[str, Any], scene: str | os.PathLike[str] | None,
               em: Spectra, written: np.ndarray, convention: str, notes: list[str]
               ) -> np.ndarray:
    """The run's abundances re-derived under ``convention`` (NaN where the written raster is
    NaN too, so both conventions score the same pixels unless the rule has no solution)."""
    path = locate_scene(record, scene)
    if path is None:
        raise SceneNotFoundError(
            f"--abundance-convention {convention} re-derives the abundances from the scene the "
            f"run {run.run_id} read, which was not found (run.json extra.scene / inputs); pass "
            "--scene")
    if not _scene_on_output_grid(record):
        raise InvalidSceneError(f"the run {run.run_id} warped the scene to a new grid; "
                                f"--abundance-convention {convention} needs it on the output grid")
    A = convention_maps(path, record, em, written.shape[1:], convention)
    A[:, ~np.isfinite(written).all(axis=0)] = np.nan
    lost = int((np.isfinite(written).all(axis=0) & ~np.isfinite(A).all(axis=0)).sum())
    if lost:
        notes.append(f"{lost} pixel(s) have no abundances under the {convention} convention "
                     "(all-zero NNLS solution or non-finite spectrum) and are not scored")
    notes.append(f"abundances re-derived under the {convention} convention from {path}")
    return A


def evaluate_folder(output_dir: str | os.PathLike[str], *, truth: str | None = None,
                    truth_abundance: str | None = None, truth_endmembers: str | None = None,
                    run: str | None = None, scene: str | None = None,
                    reconstruct: bool = True, abundance_convention: str = "physical"
                    ) -> list[Evaluation]:
    """Evaluate every run (or ``run``) of ``output_dir`` against a truth folder ``truth`` or
    the explicit pair ``truth_abundance`` + ``truth_endmembers``."""
    explicit = truth_abundance is not None or truth_endmembers is not None
    if explicit and truth is not None:
        raise InvalidSceneError("give --truth or --truth-abundance/--truth-endmembers, not both")
    fixed: TruthFiles | None = None
    if explicit:
        if truth_abundance is None or truth_endmembers is None:
            raise InvalidSceneError("--truth-abundance and --truth-endmembers go together")
        fixed = truth_files(truth_abundance, truth_endmembers)
    elif truth is None:
        raise InvalidSceneError("give --truth FOLDER or --truth-abundance with "
                                "--truth-endmembers")
    results = []
    for r in find_runs(output_dir, run):
        t = fixed or find_truth(str(truth), read_run_record(r.run_json).get("scene_id"))
        results.append(evaluate_run(r, t, scene=scene, reconstruct=reconstruct,
                                    abundance_convention=abundance_convention))
    return results
