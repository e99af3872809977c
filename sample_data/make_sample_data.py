"""Build the bundled sample scenes from USGS splib07 mineral spectra with known abundances.

Run from the repository root:  ``python sample_data/make_sample_data.py``  (deterministic).

Writes, next to this script:

* ``minerals_aviris_like.tif``: a 96 x 96 px, 211-band (400-2500 nm, 10 nm) GeoTIFF of
  surface reflectance x 10000 (int16) with EnMAP-Box-style per-band ``wavelength``/``fwhm``
  tags, EPSG:32611 (UTM 11N, near Cuprite, Nevada), 15 m pixels, nodata -9999 in a few pixels.
* ``GF5B_AHSI_E116.5_N41.2_20230615_010123_L10000312345/``: a GF-5B AHSI L1-style delivery
  (VNIR 150 + SWIR 180 bands of DN, RadCal, Spectralresponse, XML, RPC sidecars), 64 x 64 px,
  made by :func:`hsu_geo.testing.write_gf5_delivery`. DN = (radiance - offset) / gain, with a
  simple top-of-atmosphere radiance model (solar spectrum x reflectance x water-vapour
  transmittance, see :func:`toa_radiance`) — synthetic, for exercising the pipeline only.
* ``truth/<scene>_abundance.tif`` (one band per mineral) and ``truth/<scene>_endmembers.csv``.

Abundances are smooth random fields pushed through a softmax, plus a pure 3 x 3 patch per
mineral; Gaussian noise is added at 40 dB SNR. Spectra: USGS Spectral Library Version 7
(Kokaly et al. 2017, doi:10.3133/ds1035), public domain, bundled in ``hsu_geo/data``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter

from hsu_geo.endmembers.library import load_usgs_library, resample_to_bands
from hsu_geo.testing import default_ahsi_wavelengths, write_gf5_delivery

HERE = Path(__file__).resolve().parent
MINERALS = ["alunite", "kaolinite", "muscovite", "calcite", "hematite"]
SEED = 20261122
SNR_DB = 40.0


def abundance_maps(k: int, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """(k, rows, cols) abundances on the simplex: smooth fields, softmax, pure patches."""
    fields = np.stack([gaussian_filter(rng.standard_normal((rows, cols)), 6) for _ in range(k)])
    fields /= fields.std(axis=(1, 2), keepdims=True)
    a = np.exp(2.0 * fields)
    a /= a.sum(axis=0, keepdims=True)
    for i in range(k):  # one pure 3 x 3 patch per endmember, spread along the diagonal
        r = 6 + i * (rows - 15) // max(1, k - 1)
        c = cols - 9 - i * (cols - 15) // max(1, k - 1)
        a[:, r:r + 3, c:c + 3] = 0.0
        a[i, r:r + 3, c:c + 3] = 1.0
    return a.astype("float64")


def mix(E: np.ndarray, A: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear mixture ``(bands, rows, cols)`` of endmembers E (k, bands) plus 40 dB noise."""
    Y = np.einsum("kb,kyx->byx", E, A)
    sigma = np.sqrt(np.mean(Y**2) / 10 ** (SNR_DB / 10))
    return Y + rng.normal(0.0, sigma, Y.shape)


