"""AUVAE-Net (shared/models/auvae_net.md): registry and defaults, network shapes and Keras
initial scale, the code's "SAD", the chunk schedule, each training phase lowering its own loss,
seeding, the discriminator left out of checkpoints, small samples, bad settings, and
``hsu-geo unmix -m auvae_net`` end to end on a small GeoTIFF. The registry-wide suites in
test_models.py also run this model (with ``TINY`` phase counts)."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.errors import ConfigError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep.auvae_net import (
    AUVAENet,
    AUVAENetConfig,
    AUVAENetUnmixer,
    AUVAEPhases,
    build_discriminator,
    kl_term,
    sad_loss,
)
from hsu_geo.unmix.deep.checkpoint import read_checkpoint, save_checkpoint
from tests.unmix.deep import mixtures
from tests.unmix.deep.cli_checks import (
    check_reload_gives_the_same_maps,
    check_usual_outputs,
    unmix_and_save,
)
from tests.unmix.scenes import linear_scene, write_scene

WL = np.arange(400.0, 2401.0, 50.0)  # 41 bands


def tiny(**kw) -> AUVAENetConfig:
    return AUVAENetConfig(**{"epochs": 2, "min_steps": 0, "ae_steps": 2, "disc_epochs": 1,
                             "gen_steps": 1, **kw})


@pytest.fixture(scope="module")
def data():
    return mixtures(n=128)


@pytest.fixture(scope="module")
def model(data):
    Y, M, _ = data
    m = AUVAENetUnmixer(tiny(seed=1))
    m.fit(Y, M)
    return m


def test_registered_with_the_codes_defaults():
    cls = MODELS.get("auvae_net")
    assert cls is AUVAENetUnmixer and cls.input == "pixels" and cls.halo == 0
    cfg = cls.Config()
    assert (cfg.epochs, cfg.chunks, cfg.ae_steps, cfg.disc_epochs, cfg.gen_steps) == \
        (20, 10, 30, 10, 10)
    assert (cfg.lr_encoder, cfg.lr_decoder, cfg.lr_generator, cfg.lr_discriminator) == \
        (2e-4, 2e-4, 2e-4, 1e-4)
    assert (cfg.l_vca, cfg.mse_weight, cfg.unet_l2, cfg.leaky_slope, cfg.dropout) == \
        (0.03, 0.008, 1e-3, 0.2, 0.2)
    assert cfg.sad_mode == "code" and cfg.prior == "normal" and cfg.adam_eps == 1e-7
    assert not cfg.shuffle and cfg.drop_last and cfg.min_steps == 20 * 10 * 30


def test_network_shapes_init_scale_and_discriminator_widths():
    torch.manual_seed(0)
    net = AUVAENet(41, 3, AUVAENetConfig()).eval()
    x = torch.rand(5, 41)
    assert net.features(x).shape == (5, 41)
    a, log_var = net.latent(x)
    assert a.shape == log_var.shape == (5, 3)
    np.testing.assert_allclose(a.sum(1).detach().numpy(), 1.0, atol=1e-6)
    assert net.decode(a).shape == net.reconstruct_network(a).shape == (5, 41)
    # 3x3 conv on a 1x1 map = Linear with the Glorot scale of the full 3x3 kernel
    limit = math.sqrt(6 / (9 * (41 + 64)))
    w = net.conv1.weight.abs().max().item()
    assert 0.9 * limit < w <= limit
    disc = build_discriminator(3, 41)
    widths = [m.out_features for m in disc if isinstance(m, torch.nn.Linear)]
    assert widths == [max(math.ceil(41 / 4), 5) + 3, math.ceil(1.2 * 41) + 5, 1]


def test_the_codes_sad_is_arccos_of_mean_cosine_over_bands():
    u = torch.rand(4, 50) + 0.1
    assert sad_loss(u, u, "code").item() == pytest.approx(math.acos(1 / 50), abs=1e-5)
    assert sad_loss(u, u, "angle").item() < 1e-3
    v = torch.rand(4, 50) + 0.1
    cos = torch.nn.functional.cosine_similarity(u, v).mean().item()
    assert sad_loss(u, v, "code").item() == pytest.approx(math.acos(cos / 50), abs=1e-5)
    a = torch.tensor([[0.2, 0.8]])
    assert kl_term(a, torch.zeros(1, 2)).item() == pytest.approx(0.5 * (0.04 + 0.64) / 2)


def test_chunk_plan_follows_the_code_with_a_step_floor():
    m = AUVAENetUnmixer()
    chunk, slices, epochs = m.plan(9025)  # Samson: 10 chunks of 902, remainder left out
    assert chunk == 902 and len(slices) == 10 and slices[-1] == (8118, 9020) and epochs == 20
    chunk, slices, epochs = m.plan(100)  # small sample: 100 // 32 chunks covering all pixels
    assert slices == [(0, 33), (33, 67), (67, 100)] and chunk == 34
    assert epochs == math.ceil(6000 / 90)  # the autoencoder step floor
    assert m.plan(9)[:2] == (9, [(0, 9)])  # fewer pixels than a chunk: one chunk of all


def test_fit_gives_simplex_abundances_nonnegative_endmembers_and_phase_records(model, data):
    Y, _, _ = data
    A = model.abundances(Y)
    assert A.shape == (128, 3) and (A >= 0).all()
    np.testing.assert_allclose(A.sum(1), 1.0, atol=1e-5)
    assert (model.endmembers >= 0).all() and model.endmembers.shape == (3, 40)
    np.testing.assert_allclose(model.reconstruct(A), A @ model.endmembers, rtol=1e-4,
                               atol=1e-5)  # reported reconstruction = W a (linear)
    info = model.fit_info
    json.dumps(info)
    stages = info["stages"]
    assert set(stages) == {"autoencoder", "discriminator", "generator"}
    chunks = info["chunks_per_epoch"]  # 128 // 10 = 12 < min_batch 32 -> chunks of 32
    assert chunks == 4 and all(s["batch_size"] == 32 for s in stages.values())
    assert stages["autoencoder"]["steps"] == 2 * chunks * 2
    assert stages["discriminator"]["steps"] == 2 * chunks * 1 * 2  # [fake; real], batch = chunk
    assert stages["generator"]["steps"] == 2 * chunks * 1
    assert set(stages["autoencoder"]["final_terms"]) == {"norm_sad", "kl", "endmember_reg",
                                                         "unet_l2"}
    assert "M0" in info["endmember_reference"]
    assert set(info["reconstruction_rmse"]) == {"linear_w_a", "network_x_hat"}


def _phases(seed: int = 0):
    Y, M, _ = mixtures(n=64, seed=seed)
    cfg = AUVAENetConfig()
    torch.manual_seed(seed)
    net = AUVAENet(40, 3, cfg)
    disc = build_discriminator(3, 40)
    ph = AUVAEPhases(net, disc, torch.from_numpy(M.astype(np.float32)), cfg,
                     AUVAENetUnmixer(cfg).param_groups(net), torch.Generator().manual_seed(0))
    return ph, torch.from_numpy(Y)


def _eval(fn, seed: int = 123) -> float:
    """A stochastic loss (dropout, ε) evaluated with fixed noise, without gradient."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        return float(fn())


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_autoencoder_phase_lowers_its_loss_and_leaves_the_discriminator():
    ph, x = _phases()
    ph.net.train()
    before = _eval(lambda: ph.ae_loss(x)[0])
    disc0 = _snapshot(ph.disc)
    for _ in range(40):
        ph.ae_step(x)
    ph.net.train()
    assert _eval(lambda: ph.ae_loss(x)[0]) < before
    assert all(torch.equal(a, b) for a, b in zip(disc0, ph.disc.parameters(), strict=True))
    assert (ph.net.linear.weight >= 0).all()  # non-negativity projection after each step


