"""GeoTIFF reader: wavelength sources (tags, IMAGERY, --wavelengths CSV/.hdr), units, scaling,
georeferencing, detector overlap and the errors a user sees."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from hsu_geo.cube import cube_transform
from hsu_geo.errors import InvalidSceneError, MissingWavelengthsError, UnsupportedFormatError
from hsu_geo.ingest import find_reader, open_scene
from hsu_geo.ingest import rasterio_array as ra
from hsu_geo.ingest.geotiff import GeoTiffReader
from hsu_geo.ingest.spectral_meta import OVERLAP_REASON
from tests.ingest.fakes import (
    check_cube_contract,
    enmap_like_wavelengths,
    linear_wavelengths,
    ramp,
    write_envi_header,
    write_geotiff,
)

NB, NY, NX = 6, 40, 36
WL = linear_wavelengths(NB, 450.0, 2300.0)
FWHM = np.linspace(8.0, 12.0, NB)
CHUNK = 16


@pytest.fixture
def data() -> np.ndarray:
    return ramp(NB, NY, NX, "int16", start=-100)


def test_tags_path_contract_values_and_georeferencing(tmp_path, data):
    data[:, 3, 4] = -9999  # a nodata pixel (all bands)
    data[2, 7, 8] = -9999  # nodata in one band only
    path = write_geotiff(tmp_path / "scene.tif", data, wavelengths_nm=WL, fwhm=FWHM,
                         bbl=[1, 1, 0, 1, 1, 1], nodata=-9999,
                         tags={"sensor": "FAKE", "quantity": "reflectance"})
    cube = open_scene(path, chunks=CHUNK)
    check_cube_contract(cube, chunk=CHUNK, n_bands=NB)
    assert cube.attrs["reader"] == "geotiff"
    assert cube.attrs["sensor"] == "FAKE"
    assert cube.attrs["product_id"] == "scene"
    assert cube.attrs["source_files"] == [str(path)]
    assert cube.attrs["dropped_at_ingest"] == []
    np.testing.assert_array_equal(cube["band"], np.arange(1, NB + 1))
    np.testing.assert_allclose(cube["wavelength"], WL)
    np.testing.assert_allclose(cube["fwhm"], FWHM)
    np.testing.assert_array_equal(cube["good_band"], [True, True, False, True, True, True])

    expected = data.astype("float32")
    expected[data == -9999] = np.nan
    np.testing.assert_array_equal(cube.values, expected)
    assert np.isnan(cube.values[:, 3, 4]).all() and np.isnan(cube.values[2, 7, 8])

    with rasterio.open(path) as src:
        assert cube.rio.crs == src.crs
        assert cube_transform(cube) == src.transform
        assert cube.rio.transform() == src.transform
        t = src.transform
    np.testing.assert_allclose(cube["x"], t.c + t.a * (np.arange(NX) + 0.5))
    np.testing.assert_allclose(cube["y"], t.f + t.e * (np.arange(NY) + 0.5))


def test_imagery_domain(tmp_path, data):
    path = write_geotiff(tmp_path / "imagery.tif", data, wavelengths_nm=WL, fwhm=FWHM,
                         style="imagery")
    with rasterio.open(path) as src:  # the fake really used the IMAGERY domain only
        assert "wavelength" not in src.tags(1)
        assert "CENTRAL_WAVELENGTH_UM" in src.tags(1, ns="IMAGERY")
    cube = open_scene(path, chunks=CHUNK)
    check_cube_contract(cube, chunk=CHUNK, n_bands=NB)
    np.testing.assert_allclose(cube["wavelength"], WL)
    np.testing.assert_allclose(cube["fwhm"], FWHM)
    np.testing.assert_array_equal(cube.values, data.astype("float32"))


def test_micrometre_tags_become_nm(tmp_path, data):
    path = write_geotiff(tmp_path / "um.tif", data, wavelengths_nm=WL, fwhm=FWHM,
                         units="Micrometers")
    with rasterio.open(path) as src:
        assert float(src.tags(1)["wavelength"]) == pytest.approx(WL[0] / 1000)
    cube = open_scene(path, chunks=CHUNK)
    np.testing.assert_allclose(cube["wavelength"], WL)
    np.testing.assert_allclose(cube["fwhm"], FWHM)


def test_wavelengths_from_csv(tmp_path, data):
    path = write_geotiff(tmp_path / "bare.tif", data, style=None)
    csv = tmp_path / "wl.csv"
    csv.write_text("band,wavelength_nm,fwhm_nm,good_band\n" + "".join(
        f"{i + 1},{w},{f},{int(i != 4)}\n" for i, (w, f) in enumerate(zip(WL, FWHM, strict=True))))
    cube = open_scene(path, chunks=CHUNK, wavelengths=csv)
    check_cube_contract(cube, chunk=CHUNK, n_bands=NB)
    np.testing.assert_allclose(cube["wavelength"], WL)
    np.testing.assert_allclose(cube["fwhm"], FWHM)
    np.testing.assert_array_equal(cube["good_band"], [True] * 4 + [False, True])
    np.testing.assert_array_equal(cube.values, data.astype("float32"))


def test_wavelengths_from_envi_header(tmp_path, data):
    path = write_geotiff(tmp_path / "bare.tif", data, style=None)
    hdr = write_envi_header(tmp_path / "bands.hdr", {
        "samples": NX, "lines": NY, "bands": NB, "data type": 2, "interleave": "bsq",
        "wavelength units": "Micrometers", "wavelength": [f"{w / 1000:.6f}" for w in WL],
        "fwhm": [f"{f / 1000:.6f}" for f in FWHM], "bbl": [1, 0, 1, 1, 1, 1]})
    cube = open_scene(path, chunks=CHUNK, wavelengths=hdr)
    np.testing.assert_allclose(cube["wavelength"], WL)
    np.testing.assert_allclose(cube["fwhm"], FWHM)
    np.testing.assert_array_equal(cube["good_band"], [True, False] + [True] * 4)


def test_override_file_beats_tags(tmp_path, data):
    path = write_geotiff(tmp_path / "tagged.tif", data, wavelengths_nm=WL)
    csv = tmp_path / "wl.csv"
    csv.write_text("wavelength_nm\n" + "\n".join(str(w + 1) for w in WL))
    cube = open_scene(path, chunks=CHUNK, wavelengths=csv)
    np.testing.assert_allclose(cube["wavelength"], WL + 1)


def test_wavelength_file_with_wrong_count(tmp_path, data):
    path = write_geotiff(tmp_path / "bare.tif", data, style=None)
    csv = tmp_path / "wl.csv"
    csv.write_text("wavelength_nm\n" + "\n".join(str(w) for w in WL[:-1]))
    with pytest.raises(InvalidSceneError, match=f"{NB - 1} wavelengths for {NB} bands"):
        open_scene(path, chunks=CHUNK, wavelengths=csv)


def test_missing_wavelengths_names_every_way_to_add_them(tmp_path, data):
    path = write_geotiff(tmp_path / "bare.tif", data, style=None)
    with pytest.raises(MissingWavelengthsError) as err:
        open_scene(path, chunks=CHUNK)
    msg = str(err.value)
    assert "'wavelength' tags" in msg
    assert "IMAGERY" in msg and "CENTRAL_WAVELENGTH_UM" in msg
    assert "--wavelengths" in msg
    assert "\n" not in msg
    assert isinstance(err.value, InvalidSceneError) and isinstance(err.value, ValueError)


def test_missing_wavelength_file(tmp_path, data):
    path = write_geotiff(tmp_path / "bare.tif", data, style=None)
    with pytest.raises(FileNotFoundError, match="wavelength file not found"):
        open_scene(path, wavelengths=tmp_path / "nope.csv")


def test_gdal_scale_offset_applied(tmp_path, data):
    scales = np.linspace(1e-4, 6e-4, NB)
    offsets = np.linspace(-0.1, 0.4, NB)
    data[0, 0, 0] = -9999
    path = write_geotiff(tmp_path / "scaled.tif", data, wavelengths_nm=WL, scale=scales,
                         offset=offsets, nodata=-9999)
    cube = open_scene(path, chunks=CHUNK)
    assert cube.attrs["calibration"] == "GDAL band scale/offset"
    expected = (data.astype("float32") * scales.astype("float32")[:, None, None]
                + offsets.astype("float32")[:, None, None])
    expected[0, 0, 0] = np.nan  # nodata is matched on the raw value, before scaling
    np.testing.assert_array_equal(cube.values, expected)


def test_reflectance_scale_factor_tag_divides(tmp_path, data):
    path = write_geotiff(tmp_path / "x10000.tif", data, wavelengths_nm=WL,
                         tags={"reflectance_scale_factor": 10000})
    cube = open_scene(path, chunks=CHUNK)
    assert cube.attrs["scale_factor"] == 10000
    np.testing.assert_allclose(cube.values, data / 10000.0, rtol=1e-6)


def test_tiled_file_chunks_follow_blocks(tmp_path):
    data = ramp(3, 64, 48, "uint16")
    path = write_geotiff(tmp_path / "tiled.tif", data, wavelengths_nm=WL[:3], tiled=True,
                         blocksize=16)
    cube = open_scene(path, chunks=32)
    check_cube_contract(cube, chunk=32, n_bands=3)
    assert cube.data.chunks[1:] == ((32, 32), (32, 16))
    np.testing.assert_array_equal(cube.values, data.astype("float32"))


def test_rotated_transform_kept(tmp_path, data):
    rotated = Affine.translation(500000, 4000000) @ Affine.rotation(30) @ Affine.scale(2, -2)
    path = write_geotiff(tmp_path / "rot.tif", data, wavelengths_nm=WL, transform=rotated)
    cube = open_scene(path, chunks=CHUNK)
    with rasterio.open(path) as src:
        assert not src.transform.is_rectilinear
        assert cube_transform(cube).almost_equals(src.transform, precision=1e-9)
    assert "x" not in cube.coords and "y" not in cube.coords  # no north-up pixel centres


def test_detector_overlap_drops_earlier_detector_bands(tmp_path, monkeypatch):
    wl = enmap_like_wavelengths(5, 6)  # VNIR 420..1000, SWIR 900..2450: band 5 overlaps
    data = ramp(11, 20, 20, "int16")
    path = write_geotiff(tmp_path / "two_detectors.tif", data, wavelengths_nm=wl)
    cube = open_scene(path, chunks=CHUNK)
    check_cube_contract(cube, chunk=CHUNK, n_bands=10)
    np.testing.assert_array_equal(cube["band"], [1, 2, 3, 4, 6, 7, 8, 9, 10, 11])
    np.testing.assert_allclose(cube["wavelength"], np.delete(wl, 4))
    assert cube.attrs["dropped_at_ingest"] == [
        {"band": 5, "wavelength_nm": pytest.approx(wl[4]), "reason": OVERLAP_REASON}]

    read_bands: list[list[int]] = []
    original = ra.WindowReader.__getitem__

    def spy(self, key):
        read_bands.append(list(self.bands))
        return original(self, key)

    monkeypatch.setattr(ra.WindowReader, "__getitem__", spy)
    np.testing.assert_array_equal(cube.values, np.delete(data, 4, axis=0).astype("float32"))
    assert read_bands and all(5 not in b for b in read_bands), "overlap band must not be read"


@pytest.mark.parametrize("wl", [
    [450.0, 500.0, 600.0, 550.0, 650.0, 700.0],  # two bands swapped inside one detector
    [450.0, 500.0, 500.0, 550.0, 650.0, 700.0],  # a duplicated wavelength
    [450.0, 400.0, 550.0, 500.0, 650.0, 600.0],  # zigzag: 3 reversals, 1-band "detectors"
], ids=["swap", "duplicate", "zigzag"])
def test_non_monotonic_within_a_detector_is_an_error(tmp_path, data, wl):
    path = write_geotiff(tmp_path / "bad.tif", data, wavelengths_nm=wl)
    with pytest.raises(InvalidSceneError, match="not increasing"):
        open_scene(path, chunks=CHUNK)


def test_many_reversals_are_an_error(tmp_path):
    wl = [450.0, 400.0, 550.0, 500.0, 650.0, 600.0, 750.0, 700.0, 850.0, 800.0]
    path = write_geotiff(tmp_path / "bad.tif", ramp(10, 8, 8), wavelengths_nm=wl)
    with pytest.raises(InvalidSceneError, match=r"not increasing .*reversals"):
        open_scene(path, chunks=CHUNK)


def test_complex_data_is_unsupported(tmp_path):
    data = (ramp(3, 8, 8, "float32") + 1j).astype("complex64")
    path = write_geotiff(tmp_path / "cplx.tif", data, wavelengths_nm=WL[:3])
    with pytest.raises(UnsupportedFormatError, match="complex64 is not supported"):
        open_scene(path)


def test_unreadable_tif_is_a_one_line_error(tmp_path):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"this is not a tiff")
    with pytest.raises(InvalidSceneError, match="not a readable raster") as err:
        open_scene(path)
    assert "\n" not in str(err.value)


def test_reader_detection(tmp_path, data):
    path = write_geotiff(tmp_path / "scene.TIFF", data, wavelengths_nm=WL)
    assert find_reader(path) is GeoTiffReader
    assert GeoTiffReader.guess_can_open(path)
    assert not GeoTiffReader.guess_can_open(tmp_path)
    assert not GeoTiffReader.guess_can_open(tmp_path / "scene.hdr")
    assert open_scene(path, sensor="geotiff").attrs["reader"] == "geotiff"
