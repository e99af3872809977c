"""Standard unmixing benchmark cubes as scenes with truth (``shared/data``, PROVENANCE.md §1).

Samson (95 x 95, 156 bands, 401-889 nm; rock, tree, water) and Jasper Ridge (100 x 100, 198 of
224 AVIRIS bands; tree, water, dirt, road) from F. Zhu's MATLAB distribution; Moffett Field
(50 x 50, 184 AVIRIS bands; water, soil, vegetation) and MUUFL Gulfport (90 x 90, 64 CASI
bands, 5 endmembers) from the UPCGIT model zoo. MATLAB stores the ``bands x pixels`` matrices
column-major, so pixel n sits at ``(n % rows, n // rows)``; each loader's orientation was
checked against its reference abundances.

Wavelengths (``BenchmarkScene.wavelength_note``): Samson's are in the shared ``apex`` file.
Jasper Ridge's files carry none: the AVIRIS channel centres from the Cuprite ground-truth file
(same instrument, 1997 calibration) are used for the selected bands, within a few nm. MUUFL's
file has none: 64 evenly spaced centres over 375-1050 nm (CASI-1500 after the usual edge-band
removal; literature value, not from the file). Moffett's bands are not recorded: its 184 rows
are bands 6-106, 113-146 and 152-200 of the 203-band cube in ``Moffett_vca.mat`` (identical
values), but how those 203 relate to AVIRIS's 224 channels is not documented, so the scene gets
**placeholder** centres evenly spaced over 400-1300 nm. They only keep the band order: no
absorption-window rule fires on them, and names from spectral libraries are meaningless.

Reference abundances follow different rules (``BenchmarkScene.reference_rule``): Samson and
Jasper Ridge are reproduced by NNLS on the max-normalised reference endmembers then per-pixel
sum normalisation (aRMSE 0.002 / 0.005), Moffett by FCLS on its reference endmembers (0.0007);
MUUFL's are not reproduced by either (0.19 / 0.15), they come from elsewhere. These cubes
carry no georeferencing; the GeoTIFFs written here have none either.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import scipy.io as sio
from rasterio.errors import NotGeoreferencedWarning

from hsu_geo.errors import SceneNotFoundError


@dataclass
class BenchmarkScene:
    """A cube with reference endmembers and abundances.

    Attributes:
        cube: reflectance, (bands, rows, cols) float32.
        wavelength_nm, band: per-band centres and original 1-based AVIRIS/sensor numbers.
        endmembers: reference spectra (k, bands); abundances: (k, rows, cols); names: k names.
    """

    name: str
    cube: np.ndarray
    wavelength_nm: np.ndarray
    band: np.ndarray
    endmembers: np.ndarray
    abundances: np.ndarray
    names: list[str]
    wavelength_note: str = ""
    reference_rule: str | None = None


def _image(matrix: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """MATLAB ``(L, rows*cols)`` column-major matrix -> ``(L, rows, cols)``."""
    return matrix.reshape(matrix.shape[0], cols, rows).transpose(0, 2, 1)


def _names(cood: np.ndarray) -> list[str]:
    return [str(np.ravel(c)[0]).split("-", 1)[-1].lower() for c in np.ravel(cood)]


def _load(path: Path) -> dict:
    if not path.is_file():
        raise SceneNotFoundError(f"{path}: benchmark file not found")
    return sio.loadmat(path)


def load_samson(data_dir: str | Path) -> BenchmarkScene:
    """Samson from ``data_dir`` (the shared ``data`` folder)."""
    d = Path(data_dir)
    img, gt = _load(d / "samson/Samson.mat"), _load(d / "samson/Samson_GT.mat")
    rows, cols = int(img["nRow"][0, 0]), int(img["nCol"][0, 0])
    wl = _load(d / "apex/Wavelengths.mat")["lambda_Samson"].ravel().astype(float)
    return BenchmarkScene("samson", _image(img["V"], rows, cols).astype("float32"), wl,
                          np.arange(1, wl.size + 1), gt["M"].T.astype("float64"),
                          _image(gt["A"], rows, cols), _names(gt["cood"]),
                          "sensor centres from apex/Wavelengths.mat lambda_Samson", "reference")


def load_jasper_ridge(data_dir: str | Path) -> BenchmarkScene:
    """Jasper Ridge from ``data_dir``; reflectance = DN / maxValue."""
    d = Path(data_dir)
    img, gt = _load(d / "jasper_ridge/jasperRidge2_R198.mat"), \
        _load(d / "jasper_ridge/Jasper_GT.mat")
    rows, cols = int(img["nRow"][0, 0]), int(img["nCol"][0, 0])
    bands = img["SlectBands"].ravel().astype(int)
    aviris_um = _load(d / "cuprite/Cuprite_GT_nEnd12.mat")["waveLength"].ravel()
    cube = _image(img["Y"].astype("float64") / float(img["maxValue"][0, 0]), rows, cols)
    return BenchmarkScene("jasper_ridge", cube.astype("float32"), aviris_um[bands - 1] * 1000,
                          bands, gt["M"].T.astype("float64"), _image(gt["A"], rows, cols),
                          _names(gt["cood"]),
                          "AVIRIS channel centres of the Cuprite GT file for the kept bands "
                          "(same instrument, within a few nm)", "reference")


def load_jasper_ridge_bundles(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Jasper Ridge's bundle library (``jasper_ridge/spectral_library_jasperRidge.mat``):
    ``(library (m, 198), class (m,))``, image pixels of the classes in the order of
    :func:`load_jasper_ridge`'s names (tree, water, dirt, road), on the same scale."""
    mat = _load(Path(data_dir) / "jasper_ridge/spectral_library_jasperRidge.mat")
    parts = [np.asarray(mat[f"lib{c}"], dtype=np.float64).T for c in range(1, 5)]
    return np.vstack(parts), np.concatenate([np.full(len(p), c) for c, p in enumerate(parts)])


