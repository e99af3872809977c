"""Library unmixing on real brightness: scaled FCLS (per-pixel brightness), scale and residual
warnings, and libraries that do not fit the scene (too few bands, other units)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.endmembers.library import (
    RESIDUAL_WARN,
    SpectralLibrary,
    library_fit_diagnostics,
    library_scale_check,
    load_usgs_library,
    resample_to_bands,
    write_endmember_csv,
)
from hsu_geo.errors import ConfigError, EndmemberError
from hsu_geo.unmix.adapter import apply_unmixer
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.classical import fcls, nnls, scaled_fcls
from hsu_geo.unmix.classical.model import FclsConfig, FclsUnmixer
from tests.unmix.scenes import mineral_endmembers, write_scene

MINERALS = ("alunite", "kaolinite", "calcite", "hematite")
WL = np.arange(400.0, 2401.0, 20.0)


def bright_mixtures(n: int, seed: int = 0, k: int = 4) -> tuple[np.ndarray, ...]:
    """Library spectra mixed with Dirichlet fractions, times a brightness in [0.3, 1.5].

    Returns ``(Y (n, L), M (k, L), A (n, k), s (n,))``.
    """
    M = mineral_endmembers(WL, MINERALS[:k])
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.full(k, 0.7), size=n)
    s = rng.uniform(0.3, 1.5, size=n)
    return s[:, None] * (A @ M), M, A, s


# ------------------------------------------------------------------ the solver


def test_scaled_fcls_recovers_fractions_and_brightness_where_fcls_fails() -> None:
    Y, M, A, s = bright_mixtures(2000)
    A_hat, s_hat = scaled_fcls(Y, M)
    assert np.max(np.abs(A_hat - A)) < 1e-3
    assert np.max(np.abs(s_hat - s)) < 1e-3
    np.testing.assert_allclose(A_hat.sum(axis=1), 1.0, atol=1e-12)
    assert (A_hat >= 0).all()
    # plain FCLS forces the library's brightness: fractions are badly wrong
    assert np.max(np.abs(fcls(Y, M) - A)) > 0.2
    # the scaled fit is NNLS renormalised: a = s * f
    np.testing.assert_allclose(A_hat * s_hat[:, None], nnls(Y, M), atol=1e-12)


def test_scaled_fcls_float32_and_zero_pixels() -> None:
    Y, M, A, _ = bright_mixtures(50, seed=1)
    Y = Y.astype("float32")
    Y[3] = 0.0  # no positive projection on any endmember
    Y[7] = -M[0].astype("float32")
    A_hat, s_hat = scaled_fcls(Y, M)
    assert A_hat.dtype == np.float32 and s_hat.dtype == np.float32
    assert s_hat[3] == 0 and s_hat[7] == 0
    assert np.isfinite(A_hat).all()
    np.testing.assert_allclose(A_hat.sum(axis=1), 1.0, atol=1e-5)
    ok = np.setdiff1d(np.arange(50), [3, 7])
    assert np.max(np.abs(A_hat[ok] - A[ok])) < 1e-3


def test_fcls_brightness_setting() -> None:
    assert FclsConfig().brightness == "auto"
    assert make_config(FclsConfig, {"brightness": "Scaled"}).brightness == "scaled"
    with pytest.raises(ConfigError, match=r"brightness='shade'.*auto, scaled, none"):
        make_config(FclsConfig, {"brightness": "shade"})
    Y, M, A, s = bright_mixtures(200, seed=2)
    plain = FclsUnmixer()  # outside the pipeline "auto" is plain FCLS
    plain.fit(Y, M)
    assert not plain.fits_brightness
    assert plain.abundances_and_brightness(Y)[1] is None
    scaled = FclsUnmixer(FclsConfig(brightness="scaled"))
    scaled.fit(Y, M)
    A_hat, s_hat = scaled.abundances_and_brightness(Y)
    assert np.max(np.abs(A_hat - A)) < 1e-3 and np.max(np.abs(s_hat - s)) < 1e-3
    np.testing.assert_array_equal(scaled.abundances(Y), A_hat)


def test_adapter_writes_brightness_and_rmse_of_the_scaled_fit(tmp_path: Path) -> None:
    from hsu_geo.ingest import open_scene

    Y, M, A, s = bright_mixtures(24 * 20, seed=3)
    cube = Y.T.reshape(-1, 24, 20).astype("float32")
    cube[:, 4, 5] = np.nan
    scene = open_scene(write_scene(tmp_path / "bright.tif", cube, WL), chunks=16)
    unmixer = FclsUnmixer(FclsConfig(brightness="scaled"))
    unmixer.fit(Y, M)
    ds = apply_unmixer(scene, unmixer, list(MINERALS))
    est = ds["abundance"].values.reshape(4, -1).T
    ok = np.isfinite(est).all(axis=1)
    assert ok.sum() == 24 * 20 - 1 and np.isnan(ds["brightness"].values[4, 5])
    assert np.max(np.abs(est[ok] - A[ok])) < 1e-3
    np.testing.assert_allclose(ds["brightness"].values.ravel()[ok], s[ok], atol=1e-3)
    assert np.nanmax(ds["reconstruction_rmse"].values) < 1e-4  # RMSE of s * A @ M
    plain = FclsUnmixer(FclsConfig(brightness="none"))
    plain.fit(Y, M)
    ds_plain = apply_unmixer(scene, plain, list(MINERALS))
    assert "brightness" not in ds_plain
    assert np.nanmedian(ds_plain["reconstruction_rmse"].values) > 0.02


# ------------------------------------------------------------------ warnings


def test_scale_check_passes_matching_levels_and_reports_brightness_gaps() -> None:
    Y, M, _, _ = bright_mixtures(300, seed=4)
    info, warns = library_scale_check(Y, M, scaled=True)
    assert warns == [] and 0.3 < info["ratio"] < 3 and info["bands"] == M.shape[1]
    dark = 0.2 * Y  # 4-5x darker than the library
    _, warns = library_scale_check(dark, M, scaled=True)
    assert len(warns) == 1 and "darker" in warns[0] and "absorbs" in warns[0]
    _, warns = library_scale_check(dark, M, scaled=False)
    assert "--set brightness=scaled" in warns[0]
    _, warns = library_scale_check(dark, M, scaled=None)
    assert "does not separate a per-pixel brightness" in warns[0]


def test_scale_check_names_the_side_in_other_units() -> None:
    Y, M, _, _ = bright_mixtures(300, seed=5)
    _, warns = library_scale_check(Y * 10000, M, scaled=True)
    assert len(warns) == 1
    assert "brighter" in warns[0] and "scene looks like x10000" in warns[0]
    assert "reflectance scale factor = 10000" in warns[0]
    _, warns = library_scale_check(Y, M * 100, scaled=True)
    assert "library looks like percent (x100)" in warns[0]
    assert "divide its values by 100" in warns[0]
    with pytest.raises(EndmemberError, match=r"x10000.*plain FCLS cannot fit across units"):
        library_scale_check(Y, M * 10000, scaled=False)


def test_fit_diagnostics_flag_a_library_that_does_not_explain_the_scene() -> None:
    Y, M, A, s = bright_mixtures(400, seed=6)
    info, warns = library_fit_diagnostics(Y, M, A, s, MINERALS)
    assert warns == [] and info["median_relative_residual"] < 1e-12
    assert info["brightness"]["min"] >= 0.3 and info["brightness"]["max"] <= 1.5
    assert set(info["abundance"]) == set(MINERALS)
    assert abs(sum(a["dominant_share"] for a in info["abundance"].values()) - 1) < 1e-12
    # the pixels hold hematite, which the "library" lacks: a poor fit
    red = s[:, None] * M[3]
    info, warns = library_fit_diagnostics(red, M[:3], *scaled_fcls(red, M[:3]), MINERALS[:3])
    assert info["median_relative_residual"] > RESIDUAL_WARN
    assert len(warns) == 1 and "median relative residual" in warns[0]


# ------------------------------------------------------------------ bad libraries


def test_library_covering_too_few_bands_is_refused_with_what_it_covers() -> None:
    wl = np.arange(1500.0, 2501.0, 5.0)
    lib = SpectralLibrary(["swir"], wl, np.full((1, wl.size), 0.4), None, "swir.csv")
    target = np.arange(400.0, 2401.0, 10.0)
    with pytest.raises(EndmemberError) as err:
        resample_to_bands(lib, target, np.full(target.size, 10.0))
    msg = str(err.value)
    assert "covers 91 of the scene's 201 bands (1500-2400 nm" in msg
    assert "needs 400-2400 nm" in msg and "400-1490 nm (110 bands)" in msg
    assert "too few bands" in msg and "\n" not in msg
    # over half covered with a hole: the message gives the --drop-bands value
    holed = np.full((1, wl.size), 0.4)
    holed[0, (wl > 1800) & (wl < 1900)] = np.nan
    with pytest.raises(EndmemberError, match=r"--drop-bands 1810-1890nm\)"):
        resample_to_bands(SpectralLibrary(["gap"], wl, holed, None, "gap.csv"),
                          np.arange(1500.0, 2401.0, 10.0), np.full(91, 10.0))


def test_band_at_the_data_edge_takes_the_nearest_value() -> None:
    # AVIRIS-NG's first kept band (381.4 nm, FWHM 5.6) against AVIRIS-95 records from 383.2 nm
    lib = load_usgs_library(["kaolinite"])
    out = resample_to_bands(lib, np.array([381.36, 600.0, 2000.0]), np.full(3, 5.58))
    assert np.isfinite(out).all()
    assert out[0, 0] == pytest.approx(lib.spectra[0][np.isfinite(lib.spectra[0])][0])


# ------------------------------------------------------------------ end to end


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def bright_scene(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    Y, _, A, s = bright_mixtures(30 * 20, seed=7)
    cube = Y.T.reshape(-1, 30, 20)
    return write_scene(tmp_path / "bright.tif", cube, WL), A, s


def run_record(out: Path) -> dict:
    return json.loads(next(out.glob("*_run.json")).read_text())


def abundances(out: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(next(out.glob("*_abundance.tif"))) as src:
        return src.read().reshape(src.count, -1).T


def test_cli_library_fit_recovers_bright_and_dark_pixels(bright_scene, tmp_path):
    path, A, s = bright_scene
    library = "usgs:" + ",".join(MINERALS)
    res = invoke("unmix", path, "-m", "fcls", "--library", library, "-o", tmp_path / "s", "-q")
    assert res.exit_code == 0, res.output
    assert np.max(np.abs(abundances(tmp_path / "s") - A)) < 1e-3
    record = run_record(tmp_path / "s")
    assert record["config"]["model_config"] == {"brightness": "scaled"}
    fit = record["extra"]["fit"]["library_fit"]
    assert fit["brightness_mode"] == "scaled" and fit["median_relative_residual"] < 1e-4
    assert abs(fit["brightness"]["median"] - np.median(s)) < 1e-3
    assert not record["extra"]["fit"].get("warnings")
    # the per-pixel brightness is written as its own COG, listed in run.json
    assert record["outputs"]["brightness"].endswith("_fcls_brightness.tif")
    import rasterio

    with rasterio.open(tmp_path / "s" / record["outputs"]["brightness"]) as src:
        assert src.count == 1 and src.descriptions == ("brightness",)
        assert np.max(np.abs(src.read(1).ravel() - s)) < 1e-3
    # plain FCLS (the old behaviour) is wrong: fractions off, residual far larger
    res = invoke("unmix", path, "--library", library, "--set", "brightness=none",
                 "-o", tmp_path / "n", "-q")
    assert res.exit_code == 0, res.output
    assert np.max(np.abs(abundances(tmp_path / "n") - A)) > 0.2
    plain = run_record(tmp_path / "n")["extra"]["fit"]["library_fit"]
    assert not list((tmp_path / "n").glob("*_brightness.tif"))
    assert plain["brightness_mode"] == "none" and plain["median_relative_residual"] > 0.1


def test_cli_dark_scene_is_recovered_and_reported(tmp_path, caplog):
    Y, _, A, _ = bright_mixtures(30 * 20, seed=8)
    path = write_scene(tmp_path / "dark.tif", 0.2 * Y.T.reshape(-1, 30, 20), WL)
    library = "usgs:" + ",".join(MINERALS)
    with caplog.at_level(logging.WARNING):
        res = invoke("unmix", path, "--library", library, "-o", tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert np.max(np.abs(abundances(tmp_path / "s") - A)) < 1e-3
    warns = run_record(tmp_path / "s")["extra"]["fit"]["warnings"]
    assert len(warns) == 1 and "darker than the library" in warns[0]
    assert any("darker than the library" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        res = invoke("unmix", path, "--library", library, "--set", "brightness=none",
                     "-o", tmp_path / "n")
    assert res.exit_code == 0, res.output
    warns = run_record(tmp_path / "n")["extra"]["fit"]["warnings"]
    assert any("--set brightness=scaled" in w for w in warns)
    assert any("median relative residual" in w for w in warns)
    assert any("median relative residual" in r.getMessage() for r in caplog.records)


def test_cli_scaled_library_warns_and_plain_fit_refuses(bright_scene, tmp_path, caplog):
    path, A, _ = bright_scene
    lib = load_usgs_library(list(MINERALS))
    same = write_endmember_csv(lib, tmp_path / "unit.csv")
    lib.spectra = lib.spectra * 10000
    csv = write_endmember_csv(lib, tmp_path / "x10000.csv")
    with caplog.at_level(logging.WARNING):
        res = invoke("unmix", path, "--endmembers", csv, "-o", tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert invoke("unmix", path, "--endmembers", same, "-o", tmp_path / "u", "-q").exit_code == 0
    # the abundances are those of the 0-1 library; the brightness absorbs the factor
    np.testing.assert_allclose(abundances(tmp_path / "s"), abundances(tmp_path / "u"),
                               atol=1e-3)  # float32 rounding
    assert np.max(np.abs(abundances(tmp_path / "u") - A)) < 0.02  # the CSV loses native FWHM
    warns = run_record(tmp_path / "s")["extra"]["fit"]["warnings"]
    assert any("library looks like x10000" in w for w in warns)
    assert any("divide its values by 10000" in r.getMessage() for r in caplog.records)
    res = invoke("unmix", path, "--endmembers", csv, "--set", "brightness=none",
                 "-o", tmp_path / "n")
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert res.exit_code == 1 and lines[-1].startswith("Error:") and "x10000" in lines[-1]
    assert not (tmp_path / "n").exists() or not any((tmp_path / "n").iterdir())


def test_cli_csv_covering_too_few_bands_is_a_one_line_error(bright_scene, tmp_path):
    path, _, _ = bright_scene
    csv = tmp_path / "vnir.csv"
    csv.write_text("wavelength_nm,soil,leaf\n"
                   + "\n".join(f"{w},0.3,0.5" for w in range(400, 1001, 10)) + "\n")
    res = invoke("unmix", path, "--endmembers", csv, "-o", tmp_path / "o")
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert res.exit_code == 1 and lines[-1].startswith("Error:"), res.output
    assert "Traceback" not in res.stderr
    assert "covers" in lines[-1] and "too few bands" in lines[-1]
