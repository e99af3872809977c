"""K-Hype (``-m khype``, baselines.md §C2): the eliminated QP against a generic solver, the
modelled spectrum, bad input and ``hsu-geo unmix -m khype`` end to end."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import scipy.optimize
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.classical import khype as khype_module
from hsu_geo.unmix.classical.khype import KhypeConfig, KhypeUnmixer, band_kernel
from tests.unmix.scenes import linear_scene, mineral_endmembers, write_scene

WL = np.arange(400.0, 2401.0, 40.0)  # 51 bands


def _problem(seed: int = 0, n: int = 6):
    E = mineral_endmembers(WL, ("alunite", "kaolinite", "calcite"))
    rng = np.random.default_rng(seed)
    A = rng.dirichlet(np.ones(3), size=n)
    Y = A @ E + 0.3 * (A[:, :1] * A[:, 1:2]) * (E[0] * E[1]) + 0.005 * rng.standard_normal(
        (n, E.shape[1]))
    return Y, E


@pytest.mark.parametrize("cfg", [KhypeConfig(), KhypeConfig(kernel="polynomial", mu=0.2),
                                 KhypeConfig(sigma=0.3, mu=0.01)])
def test_abundances_solve_the_eliminated_qp(cfg: KhypeConfig) -> None:
    """α̂ = argmin_{α ∈ Δ} ½‖α‖² + ½ (r − Mα)ᵀ (K + μI)⁻¹ (r − Mα), checked with SLSQP."""
    Y, E = _problem()
    model = KhypeUnmixer(cfg)
    model.fit(Y, E)
    A, extras, rec = model.abundances_and_extras(Y)
    G = np.linalg.inv(band_kernel(E.T, cfg.kernel, cfg.sigma) + cfg.mu * np.eye(E.shape[1]))

    def objective(a: np.ndarray, r: np.ndarray) -> float:
        s = r - a @ E
        return 0.5 * a @ a + 0.5 * s @ G @ s

    for r, a_hat in zip(Y, A.astype(np.float64), strict=True):
        ref = scipy.optimize.minimize(
            objective, np.full(3, 1 / 3), args=(r,), method="SLSQP", bounds=[(0, None)] * 3,
            constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1}],
            options={"ftol": 1e-14, "maxiter": 500})
        assert objective(a_hat, r) <= objective(ref.x, r) + 1e-7
        np.testing.assert_allclose(a_hat, ref.x, atol=1e-5)
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-5)
    assert (A >= 0).all()
    # modelled spectrum = M α + K β with β = G (r − M α)
    K = band_kernel(E.T, cfg.kernel, cfg.sigma)
    S = Y - A.astype(np.float64) @ E
    np.testing.assert_allclose(rec, A @ E + S @ G @ K, atol=1e-5)
    assert ((extras["nonlinearity"] >= 0) & (extras["nonlinearity"] <= 1)).all()


def test_nonlinear_term_fits_what_the_linear_part_cannot() -> None:
    """The RKHS term absorbs residual structure: the modelled spectrum is closer to the data
    than the linear part alone, and more so with a weaker penalty (smaller μ)."""
    Y, E = _problem(1, n=50)
    errors = []
    for mu in (1.0, 0.05):
        model = KhypeUnmixer(KhypeConfig(mu=mu))
        model.fit(Y, E)
        A, _, rec = model.abundances_and_extras(Y)
        errors.append(np.sqrt(np.mean((rec - Y) ** 2)))
        assert errors[-1] < np.sqrt(np.mean((A @ E - Y) ** 2))
    assert errors[1] < errors[0]


def test_registered_and_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MODELS.get("khype") is KhypeUnmixer and KhypeUnmixer.input == "pixels"
    with pytest.raises(ConfigError, match="kernel='rbf'"):
        KhypeConfig(kernel="rbf")
    with pytest.raises(ConfigError, match="mu=0"):
        KhypeConfig(mu=0)
    Y, E = _problem()
    with pytest.raises(EndmemberError, match="51 bands but the pixels have 50"):
        KhypeUnmixer().fit(Y[:, :50], E)
    with pytest.raises(ConfigError, match="fit the model"):
        KhypeUnmixer().abundances(Y)
    monkeypatch.setattr(khype_module, "MAX_BANDS", 40)
    with pytest.raises(InvalidSceneError, match="51 bands exceed its limit of 40"):
        KhypeUnmixer().fit(Y, E)


def test_cli_end_to_end_writes_abundances_and_the_nonlinear_share(tmp_path) -> None:
    cube, _, _, wl = linear_scene(rows=14, cols=12, k=3, seed=2)
    scene = write_scene(tmp_path / "scene.tif", cube, wl)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["unmix", str(scene), "-m", "khype", "-k", "3", "-o", str(out),
                                   "--seed", "0"])
    assert res.exit_code == 0, res.output
    with rasterio.open(out / "scene_khype_abundance.tif") as src:
        A = src.read()
    assert A.shape == (3, 14, 12)
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-4)
    with rasterio.open(out / "scene_khype_nonlinearity.tif") as src:
        share = src.read(1)
    assert np.isfinite(share).all() and (share >= 0).all() and (share < 1).all()