#: Moffett's 184 bands as numbers in the 203-band cube of ``Moffett_vca.mat`` (found by
#: matching the two files' pixels, which are identical after a transpose)
MOFFETT_BANDS = np.r_[6:107, 113:147, 152:201]
#: the order of ``moffett.mat``'s ``GT`` rows (by their spectra: dark and flat, rising without
#: a red edge, red edge near band 40)
MOFFETT_NAMES = ["water", "soil", "vegetation"]
#: placeholder band centres for Moffett (nm): band order only, see the module docstring
MOFFETT_PLACEHOLDER_NM = (400.0, 1300.0)
#: MUUFL band centres (nm): CASI-1500 range after edge-band removal (PROVENANCE.md)
MUUFL_RANGE_NM = (375.0, 1050.0)


def load_moffett(data_dir: str | Path) -> BenchmarkScene:
    """Moffett Field from ``data_dir`` (``moffett/moffett.mat``: ``Y`` (184, 2500) column-major,
    ``GT`` (3, 184) endmembers, ``S_GT`` (50, 50, 3) abundances on the image grid)."""
    m = _load(Path(data_dir) / "moffett/moffett.mat")
    rows, cols = int(m["lines"][0, 0]), int(m["cols"][0, 0])
    Y = np.asarray(m["Y"], "float64")
    wl = np.linspace(*MOFFETT_PLACEHOLDER_NM, Y.shape[0])
    return BenchmarkScene(
        "moffett", _image(Y, rows, cols).astype("float32"), wl, MOFFETT_BANDS.copy(),
        np.asarray(m["GT"], "float64"), np.asarray(m["S_GT"], "float64").transpose(2, 0, 1),
        list(MOFFETT_NAMES),
        "PLACEHOLDER centres evenly spaced over 400-1300 nm (band order only): the file does "
        "not record its bands; they are bands 6-106, 113-146, 152-200 of Moffett_vca.mat's "
        "203-band cube, whose relation to AVIRIS's 224 channels is undocumented", "fcls")


