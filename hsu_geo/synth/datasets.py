"""CResDAE-style synthetic benchmark: linear / bilinear / PNMM × SNR datasets on disk.

Follows ``shared/models/synthetic.md`` §2 with any endmember library (§2 uses the Urban
5-endmember library; the default here is five bundled USGS minerals). Every dataset shares one
spatially smooth abundance layout (generator G1, §1.3: Gaussian-filtered random fields, wrap
boundary, standardised, softmax with temperature T) so the datasets differ only by mixing model
and noise. Mixing and noise come from :mod:`hsu_geo.synth.mixing`.

Layout written under ``out_dir`` for each dataset ``<mixing>_snr<SNR>`` (e.g. ``linear_snr30``)::

    <name>/scene.tif                     float32 reflectance (bands, H, W), per-band tags
                                         wavelength / wavelength_units / fwhm, EPSG:32611, 15 m
    <name>/<name>.mat                    the paper's variables (see :func:`mat_variables`)
    <name>/truth/scene_abundance.tif     float32 (k, H, W), band descriptions = endmember names
    <name>/truth/scene_endmembers.csv    band,wavelength_nm,<names...> (library on the bands)
    index.json                           every dataset's files and parameters

Scaling: ``scene.tif`` holds the mixture in reflectance units (noise-free mixture + noise, not
clipped, so values can be slightly negative at low SNR); for the linear model its endmembers are
exactly the truth CSV. The ``.mat`` follows §1.4: ``hyperspectral_cube`` and
``noise_free_cube`` are divided by ``scale_factor`` = the noisy cube's global maximum, while
``spectra_library`` stays unscaled.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import scipy.io
from affine import Affine
from scipy.ndimage import gaussian_filter

import hsu_geo
from hsu_geo.endmembers.library import SpectralLibrary, coverage_mask, resample_to_bands
from hsu_geo.errors import ConfigError, EndmemberError, OutputError
from hsu_geo.synth.mixing import MIXINGS, synthesize_detailed
from hsu_geo.write.atomic import OutputTransaction, atomic_path, check_targets
from hsu_geo.write.tables import EndmemberTable, write_endmember_csv

#: five distinct bundled USGS minerals covering 400-2500 nm (smallest pairwise angle 0.22 rad
#: on the default 10 nm grid): sulfate, carbonate, iron oxide, mafic silicate, evaporite
DEFAULT_MINERALS = ("alunite", "calcite", "hematite", "olivine", "gypsum")
DEFAULT_SNRS = (10.0, 20.0, 30.0)
INDEX_NAME = "index.json"
SCENE_NAME = "scene.tif"
TRUTH_DIR = "truth"
INDEX_SCHEMA = "hsu-geo/synth/1"
_ABUNDANCE_STREAM = 0  # seed-sequence key of the shared abundance layout


@dataclass(frozen=True)
class BandGrid:
    """Sensor bands: centres ``wavelength_nm (L,)`` and ``fwhm_nm (L,)``, nm, increasing."""

    wavelength_nm: np.ndarray
    fwhm_nm: np.ndarray
    source: str

    def __post_init__(self) -> None:
        wl, fw = np.asarray(self.wavelength_nm, float), np.asarray(self.fwhm_nm, float)
        if wl.ndim != 1 or wl.size < 2 or fw.shape != wl.shape:
            raise ConfigError(f"band grid {self.source}: need >= 2 bands with one FWHM each")
        if not (np.all(np.isfinite(wl)) and np.all(wl > 0) and np.all(np.diff(wl) > 0)):
            raise ConfigError(f"band grid {self.source}: wavelengths must be positive and "
                              "strictly increasing")
        if not (np.all(np.isfinite(fw)) and np.all(fw > 0)):
            raise ConfigError(f"band grid {self.source}: FWHM must be positive")


def regular_band_grid(start_nm: float, stop_nm: float, step_nm: float) -> BandGrid:
    """Bands every ``step_nm`` from ``start_nm`` to ``stop_nm`` (inclusive), FWHM = step."""
    if not (0 < start_nm < stop_nm and step_nm > 0):
        raise ConfigError(f"bands {start_nm:g}:{stop_nm:g}:{step_nm:g}: need "
                          "0 < START < STOP and STEP > 0")
    wl = np.arange(start_nm, stop_nm + step_nm / 2, step_nm)
    return BandGrid(wl, np.full(wl.size, float(step_nm)), f"{start_nm:g}:{stop_nm:g}:{step_nm:g}")


def parse_band_spec(spec: str) -> BandGrid:
    """``"START:STOP:STEP"`` in nm (e.g. ``"400:2500:10"``) -> :class:`BandGrid`."""
    parts = spec.split(":")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--bands {spec!r}: use START:STOP:STEP in nm, e.g. 400:2500:10") \
            from None
    return regular_band_grid(start, stop, step)


def band_grid_from_file(path: str | os.PathLike[str]) -> BandGrid:
    """Band grid from a wavelength file (CSV/text table or ENVI .hdr, as ``--wavelengths`` of
    ``hsu-geo unmix``); missing FWHM = distance to the nearest neighbouring band."""
    from hsu_geo.ingest.spectral_meta import _from_envi_header, _from_table

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"wavelength file {p} not found")
    info = _from_envi_header(p) if p.suffix.lower() == ".hdr" else _from_table(p)
    wl = np.asarray(info.wavelength, float)
    fw = np.asarray(info.fwhm, float)
    if wl.size >= 2:
        gaps = np.abs(np.diff(wl))
        spacing = np.minimum(np.r_[gaps[0], gaps], np.r_[gaps, gaps[-1]])
        fw = np.where(np.isfinite(fw) & (fw > 0), fw, spacing)
    return BandGrid(wl, fw, str(p))


@dataclass(frozen=True)
class SynthConfig:
    """Generation settings (all recorded in the outputs).

    ``size`` is (rows, cols) in pixels; ``sigma_px`` and ``temperature`` are the G1 smoothing
    width (pixels) and softmax temperature; ``b_range`` the PPNMM U(low, high) range;
    ``pixel_size_m``/``origin`` (x, y of the upper-left corner) and ``crs`` the georeferencing.
    """

    mixings: tuple[str, ...] = MIXINGS
    snrs_db: tuple[float, ...] = DEFAULT_SNRS
    size: tuple[int, int] = (128, 128)
    seed: int = 0
    bilinear_variant: str = "gbm"
    b_range: tuple[float, float] = (-0.3, 0.3)
    sigma_px: float = 6.0
    temperature: float = 0.3
    crs: str = "EPSG:32611"
    pixel_size_m: float = 15.0
    origin: tuple[float, float] = (538000.0, 4142000.0)

    def __post_init__(self) -> None:
        unknown = [m for m in self.mixings if m not in MIXINGS]
        if unknown or not self.mixings:
            raise ConfigError(f"mixing {', '.join(unknown) or '(none)'}: use "
                              f"{', '.join(MIXINGS)}")
        if len(set(self.mixings)) != len(self.mixings) or \
                len(set(self.snrs_db)) != len(self.snrs_db):
            raise ConfigError("mixing models and SNR values must not repeat")
        if not self.snrs_db or not all(np.isfinite(s) for s in self.snrs_db):
            raise ConfigError("give at least one finite SNR in dB")
        if self.seed < 0:
            raise ConfigError(f"seed {self.seed}: use a non-negative integer")
        if min(self.size) < 2:
            raise ConfigError(f"size {self.size}: rows and cols must be at least 2")
        if self.sigma_px < 0 or self.temperature <= 0:
            raise ConfigError("sigma_px must be >= 0 and temperature > 0")


@dataclass(frozen=True)
class DatasetFiles:
    """Paths of one written dataset (``mat`` holds the paper's variables)."""

    name: str
    mixing: str
    snr_db: float
    scene: Path
    mat: Path
    truth_abundance: Path
    truth_endmembers: Path
    info: dict[str, Any] = field(default_factory=dict)


def dataset_name(mixing: str, snr_db: float) -> str:
    """``"<mixing>_snr<SNR>"``, e.g. ``linear_snr30`` or ``pnmm_snr12.5``."""
    return f"{mixing}_snr{snr_db:g}"


def dataset_paths(out_dir: str | os.PathLike[str], mixing: str, snr_db: float) -> DatasetFiles:
    """Where :func:`write_datasets` puts one dataset."""
    name = dataset_name(mixing, snr_db)
    folder = Path(out_dir) / name
    stem = Path(SCENE_NAME).stem
    return DatasetFiles(name, mixing, float(snr_db), folder / SCENE_NAME, folder / f"{name}.mat",
                        folder / TRUTH_DIR / f"{stem}_abundance.tif",
                        folder / TRUTH_DIR / f"{stem}_endmembers.csv")


def smooth_abundances(k: int, rows: int, cols: int, rng: np.random.Generator,
                      sigma_px: float = 6.0, temperature: float = 0.3) -> np.ndarray:
    """Generator G1: ``(rows, cols, k)`` float64 abundances on the simplex, spatially smooth.

    Per endmember: N(0, 1) noise, Gaussian filter of ``sigma_px`` pixels (wrap boundary),
    standardised to zero mean / unit variance; then softmax(Z / temperature) over endmembers.
    """
    if k < 1:
        raise ConfigError(f"need at least one endmember, got {k}")
    Z = np.empty((rows, cols, k))
    for r in range(k):
        field_r = gaussian_filter(rng.standard_normal((rows, cols)), sigma_px, mode="wrap")
        std = field_r.std()
        Z[..., r] = (field_r - field_r.mean()) / (std if std > 0 else 1.0)
    Z /= temperature
    Z -= Z.max(axis=-1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=-1, keepdims=True)


def library_on_grid(lib: SpectralLibrary, grid: BandGrid) -> np.ndarray:
    """``(k, L)`` library spectra convolved to ``grid``; a clear error if a band is uncovered."""
    cov = coverage_mask(lib, grid.wavelength_nm, grid.fwhm_nm)
    if not cov.all():
        bad = np.flatnonzero(~cov.all(axis=0))
        names = [n for n, c in zip(lib.names, cov, strict=True) if not c.all()]
        raise EndmemberError(
            f"endmembers {', '.join(names[:5])} have no data at {bad.size} band(s) from "
            f"{grid.wavelength_nm[bad[0]]:g} to {grid.wavelength_nm[bad[-1]]:g} nm; narrow "
            "--bands or choose endmembers that cover the grid"
        )
    return resample_to_bands(lib, grid.wavelength_nm, grid.fwhm_nm)


def _stream(seed: int, key: int | str) -> np.random.Generator:
    """Independent generator per (seed, key): a dataset's draws do not depend on the others."""
    tag = key if isinstance(key, int) else zlib.crc32(key.encode())
    return np.random.default_rng(np.random.SeedSequence([int(seed), tag]))


def measured_snr_db(Y: np.ndarray, Y_clean: np.ndarray) -> float:
    """``10·log10(‖Y_clean‖² / ‖Y − Y_clean‖²)`` in dB (inf without noise)."""
    noise = float(np.sum((np.asarray(Y, float) - Y_clean) ** 2))
    signal = float(np.sum(np.asarray(Y_clean, float) ** 2))
    return float("inf") if noise == 0 else float(10 * np.log10(signal / noise))


def mat_variables(cube: np.ndarray, clean: np.ndarray, A: np.ndarray, M: np.ndarray,
                  names: Sequence[str], grid: BandGrid, mixing: str, snr_db: float,
                  nonlinearity: np.ndarray, noise_sigma: float, seed: int,
                  params: dict[str, Any]) -> dict[str, Any]:
    """The ``.mat`` contents (synthetic.md §2), from ``cube``/``clean`` (H, W, L) reflectance,
    ``A`` (H, W, k) and ``M`` (k, L): ``hyperspectral_cube``, ``abundance_cube``,
    ``mineral_names``, ``spectra_library`` (L, k), ``wavelengths`` (L,) nm, ``SNR_dB``,
    ``mixing_model`` plus ``noise_free_cube``, ``nonlinearity_params``, ``seed``,
    ``noise_sigma`` (of the scaled cube), ``scale_factor``, ``fwhm`` and
    ``generation_params`` (JSON text). Both cubes are divided by ``scale_factor``."""
    scale = float(np.max(cube))
    if not scale > 0:
        raise ConfigError("the synthetic cube has no positive value; check the endmembers")
    return {
        "hyperspectral_cube": (cube / scale).astype("float32"),
        "abundance_cube": A.astype("float32"),
        "mineral_names": np.array(list(names), dtype=object),
        "spectra_library": np.ascontiguousarray(M.T, dtype="float32"),
        "wavelengths": grid.wavelength_nm.astype("float32"),
        "fwhm": grid.fwhm_nm.astype("float32"),
        "SNR_dB": float(snr_db),
        "mixing_model": mixing,
        "noise_free_cube": (clean / scale).astype("float32"),
        "nonlinearity_params": nonlinearity.astype("float32"),
        "seed": int(seed),
        "noise_sigma": float(noise_sigma / scale),
        "scale_factor": scale,
        "generation_params": json.dumps(params),
    }


def _profile(config: SynthConfig, count: int) -> dict[str, Any]:
    rows, cols = config.size
    x0, y0 = config.origin
    return {"driver": "GTiff", "dtype": "float32", "count": count, "height": rows,
            "width": cols, "crs": config.crs,
            "transform": Affine(config.pixel_size_m, 0.0, x0, 0.0, -config.pixel_size_m, y0),
            "compress": "deflate", "predictor": 3, "tiled": True, "blockxsize": 256,
            "blockysize": 256, "interleave": "pixel"}


def _write_scene(path: Path, cube: np.ndarray, grid: BandGrid, config: SynthConfig,
                 tags: dict[str, str]) -> None:
    """``cube (H, W, L)`` as a GeoTIFF with sample_data's per-band wavelength tags."""
    with rasterio.open(path, "w", **_profile(config, cube.shape[-1])) as dst:
        dst.write(np.moveaxis(cube, -1, 0).astype("float32"))
        dst.update_tags(quantity="reflectance", units="1", sensor="synthetic", **tags)
        for b, (wl, fw) in enumerate(zip(grid.wavelength_nm, grid.fwhm_nm, strict=True), 1):
            dst.update_tags(b, wavelength=f"{wl:.4f}", wavelength_units="Nanometers",
                            fwhm=f"{fw:.4f}")


def _write_truth_abundance(path: Path, A: np.ndarray, names: Sequence[str],
                           config: SynthConfig, tags: dict[str, str]) -> None:
    """``A (H, W, k)`` as a GeoTIFF, band i = endmember i, description = its name."""
    with rasterio.open(path, "w", **_profile(config, A.shape[-1])) as dst:
        dst.write(np.moveaxis(A, -1, 0).astype("float32"))
        dst.update_tags(HSU_PRODUCT="truth_abundance", **tags)
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
            dst.update_tags(i, ENDMEMBER=name, ENDMEMBER_INDEX=str(i))


def _nonlinearity_maps(values: np.ndarray | None, rows: int, cols: int) -> np.ndarray:
    """Per-pixel nonlinearity as maps: PPNMM b ``(n,)`` -> (H, W), GBM γ ``(n, P)`` ->
    (H, W, P); none (linear, Fan) -> an empty array."""
    if values is None:
        return np.zeros(0)
    v = np.asarray(values, dtype=float)
    if v.ndim == 0:
        return v
    return v.reshape(rows, cols) if v.ndim == 1 else v.reshape(rows, cols, -1)


def _write_dataset(files: DatasetFiles, M: np.ndarray, names: Sequence[str],
                   A_maps: np.ndarray, grid: BandGrid, config: SynthConfig,
                   common: dict[str, Any], overwrite: bool) -> DatasetFiles:
    """Mix, add noise and write one dataset (truth first, then the .mat and the scene)."""
    rows, cols = config.size
    k = M.shape[0]
    rng = _stream(config.seed, files.name)
    syn = synthesize_detailed(
        M, rows * cols, files.mixing, files.snr_db, rng, A=A_maps.reshape(-1, k),
        bilinear_variant=config.bilinear_variant, b_range=config.b_range,
    )
    cube = syn.Y.reshape(rows, cols, -1)
    clean = syn.Y_clean.reshape(rows, cols, -1)
    nonlin = _nonlinearity_maps(syn.nonlinearity, rows, cols)
    info = {
        **common, "name": files.name, "mixing_model": files.mixing, "snr_db": files.snr_db,
        "bilinear_variant": config.bilinear_variant if files.mixing == "bilinear" else None,
        "b_range": list(config.b_range) if files.mixing == "pnmm" else None,
        "noise_sigma": syn.noise_sigma, "measured_snr_db": measured_snr_db(syn.Y, syn.Y_clean),
        "mat_scale_factor": float(np.max(cube)),
    }
    tags = {"HSU_SYNTH": json.dumps(info)}
    mat = mat_variables(cube, clean, A_maps, M, names, grid, files.mixing, files.snr_db,
                        nonlin, syn.noise_sigma, config.seed, info)
    table = EndmemberTable(tuple(names), np.arange(1, grid.wavelength_nm.size + 1),
                           grid.wavelength_nm, M.astype("float32"), grid.fwhm_nm)
    folder, truth = files.scene.parent, files.truth_abundance.parent
    with OutputTransaction(folder, [files.scene.name, files.mat.name],
                           overwrite=overwrite) as tx:
        with OutputTransaction(truth, [files.truth_abundance.name, files.truth_endmembers.name],
                               overwrite=overwrite) as ttx:
            _write_truth_abundance(ttx.temp(files.truth_abundance.name), A_maps, names,
                                   config, tags)
            write_endmember_csv(ttx.temp(files.truth_endmembers.name), table)
        scipy.io.savemat(tx.temp(files.mat.name), mat, do_compression=True)
        _write_scene(tx.temp(files.scene.name), cube, grid, config, tags)
    return DatasetFiles(files.name, files.mixing, files.snr_db, files.scene, files.mat,
                        files.truth_abundance, files.truth_endmembers, info)


def _read_index(out_dir: Path) -> dict[str, Any]:
    """Dataset entries of an existing ``index.json`` ({} when there is none)."""
    path = out_dir / INDEX_NAME
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["datasets"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputError(f"{path} is not a synth index ({exc!r}); move it away") from exc


def _update_index(out_dir: Path, datasets: dict[str, Any],
                  written: Sequence[DatasetFiles]) -> Path:
    """Write ``index.json``: ``datasets`` (earlier entries) plus/replaced by ``written``."""
    path = out_dir / INDEX_NAME
    datasets = dict(datasets)
    for d in written:
        rel = {key: os.path.relpath(getattr(d, key), out_dir)
               for key in ("scene", "mat", "truth_abundance", "truth_endmembers")}
        datasets[d.name] = {**d.info, "files": rel}
    index = {"schema": INDEX_SCHEMA, "hsu_geo_version": hsu_geo.__version__,
             "datasets": dict(sorted(datasets.items()))}
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return path


def write_datasets(out_dir: str | os.PathLike[str], library: SpectralLibrary, grid: BandGrid,
                   config: SynthConfig = SynthConfig(), *, overwrite: bool = False
                   ) -> list[DatasetFiles]:
    """Write one dataset per (mixing, SNR) of ``config`` under ``out_dir``, plus ``index.json``.

    ``library`` spectra are convolved to ``grid``; abundances (one G1 layout for all datasets,
    seeded by ``config.seed``) and per-dataset nonlinearity/noise draws (seeded by seed and
    dataset name, so a dataset is identical whichever subset is requested) are deterministic.
    Raises :class:`~hsu_geo.errors.OutputExistsError` before computing anything if any dataset
    file exists and ``overwrite`` is False.
    """
    out = Path(out_dir)
    todo = [dataset_paths(out, m, s) for m in config.mixings for s in config.snrs_db]
    check_targets([p for d in todo for p in (d.scene, d.mat, d.truth_abundance,
                                             d.truth_endmembers)], overwrite=overwrite)
    earlier = _read_index(out)
    M = library_on_grid(library, grid)
    k = M.shape[0]
    if k < 2:
        raise EndmemberError("synthetic mixtures need at least two endmembers")
    if k > grid.wavelength_nm.size:
        raise EndmemberError(f"{k} endmembers but only {grid.wavelength_nm.size} bands")
    rows, cols = config.size
    A_maps = smooth_abundances(k, rows, cols, _stream(config.seed, _ABUNDANCE_STREAM),
                               config.sigma_px, config.temperature)
    common = {
        "seed": config.seed, "size": list(config.size), "endmembers": list(library.names),
        "endmember_records": library.records, "library_source": library.source,
        "bands": {"source": grid.source, "count": int(grid.wavelength_nm.size),
                  "first_nm": float(grid.wavelength_nm[0]),
                  "last_nm": float(grid.wavelength_nm[-1])},
        "abundance_generator": {"name": "G1 smooth random fields + softmax",
                                "sigma_px": config.sigma_px,
                                "temperature": config.temperature, "boundary": "wrap"},
        "crs": config.crs, "pixel_size_m": config.pixel_size_m, "origin": list(config.origin),
        "synth_config": asdict(config),
    }
    written = [_write_dataset(d, M, library.names, A_maps, grid, config, common, overwrite)
               for d in todo]
    _update_index(out, earlier, written)
    return written
