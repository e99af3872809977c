"""The cube contract (ARCHITECTURE.md §1): every reader's output on a fake product, lazy opening
(no pixel read), and make_cube/validate_cube and the helpers on their own."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from affine import Affine

from hsu_geo.cube import (
    band_table,
    cube_chunks,
    cube_crs,
    cube_transform,
    is_rectilinear,
    make_cube,
    valid_mask,
    validate_cube,
)
from hsu_geo.errors import InvalidSceneError
from hsu_geo.ingest import open_scene
from hsu_geo.ingest import rasterio_array as ra
from tests.ingest.fakes import (
    check_cube_contract,
    linear_wavelengths,
    ramp,
    write_enmap_l2a,
    write_envi,
    write_geotiff,
)

NB, NY, NX = 5, 40, 34
WL = linear_wavelengths(NB, 450.0, 2300.0)
CHUNK = 16
NODATA = -999


def _data() -> np.ndarray:
    data = ramp(NB, NY, NX, "int16")
    data[:, 1, 2] = NODATA
    return data


def _geotiff_tags(tmp_path):
    return write_geotiff(tmp_path / "s.tif", _data(), wavelengths_nm=WL, nodata=NODATA), 1.0


def _geotiff_imagery(tmp_path):
    return write_geotiff(tmp_path / "s.tif", _data(), wavelengths_nm=WL, nodata=NODATA,
                         style="imagery"), 1.0


def _envi(tmp_path):
    return write_envi(tmp_path / "s.hdr", _data(), wavelengths=WL, data_ignore_value=NODATA,
                      interleave="bil"), 1.0


def _enmap(tmp_path):
    return write_enmap_l2a(tmp_path, _data(), wavelengths=WL, gain=0.5, offset=0.0,
                           nodata=NODATA), 0.5


def _enmap_zip(tmp_path):
    return write_enmap_l2a(tmp_path, _data(), wavelengths=WL, gain=0.5, offset=0.0,
                           nodata=NODATA, zipped=True), 0.5


FAKES = {"geotiff-tags": (_geotiff_tags, "geotiff"),
         "geotiff-imagery": (_geotiff_imagery, "geotiff"),
         "envi": (_envi, "envi"),
         "enmap-folder": (_enmap, "enmap"),
         "enmap-zip": (_enmap_zip, "enmap")}


@pytest.fixture(params=list(FAKES))
def fake(request, tmp_path):
    make, reader = FAKES[request.param]
    path, gain = make(tmp_path)
    return path, gain, reader


def test_every_reader_meets_the_contract(fake):
    path, gain, reader = fake
    cube = open_scene(path, chunks=CHUNK)
    check_cube_contract(cube, chunk=CHUNK, n_bands=NB)
    assert cube.attrs["reader"] == reader
    assert cube.data.chunks == ((NB,), (16, 16, 8), (16, 16, 2))
    np.testing.assert_array_equal(cube["band"], np.arange(1, NB + 1))
    np.testing.assert_allclose(cube["wavelength"], WL, atol=1e-6)
    data = _data()
    expected = data.astype("float32") * np.float32(gain)
    expected[data == NODATA] = np.nan
    np.testing.assert_array_equal(cube.values, expected)
    assert np.isnan(cube.values[:, 1, 2]).all()
    assert not bool(valid_mask(cube)[1, 2]) and bool(valid_mask(cube).sum() == NY * NX - 1)


def test_opening_reads_no_pixels(fake, monkeypatch):
    path, _, _ = fake
    calls = []

    def forbidden(self, key):
        calls.append(key)
        raise AssertionError("open_scene read pixels")

    monkeypatch.setattr(ra.WindowReader, "__getitem__", forbidden)
    cube = open_scene(path, chunks=CHUNK)
    validate_cube(cube)
    _ = cube.isel(band=slice(0, 2)).mean()  # building more graph reads nothing either
    assert calls == []
    monkeypatch.undo()
    assert np.isfinite(cube.isel(x=0, y=0).values).all()  # reads fine afterwards


def test_chunk_size_is_respected(tmp_path):
    path = write_geotiff(tmp_path / "s.tif", _data(), wavelengths_nm=WL)
    for chunk in (16, 32, 512):
        check_cube_contract(open_scene(path, chunks=chunk), chunk=chunk, n_bands=NB)
    with pytest.raises(InvalidSceneError, match="chunk size 8 is too small"):
        cube_chunks(8)
    assert cube_chunks(256) == {"band": -1, "y": 256, "x": 256}


# --- make_cube / validate_cube --------------------------------------------------------------

ATTRS = {"sensor": "S", "product_id": "p", "quantity": "reflectance", "units": "1",
         "scale_factor": 1.0, "calibration": "none", "source_files": ["f"]}
TRANSFORM = Affine(10.0, 0.0, 1000.0, 0.0, -10.0, 5000.0)


def _lazy(shape=(3, 4, 5), dtype="int16"):
    return da.from_array(np.arange(np.prod(shape)).reshape(shape).astype(dtype),
                         chunks=(-1, 2, 2))


def _make(**kw):
    args = {"band": [1, 2, 3], "wavelength": [500.0, 600.0, 700.0], "attrs": ATTRS}
    args.update(kw)
    data = args.pop("data", _lazy())
    return make_cube(data, **args)


def test_make_cube_coords_and_georeferencing():
    cube = _make(fwhm=[5.0, 6.0, 7.0], good_band=[True, False, True], crs="EPSG:32633",
                 transform=TRANSFORM)
    assert cube.dtype == np.float32 and isinstance(cube.data, da.Array)
    np.testing.assert_array_equal(cube["good_band"], [True, False, True])
    np.testing.assert_allclose(cube["x"], [1005.0, 1015.0, 1025.0, 1035.0, 1045.0])
    np.testing.assert_allclose(cube["y"], [4995.0, 4985.0, 4975.0, 4965.0])
    assert cube_transform(cube) == TRANSFORM and cube.rio.transform() == TRANSFORM
    assert cube_crs(cube).to_epsg() == 32633
    assert np.isnan(cube.rio.nodata)
    assert band_table(cube)[1] == {"band": 2, "wavelength_nm": 600.0, "fwhm_nm": 6.0,
                                   "good_band": False}


def test_make_cube_defaults_and_rpcs():
    cube = _make(rpcs={"LINE_OFF": 1.0})
    assert np.isnan(cube["fwhm"]).all() and cube["good_band"].values.all()
    assert cube.attrs["rpcs"] == {"LINE_OFF": 1.0}
    assert cube_transform(cube) is None and cube_crs(cube) is None
    assert "x" not in cube.coords


def test_is_rectilinear():
    assert is_rectilinear(TRANSFORM)
    assert not is_rectilinear(Affine.rotation(10) @ TRANSFORM)


@pytest.mark.parametrize(("kw", "message"), [
    ({"wavelength": [500.0, 700.0, 600.0]}, "not strictly increasing"),
    ({"wavelength": [500.0, np.nan, 600.0]}, "contain NaN"),
    ({"attrs": {**ATTRS, "quantity": "brightness"}}, "quantity 'brightness' is not one of"),
    ({"attrs": {k: v for k, v in ATTRS.items() if k != "units"}}, "attrs lack units"),
    ({"data": _lazy().rechunk((1, 2, 2))}, "split the band axis"),
])
def test_make_cube_rejects_broken_input(kw, message):
    with pytest.raises(InvalidSceneError, match=message):
        _make(**kw)


def test_validate_cube_rejections():
    cube = _make()
    with pytest.raises(InvalidSceneError, match=r"xarray\.DataArray"):
        validate_cube(np.zeros((3, 4, 5)))
    with pytest.raises(InvalidSceneError, match="dims are"):
        validate_cube(cube.transpose("y", "x", "band"))
    with pytest.raises(InvalidSceneError, match="dtype is float64"):
        validate_cube(cube.astype("float64"))
    with pytest.raises(InvalidSceneError, match="not dask-backed"):
        validate_cube(cube.compute())
    with pytest.raises(InvalidSceneError, match="per-band coordinate 'good_band'"):
        validate_cube(cube.drop_vars("good_band"))
    validate_cube(cube)


def test_valid_mask_uses_good_bands_only():
    values = np.ones((3, 2, 2), "float32")
    values[1, 0, 0] = np.nan  # a bad band's NaN does not invalidate the pixel
    values[2, 1, 1] = np.nan
    cube = _make(data=da.from_array(values, chunks=(-1, 2, 2)),
                 good_band=[True, False, True])
    np.testing.assert_array_equal(valid_mask(cube), [[True, True], [True, False]])
