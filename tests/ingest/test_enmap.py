"""EnMAP L2A reader on fake products (folder, zip, XML or TIF entry point): band table, gains
and offsets from METADATA.XML, no-data bands flagged, VNIR/SWIR overlap resolved."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from hsu_geo.cube import cube_transform
from hsu_geo.errors import InvalidSceneError, SceneNotFoundError
from hsu_geo.ingest import find_reader, open_scene
from hsu_geo.ingest.enmap import EnmapL2aReader, parse_metadata
from hsu_geo.ingest.spectral_meta import OVERLAP_REASON
from tests.ingest.fakes import (
    ENMAP_PRODUCT,
    check_cube_contract,
    enmap_like_wavelengths,
    enmap_metadata_xml,
    linear_wavelengths,
    ramp,
    write_enmap_l2a,
)

N_VNIR, N_SWIR = 5, 6
NB = N_VNIR + N_SWIR
WL = enmap_like_wavelengths(N_VNIR, N_SWIR)  # VNIR 420..1000, SWIR 900..2450
FWHM = np.linspace(6.0, 12.0, NB)
GAIN = np.linspace(1e-4, 2e-4, NB)
OFFSET = np.linspace(-0.01, 0.01, NB)
VNIR = list(range(1, N_VNIR + 1))
SWIR = list(range(N_VNIR + 1, NB + 1))
CHUNK = 16
STD = np.full(NB, 100.0)
MEAN = np.full(NB, 1000.0)
STD[7], MEAN[7] = 0.0, -1e6  # band 8: "no data" in the product statistics


@pytest.fixture
def dn() -> np.ndarray:
    data = ramp(NB, 24, 20, "int16")
    data[:, 2, 3] = -32768
    return data


def _expected(dn: np.ndarray) -> np.ndarray:
    out = dn.astype("float32") * GAIN.astype("float32")[:, None, None] \
        + OFFSET.astype("float32")[:, None, None]
    out[dn == -32768] = np.nan
    return out


def _product(tmp_path, dn, **kw):
    return write_enmap_l2a(tmp_path, dn, wavelengths=WL, fwhm=FWHM, gain=GAIN, offset=OFFSET,
                           std=STD, mean=MEAN, vnir=VNIR, swir=SWIR, **kw)


def _check(cube, dn):
    check_cube_contract(cube, chunk=CHUNK, n_bands=NB - 1)
    keep = [i for i in range(NB) if i != 4]  # VNIR band 5 (1000 nm) overlaps SWIR (900+ nm)
    np.testing.assert_array_equal(cube["band"], np.array(keep) + 1)
    np.testing.assert_allclose(cube["wavelength"], WL[keep], atol=1e-6)
    np.testing.assert_allclose(cube["fwhm"], FWHM[keep], atol=1e-6)
    good = np.ones(NB, bool)
    good[7] = False
    np.testing.assert_array_equal(cube["good_band"], good[keep])
    assert cube.attrs["dropped_at_ingest"] == [
        {"band": 5, "wavelength_nm": pytest.approx(WL[4]), "reason": OVERLAP_REASON}]
    assert cube.attrs["sensor"] == "EnMAP"
    assert cube.attrs["product_id"] == ENMAP_PRODUCT
    assert cube.attrs["quantity"] == "reflectance"
    assert cube.attrs["acquisition_time"].startswith("2022-07-24T10:45:26")
    assert cube.attrs["reader"] == "enmap"
    assert cube.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(cube.values, _expected(dn)[keep])


def test_product_folder(tmp_path, dn):
    folder = _product(tmp_path, dn)
    assert find_reader(folder) is EnmapL2aReader
    cube = open_scene(folder, chunks=CHUNK)
    _check(cube, dn)
    tif = folder / f"{ENMAP_PRODUCT}-SPECTRAL_IMAGE.TIF"
    with rasterio.open(tif) as src:
        assert cube_transform(cube) == src.transform
        assert cube.rio.crs == src.crs


@pytest.mark.parametrize("entry", ["-METADATA.XML", "-SPECTRAL_IMAGE.TIF"])
def test_file_entry_points(tmp_path, dn, entry):
    folder = _product(tmp_path, dn)
    path = folder / f"{ENMAP_PRODUCT}{entry}"
    assert find_reader(path) is EnmapL2aReader  # before the generic GeoTIFF reader
    _check(open_scene(path, chunks=CHUNK), dn)


def test_zipped_product(tmp_path, dn):
    zpath = _product(tmp_path / "z", dn, zipped=True)
    assert zpath.suffix == ".ZIP"
    assert find_reader(zpath) is EnmapL2aReader
    cube = open_scene(zpath, chunks=CHUNK)
    _check(cube, dn)
    assert cube.attrs["source_files"] == [str(zpath)]


def test_missing_statistics_keep_every_band_good(tmp_path, dn):
    folder = write_enmap_l2a(tmp_path, dn, wavelengths=WL, gain=GAIN, offset=OFFSET,
                             vnir=VNIR, swir=SWIR)
    assert open_scene(folder, chunks=CHUNK)["good_band"].values.all()


def test_wavelength_ordered_file_uses_channel_lists(tmp_path):
    # a product already sorted by wavelength: the channel lists say VNIR is 1-6 and SWIR
    # 5-10 (both detectors sampled 900-1000 nm), so the VNIR channels at or beyond SWIR's
    # first wavelength are dropped
    wl = linear_wavelengths(10, 420.0, 2400.0)
    dn = ramp(10, 8, 8, "int16")
    folder = write_enmap_l2a(tmp_path, dn, wavelengths=wl, vnir=range(1, 7), swir=range(5, 11))
    cube = open_scene(folder, chunks=CHUNK)
    np.testing.assert_array_equal(cube["band"], [1, 2, 3, 4, 7, 8, 9, 10])
    assert [d["band"] for d in cube.attrs["dropped_at_ingest"]] == [5, 6]


def test_band_count_mismatch(tmp_path, dn):
    folder = _product(tmp_path, dn)
    xml = folder / f"{ENMAP_PRODUCT}-METADATA.XML"
    xml.write_bytes(enmap_metadata_xml(WL[:-1], FWHM[:-1], GAIN[:-1], OFFSET[:-1]))
    with pytest.raises(InvalidSceneError, match=f"{NB} bands but the metadata describes "
                                                f"{NB - 1}"):
        open_scene(folder)


def test_missing_metadata(tmp_path, dn):
    folder = _product(tmp_path, dn)
    tif = folder / f"{ENMAP_PRODUCT}-SPECTRAL_IMAGE.TIF"
    (folder / f"{ENMAP_PRODUCT}-METADATA.XML").unlink()
    with pytest.raises(SceneNotFoundError, match=r"no \*-METADATA\.XML"):
        EnmapL2aReader().open(tif, chunk_size=CHUNK)


def test_malformed_xml(tmp_path, dn):
    folder = _product(tmp_path, dn)
    (folder / f"{ENMAP_PRODUCT}-METADATA.XML").write_text("<level_X><specific>")
    with pytest.raises(InvalidSceneError, match="metadata XML is malformed"):
        open_scene(folder)


def test_parse_metadata_errors():
    with pytest.raises(InvalidSceneError, match="no bandCharacterisation"):
        parse_metadata(b"<level_X/>", "x.xml")
    xml = enmap_metadata_xml([500.0, 600.0], [5.0, 5.0], [1.0, 1.0], [0.0, 0.0])
    xml = xml.replace(b"<GainOfBand>1</GainOfBand>", b"", 1)
    with pytest.raises(InvalidSceneError, match="1 gain values for 2 bands"):
        parse_metadata(xml, "x.xml")
    bad = enmap_metadata_xml([500.0, 600.0], [5.0, 5.0], [1.0, 1.0], [0.0, 0.0])
    bad = bad.replace(b"500.000000", b"five hundred")
    with pytest.raises(InvalidSceneError, match="non-numeric"):
        parse_metadata(bad, "x.xml")


def test_parse_metadata_channel_lists():
    xml = enmap_metadata_xml(WL, FWHM, GAIN, OFFSET, std=STD, mean=MEAN, vnir=VNIR, swir=SWIR)
    meta = parse_metadata(xml, "x.xml")
    assert meta["vnir"] == VNIR and meta["swir"] == SWIR
    np.testing.assert_allclose(meta["gain"], GAIN)
    np.testing.assert_allclose(meta["std"], STD)


def test_guess_can_open(tmp_path, dn):
    folder = _product(tmp_path, dn)
    assert EnmapL2aReader.guess_can_open(folder)
    assert not EnmapL2aReader.guess_can_open(tmp_path / "elsewhere")
    other = tmp_path / "plain.tif"
    other.write_bytes(b"")
    assert not EnmapL2aReader.guess_can_open(other)
    assert not EnmapL2aReader.guess_can_open(tmp_path / "random.zip")
