"""Abundance conventions of `hsu-geo evaluate`: the reference rule (NNLS on max-normalised
endmembers, then per-pixel sum normalisation) and FCLS re-derivation from the run's endmembers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.datasets import load_scene
from hsu_geo.endmembers.library import load_usgs_library
from hsu_geo.errors import ConfigError, SceneNotFoundError
from hsu_geo.evaluate import evaluate_folder
from hsu_geo.scoring import ABUNDANCE_CONVENTIONS, convention_abundances
from hsu_geo.synth.datasets import DEFAULT_MINERALS, SynthConfig, parse_band_spec, write_datasets
from hsu_geo.write.tables import EndmemberTable, read_endmember_csv, write_endmember_csv

ROWS, COLS = 12, 10
SHUFFLE = [3, 0, 4, 1, 2]  # estimate j holds reference SHUFFLE[j]


def _armse(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean((A - B) ** 2)))


@pytest.mark.parametrize(("name", "rule"), [("samson", "reference"),
                                            ("jasper_ridge", "reference"), ("moffett", "fcls")])
def test_rule_with_reference_endmembers_reproduces_the_shipped_truth(shared_data, name, rule):
    """Samson 0.0020, Jasper Ridge 0.0049, Moffett 0.0007 aRMSE; the other rule is far off."""
    s = load_scene(name, shared_data)
    assert s.reference_rule == rule
    L, k = s.cube.shape[0], len(s.names)
    Y, A_ref = s.cube.reshape(L, -1).T, s.abundances.reshape(k, -1).T
    assert _armse(convention_abundances(Y, s.endmembers, rule), A_ref) < 0.005
    other = {"reference": "fcls", "fcls": "reference"}[rule]
    assert _armse(convention_abundances(Y, s.endmembers, other), A_ref) > 0.05


def test_muufl_truth_follows_neither_rule(shared_data):
    s = load_scene("muufl", shared_data)
    assert s.reference_rule is None and s.cube.shape == (64, 90, 90)
    Y, A_ref = s.cube.reshape(64, -1).T, s.abundances.reshape(5, -1).T
    for rule in ("reference", "fcls"):
        assert _armse(convention_abundances(Y, s.endmembers, rule), A_ref) > 0.1


def test_reference_rule_on_a_synthetic_mixture():
    rng = np.random.default_rng(1)
    k, L, n = 4, 30, 200
    M = rng.uniform(0.05, 1.0, (k, L)) * rng.uniform(0.2, 3.0, (k, 1))  # different peaks
    A = rng.dirichlet(np.ones(k), n)
    Y = A @ M
    peak = M.max(axis=1)
    expected = A * peak / (A * peak).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(convention_abundances(Y, M, "reference"), expected, atol=1e-8)
    np.testing.assert_allclose(convention_abundances(Y, M, "fcls"), A, atol=1e-8)
    # invariant to the scale of the pixels and of each endmember
    M2 = M * np.array([[2.0], [0.5], [1.0], [7.0]])
    np.testing.assert_allclose(convention_abundances(3 * Y, M2, "reference"), expected,
                               atol=1e-8)
    # a zero pixel has no sum to divide by, a non-finite one no solution: NaN rows
    Y[0], Y[1, 3] = 0.0, np.nan
    A0 = convention_abundances(Y, M, "reference")
    assert np.isnan(A0[:2]).all() and np.isfinite(A0[2:]).all()
    with pytest.raises(ConfigError, match="re-derivation"):
        convention_abundances(Y, M, "physical")


@pytest.fixture(scope="module")
def perfect_run(tmp_path_factory):
    """A 60 dB linear synth scene and a run whose outputs are exactly the truth (shuffled)."""
    root = tmp_path_factory.mktemp("conv")
    (d,) = write_datasets(root / "bench", load_usgs_library(DEFAULT_MINERALS),
                          parse_band_spec("400:2500:50"),
                          SynthConfig(mixings=("linear",), snrs_db=(60.0,), size=(ROWS, COLS)))
    with rasterio.open(d.truth_abundance) as src:
        A, profile = src.read().astype(float), src.profile
    table = read_endmember_csv(d.truth_endmembers)
    out = root / "out"
    out.mkdir()
    names = [f"em_{j + 1}" for j in range(5)]
    with rasterio.open(out / "scene_fake_abundance.tif", "w",
                       **{**profile, "count": 5, "dtype": "float32"}) as dst:
        dst.write(A[SHUFFLE].astype("float32"))
    write_endmember_csv(out / "scene_fake_endmembers.csv",
                        EndmemberTable(tuple(names), table.band, table.wavelength_nm,
                                       table.spectra[SHUFFLE]))
    record = {"scene_id": "scene", "extra": {"scene": str(d.scene), "reader": "geotiff"},
              "inputs": [], "config": {"options": {}}}
    (out / "scene_fake_run.json").write_text(json.dumps(record))
    return d, out, A, np.asarray(table.spectra, float)


def test_evaluate_scores_the_chosen_convention(perfect_run):
    d, out, A, M = perfect_run
    evs = {c: evaluate_folder(out, truth=str(d.scene.parent), reconstruct=False,
                              abundance_convention=c)[0] for c in ABUNDANCE_CONVENTIONS}
    assert evs["physical"].armse < 1e-6
    # the reference rule re-weights each abundance by its endmember's maximum
    peak = M.max(axis=1)[:, None, None]
    expected = A * peak / (A * peak).sum(axis=0, keepdims=True)
    assert evs["reference"].armse == pytest.approx(_armse(expected, A), rel=0.02, abs=2e-4)
    assert evs["reference"].armse > 0.01
    assert evs["fcls"].armse < 2e-3  # FCLS on the true endmembers of a 60 dB linear mixture
    for c, ev in evs.items():  # endmember scores and matching do not depend on the convention
        assert ev.mean_sad_rad == pytest.approx(evs["physical"].mean_sad_rad)
        assert [e.estimate_band for e in ev.endmembers] == \
            [e.estimate_band for e in evs["physical"].endmembers]
        payload = ev.to_dict()
        assert payload["abundance_convention"] == {"name": c,
                                                   "definition": ABUNDANCE_CONVENTIONS[c]}
    assert any("re-derived under the reference convention" in n for n in evs["reference"].notes)


def test_cli_states_the_convention_and_needs_the_scene(perfect_run, tmp_path):
    d, out, _, _ = perfect_run
    res = CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(d.scene.parent),
                                   "--abundance-convention", "reference", "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (run,) = json.loads(res.stdout)["runs"]
    assert run["abundance_convention"]["name"] == "reference"
    assert "max" in run["abundance_convention"]["definition"]
    res = CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(d.scene.parent)],
                             catch_exceptions=False)
    assert "[physical convention]" in res.stdout
    # without the scene the reference convention cannot be computed
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("scene_fake_abundance.tif", "scene_fake_endmembers.csv"):
        (bare / f).write_bytes((out / f).read_bytes())
    with pytest.raises(SceneNotFoundError, match="--scene"):
        evaluate_folder(bare, truth=str(d.scene.parent), abundance_convention="reference")
    (ev,) = evaluate_folder(bare, truth=str(d.scene.parent), abundance_convention="reference",
                            scene=str(d.scene), reconstruct=False)
    assert ev.abundance_convention == "reference"


def test_cli_choices_are_the_defined_conventions():
    from hsu_geo.cli.evaluate import evaluate

    (opt,) = [p for p in evaluate.params if p.name == "abundance_convention"]
    assert list(opt.type.choices) == list(ABUNDANCE_CONVENTIONS)
