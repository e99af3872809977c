"""Real imaging-spectrometer crops from ../shared/data/scenes (PROVENANCE.md §3): band counts,
bad-band lists, units, georeferencing (incl. rotated grids) and values traced to the files.
Skipped when the shared data is not present."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
import spectral.io.envi as envi

from hsu_geo.cube import cube_transform, validate_cube
from hsu_geo.errors import UnsupportedFormatError
from hsu_geo.ingest import open_scene
from hsu_geo.ingest.spectral_meta import OVERLAP_REASON

ENMAP = "scenes/enmap_potsdam_tiles"
AVNG = "scenes/aviris_ng_pycoal"
ISOFIT = "scenes/aviris_ng_isofit_chunk/ang20170323t202244_rdn_7000-7010.hdr"
EMIT = "scenes/emit_unmix_ex/emit20250324t221005_jpl_unmix_ex.hdr"
AVCL = "scenes/aviris_classic_pycoal/f080702t01p00r08rdn_c_sc01_ort_img_123_456.hdr"
GAMSBERG = "scenes/gamsberg_engeomap"


@pytest.fixture(autouse=True)
def _quiet_gdal():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        yield


def _header(path) -> dict:
    return envi.read_envi_header(str(path))


def _floats(values) -> np.ndarray:
    return np.array([float(v) for v in values])


def _raw(path) -> np.ndarray:
    """All pixels of a raster as (bands, rows, cols), read directly with rasterio."""
    with rasterio.open(path) as src:
        return src.read()


def _check_traced(cube, header_wl_nm: np.ndarray) -> None:
    """Wavelengths are nm and increasing; cube band number b has the header's wavelength
    [b - 1]."""
    validate_cube(cube)
    wl = cube["wavelength"].values
    assert np.all(np.diff(wl) > 0)
    assert wl.min() > 340 and wl.max() < 2600
    np.testing.assert_allclose(wl, header_wl_nm[cube["band"].values - 1])


def test_enmap_tiles(shared_data):
    tiles = sorted((shared_data / ENMAP).glob("enmap_potsdam_tile_*.tif"))
    assert len(tiles) == 18
    for tif in tiles:
        cube = open_scene(tif, chunks=32)
        assert cube.attrs["reader"] == "geotiff"
        # 224 bands in the product: VNIR 1-91 then SWIR 92-224; the VNIR bands inside the
        # SWIR range are dropped at ingest (never read), the rest keep their numbers
        dropped = cube.attrs["dropped_at_ingest"]
        assert cube.sizes == {"band": 224 - len(dropped), "y": 32, "x": 32}
        assert 0 < len(dropped) < 20
        assert all(d["reason"] == OVERLAP_REASON and d["band"] <= 91 for d in dropped)
        assert sorted(set(cube["band"].values) | {d["band"] for d in dropped}) == \
            list(range(1, 225))
        bad = cube["band"].values[~cube["good_band"].values]
        np.testing.assert_array_equal(bad, np.arange(130, 136))
        assert cube.rio.crs.to_epsg() == 32633
        with rasterio.open(tif) as src:
            assert cube_transform(cube) == src.transform
            header_wl = _floats(src.tags(b)["wavelength"] for b in range(1, 225))
            assert src.tags(1)["wavelength_units"] == "Nanometers"
        _check_traced(cube, header_wl)
        assert cube["wavelength"].values[[0, -1]] == pytest.approx([418.24, 2445.53], abs=0.01)
    assert cube.attrs["acquisition_time"] == "2022-07-24T10:45:26"


def test_enmap_tile_values(shared_data):
    tif = shared_data / ENMAP / "enmap_potsdam_tile_64_0.tif"
    cube = open_scene(tif, chunks=16)
    assert cube.data.chunks[1:] == ((16, 16), (16, 16))
    raw = _raw(tif)[cube["band"].values - 1]
    expected = raw * np.float32(1e-4)  # GDAL scale 0.0001 on x10000 reflectance
    expected[raw == -32768] = np.nan
    values = cube.values
    np.testing.assert_array_equal(values, expected)
    bad = ~cube["good_band"].values
    assert cube["band"].values[bad].tolist() == list(range(130, 136))
    assert np.isnan(values[bad]).all()  # bands 130-135 are filled with nodata
    assert np.nanmin(values) >= 0 and np.nanmax(values) < 1.1
    assert cube_transform(cube).c == 364095.0 and cube_transform(cube).f == 5809965.0
    neighbour = open_scene(shared_data / ENMAP / "enmap_potsdam_tile_96_0.tif")
    assert cube_transform(neighbour).c == 365055.0


def _aviris_ng_432():
    from tests.conftest import SHARED_DATA

    hdrs = sorted((SHARED_DATA / AVNG).glob("*corr*img*.hdr"))
    return [h.name for h in hdrs if int(_header(h)["bands"]) == 432]


@pytest.mark.parametrize("name", _aviris_ng_432() or ["(shared data absent)"])
def test_aviris_ng_crops(shared_data, name):
    hdr = shared_data / AVNG / name
    header = _header(hdr)
    cube = open_scene(hdr, chunks=16)
    assert cube.attrs["sensor"] == "AVIRIS-NG" and cube.attrs["quantity"] == "reflectance"
    assert cube.sizes["band"] == 432
    assert (~cube["good_band"].values).sum() == 59
    bbl = _floats(header["bbl"])
    np.testing.assert_array_equal(cube["good_band"].values, bbl[cube["band"].values - 1] != 0)
    _check_traced(cube, _floats(header["wavelength"]))
    np.testing.assert_allclose(cube["fwhm"], _floats(header["fwhm"]))
    img = hdr.with_suffix(".img")
    with rasterio.open(img) as src:
        transform, crs = src.transform, src.crs
    assert not transform.is_rectilinear, "AVIRIS-NG map info is rotated"
    assert cube_transform(cube).almost_equals(transform, precision=1e-9)
    assert cube.rio.crs == crs
    rotation = float(header["map info"][-1].split("=")[1])  # 53, 75 or -66 degrees
    assert np.degrees(np.arctan2(transform.d, transform.a)) == pytest.approx(rotation)
    np.testing.assert_array_equal(cube.values, _raw(img))


def test_emit_crop(shared_data):
    hdr = shared_data / EMIT
    header = _header(hdr)
    cube = open_scene(hdr, chunks=16)
    assert cube.attrs["sensor"] == "EMIT" and cube.attrs["quantity"] == "reflectance"
    assert cube.sizes == {"band": 285, "y": 10, "x": 10}
    assert (~cube["good_band"].values).sum() == 41
    _check_traced(cube, _floats(header["wavelength"]))
    raw = _raw(hdr.with_suffix(""))
    expected = raw.copy()
    expected[raw == -9999] = np.nan
    values = cube.values
    np.testing.assert_array_equal(values, expected)
    assert not np.any(values == -9999)
    assert cube.rio.crs is None and cube_transform(cube) is None  # no map info


def test_aviris_ng_radiance_chunk(shared_data):
    hdr = shared_data / ISOFIT
    header = _header(hdr)
    cube = open_scene(hdr, chunks=16)
    assert cube.attrs["quantity"] == "radiance"
    assert cube.attrs["units"] == "uW nm-1 cm-2 sr-1"
    assert cube.sizes == {"band": 425, "y": 10, "x": 10}
    _check_traced(cube, _floats(header["wavelength"]))
    np.testing.assert_array_equal(cube.values, _raw(hdr.with_suffix("")))
    # ISOFIT's wavelengths.txt (index, µm, fwhm µm) as an override gives the same table
    table = hdr.parent / "wavelengths.txt"
    override = open_scene(hdr, chunks=16, wavelengths=table)
    np.testing.assert_allclose(override["wavelength"], cube["wavelength"], atol=1e-3)
    np.testing.assert_allclose(override["fwhm"], np.loadtxt(table)[:, 2] * 1000)


def test_aviris_classic_radiance(shared_data):
    hdr = shared_data / AVCL
    header = _header(hdr)
    header_wl = _floats(header["wavelength"])
    assert not np.all(np.diff(header_wl) > 0)  # four spectrometers, overlapping at joins
    cube = open_scene(hdr)
    assert cube.attrs["sensor"] == "AVIRIS-Classic" and cube.attrs["quantity"] == "radiance"
    assert "gain" in cube.attrs["calibration"]
    dropped = [d["band"] for d in cube.attrs["dropped_at_ingest"]]
    assert cube.sizes["band"] + len(dropped) == 224
    assert set(dropped).isdisjoint(cube["band"].values)
    _check_traced(cube, header_wl)
    with rasterio.open(hdr.with_suffix(".img")) as src:
        raw = src.read()
        assert cube_transform(cube).almost_equals(src.transform, precision=1e-9)
        assert not src.transform.is_rectilinear
    gains = np.r_[np.full(110, 300.0), np.full(50, 600.0), np.full(64, 1200.0)]
    idx = cube["band"].values - 1
    np.testing.assert_allclose(cube.values, raw[idx] / gains[idx, None, None], rtol=1e-6)


def test_gamsberg_unknown_units_are_nm(shared_data):
    hdr = shared_data / GAMSBERG / "cubus_gamsberg_subset.hdr"
    cube = open_scene(hdr)
    assert cube.sizes == {"band": 189, "y": 25, "x": 10}
    _check_traced(cube, _floats(_header(hdr)["wavelength"]))


def test_spectral_library_rejected(shared_data):
    with pytest.raises(UnsupportedFormatError, match="spectral library"):
        open_scene(shared_data / GAMSBERG / "gamsberg_field_library.hdr")
