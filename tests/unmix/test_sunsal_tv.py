"""SUnSAL-TV (``-m sunsal_tv``): the ADMM solver against per-pixel SUnSAL, the TV prior on a
noisy piecewise-constant scene, chunk independence within the halo's approximation, and the
command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.endmembers.library import load_usgs_library, resample_to_bands
from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.classical.sunsal import sunsal
from hsu_geo.unmix.classical.sunsal_tv import SunsalTVConfig, SunsalTVUnmixer, sunsal_tv
from hsu_geo.unmix.spatial import spatial_stacked
from tests.unmix.scenes import write_scene

PRESENT = ("alunite", "calcite", "hematite")
WL = np.arange(400.0, 2401.0, 20.0)  # 101 bands


def regions_scene(rows: int = 40, cols: int = 36, noise: float = 0.03, seed: int = 0):
    """``(noisy cube (L, rows, cols), clean cube, A (3, rows, cols), M (3, L))``: three regions
    of constant abundances, white noise of ``noise`` x the RMS signal."""
    M = resample_to_bands(load_usgs_library(list(PRESENT)), WL, np.full(WL.size, 10.0))
    rng = np.random.default_rng(seed)
    label = np.zeros((rows, cols), int)
    label[:, cols // 3:] = 1
    label[rows // 2:, 2 * cols // 3:] = 2
    A = np.zeros((3, rows, cols))
    for r, a in enumerate(rng.dirichlet(np.ones(3), 3)):
        A[:, label == r] = a[:, None]
    clean = np.einsum("kl,khw->lhw", M, A)
    sigma = noise * float(np.sqrt(np.mean(clean ** 2)))
    return clean + sigma * rng.standard_normal(clean.shape), clean, A, M, sigma


def test_without_tv_it_is_per_pixel_sunsal():
    Y, _, _, M, sigma = regions_scene(rows=12, cols=10)
    A_tv, info = sunsal_tv(Y, M, sigma, 0.0, tol=1e-7, max_iter=5000)
    A_px, _ = sunsal(Y.reshape(len(WL), -1).T, M, sigma, tol=1e-8, max_iter=20000)
    assert info.converged
    np.testing.assert_allclose(A_tv.reshape(3, -1), A_px.T, atol=2e-4)


def test_tv_prior_lowers_the_error_on_a_noisy_piecewise_constant_scene():
    Y, _, A, M, sigma = regions_scene()
    errs = {}
    for tv in (0.0, 1.0):
        est, info = sunsal_tv(Y, M, sigma, tv * sigma)
        assert info.converged and (est >= 0).all()
        frac = est / est.sum(axis=0, keepdims=True)
        errs[tv] = float(np.sqrt(np.mean((frac - A) ** 2)))
    assert errs[1.0] < 0.85 * errs[0.0], errs


def _fitted(Y: np.ndarray, M: np.ndarray, **kw) -> SunsalTVUnmixer:
    u = SunsalTVUnmixer(SunsalTVConfig(prune=False, **kw))
    u.fit(Y.reshape(Y.shape[0], -1).T.astype("float32"), M)
    return u


def test_chunks_agree_within_the_halo_approximation_and_nodata_stays_nan():
    Y, _, _, M, _ = regions_scene()
    Y = Y.astype("float32")
    Y[:, 7, 9] = np.nan
    u = _fitted(Y[:, 8:, :], M)  # fit on the finite pixels
    assert u.input == "image" and u.halo == 16 and not u.fits_brightness
    cube = xr.DataArray(Y, dims=("band", "y", "x"))
    outs = [spatial_stacked(cube.chunk({"band": -1, "y": c, "x": c}), u, 3).values
            for c in (16, 64)]
    assert np.isnan(outs[0][:, 7, 9]).all() and np.isnan(outs[1][:, 7, 9]).all()
    ok = np.isfinite(outs[1][0])
    assert ok.sum() == 40 * 36 - 1
    np.testing.assert_allclose(outs[0][:, ok], outs[1][:, ok], atol=3e-3)  # halo 16: 2.4e-3
    np.testing.assert_allclose(outs[1][:3, ok].sum(axis=0), 1.0, atol=1e-5)


def test_settings_and_bad_input():
    assert MODELS.get("sunsal_tv") is SunsalTVUnmixer
    cfg = make_config(SunsalTVConfig, {"tv_noise": "0.5", "halo": "4"})
    assert cfg.tv_noise == 0.5 and cfg.halo == 4
    with pytest.raises(ConfigError, match="tv_noise"):
        SunsalTVConfig(tv_noise=-1)
    with pytest.raises(ConfigError, match="halo"):
        SunsalTVConfig(halo=100)
    Y, _, _, M, sigma = regions_scene(rows=8, cols=8)
    with pytest.raises(ConfigError, match="lambda_tv"):
        sunsal_tv(Y, M, sigma, -1.0)
    bad = Y.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidSceneError, match="NaN"):
        sunsal_tv(bad, M, sigma, sigma)
    with pytest.raises(ConfigError, match="fit the model"):
        SunsalTVUnmixer().abundances_image(Y)


def test_cli_selects_the_minerals_and_writes_the_maps(tmp_path):
    Y, _, _, _, _ = regions_scene(rows=30, cols=30)
    scene = write_scene(tmp_path / "mix.tif", Y.astype("float32"), WL)
    res = CliRunner().invoke(cli, ["unmix", str(scene), "-m", "sunsal_tv", "-o",
                                   str(tmp_path / "o"), "-q", "--chunk-size", "16"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "o" / "mix_sunsal_tv_run.json").read_text())
    assert set(record["endmembers"]) == set(PRESENT)
    fit = record["extra"]["fit"]["sunsal"]
    assert fit["lambda_tv"] > 0 and fit["halo"] == 16
    with rasterio.open(tmp_path / "o" / "mix_sunsal_tv_abundance.tif") as src:
        assert src.count == 3 and (src.height, src.width) == (30, 30)
        A = src.read()
    assert np.isfinite(A).all()
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-5)
