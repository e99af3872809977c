"""FWHM follow their wavelengths' unit when the header says 'Unknown' or nothing: 10 nm widths
beside nm centres are not 10 µm (Gamsberg: 11.4 nm read as 11387 nm smoothed every library
spectrum flat, so all endmembers looked alike and one took 100 % of every pixel)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from hsu_geo.ingest import open_scene
from hsu_geo.ingest.spectral_meta import read_wavelength_file, resolved_units
from tests.ingest.fakes import write_envi

WL_NM = np.linspace(430.0, 2320.0, 12)
FW_NM = np.full(12, 11.4)


@pytest.mark.parametrize("units", ["Unknown", None])
def test_envi_unknown_units_keep_nm_fwhm(tmp_path, units):
    data = np.random.default_rng(0).uniform(0, 1, (12, 3, 4)).astype("float32")
    hdr = write_envi(tmp_path / "s.hdr", data, wavelengths=WL_NM, fwhm=FW_NM, units=units)
    cube = open_scene(hdr)
    np.testing.assert_allclose(cube["fwhm"].values, FW_NM)
    np.testing.assert_allclose(cube["wavelength"].values, WL_NM)
    np.testing.assert_allclose(read_wavelength_file(hdr, 12).fwhm, FW_NM)


def test_envi_unknown_units_in_micrometres_scale_both(tmp_path):
    data = np.ones((12, 2, 2), "float32")
    hdr = write_envi(tmp_path / "u.hdr", data, wavelengths=WL_NM / 1000, fwhm=FW_NM / 1000,
                     units="Unknown")
    cube = open_scene(hdr)
    np.testing.assert_allclose(cube["fwhm"].values, FW_NM, rtol=1e-9)


def test_geotiff_without_units_keeps_nm_fwhm(tmp_path):
    path = tmp_path / "g.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=12, height=3,
                       width=3) as dst:
        dst.write(np.ones((12, 3, 3), "float32"))
        for b in range(12):
            dst.update_tags(b + 1, wavelength=f"{WL_NM[b]:.2f}", fwhm=f"{FW_NM[b]:.2f}")
    np.testing.assert_allclose(open_scene(path)["fwhm"].values, FW_NM)


def test_resolved_units():
    assert resolved_units([400.0, 2500.0], "Unknown") == "nm"
    assert resolved_units([0.4, 2.5], None) == "um"
    assert resolved_units([0.4, 2.5], "Nanometers") == "Nanometers"
