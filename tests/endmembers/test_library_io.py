"""``--endmembers`` libraries: hsu-geo's own .sli/_endmembers.csv, long/wide tables, the EMIT
CSV (BOM, Class column), ENVI libraries with sidecar classes, grids out of order, bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from click.testing import CliRunner
from spectral.io import envi

from hsu_geo.cli.main import cli
from hsu_geo.config import UnmixOptions, check_input_files
from hsu_geo.endmembers.library_io import parse_library_spec, read_library, tidy_grid
from hsu_geo.errors import ConfigError, EndmemberError
from hsu_geo.write.tables import EndmemberTable, write_endmember_csv, write_spectral_library
from tests.unmix.scenes import linear_scene, write_scene

WL = np.array([450.0, 550.0, 650.0, 850.0, 1650.0, 2200.0])


def _table() -> EndmemberTable:
    rng = np.random.default_rng(3)
    spectra = rng.uniform(0.05, 0.9, (3, WL.size)).astype("float32")
    return EndmemberTable(("kaolinite", "dry grass (npv)", "em_3"),
                          np.array([3, 7, 12, 30, 90, 150]), WL, spectra,
                          np.full(WL.size, 10.0))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# hsu-geo's own outputs ------------------------------------------------------------------------


def test_own_csv_and_sli_round_trip_without_a_band_endmember(tmp_path):
    table = _table()
    csv = write_endmember_csv(tmp_path / "s_fcls_endmembers.csv", table)
    sli, hdr = write_spectral_library(tmp_path / "s_fcls_endmembers.sli", table)
    for path in (csv, sli, hdr):
        lib = read_library(path)
        assert lib.names == list(table.names), path  # no 'band' endmember
        np.testing.assert_array_equal(lib.wavelength_nm, WL)
        np.testing.assert_array_equal(lib.spectra.astype("float32"), table.spectra)
    assert read_library(sli).fwhm_nm is not None
    np.testing.assert_allclose(read_library(hdr).fwhm_nm, 10.0)


def test_own_sli_in_micrometres_is_converted(tmp_path):
    lib = envi.SpectralLibrary(np.array([[0.1, 0.2, 0.3], [0.5, 0.4, 0.3]], "float32"),
                               {"wavelength": [0.5, 1.0, 2.0], "wavelength units": "Micrometers",
                                "spectra names": ["a", "b"]})
    lib.save(str(tmp_path / "um"))
    got = read_library(tmp_path / "um.sli")
    np.testing.assert_allclose(got.wavelength_nm, [500.0, 1000.0, 2000.0])


# EMIT wide CSV ---------------------------------------------------------------------------------


def _emit_like(path, wl=(400.0, 500.0, 660.0, 650.0, 700.0)) -> np.ndarray:
    """EMIT layout: BOM, Class column, wavelengths in the header (not sorted), x10000."""
    spectra = np.array([[1000, 1200, 1400, 1300, 1500],
                        [3000, 3200, 3400, 3300, 3500],
                        [500, 600, 4000, 3900, 4500],
                        [800, 900, 1000, 950, 1100]], float)
    classes = ["SOIL", "SOIL", "PV", "NPV"]
    rows = ["Class," + ",".join(f"{w:g}" for w in wl)]
    rows += [c + "," + ",".join(f"{v:g}" for v in s) for c, s in zip(classes, spectra,
                                                                      strict=True)]
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(rows) + "\r\n").encode())
    return spectra


def test_emit_csv_with_bom_averages_each_class(tmp_path, caplog):
    path = tmp_path / "emit.csv"
    spectra = _emit_like(path)
    with caplog.at_level(logging.WARNING):
        lib = read_library(path)
    assert lib.names == ["SOIL", "PV", "NPV"]
    np.testing.assert_allclose(lib.wavelength_nm, [400, 500, 650, 660, 700])
    order = [0, 1, 3, 2, 4]  # sorted grid
    np.testing.assert_allclose(lib.spectra[0], spectra[:2].mean(axis=0)[order])
    np.testing.assert_allclose(lib.spectra[1], spectra[2][order])
    assert any("not increasing" in r.getMessage() for r in caplog.records)
    assert lib.records[0] == "mean of 2 spectra with class SOIL"


def test_emit_csv_class_selection_average_no_and_scale(tmp_path):
    path = tmp_path / "emit.csv"
    spectra = _emit_like(path)
    lib = read_library(f"{path}:class=npv,soil:scale=0.0001")
    assert lib.names == ["NPV", "SOIL"]
    np.testing.assert_allclose(lib.spectra[0], spectra[3][[0, 1, 3, 2, 4]] * 1e-4)
    each = read_library(f"{path}:average=no:class=soil")
    assert each.names == ["SOIL_1", "SOIL_2"]
    with pytest.raises(EndmemberError) as exc:
        read_library(f"{path}:class=water")
    assert "no class 'water'" in _one_line(exc) and "SOIL, PV, NPV" in str(exc.value)


def test_real_emit_library(shared_data):
    path = shared_data / "libraries" / "emit" / "basic_endmember_library.csv"
    lib = read_library(f"{path}:scale=0.0001")
    assert lib.names == ["SOIL", "PV", "NPV"]
    assert lib.wavelength_nm.size == 224 and np.all(np.diff(lib.wavelength_nm) > 0)
    assert 0.2 < np.nanmax(lib.spectra) < 1.0


# grids, units, layouts -----------------------------------------------------------------------


def test_unsorted_grid_is_sorted_and_duplicates_averaged_with_a_warning(tmp_path, caplog):
    path = tmp_path / "long.csv"
    path.write_text("wavelength_nm,a,b\n500,0.2,0.6\n400,0.1,0.5\n500,0.4,\n600,0.3,0.7\n")
    with caplog.at_level(logging.WARNING):
        lib = read_library(path)
    np.testing.assert_allclose(lib.wavelength_nm, [400, 500, 600])
    np.testing.assert_allclose(lib.spectra, [[0.1, 0.3, 0.3], [0.5, 0.6, 0.7]])
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "not increasing" in msg and "1 wavelength(s) repeated" in msg and "averaged" in msg


def test_decreasing_grid_is_reversed_silently():
    wl, s, f = tidy_grid(np.array([3.0, 2.0, 1.0]), np.array([[1.0, 2.0, 3.0]]),
                         np.array([5.0, 6.0, 7.0]), "x")
    np.testing.assert_array_equal(wl, [1, 2, 3])
    np.testing.assert_array_equal(s, [[3, 2, 1]])
    np.testing.assert_array_equal(f, [7, 6, 5])


def test_micrometre_columns_index_columns_and_semicolons(tmp_path):
    path = tmp_path / "um.csv"
    path.write_text("channel;wavelength_um;soil;leaf\n1;0.4;0.1;0.05\n2;0.8;0.2;0.5\n"
                    "3;2.2;0.3;0.1\n")
    lib = read_library(path)
    assert lib.names == ["soil", "leaf"]
    np.testing.assert_allclose(lib.wavelength_nm, [400, 800, 2200])


def test_wide_table_with_name_column_and_names_glob(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("name,0.4,0.8,2.2\ngoethite WS222,0.05,0.3,0.4\ngoethite X,0.06,0.3,0.4\n"
                    "kaolinite CM9,0.6,0.8,0.7\n")
    lib = read_library(f"{path}:names=kaol*,goethite ws*")
    assert lib.names == ["kaolinite CM9", "goethite WS222"]
    np.testing.assert_allclose(lib.wavelength_nm, [400, 800, 2200])
    with pytest.raises(EndmemberError) as exc:
        read_library(f"{path}:class=soil")
    assert "class= needs a class column" in _one_line(exc)


def test_envi_library_with_sidecar_classes(tmp_path):
    spectra = np.array([[0.1, 0.2, 0.3], [0.3, 0.4, 0.5], [0.6, 0.6, 0.6]], "float32")
    envi.SpectralLibrary(spectra, {"wavelength": [500, 1000, 2000],
                                   "wavelength units": "Nanometers",
                                   "spectra names": ["roof 1", "roof 2", "grass"]}
                         ).save(str(tmp_path / "lib"))
    (tmp_path / "lib.csv").write_text("spectra names,level_1\nroof 1,impervious\n"
                                      "roof 2,impervious\ngrass,vegetation\n")
    lib = read_library(f"{tmp_path / 'lib.sli'}:by=level_1")
    assert lib.names == ["impervious", "vegetation"]
    np.testing.assert_allclose(lib.spectra[0], [0.2, 0.3, 0.4], rtol=1e-6)
    assert read_library(tmp_path / "lib.sli").names == ["roof 1", "roof 2", "grass"]
    with pytest.raises(EndmemberError) as exc:
        read_library(f"{tmp_path / 'lib.sli'}:by=level_9")
    assert "level_1" in _one_line(exc)


@pytest.mark.parametrize("name, spec, n", [
    ("berlin", "enmapbox_berlin_urban/library_berlin.sli:by=level_2:scale=0.0001", 5),
    ("earthlib", "earthlib/optimized.sli.hdr:by=level_2", 5),
    ("splib07", "usgs_splib/s07_AV95_envi.hdr:names=alunite gds84*", 3),
])
def test_real_envi_libraries(shared_data, name, spec, n):
    lib = read_library(shared_data / "libraries" / spec)
    assert len(lib) == n, name
    assert np.all(np.diff(lib.wavelength_nm) > 0)
    assert 350 < lib.wavelength_nm[0] < 500 and 2000 < lib.wavelength_nm[-1] < 2600
    assert 0.1 < np.nanmax(lib.spectra) < 1.3


# options and bad input -------------------------------------------------------------------------


def test_spec_parsing(tmp_path):
    s = parse_library_spec("lib.csv:class=soil, npv:scale=1e-4:average=no")
    assert s.path.name == "lib.csv" and s.classes == ("soil", "npv")
    assert s.scale == pytest.approx(1e-4) and s.average is False
    odd = tmp_path / "a:b.csv"
    odd.write_text("x")
    assert parse_library_spec(str(odd)).path == odd
    for bad, needle in (("lib.csv:class=soil:colour=red", "not an option"),
                        ("lib.csv:scale=0", "positive number"),
                        ("lib.csv:class=", "empty"),
                        ("lib.csv:class=a:class=b", "twice")):
        with pytest.raises(ConfigError, match=needle):
            parse_library_spec(bad)


@pytest.mark.parametrize("content, needle", [
    (b"\x00\x01\x02\xff\xfe" * 50, "not a text table"),
    (b"hello world\nthis is not a library\n", "no wavelengths found"),
    (b"wavelength_nm,a\n400,0.1\n500,zero\n", "line 3, column 'a': 'zero' is not a number"),
    (b"", "empty"),
])
def test_garbage_files_are_one_line_errors(tmp_path, content, needle):
    path = tmp_path / "lib.sli"
    path.write_bytes(content)
    with pytest.raises(EndmemberError) as exc:
        read_library(path)
    assert needle in _one_line(exc)


def test_cli_garbage_library_and_emit_unmix(tmp_path):
    cube, _, _, wl = linear_scene(rows=12, cols=10, k=3, seed=2)
    scene = write_scene(tmp_path / "s.tif", cube, wl)
    bad = tmp_path / "lib.sli"
    bad.write_bytes(b"\x00\xff" * 100)
    res = CliRunner().invoke(cli, ["unmix", str(scene), "--endmembers", str(bad), "-o",
                                   str(tmp_path / "o")])
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert res.exit_code == 1 and lines[-1].startswith("Error:") and "Traceback" not in res.stderr
    assert "not a text table" in lines[-1]
    emit = tmp_path / "emit.csv"
    _emit_like(emit, wl=(400.0, 1000.0, 1600.0, 2000.0, 2400.0))
    res = CliRunner().invoke(cli, ["unmix", str(scene), "--endmembers",
                                   f"{emit}:scale=0.0001", "-o", str(tmp_path / "e"), "-q"])
    assert res.exit_code == 0, res.output
    header = (tmp_path / "e" / "s_fcls_endmembers.csv").read_text().splitlines()[0]
    assert header == "band,wavelength_nm,SOIL,PV,NPV"


def test_input_check_strips_options(tmp_path):
    path = tmp_path / "emit.csv"
    _emit_like(path)
    check_input_files(UnmixOptions(endmembers=f"{path}:class=soil"))
    with pytest.raises(EndmemberError, match="not found"):
        check_input_files(UnmixOptions(endmembers=f"{tmp_path / 'nope.csv'}:class=soil"))
