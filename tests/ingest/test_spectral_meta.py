"""Wavelength metadata: unit conversion, parsing and checks, --wavelengths override files
(CSV, text table, ISOFIT layout, ENVI .hdr) and detector-overlap resolution."""

from __future__ import annotations

import numpy as np
import pytest

from hsu_geo.errors import InvalidSceneError
from hsu_geo.ingest.spectral_meta import (
    check_wavelengths,
    parse_floats,
    read_wavelength_file,
    resolve_detector_overlap,
    to_nm,
)
from tests.ingest.fakes import enmap_like_wavelengths, write_envi_header

WL_NM = np.array([450.0, 550.0, 650.0, 1200.0, 2200.0])
FWHM_NM = np.array([5.0, 6.0, 7.0, 8.0, 9.0])


@pytest.mark.parametrize("units", ["Micrometers", "micrometer", "microns", "um", "µm",
                                   " MICRONS "])
def test_micrometres(units):
    np.testing.assert_allclose(to_nm([0.45, 2.2], units, "x"), [450.0, 2200.0])


@pytest.mark.parametrize("units", ["Nanometers", "nanometer", "nm", "NM"])
def test_nanometres(units):
    np.testing.assert_allclose(to_nm([450.0, 2200.0], units, "x"), [450.0, 2200.0])


def test_millimetres():
    np.testing.assert_allclose(to_nm([0.00045], "mm", "x"), [450.0])


@pytest.mark.parametrize("units", [None, "", "Unknown", "Index"])
def test_unlabelled_units_guessed_from_magnitude(units):
    np.testing.assert_allclose(to_nm([0.45, 2.2], units, "x"), [450.0, 2200.0])
    np.testing.assert_allclose(to_nm([450.0, 2200.0], units, "x"), [450.0, 2200.0])


def test_unsupported_units():
    with pytest.raises(InvalidSceneError, match="unsupported wavelength units 'wavenumber'"):
        to_nm([1.0], "wavenumber", "scene.hdr")


def test_parse_floats():
    np.testing.assert_allclose(parse_floats("{ 450.5 , 500, 6e2 }", "wavelength", "x"),
                               [450.5, 500.0, 600.0])
    np.testing.assert_allclose(parse_floats(["1", " 2.5"], "fwhm", "x"), [1.0, 2.5])
    with pytest.raises(InvalidSceneError, match=r"scene\.hdr: fwhm holds a non-numeric value"):
        parse_floats("{1, two}", "fwhm", "scene.hdr")


def test_check_wavelengths():
    check_wavelengths(WL_NM, 5, "x")
    with pytest.raises(InvalidSceneError, match="4 wavelengths for 5 bands"):
        check_wavelengths(WL_NM[:4], 5, "x")
    with pytest.raises(InvalidSceneError, match="missing, non-finite or not positive"):
        check_wavelengths(np.array([450.0, np.nan]), 2, "x")
    with pytest.raises(InvalidSceneError, match="not positive"):
        check_wavelengths(np.array([0.0, 500.0]), 2, "x")
    with pytest.raises(InvalidSceneError, match="band 2: 550 nm, band 3: 500 nm"):
        check_wavelengths(np.array([450.0, 550.0, 500.0]), 3, "x")
    check_wavelengths(np.array([450.0, 550.0, 500.0]), 3, "x", increasing=False)


def test_csv_with_nm_columns(tmp_path):
    path = tmp_path / "wl.csv"
    path.write_text("band,wavelength_nm,fwhm_nm,bbl\n" + "".join(
        f"{i + 1},{w},{f},{int(i != 2)}\n"
        for i, (w, f) in enumerate(zip(WL_NM, FWHM_NM, strict=True))))
    info = read_wavelength_file(path, 5)
    np.testing.assert_allclose(info.wavelength, WL_NM)
    np.testing.assert_allclose(info.fwhm, FWHM_NM)
    np.testing.assert_array_equal(info.good_band, [True, True, False, True, True])


def test_csv_with_um_columns(tmp_path):
    path = tmp_path / "wl.csv"
    path.write_text("wavelength_um,fwhm_um\n" + "".join(
        f"{w / 1000},{f / 1000}\n" for w, f in zip(WL_NM, FWHM_NM, strict=True)))
    info = read_wavelength_file(path, 5)
    np.testing.assert_allclose(info.wavelength, WL_NM)
    np.testing.assert_allclose(info.fwhm, FWHM_NM)
    assert info.good_band.all()


def test_csv_plain_wavelength_column_in_um(tmp_path):
    # unlabelled "wavelength"/"fwhm" in µm: both are converted
    path = tmp_path / "wl.csv"
    path.write_text("\ufeffWavelength,FWHM\n" + "".join(
        f"{w / 1000},{f / 1000}\n" for w, f in zip(WL_NM, FWHM_NM, strict=True)))
    info = read_wavelength_file(path, 5)
    np.testing.assert_allclose(info.wavelength, WL_NM)
    np.testing.assert_allclose(info.fwhm, FWHM_NM)