def test_discriminator_phase_lowers_its_loss():
    ph, x = _phases()
    samples, labels = ph.disc_data(x)
    assert samples.shape == (128, 3) and labels.sum().item() == 64
    before = _eval(lambda: ph.disc_loss(samples, labels))
    net0 = _snapshot(ph.net)
    for _ in range(100):
        ph.disc_epoch(samples, labels, 64)
    assert _eval(lambda: ph.disc_loss(samples, labels)) < before - 0.05
    assert all(torch.equal(a, b) for a, b in zip(net0, ph.net.parameters(), strict=True))


def test_generator_phase_lowers_its_loss_under_a_frozen_discriminator():
    ph, x = _phases()
    samples, labels = ph.disc_data(x)
    for _ in range(100):  # a discriminator that separates â from the prior
        ph.disc_epoch(samples, labels, 64)
    ph.net.train()
    before = _eval(lambda: ph.gen_loss(x))
    disc0 = _snapshot(ph.disc)
    frozen = _snapshot(ph.net.log_var) + _snapshot(ph.net.linear) + _snapshot(ph.net.y_hat)
    for _ in range(20):
        ph.gen_step(x)
    ph.net.train()
    assert _eval(lambda: ph.gen_loss(x)) < before
    assert all(torch.equal(a, b) for a, b in zip(disc0, ph.disc.parameters(), strict=True))
    after = _snapshot(ph.net.log_var) + _snapshot(ph.net.linear) + _snapshot(ph.net.y_hat)
    assert all(torch.equal(a, b) for a, b in zip(frozen, after, strict=True))
    assert all(p.requires_grad for p in ph.disc.parameters())  # unfrozen again


