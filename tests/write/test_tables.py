"""Endmember CSV and ENVI spectral library: layout and round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import spectral
from spectral.io import envi

from hsu_geo.errors import EndmemberError, OutputError
from hsu_geo.write.tables import (
    EndmemberTable,
    read_endmember_csv,
    read_spectral_library,
    table_from_result,
    write_endmember_csv,
    write_spectral_library,
)


@pytest.fixture
def table() -> EndmemberTable:
    rng = np.random.default_rng(1)
    return EndmemberTable(
        names=("kaolinite", "alunite", "green vegetation"),
        band=np.array([5, 6, 7, 40, 41], dtype="int32"),
        wavelength_nm=np.array([420.27, 424.55, 428.83, 2201.43, 2209.87]),
        spectra=rng.random((3, 5)).astype("float32"),
        fwhm_nm=np.array([4.3, 4.3, 4.3, 8.4, 8.4]),
    )


def test_csv_layout_and_round_trip(tmp_path: Path, table: EndmemberTable) -> None:
    path = write_endmember_csv(tmp_path / "em.csv", table)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "band,wavelength_nm,kaolinite,alunite,green vegetation"
    assert len(lines) == 1 + 5
    assert lines[1].startswith("5,420.27,")
    back = read_endmember_csv(path)
    assert back.names == table.names
    np.testing.assert_array_equal(back.band, table.band)
    np.testing.assert_array_equal(back.wavelength_nm, table.wavelength_nm)
    np.testing.assert_array_equal(back.spectra, table.spectra)  # float32 exact
    assert back.spectra.dtype == np.float32


def test_csv_keeps_nan_and_quotes_commas(tmp_path: Path) -> None:
    t = EndmemberTable(("a, b", "c"), np.array([1, 2]), np.array([500.0, 600.0]),
                       np.array([[0.1, np.nan], [0.2, 0.3]], dtype="float32"))
    back = read_endmember_csv(write_endmember_csv(tmp_path / "x.csv", t))
    assert back.names == ("a, b", "c")
    assert np.isnan(back.spectra[0, 1]) and back.spectra[1, 1] == np.float32(0.3)


def test_csv_reader_rejects_other_layouts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("wavelength,soil\n500,0.1\n", encoding="utf-8")
    with pytest.raises(EndmemberError, match=r"bad\.csv.*band,wavelength_nm"):
        read_endmember_csv(bad)
    bad.write_text("band,wavelength_nm,soil\n1,500,abc\n", encoding="utf-8")
    with pytest.raises(EndmemberError, match="non-numeric"):
        read_endmember_csv(bad)


def test_table_validates_shapes() -> None:
    with pytest.raises(EndmemberError, match="2 endmember names for 3 spectra"):
        EndmemberTable(("a", "b"), np.arange(2), np.arange(2.0), np.zeros((3, 2), "float32"))
    with pytest.raises(EndmemberError, match="repeat"):
        EndmemberTable(("a", "a"), np.arange(2), np.arange(2.0), np.zeros((2, 2), "float32"))


def test_sli_header_and_round_trip(tmp_path: Path, table: EndmemberTable) -> None:
    sli, hdr = write_spectral_library(tmp_path / "em.sli", table, description="test lib")
    assert sli.exists() and hdr == tmp_path / "em.hdr"
    meta = envi.read_envi_header(str(hdr))
    assert meta["file type"] == "ENVI Spectral Library"
    assert meta["data type"] == "4" and meta["byte order"] == "0"  # float32 little-endian
    assert meta["wavelength units"] == "Nanometers"
    assert meta["spectra names"] == list(table.names)
    assert (int(meta["samples"]), int(meta["lines"]), int(meta["bands"])) == (5, 3, 1)
    assert [float(v) for v in meta["fwhm"]] == list(table.fwhm_nm)
    raw = np.fromfile(sli, dtype="<f4").reshape(3, 5)
    np.testing.assert_array_equal(raw, table.spectra)
    lib = envi.open(str(hdr), str(sli))
    assert isinstance(lib, envi.SpectralLibrary)
    np.testing.assert_array_equal(lib.spectra, table.spectra)
    np.testing.assert_allclose(lib.bands.centers, table.wavelength_nm)
    back = read_spectral_library(hdr)
    assert back.names == table.names
    np.testing.assert_array_equal(back.band, table.band)
    lib2 = spectral.open_image(str(hdr))
    assert list(lib2.names) == list(table.names)


def test_sli_without_fwhm_and_name_check(tmp_path: Path) -> None:
    t = table_from_result(["a", "b"], np.ones((2, 3), "float32"), np.array([1, 2, 3]),
                          np.array([400.0, 500.0, 600.0]), np.full(3, np.nan))
    assert t.fwhm_nm is None
    _, hdr = write_spectral_library(tmp_path / "lib.sli", t)
    assert "fwhm" not in envi.read_envi_header(str(hdr))
    with pytest.raises(OutputError, match=r"\.sli"):
        write_spectral_library(tmp_path / "lib.txt", t)