def load_muufl(data_dir: str | Path) -> BenchmarkScene:
    """MUUFL Gulfport from ``data_dir`` (``muufl_gulfport/muffle_dataset_130_90.mat``: ``Y``
    (90, 90, 64) and ``label`` (90, 90, 5) on the same grid, reference endmembers ``M`` (64, 5),
    as MUNet's loader uses them; ``M1`` is its initialisation). Class names are not recorded in
    the file: em1-em5."""
    u = _load(Path(data_dir) / "muufl_gulfport/muffle_dataset_130_90.mat")
    Y = np.asarray(u["Y"], "float64").transpose(2, 0, 1)
    wl = np.linspace(*MUUFL_RANGE_NM, Y.shape[0])
    k = u["M"].shape[1]
    return BenchmarkScene(
        "muufl", Y.astype("float32"), wl, np.arange(1, Y.shape[0] + 1),
        np.asarray(u["M"], "float64").T, np.asarray(u["label"], "float64").transpose(2, 0, 1),
        [f"em{i}" for i in range(1, k + 1)],
        "not in the file: 64 centres evenly spaced over 375-1050 nm (CASI-1500 after the "
        "usual edge-band removal, literature value)", None)


#: name -> loader of every benchmark scene here
LOADERS = {"samson": load_samson, "jasper_ridge": load_jasper_ridge, "moffett": load_moffett,
           "muufl": load_muufl}


def load_scene(name: str, data_dir: str | Path) -> BenchmarkScene:
    """The benchmark scene ``name`` (a key of :data:`LOADERS`) from ``data_dir``."""
    if name not in LOADERS:
        raise SceneNotFoundError(f"unknown benchmark scene {name!r}; choose one of "
                                 f"{', '.join(LOADERS)}")
    return LOADERS[name](data_dir)


def write_truth(scene: BenchmarkScene, folder: str | Path) -> tuple[Path, Path]:
    """Write the reference as ``hsu-geo evaluate`` reads it: ``<name>_abundance.tif`` (k bands,
    descriptions = names) and ``<name>_endmembers.csv`` (``band`` = GeoTIFF band numbers of
    :func:`write_geotiff`'s file, wavelength_nm, one column per endmember)."""
    from hsu_geo.write.tables import EndmemberTable, write_endmember_csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tif, csv = folder / f"{scene.name}_abundance.tif", folder / f"{scene.name}_endmembers.csv"
    k, rows, cols = scene.abundances.shape
    with warnings.catch_warnings():  # no georeferencing, as the scene
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tif, "w", driver="GTiff", dtype="float32", count=k, height=rows,
                           width=cols) as dst:
            dst.write(scene.abundances.astype("float32"))
            for i, name in enumerate(scene.names, start=1):
                dst.set_band_description(i, name)
    nb = scene.cube.shape[0]
    write_endmember_csv(csv, EndmemberTable(tuple(scene.names), np.arange(1, nb + 1),
                                            np.asarray(scene.wavelength_nm, float),
                                            np.asarray(scene.endmembers, "float32")))
    return tif, csv


def write_geotiff(scene: BenchmarkScene, path: str | Path) -> Path:
    """Write the cube as a float32 GeoTIFF with per-band wavelength tags; returns the path."""
    path = Path(path)
    nb, rows, cols = scene.cube.shape
    profile = {"driver": "GTiff", "dtype": "float32", "count": nb, "height": rows,
               "width": cols, "interleave": "pixel"}
    with warnings.catch_warnings():  # the benchmark cubes have no georeferencing
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        dst = rasterio.open(path, "w", **profile)
    with dst:
        dst.write(scene.cube)
        dst.update_tags(sensor=scene.name, quantity="reflectance", units="1")
        for i in range(nb):
            dst.update_tags(i + 1, wavelength=f"{scene.wavelength_nm[i]:.3f}",
                            wavelength_units="Nanometers")
    return path
