"""Continuum removal, absorption features and feature-based mineral naming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from hsu_geo.endmembers.features import (
    absorption_features,
    continuum_removed,
    diagnostic_windows,
    name_by_features,
    name_endmembers_by_features,
    upper_hull,
)
from hsu_geo.endmembers.library import (
    load_usgs_library,
    name_endmembers,
    resample_to_bands,
)
from hsu_geo.errors import EndmemberError

WL5 = np.arange(400.0, 2501.0, 5.0)


def _gauss_band(wl: np.ndarray, centre: float, fwhm: float, depth: float) -> np.ndarray:
    return 1.0 - depth * np.exp(-4 * np.log(2) * ((wl - centre) / fwhm) ** 2)


# ------------------------------------------------------------------ continuum removal


def test_upper_hull_matches_scipy_convex_hull() -> None:
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(400, 2500, 60))
    Y = rng.uniform(0.1, 0.6, (5, 60))
    H = upper_hull(x, Y)
    for y, h in zip(Y, H, strict=True):
        hull = ConvexHull(np.c_[x, y])
        verts = np.unique(hull.vertices)
        # the upper hull passes through every hull vertex that is on or above the chord
        upper = [v for v in verts if np.isclose(h[v], y[v])]
        assert 0 in upper and 59 in upper
        ref = np.interp(x, x[upper], y[upper])
        np.testing.assert_allclose(h, ref, atol=1e-12)
        assert np.all(h >= y - 1e-12)


def test_continuum_removal_properties() -> None:
    base = 0.3 + 0.1 * np.sin(WL5 / 1000.0)  # concave-down continuum
    spec = base * _gauss_band(WL5, 2200, 60, 0.3)
    cr, hull = continuum_removed(WL5, np.vstack([spec, 2.5 * spec, base]))
    assert np.nanmax(cr) == pytest.approx(1.0) and np.all(cr <= 1 + 1e-12)
    assert cr[0, 0] == pytest.approx(1.0) and cr[0, -1] == pytest.approx(1.0)
    np.testing.assert_allclose(cr[0], cr[1], atol=1e-12)  # brightness does not matter
    np.testing.assert_allclose(cr[2], 1.0, atol=1e-9)  # a convex spectrum has no absorption
    assert cr[0].min() == pytest.approx(0.7, abs=0.02)  # the band depth survives
    assert np.all(hull[0] >= spec - 1e-12)


def test_continuum_removal_skips_nan_bands() -> None:
    spec = 0.4 * _gauss_band(WL5, 2200, 60, 0.3)
    gappy = spec.copy()
    gappy[(WL5 > 1340) & (WL5 < 1460)] = np.nan
    cr, _ = continuum_removed(WL5, np.vstack([spec, gappy]))
    gap = np.isnan(gappy)
    assert np.all(np.isnan(cr[1, gap])) and np.all(np.isfinite(cr[1, ~gap]))
    np.testing.assert_allclose(cr[1, ~gap], cr[0, ~gap], atol=1e-9)


def test_continuum_removal_rejects_mismatched_bands() -> None:
    with pytest.raises(EndmemberError, match="wavelengths"):
        continuum_removed(WL5[:-1], np.ones((2, WL5.size)))


# ------------------------------------------------------------------ features


def test_synthetic_band_parameters() -> None:
    wl = np.arange(1000.0, 2500.0, 2.0)
    # asymmetric: a wider long-wavelength wing
    left = _gauss_band(wl, 2100, 40, 0.25)
    right = _gauss_band(wl, 2100, 120, 0.25)
    spec = 0.5 * np.where(wl < 2100, left, right)
    cr, _ = continuum_removed(wl, spec)
    f = absorption_features(wl, cr[0])[0]
    assert f.centre_nm == pytest.approx(2100, abs=2)
    assert f.depth == pytest.approx(0.25, abs=0.01)
    assert f.width_nm == pytest.approx(80, abs=6)  # (40 + 120) / 2
    assert f.asymmetry == pytest.approx(0.5, abs=0.08)  # (60 - 20) / 80


def test_kaolinite_doublet_found() -> None:
    lib = load_usgs_library(["kaolinite"])
    spec = resample_to_bands(lib, WL5, np.full(WL5.size, 5.0))
    cr, _ = continuum_removed(WL5, spec)
    centres = [f.centre_nm for f in absorption_features(WL5, cr[0])]
    assert any(abs(c - 2165) < 8 for c in centres), centres
    assert any(abs(c - 2206) < 8 for c in centres), centres
    # the doublet is one diagnostic window
    win = [w for w in diagnostic_windows(WL5, cr[0]) if w.lo_nm < 2206 < w.hi_nm]
    assert len(win) == 1 and len(win[0].centres_nm) >= 2
    assert win[0].lo_nm < 2165 and win[0].primary


# ------------------------------------------------------------------ naming


def test_library_spectra_name_themselves_and_noise_does_not() -> None:
    names = ["kaolinite", "calcite", "alunite", "hematite", "montmorillonite"]
    fw = np.full(WL5.size, 5.0)
    X = resample_to_bands(load_usgs_library(names), WL5, fw)
    rng = np.random.default_rng(1)
    # grain-size-like change: a deeper/shallower band (power) and a brightness change
    X = 0.8 * X ** 1.3 * (1 + rng.normal(0, 0.002, X.shape))
    flat = np.full((1, WL5.size), 0.3) + rng.normal(0, 0.0005, (1, WL5.size))
    res = name_by_features(np.vstack([X, flat]), WL5, fw)
    assert [r.name for r in res[:5]] == names
    assert all(r.confidence > 0.3 for r in res[:5])
    # a flat grey spectrum has no features and is too dark for quartz, feldspars or halite
    assert res[5].name == "em_6" and res[5].info["decision"] == "featureless"
    assert "too dark" in res[5].info["reason"]


def test_bright_featureless_spectrum_named_after_the_featureless_minerals() -> None:
    fw = np.full(WL5.size, 5.0)
    quartz = resample_to_bands(load_usgs_library(["quartz"]), WL5, fw)
    sloped = 0.75 + 0.05 * (WL5 - 400) / 2100  # bright, featureless, not a library spectrum
    res = name_by_features(np.vstack([0.9 * quartz[0], sloped]), WL5, fw)
    for r in res:
        assert r.info["decision"] == "featureless"
        assert set(r.name.split(" or ")) == {"quartz", "orthoclase", "halite"}
        assert r.confidence == 0.0
    assert res[0].candidates[0][0] == "quartz"  # same continuum shape ranks first
    # x10000 reflectance: the brightness cannot be checked, so no name
    scaled = name_by_features(10000 * quartz, WL5, fw)[0]
    assert scaled.name == "em_1" and "0-1 reflectance" in scaled.info["reason"]
    # a library without featureless minerals cannot name it
    lib = load_usgs_library(["kaolinite", "calcite"])
    none = name_by_features(sloped[None, :], WL5, fw, library=lib)[0]
    assert none.name == "em_1" and none.info["decision"] == "no_features"


def test_undecidable_when_diagnostic_bands_dropped() -> None:
    fw = np.full(WL5.size, 5.0)
    kaol = resample_to_bands(load_usgs_library(["kaolinite"]), WL5, fw)
    keep = ~(((WL5 >= 2100) & (WL5 <= 2300)) | ((WL5 >= 1340) & (WL5 <= 1460))
             | ((WL5 >= 1790) & (WL5 <= 1960)))
    full = name_by_features(kaol, WL5, fw)[0]
    assert full.name == "kaolinite"
    cut = name_by_features(kaol[:, keep], WL5[keep], fw[keep])[0]
    assert cut.name == "em_1"
    assert cut.info["decision"] == "undecidable"
    assert "kaolinite" in cut.info["reason"] and "dropped" in cut.info["reason"]


def test_name_endmembers_features_method_returns_pairs_with_evidence() -> None:
    fw = np.full(WL5.size, 5.0)
    X = resample_to_bands(load_usgs_library(["calcite", "gypsum"]), WL5, fw)
    M = np.vstack([X, X[0] * 0.9])
    named = name_endmembers(M, WL5, fw, method="features")
    assert [n for n, _ in named] == ["calcite", "gypsum", "calcite_2"]
    assert all(a < 0.05 for _, a in named)  # the SAM angle to the named mineral
    assert named[0].info["decision"] == "named" and 0 < named[0].confidence <= 1
    assert named[0].info["candidates"][0]["mineral"] == "calcite"
    same = name_endmembers_by_features(M, WL5, fw)
    assert [n for n, _ in same] == [n for n, _ in named]
    with pytest.raises(EndmemberError, match="naming method"):
        name_endmembers(M, WL5, fw, method="bogus")


# ------------------------------------------------------------------ other laboratories


def _jpl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for line in path.read_text(encoding="latin-1").splitlines()[26:]:
        parts = line.split()
        if len(parts) >= 2:
            rows.append((float(parts[0]) * 1000.0, float(parts[1]) / 100.0))
    data = np.array(sorted(rows))
    keep = np.r_[True, np.diff(data[:, 0]) > 0]
    return data[keep, 0], data[keep, 1]


@pytest.mark.slow
def test_jpl_spectra_named_by_features(shared_data: Path) -> None:
    """JPL Beckman spectra (ASTER 2.0 library) of minerals the bundled USGS library holds, on
    an AVIRIS-NG-like grid without the water-vapour bands."""
    folder = shared_data / "libraries" / "aster_jpl_jhu"
    cases = {"silicate.phyllosilicate.fine.ps01a": "kaolinite",
             "silicate.phyllosilicate.fine.ps02b": "montmorillonite",
             "sulfate.none.fine.so04a": "alunite",
             "carbonate.none.coarse.c03": "calcite"}
    wl = WL5[~(((WL5 >= 1340) & (WL5 <= 1460)) | ((WL5 >= 1790) & (WL5 <= 1960)))]
    fw = np.full(wl.size, 5.5)
    M = []
    for stem in cases:
        x, y = _jpl(folder / f"jpl.beckman.mineral.{stem}.spectrum.txt")
        M.append(np.interp(wl, x, y))
    named = name_endmembers(np.array(M), wl, fw, method="features")
    assert [n for n, _ in named] == list(cases.values())
    sam = name_endmembers(np.array(M), wl, fw, method="sam", threshold_rad=np.pi)
    assert [n for n, _ in sam] != list(cases.values())  # what full-spectrum SAM got wrong