def test_seeded_with_shuffling_dirichlet_prior_and_keep_best(data):
    Y, M, _ = data
    cfg = tiny(seed=2, shuffle=True, prior="dirichlet", keep_best=True, sad_mode="angle")
    a, b = AUVAENetUnmixer(cfg), AUVAENetUnmixer(cfg)
    a.fit(Y, M)
    b.fit(Y, M)
    np.testing.assert_array_equal(a.abundances(Y), b.abundances(Y))
    np.testing.assert_array_equal(a.endmembers, b.endmembers)
    assert a.fit_info["stages"]["autoencoder"]["restored_best_epoch"] in (1, 2)
    c = AUVAENetUnmixer(tiny(seed=3, shuffle=True, prior="dirichlet", sad_mode="angle"))
    c.fit(Y, M)
    assert not np.array_equal(a.abundances(Y), c.abundances(Y))


def test_checkpoint_round_trip_without_the_discriminator(model, data, tmp_path):
    Y, _, _ = data
    state = model.state()["state_dict"]
    assert not any(k.startswith("disc") for k in state)
    assert "linear.weight" in state and "y_hat.weight" in state and "perm" in state
    path = save_checkpoint(tmp_path / "m.pt", model, WL[:40], ["a", "b", "c"], np.arange(40))
    loaded = read_checkpoint(path).build("cpu")
    assert isinstance(loaded, AUVAENetUnmixer) and loaded.config == model.config
    np.testing.assert_array_equal(loaded.abundances(Y), model.abundances(Y))
    np.testing.assert_array_equal(loaded.endmembers, model.endmembers)


def test_fewer_pixels_than_a_chunk_train_as_one_chunk_of_all_pixels():
    Y, M, _ = mixtures(n=12)
    m = AUVAENetUnmixer(tiny(batch_size=1024))
    m.fit(Y, M)
    assert m.fit_info["chunks_per_epoch"] == 1
    assert all(s["batch_size"] == 12 for s in m.fit_info["stages"].values())
    np.testing.assert_allclose(m.abundances(Y).sum(1), 1.0, atol=1e-5)


@pytest.mark.skipif("lr_schedule" not in {f.name for f in fields(AUVAENetConfig)},
                    reason="this DeepConfig has no lr_schedule")
def test_lr_schedule_applies_to_all_three_optimisers(data):
    Y, M, _ = data
    m = AUVAENetUnmixer(tiny(lr_schedule="step", lr_step=1, lr_gamma=0.5, chunks=2,
                             min_batch=64))
    m.fit(Y, M)
    stages = m.fit_info["stages"]
    assert stages["autoencoder"]["final_learning_rates"]["encoder"] == pytest.approx(5e-5)
    assert stages["generator"]["final_learning_rates"]["generator"] == pytest.approx(5e-5)
    assert stages["discriminator"]["final_learning_rates"]["discriminator"] == \
        pytest.approx(2.5e-5)


@pytest.mark.parametrize("bad", [{"sad_mode": "sam"}, {"prior": "uniform"}, {"chunks": 0},
                                 {"ae_steps": -1}, {"dropout": 1.0}, {"l_vca": -0.1},
                                 {"init": "he"}])
def test_bad_settings_are_config_errors(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        AUVAENetConfig(**bad)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``hsu-geo unmix scene.tif -m auvae_net -k 3`` (short schedule) on a 20 x 16 scene with
    one nodata pixel, saving the model."""
    tmp = tmp_path_factory.mktemp("auvae_cli")
    return tmp, unmix_and_save(
        tmp, "auvae_net", ["epochs=1", "min_steps=0", "ae_steps=3", "disc_epochs=1",
                           "gen_steps=1"], WL, rows=20, cols=16, nodata=(3, 5), seed=4,
        chunk=None)


def test_cli_unmix_end_to_end(cli_run):
    tmp, scene = cli_run
    record = check_usual_outputs(tmp, scene, "auvae_net", shape=(20, 16), nodata=(3, 5))
    assert record["config"]["model_config"]["seed"] == 4
    assert "endmember_reference" in json.dumps(record)


def test_cli_load_model_gives_the_same_maps(cli_run):
    check_reload_gives_the_same_maps(*cli_run, "auvae_net", chunk=None, atol=1e-6)


def test_cli_bad_setting_is_one_line(tmp_path):
    cube, _, _, wl = linear_scene(rows=10, cols=8, k=3, seed=2, wl=WL)
    scene = write_scene(tmp_path / "s.tif", cube, wl)
    res = CliRunner().invoke(cli, ["unmix", str(scene), "-m", "auvae_net", "-k", "3", "-o",
                                   str(tmp_path / "o"), "-q", "--set", "sad_mode=sam"])
    assert res.exit_code != 0
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "sad_mode" in lines[0] and "Traceback" not in res.stderr