def spectra_on(lib, wl: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Library spectra on bands ``wl``; bands past the library's 2.5 um end repeat its edge."""
    inside = wl <= 2495.0
    E = resample_to_bands(lib, wl[inside], fwhm[inside])
    return np.concatenate([E, np.repeat(E[:, -1:], int((~inside).sum()), axis=1)], axis=1)


def write_truth(name: str, A: np.ndarray, E: np.ndarray, wl: np.ndarray, crs, transform) -> None:
    truth = HERE / "truth"
    truth.mkdir(exist_ok=True)
    profile = {"driver": "GTiff", "dtype": "float32", "count": A.shape[0], "height": A.shape[1],
               "width": A.shape[2], "crs": crs, "transform": transform, "compress": "deflate",
               "predictor": 3, "tiled": False}
    with rasterio.open(truth / f"{name}_abundance.tif", "w", **profile) as dst:
        dst.write(A.astype("float32"))
        for i, m in enumerate(MINERALS, start=1):
            dst.set_band_description(i, m)
    header = "band,wavelength_nm," + ",".join(MINERALS)
    rows = [f"{b},{w:.2f}," + ",".join(f"{v:.6f}" for v in E[:, b - 1])
            for b, w in zip(range(1, wl.size + 1), wl, strict=True)]
    (truth / f"{name}_endmembers.csv").write_text(header + "\n" + "\n".join(rows) + "\n")


def geotiff_scene(lib, rng: np.random.Generator) -> None:
    name = "minerals_aviris_like"
    wl = np.arange(400.0, 2501.0, 10.0)
    fwhm = np.full(wl.size, 10.0)
    E = spectra_on(lib, wl, fwhm)
    A = abundance_maps(len(MINERALS), 96, 96, rng)
    Y = np.clip(mix(E, A, rng), 0, 3.2)
    dn = np.round(Y * 10000).astype("int16")
    dn[:, 40:43, 10:12] = -9999  # a few nodata pixels
    dn[:, 0, 95] = -9999
    crs, transform = "EPSG:32611", from_origin(538000.0, 4142000.0, 15.0, 15.0)
    profile = {"driver": "GTiff", "dtype": "int16", "count": wl.size, "height": 96,
               "width": 96, "crs": crs, "transform": transform, "nodata": -9999,
               "compress": "deflate", "predictor": 2, "tiled": True, "blockxsize": 64,
               "blockysize": 64, "interleave": "pixel"}
    path = HERE / f"{name}.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
        dst.update_tags(reflectance_scale_factor="10000", sensor="synthetic (AVIRIS-like)",
                        quantity="reflectance", units="1",
                        acquisition_time="2023-06-15T18:30:00Z",
                        source="hsu-geo sample_data/make_sample_data.py; USGS splib07")
        for b in range(wl.size):
            dst.update_tags(b + 1, wavelength=f"{wl[b]:.2f}", wavelength_units="Nanometers",
                            fwhm=f"{fwhm[b]:.2f}")
    write_truth(name, A, E, wl, crs, transform)


def toa_radiance(reflectance: np.ndarray, wl_nm: np.ndarray, sun_zenith_deg: float) -> np.ndarray:
    """Crude TOA radiance (W m-2 sr-1 um-1): rho * E_sun * cos(sza) * T / pi.

    E_sun is a 5778 K blackbody scaled to 2000 W m-2 um-1 at its peak; T has Gaussian
    water-vapour dips at 940, 1140, 1380 and 1880 nm. Enough to make realistic-looking DN and
    bad bands, not a radiative-transfer model.
    """
    lam = wl_nm * 1e-9
    planck = 1.0 / (lam**5 * (np.exp(1.4388e-2 / (lam * 5778.0)) - 1.0))
    e_sun = 2000.0 * planck / planck.max()
    t = np.ones_like(wl_nm)
    for centre, width, depth in ((940, 25, 0.5), (1140, 30, 0.4), (1380, 45, 0.97),
                                 (1880, 60, 0.98)):
        t *= 1.0 - depth * np.exp(-0.5 * ((wl_nm - centre) / width) ** 2)
    return reflectance * (e_sun * np.cos(np.radians(sun_zenith_deg)) * t / np.pi)[:, None, None]


def gf5_scene(lib, rng: np.random.Generator) -> None:
    product = "GF5B_AHSI_E116.5_N41.2_20230615_010123_L10000312345"
    rows = cols = 64
    wl_v, fw_v = default_ahsi_wavelengths(150, "VNIR")
    wl_s, fw_s = default_ahsi_wavelengths(180, "SWIR")
    A = abundance_maps(len(MINERALS), rows, cols, rng)
    dn = []
    gains = []
    for wl, fw in ((wl_v, fw_v), (wl_s, fw_s)):
        E = spectra_on(lib, wl, fw)
        L = toa_radiance(np.clip(mix(E, A, rng), 0, None), wl, 25.3)
        gain = np.full(wl.size, 0.05 if wl[0] < 1000 else 0.01)
        d = np.clip(np.round(L / gain[:, None, None]), 1, 65535).astype("uint16")
        d[:, 20:22, 30:33] = 0  # fill pixels (DN 0 in every band = nodata)
        dn.append(d)
        gains.append(gain)
    target = HERE / product
    if target.exists():
        shutil.rmtree(target)
    write_gf5_delivery(HERE, dn[0], dn[1], product=product, gains_vnir=gains[0],
                       gains_swir=gains[1], offsets_vnir=np.zeros(150),
                       offsets_swir=np.zeros(180), layout="gf5b")
    E_all = np.concatenate([spectra_on(lib, wl_v, fw_v), spectra_on(lib, wl_s, fw_s)], axis=1)
    write_truth(product, A, E_all, np.concatenate([wl_v, wl_s]), None, None)


def main() -> None:
    lib = load_usgs_library(MINERALS)
    rng = np.random.default_rng(SEED)
    geotiff_scene(lib, rng)
    gf5_scene(lib, rng)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"sample data written to {HERE} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
