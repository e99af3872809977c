"""ENVI reader: every interleave x byte order x data type gives the file's pixel values;
header metadata (units, data ignore value, scale factor, bbl, gains, map info) is honoured;
broken inputs fail with one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from hsu_geo.cube import cube_transform
from hsu_geo.errors import (
    HsuGeoError,
    InvalidSceneError,
    MissingWavelengthsError,
    SceneNotFoundError,
    UnsupportedFormatError,
)
from hsu_geo.ingest import find_reader, open_scene
from hsu_geo.ingest.envi import EnviReader, classify_product
from tests.ingest.fakes import (
    check_cube_contract,
    linear_wavelengths,
    ramp,
    write_envi,
    write_envi_header,
)

NB, NY, NX = 4, 20, 18
WL = linear_wavelengths(NB, 450.0, 2300.0)
CHUNK = 16

#: dtype -> first value of the ramp: negatives for signed types, > 32767 for uint16 so a
#: signed misread shows, > 2**20 for int32 (still exact in float32)
DTYPE_STARTS = {"uint8": 1, "int16": -300, "uint16": 40000, "int32": -(2**20),
                "float32": None, "float64": None}


def _values(dtype: str) -> np.ndarray:
    start = DTYPE_STARTS[dtype]
    if start is None:  # quarter steps around zero: exact in float32
        return ramp(NB, NY, NX, "float64", start=-200) * 0.25
    return ramp(NB, NY, NX, dtype, start=start)


@pytest.mark.parametrize("dtype", list(DTYPE_STARTS))
@pytest.mark.parametrize("byte_order", [0, 1])
@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
def test_pixel_values_for_every_layout(tmp_path, interleave, byte_order, dtype):
    data = _values(dtype)
    hdr = write_envi(tmp_path / "cube.hdr", data, interleave=interleave, byte_order=byte_order,
                     dtype=dtype, wavelengths=WL)
    header = hdr.read_text()
    assert f"interleave = {interleave}" in header and f"byte order = {byte_order}" in header
    cube = open_scene(hdr, chunks=CHUNK)
    check_cube_contract(cube, chunk=CHUNK, n_bands=NB)
    assert cube.attrs["interleave"] == interleave and cube.attrs["byte_order"] == byte_order
    np.testing.assert_array_equal(cube.values, data.astype("float32"))


def test_header_offset(tmp_path):
    data = _values("int16")
    hdr = write_envi(tmp_path / "off.hdr", data, interleave="bil", byte_order=1,
                     wavelengths=WL, writer="numpy", header_offset=128)
    np.testing.assert_array_equal(open_scene(hdr, chunks=CHUNK).values, data)


def test_open_by_data_file_or_header(tmp_path):
    data = _values("float32")
    hdr = write_envi(tmp_path / "scene.hdr", data, wavelengths=WL)
    img = tmp_path / "scene.img"
    assert find_reader(img) is EnviReader and find_reader(hdr) is EnviReader
    a, b = open_scene(hdr, chunks=CHUNK), open_scene(img, chunks=CHUNK)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.attrs["source_files"] == b.attrs["source_files"] == [str(hdr), str(img)]
    assert a.attrs["product_id"] == "scene"


def test_data_file_without_extension(tmp_path):
    data = _values("float32")
    hdr = write_envi(tmp_path / "emit_like.hdr", data, wavelengths=WL, ext="")
    assert (tmp_path / "emit_like").is_file()
    np.testing.assert_array_equal(open_scene(hdr, chunks=CHUNK).values, data)
    np.testing.assert_array_equal(open_scene(tmp_path / "emit_like", chunks=CHUNK).values,
                                  data)


def test_micrometers_become_nm(tmp_path):
    fwhm = np.full(NB, 10.0)
    hdr = write_envi(tmp_path / "um.hdr", _values("float32"), wavelengths=WL / 1000,
                     fwhm=fwhm / 1000, units="Micrometers")
    cube = open_scene(hdr, chunks=CHUNK)
    np.testing.assert_allclose(cube["wavelength"], WL)
    np.testing.assert_allclose(cube["fwhm"], fwhm)


def test_unlabelled_micrometres_are_guessed(tmp_path):
    hdr = write_envi(tmp_path / "nounits.hdr", _values("float32"), wavelengths=WL / 1000,
                     units=None)
    np.testing.assert_allclose(open_scene(hdr, chunks=CHUNK)["wavelength"], WL)


def test_data_ignore_value_becomes_nan(tmp_path):
    data = _values("int16")
    data[:, 5, 6] = -9999
    data[1, 0, 0] = -9999
    hdr = write_envi(tmp_path / "nodata.hdr", data, wavelengths=WL, data_ignore_value=-9999,
                     interleave="bip")
    values = open_scene(hdr, chunks=CHUNK).values
    assert np.isnan(values[:, 5, 6]).all() and np.isnan(values[1, 0, 0])
    assert np.isnan(values).sum() == NB + 1
    expected = data.astype("float32")
    expected[data == -9999] = np.nan
    np.testing.assert_array_equal(values, expected)


def test_reflectance_scale_factor_divides(tmp_path):
    data = _values("int16")
    hdr = write_envi(tmp_path / "scaled.hdr", data, wavelengths=WL,
                     reflectance_scale_factor=10000)
    cube = open_scene(hdr, chunks=CHUNK)
    assert cube.attrs["scale_factor"] == 10000
    assert "10000" in cube.attrs["calibration"]
    np.testing.assert_allclose(cube.values, data / 10000.0, rtol=1e-6)


def test_data_gain_and_offset_values(tmp_path):
    data = _values("int16")
    gains, offsets = [0.5, 2.0, 0.25, 4.0], [1.0, -1.0, 0.0, 10.0]
    hdr = write_envi(tmp_path / "gains.hdr", data, wavelengths=WL,
                     extra={"data gain values": gains, "data offset values": offsets})
    cube = open_scene(hdr, chunks=CHUNK)
    expected = data * np.array(gains)[:, None, None] + np.array(offsets)[:, None, None]
    np.testing.assert_array_equal(cube.values, expected.astype("float32"))


def test_bbl_becomes_good_band(tmp_path):
    hdr = write_envi(tmp_path / "bbl.hdr", _values("float32"), wavelengths=WL,
                     bbl=[1, 0, 1, 0])
    np.testing.assert_array_equal(open_scene(hdr, chunks=CHUNK)["good_band"],
                                  [True, False, True, False])


def test_bbl_with_wrong_length(tmp_path):
    hdr = write_envi(tmp_path / "bbl.hdr", _values("float32"), wavelengths=WL, bbl=[1, 0, 1])
    with pytest.raises(InvalidSceneError, match="bbl has 3 entries for 4 bands"):
        open_scene(hdr)


def test_rotated_map_info(tmp_path):
    map_info = "{UTM, 1, 1, 277811.628, 4483607.425, 3.1, 3.1, 13, North, WGS-84, rotation=53}"
    hdr = write_envi(tmp_path / "rot.hdr", _values("float32"), wavelengths=WL,
                     map_info=map_info)
    cube = open_scene(hdr, chunks=CHUNK)
    with rasterio.open(tmp_path / "rot.img") as src:
        assert not src.transform.is_rectilinear
        assert cube_transform(cube).almost_equals(src.transform, precision=1e-9)
        assert cube.rio.crs == src.crs
    assert cube.rio.crs.to_epsg() == 32613
    assert "x" not in cube.coords


def test_north_up_map_info(tmp_path):
    map_info = "{UTM, 1, 1, 500000.0, 4000000.0, 2.0, 2.0, 33, North, WGS-84}"
    hdr = write_envi(tmp_path / "north.hdr", _values("float32"), wavelengths=WL,
                     map_info=map_info)
    cube = open_scene(hdr, chunks=CHUNK)
    assert cube_transform(cube) == rasterio.open(tmp_path / "north.img").transform
    assert cube.rio.crs.to_epsg() == 32633
    np.testing.assert_allclose(cube["x"].values[:2], [500001.0, 500003.0])


def test_no_map_info_means_no_georeferencing(tmp_path):
    hdr = write_envi(tmp_path / "plain.hdr", _values("float32"), wavelengths=WL)
    cube = open_scene(hdr, chunks=CHUNK)
    assert cube.rio.crs is None
    assert cube_transform(cube) is None


def test_missing_wavelengths_and_override(tmp_path):
    hdr = write_envi(tmp_path / "nowl.hdr", _values("float32"))
    with pytest.raises(MissingWavelengthsError, match="--wavelengths"):
        open_scene(hdr)
    csv = tmp_path / "wl.csv"
    csv.write_text("wavelength_um\n" + "\n".join(str(w / 1000) for w in WL))
    np.testing.assert_allclose(open_scene(hdr, wavelengths=csv)["wavelength"], WL)


@pytest.mark.parametrize(("name", "expected"), [
    ("ang20140912t192359_corr_v1c_img", ("AVIRIS-NG", "reflectance", "1")),
    ("ang20170323t202244_rdn_7000-7010", ("AVIRIS-NG", "radiance", "uW nm-1 cm-2 sr-1")),
    ("f080702t01p00r08rdn_c_sc01_ort_img", ("AVIRIS-Classic", "radiance",
                                           "uW cm-2 sr-1 nm-1")),
    ("f080702t01p00r08_refl", ("AVIRIS-Classic", "reflectance", "1")),
    ("emit20250324t221005_jpl_unmix_ex", ("EMIT", "reflectance", "1")),
    ("something_else", ("unknown", "reflectance", "1")),
])
def test_product_classification(name, expected):
    assert classify_product(name, {}) == expected


def test_radiance_from_header_description():
    _, quantity, units = classify_product(
        "x", {"description": "At-sensor RADIANCE", "data units": "W m-2 sr-1 um-1"})
    assert (quantity, units) == ("radiance", "W m-2 sr-1 um-1")


def test_aviris_classic_radiance_gain_file(tmp_path):
    data = ramp(NB, NY, NX, "int16")
    name = "f080702t01p00r08rdn_c_sc01_ort_img"
    hdr = write_envi(tmp_path / f"{name}.hdr", data, wavelengths=WL, interleave="bip")
    gains = np.array([300.0, 300.0, 600.0, 1200.0])
    (tmp_path / "f080702t01p00r08.gain").write_text(
        "".join(f"{g:.6f} {i + 1}\n" for i, g in enumerate(gains)))
    cube = open_scene(hdr, chunks=CHUNK)
    assert cube.attrs["quantity"] == "radiance" and cube.attrs["sensor"] == "AVIRIS-Classic"
    assert "f080702t01p00r08.gain" in cube.attrs["calibration"]
    np.testing.assert_allclose(cube.values, data / gains[:, None, None], rtol=1e-6)


def test_aviris_classic_radiance_default_gains(tmp_path):
    wl = linear_wavelengths(224, 370.0, 2500.0)
    data = ramp(224, 2, 3, "int16")
    hdr = write_envi(tmp_path / "f080702t01p00r08rdn_c_sc01_ort_img.hdr", data,
                     wavelengths=wl, interleave="bip")
    cube = open_scene(hdr, chunks=CHUNK)
    assert "SeaDAS" in cube.attrs["calibration"]
    gains = np.r_[np.full(110, 300.0), np.full(50, 600.0), np.full(64, 1200.0)]
    np.testing.assert_allclose(cube.values, data / gains[:, None, None], rtol=1e-6)


def test_aviris_classic_int16_reflectance_is_scaled(tmp_path):
    data = ramp(NB, NY, NX, "int16")
    hdr = write_envi(tmp_path / "f080702t01p00r08_refl.hdr", data, wavelengths=WL)
    cube = open_scene(hdr, chunks=CHUNK)
    assert cube.attrs["scale_factor"] == 10000.0
    np.testing.assert_allclose(cube.values, data / 10000.0, rtol=1e-6)


# --- broken inputs: one-line errors ---------------------------------------------------------

def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    assert isinstance(exc.value, HsuGeoError)
    return msg


def test_truncated_binary(tmp_path):
    hdr = write_envi(tmp_path / "trunc.hdr", _values("float32"), wavelengths=WL)
    img = tmp_path / "trunc.img"
    img.write_bytes(img.read_bytes()[:-100])
    with pytest.raises(InvalidSceneError, match=r"truncated: \d+ bytes but the header") as exc:
        open_scene(hdr)
    _one_line(exc)


def test_data_larger_than_header_says(tmp_path):
    hdr = write_envi(tmp_path / "big.hdr", _values("int16"), wavelengths=WL)
    with open(tmp_path / "big.img", "ab") as fh:
        fh.write(b"\0" * 64)
    with pytest.raises(InvalidSceneError, match="size mismatch") as exc:
        open_scene(hdr)
    _one_line(exc)


def test_complex_data_type(tmp_path):
    data = (_values("float32") + 1j).astype("complex64")
    hdr = write_envi(tmp_path / "cplx.hdr", data, wavelengths=WL, writer="numpy")
    with pytest.raises(UnsupportedFormatError, match=r"data type 6 \(complex64\) is not "
                                                     "supported") as exc:
        open_scene(hdr)
    _one_line(exc)


def test_unknown_data_type(tmp_path):
    hdr = write_envi(tmp_path / "odd.hdr", _values("int16"), wavelengths=WL, writer="numpy")
    hdr.write_text(hdr.read_text().replace("data type = 2", "data type = 7"))
    with pytest.raises(UnsupportedFormatError, match="unknown ENVI data type 7") as exc:
        open_scene(hdr)
    _one_line(exc)


def test_unsupported_interleave(tmp_path):
    hdr = write_envi(tmp_path / "odd.hdr", _values("int16"), wavelengths=WL, writer="numpy")
    hdr.write_text(hdr.read_text().replace("interleave = bsq", "interleave = bsx"))
    with pytest.raises(UnsupportedFormatError, match="interleave 'bsx' is not supported") \
            as exc:
        open_scene(hdr)
    _one_line(exc)


def test_spectral_library_is_not_an_image(tmp_path):
    spectra = np.linspace(0, 1, 3 * NB).reshape(3, NB)
    hdr = write_envi_header(tmp_path / "lib.sli.hdr", {
        "samples": NB, "lines": 3, "bands": 1, "header offset": 0,
        "file type": "ENVI Spectral Library", "data type": 5, "interleave": "bsq",
        "byte order": 0, "wavelength": list(WL), "spectra names": ["a", "b", "c"]})
    spectra.astype("<f8").tofile(tmp_path / "lib.sli")
    with pytest.raises(UnsupportedFormatError, match="ENVI spectral library") as exc:
        open_scene(hdr)
    assert "--endmembers" in _one_line(exc)


def test_missing_data_file(tmp_path):
    hdr = write_envi(tmp_path / "lost.hdr", _values("int16"), wavelengths=WL)
    (tmp_path / "lost.img").unlink()
    with pytest.raises(SceneNotFoundError, match="no binary data file next to the header") \
            as exc:
        open_scene(hdr)
    _one_line(exc)


def test_header_without_required_field(tmp_path):
    hdr = write_envi_header(tmp_path / "nolines.hdr", {
        "samples": 3, "bands": 2, "data type": 4, "interleave": "bsq", "byte order": 0})
    (tmp_path / "nolines.img").write_bytes(b"\0" * 24)
    with pytest.raises(InvalidSceneError, match="lines") as exc:
        open_scene(hdr)
    _one_line(exc)


def test_not_an_envi_header(tmp_path):
    hdr = tmp_path / "other.hdr"
    hdr.write_text("this is no ENVI header\n")
    assert not EnviReader.guess_can_open(hdr)
    with pytest.raises(UnsupportedFormatError, match="no reader recognises"):
        open_scene(hdr)
