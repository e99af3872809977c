"""Standard unmixing benchmark cubes (F. Zhu's MATLAB distribution) as scenes with truth.

Samson (95 x 95, 156 bands, 401-889 nm; rock, tree, water) and Jasper Ridge (100 x 100, 198 of
224 AVIRIS bands; tree, water, dirt, road), as found in ``shared/data`` (PROVENANCE.md §1).
MATLAB stores the ``bands x pixels`` matrices column-major, so pixel n sits at
``(n % rows, n // rows)``. Jasper Ridge's files carry no wavelengths: the AVIRIS channel
centres from the Cuprite ground-truth file (same instrument, 1997 calibration) are used for the
selected bands, which places them within a few nm. These cubes carry no georeferencing; the
GeoTIFFs written here have none either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import scipy.io as sio

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
                          _image(gt["A"], rows, cols), _names(gt["cood"]))


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
                          _names(gt["cood"]))


def write_geotiff(scene: BenchmarkScene, path: str | Path) -> Path:
    """Write the cube as a float32 GeoTIFF with per-band wavelength tags; returns the path."""
    path = Path(path)
    nb, rows, cols = scene.cube.shape
    profile = {"driver": "GTiff", "dtype": "float32", "count": nb, "height": rows,
               "width": cols, "interleave": "pixel"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scene.cube)
        dst.update_tags(sensor=scene.name, quantity="reflectance", units="1")
        for i in range(nb):
            dst.update_tags(i + 1, wavelength=f"{scene.wavelength_nm[i]:.3f}",
                            wavelength_units="Nanometers")
    return path