def test_csv_without_wavelength_column(tmp_path):
    path = tmp_path / "wl.csv"
    path.write_text("band,centre\n1,450\n")
    with pytest.raises(InvalidSceneError, match="no wavelength column"):
        read_wavelength_file(path, 1)


def test_headerless_two_columns(tmp_path):
    path = tmp_path / "wl.txt"
    path.write_text("".join(f"{w} {f}\n" for w, f in zip(WL_NM, FWHM_NM, strict=True)))
    info = read_wavelength_file(path, 5)
    np.testing.assert_allclose(info.wavelength, WL_NM)
    np.testing.assert_allclose(info.fwhm, FWHM_NM)


def test_isofit_layout(tmp_path):
    # index, wavelength (µm), fwhm (µm), as ISOFIT's wavelengths.txt
    path = tmp_path / "wavelengths.txt"
    path.write_text("".join(f"{i:.18e} {w / 1000:.18e} {f / 1000:.18e}\n"
                            for i, (w, f) in enumerate(zip(WL_NM, FWHM_NM, strict=True))))
    info = read_wavelength_file(path, 5)
    np.testing.assert_allclose(info.wavelength, WL_NM)
    np.testing.assert_allclose(info.fwhm, FWHM_NM)


def test_ragged_table(tmp_path):
    path = tmp_path / "wl.txt"
    path.write_text("450 5\n550\n")
    with pytest.raises(InvalidSceneError, match="different numbers of columns"):
        read_wavelength_file(path, 2)


def test_empty_file(tmp_path):
    path = tmp_path / "wl.csv"
    path.write_text("\n")
    with pytest.raises(InvalidSceneError, match="empty"):
        read_wavelength_file(path, 2)


def test_wrong_count(tmp_path):
    path = tmp_path / "wl.txt"
    path.write_text("450\n550\n")
    with pytest.raises(InvalidSceneError, match="2 wavelengths for 3 bands"):
        read_wavelength_file(path, 3)


def test_envi_header_file(tmp_path):
    hdr = write_envi_header(tmp_path / "bands.hdr", {
        "samples": 1, "lines": 1, "bands": 5, "data type": 4,
        "wavelength units": "Micrometers", "wavelength": list(WL_NM / 1000),
        "fwhm": list(FWHM_NM / 1000), "bbl": [1, 1, 1, 0, 1]})
    info = read_wavelength_file(hdr, 5)
    np.testing.assert_allclose(info.wavelength, WL_NM)
    np.testing.assert_allclose(info.fwhm, FWHM_NM)
    np.testing.assert_array_equal(info.good_band, [True, True, True, False, True])


def test_envi_header_without_wavelengths(tmp_path):
    hdr = write_envi_header(tmp_path / "bands.hdr", {"samples": 1, "lines": 1, "bands": 5,
                                                     "data type": 4})
    with pytest.raises(InvalidSceneError, match="no 'wavelength' field"):
        read_wavelength_file(hdr, 5)


def test_overlap_two_detectors():
    wl = enmap_like_wavelengths(5, 6)  # 420, 565, 710, 855, 1000 | 900, 1210, ...
    keep, dropped = resolve_detector_overlap(wl, "x")
    assert dropped == [4]
    np.testing.assert_array_equal(keep, [0, 1, 2, 3, 5, 6, 7, 8, 9, 10])
    assert np.all(np.diff(wl[keep]) > 0)


def test_overlap_four_spectrometers():
    # AVIRIS-Classic style: A | B | C | D, each falling back a little at the join
    wl = np.r_[np.arange(400, 701, 10), np.arange(690, 1301, 10), np.arange(1280, 1901, 10),
               np.arange(1895, 2501, 10)].astype(float)
    keep, dropped = resolve_detector_overlap(wl, "x")
    assert np.all(np.diff(wl[keep]) > 0)
    assert wl[dropped].tolist() == [690.0, 700.0, 1280.0, 1290.0, 1300.0, 1900.0]
    assert len(keep) + len(dropped) == wl.size


def test_increasing_table_untouched():
    keep, dropped = resolve_detector_overlap(WL_NM, "x")
    assert dropped == [] and keep.tolist() == [0, 1, 2, 3, 4]


def test_too_many_reversals():
    wl = np.array([500.0, 400.0, 600.0, 500.0, 700.0, 600.0, 800.0, 700.0, 900.0])
    with pytest.raises(InvalidSceneError, match="4 reversals"):
        resolve_detector_overlap(wl, "x")
