"""MVC-NMF (``-m mvc_nmf``): minimum-volume endmember refinement on scenes without pure pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.endmembers.vca import vca
from hsu_geo.errors import ConfigError, EndmemberError
from hsu_geo.synth.mixing import add_noise
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.classical.mvc_nmf import MvcNmfConfig, MvcNmfUnmixer, mvc_nmf
from hsu_geo.unmix.metrics import match_endmembers, sad
from tests.unmix.scenes import mineral_endmembers, write_scene

WL = np.arange(400.0, 2401.0, 20.0)  # 101 bands, 10 nm FWHM
NAMES = ("alunite", "kaolinite", "calcite")


def no_pure_scene(seed: int = 0, n: int = 1500, snr_db: float | None = 40.0):
    """``(Y (n, L), E (3, L), A (n, 3))``: Dirichlet(1) mixtures with every abundance <= 0.8
    (no pixel near a vertex, so pixel-based extractors land inside the simplex) + noise."""
    E = mineral_endmembers(WL, NAMES)
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.ones(3), size=4 * n)
    A = A[A.max(axis=1) <= 0.8][:n]
    return add_noise(A @ E, snr_db, rng), E, A


def mean_sad(E: np.ndarray, M: np.ndarray) -> float:
    return float(sad(E, M[match_endmembers(E, M)]).mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_endmembers_move_towards_the_truth_without_pure_pixels(seed: int) -> None:
    Y, E, _ = no_pure_scene(seed)
    M0, _ = vca(Y, 3, seed=seed)
    model = MvcNmfUnmixer()
    model.fit(Y.astype("float32"), M0)
    before, after = mean_sad(E, M0), mean_sad(E, model.endmembers)
    assert after < 0.8 * before, (before, after)  # measured ~0.6x over seeds 0-4
    info = model.fit_info["mvc_nmf"]
    assert info["objective"] < info["objective_start"]
    assert info["volume"] > info["volume_start"]  # VCA's simplex is inside: it must grow
    A = model.abundances(Y.astype("float32"))
    assert A.shape == (Y.shape[0], 3) and A.dtype == np.float32
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-4)
    json.dumps(model.fit_info)  # goes into the run record


def test_deterministic_and_subsampled() -> None:
    Y, _, _ = no_pure_scene(2, n=1200)
    M0, _ = vca(Y, 3, seed=0)
    cfg = MvcNmfConfig(max_pixels=500, seed=3)
    a, b = MvcNmfUnmixer(cfg), MvcNmfUnmixer(cfg)
    a.fit(Y, M0)
    b.fit(Y, M0)
    np.testing.assert_array_equal(a.endmembers, b.endmembers)
    assert a.fit_info["mvc_nmf"]["pixels"] == 500
    c = MvcNmfUnmixer(MvcNmfConfig(max_pixels=500, seed=4))
    c.fit(Y, M0)
    assert not np.array_equal(a.endmembers, c.endmembers)


def test_units_do_not_change_the_answer() -> None:
    Y, _, _ = no_pure_scene(3, n=600)
    M0, _ = vca(Y, 3, seed=0)
    M1, _ = mvc_nmf(Y, M0, max_iter=40)
    M2, _ = mvc_nmf(100.0 * Y, 100.0 * M0, max_iter=40)  # percent reflectance
    np.testing.assert_allclose(M2, 100.0 * M1, rtol=1e-6, atol=1e-6)


def test_registry_settings_and_bad_settings() -> None:
    assert MODELS.get("mvc_nmf") is MvcNmfUnmixer
    cfg = make_config(MvcNmfConfig, {"tau": "0.1", "max_iter": "20", "delta": "2"})
    assert (cfg.tau, cfg.max_iter, cfg.delta) == (0.1, 20, 2.0)
    for bad in ({"tau": "-1"}, {"delta": "nan"}, {"tol": "0"}, {"max_iter": "0"},
                {"max_pixels": "1"}, {"lambda": "1"}, {"tau": "big"}):
        with pytest.raises(ConfigError) as err:
            make_config(MvcNmfConfig, bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="fit the model"):
        MvcNmfUnmixer().abundances(np.ones((2, 3)))
    Y, _, _ = no_pure_scene(0, n=100)
    with pytest.raises(EndmemberError, match="at least 2"):
        MvcNmfUnmixer().fit(Y, Y[:1])
    with pytest.raises(EndmemberError, match="bands"):
        MvcNmfUnmixer().fit(Y, Y[:3, :50])


def test_cli_writes_outputs(tmp_path) -> None:
    Y, _, _ = no_pure_scene(1, n=900)
    path = write_scene(tmp_path / "mix.tif", Y.T.reshape(-1, 30, 30), WL)
    res = CliRunner().invoke(cli, ["unmix", str(path), "-m", "mvc_nmf", "-k", "3", "-o",
                                   str(tmp_path / "out"), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "out" / "mix_mvc_nmf_run.json").read_text())
    assert record["extra"]["fit"]["mvc_nmf"]["iterations"] >= 1
    with rasterio.open(tmp_path / "out" / "mix_mvc_nmf_abundance.tif") as src:
        A = src.read()
    assert A.shape == (3, 30, 30)
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-3)
