"""CResDAE against its spec (shared/models/cresdae.md): layers, loss, learning rates, the scene
workflow's stages, and (slow) convergence on a synthetic scene."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hsu_geo.errors import ConfigError
from hsu_geo.synth import dirichlet_abundances, synthesize
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.deep._training import TrainSettings, make_optimizer, torch_threads, train
from hsu_geo.unmix.deep.cresdae import CResDAEConfig, CResDAENet, CResDAEUnmixer
from hsu_geo.unmix.deep.layers import ChannelAttention, ResidualBlock
from hsu_geo.unmix.deep.losses import (
    entropy,
    mse_sum,
    sparsity_l12,
    spectral_angle,
    uniformity,
)
from hsu_geo.unmix.metrics import match_endmembers, sad
from tests.unmix.deep import endmembers, mixtures, tiny_config


def test_paper_defaults():
    cfg = CResDAEConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr_encoder, cfg.lr_decoder) == (40, 1024, 1e-3, 1e-5)
    assert (cfg.gamma_uniform, cfg.gamma_entropy, cfg.gamma_sparse) == (0.4, 0.01, 0.01)
    assert (cfg.alpha_mse, cfg.beta_sam, cfg.decoder_hidden) == (1.0, 1.0, 512)
    assert CResDAEUnmixer.doi == "10.3390/rs17213622"


def test_network_shapes_and_constraints():
    net = CResDAENet(162, 5, CResDAEConfig())
    x = torch.rand(7, 162)
    a = net.encode(x)
    assert a.shape == (7, 5) and (a >= 0).all()
    torch.testing.assert_close(a.sum(dim=1), torch.ones(7))
    x_hat = net.decode(a)
    assert x_hat.shape == (7, 162) and (x_hat >= 0).all()
    assert net.endmember_weight().shape == (162, 5)
    assert net.linear.bias is None
    widths = [m.out_features for m in net.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 64, 32, 5]
    assert [m.out_features for m in net.nonlinear if isinstance(m, torch.nn.Linear)] == [512, 162]


def test_channel_attention_and_residual_block():
    h = torch.randn(9, 128)
    cam = ChannelAttention(128, reduction=16)
    assert cam.fc1.out_features == 8
    w = cam.weights(h)
    assert ((w > 0) & (w < 1)).all()
    torch.testing.assert_close(cam(h), w * h)
    cbam = ChannelAttention(128, 16, mode="cbam")
    cbam.load_state_dict(cam.state_dict())
    torch.testing.assert_close(
        cbam.weights(h), torch.sigmoid(2 * torch.logit(w)), atol=1e-5, rtol=1e-4
    )
    block = ResidualBlock(128, layers=2)
    out = block(h)
    assert out.shape == (9, 128) and (out >= h - 1e-6).all()  # h + ReLU(...)


def test_decoder_wiring_options():
    cfg = CResDAEConfig()
    net = CResDAENet(20, 3, cfg)
    with torch.no_grad():
        net.nonlinear[-1].weight.zero_()
        net.nonlinear[-1].bias.zero_()
    s = torch.rand(4, 20)
    torch.testing.assert_close(net.restore(s), s)  # g = 0: x̂ = ReLU(x_lin)
    plain = CResDAENet(20, 3, CResDAEConfig(decoder_skip=False))
    plain.load_state_dict(net.state_dict())
    torch.testing.assert_close(plain.restore(s), torch.zeros(4, 20))  # ReLU(g) only
    absnorm = CResDAENet(20, 3, CResDAEConfig(abundance="absnorm"))
    a = absnorm.encode(s)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(4))


def test_loss_terms():
    x = torch.rand(6, 10) + 0.1
    assert mse_sum(x, x) == 0
    torch.testing.assert_close(mse_sum(x + 0.5, x), torch.tensor(2.5))  # 10 bands * 0.25
    assert spectral_angle(x, x) < 1e-3 and spectral_angle(2 * x, x) < 1e-3
    assert spectral_angle(x, x) >= 0
    a_uniform = torch.full((4, 5), 0.2)
    a_pure = torch.eye(5)[[0, 1, 2, 3, 4]]
    assert uniformity(a_uniform) == 0 and uniformity(a_uniform, "pixel") == 0
    assert uniformity(a_pure) < 1e-12  # balanced use of the endmembers over the batch
    torch.testing.assert_close(uniformity(a_pure, "pixel"), torch.tensor(0.8))
    torch.testing.assert_close(entropy(a_uniform), torch.tensor(math.log(5)), atol=1e-6, rtol=0)
    assert entropy(a_pure) < 1e-6
    assert sparsity_l12(a_pure) < sparsity_l12(a_uniform)


def test_composite_loss_uses_the_papers_weights():
    Y, _, _ = mixtures(n=32)
    model = CResDAEUnmixer(CResDAEConfig())
    net = model.new_network(40, 3)
    total, terms = model.loss(net, torch.from_numpy(Y))
    expected = (
        terms["mse"]
        + terms["sam"]
        + 0.4 * terms["uniform"]
        + 0.01 * terms["entropy"]
        + 0.01 * terms["sparse"]
    )
    torch.testing.assert_close(total.detach(), expected)


def test_exactly_the_decoder_layers_use_the_small_learning_rate():
    model = CResDAEUnmixer(CResDAEConfig())
    net = model.new_network(30, 4)
    groups = model.param_groups(net)
    slow = {id(p) for g in groups if g["lr"] == 1e-5 for p in g["params"]}
    decoder = {id(p) for p in [*net.linear.parameters(), *net.nonlinear.parameters()]}
    assert slow == decoder
    fast = {id(p) for g in groups if g["lr"] == 1e-3 for p in g["params"]}
    assert fast == {id(p) for p in net.encoder.parameters()}
    assert len(slow) + len(fast) == len(list(net.parameters()))


def test_fit_runs_the_scene_workflow_and_records_every_stage():
    Y, M, _ = mixtures(n=300)
    model = CResDAEUnmixer(tiny_config(CResDAEUnmixer))
    model.fit(Y, M)
    stages = model.fit_info["stages"]
    # the nonlinear path starts at zero (decoder_init auto -> zero): no decoder pretraining
    assert list(stages) == ["synthetic_pretrain", "finetune"]
    assert model.fit_info["decoder_init"] == "zero"
    assert stages["synthetic_pretrain"]["pixels"] == 9 * 32
    assert len(stages["synthetic_pretrain"]["datasets"]) == 9
    assert stages["finetune"]["pixels"] == 300
    assert stages["finetune"]["learning_rates"] == {
        "encoder": 1e-3, "endmembers": 1e-5, "nonlinear": 1e-5}
    assert stages["finetune"]["weight_decays"] == {
        "encoder": 1e-5, "endmembers": 0.0, "nonlinear": 1e-5}
    assert set(stages["finetune"]["final_terms"]) == {"mse", "sam", "uniform", "entropy", "sparse"}
    # the small decoder learning rate keeps the VCA/library initialisation
    assert sad(M, model.endmembers).max() < 0.01
    sequential = CResDAEUnmixer(
        tiny_config(
            CResDAEUnmixer,
            synth_schedule="sequential",
            synth_mixings=("linear", "pnmm"),
            synth_snr_db=(20.0,),
        )
    )
    sequential.fit(Y, M)
    assert [k for k in sequential.fit_info["stages"] if k.startswith("synthetic")] == [
        "synthetic_pretrain:linear_20dB",
        "synthetic_pretrain:pnmm_20dB",
    ]
    off = CResDAEUnmixer(
        tiny_config(
            CResDAEUnmixer, synthetic_pretrain=False, pretrain_steps=0, nonneg_endmembers=True
        )
    )
    off.fit(Y, M)
    assert list(off.fit_info["stages"]) == ["finetune"]
    assert (off.endmembers >= 0).all()


def test_synthetic_datasets_mix_the_initial_endmembers():
    M = endmembers(4, 25)
    model = CResDAEUnmixer(CResDAEConfig(synth_pixels=100))
    sets = model.synthetic_datasets(M)
    assert [label for label, _ in sets] == [
        f"{m}_{s}dB" for m in ("linear", "bilinear", "pnmm") for s in (10, 20, 30)
    ]
    assert all(Y.shape == (100, 25) and Y.dtype == np.float32 for _, Y in sets)


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"cam_mode": "spatial"}, "se, cbam"),
        ({"uniform_mode": "global"}, "batch_mean"),
        ({"synth_mixings": "linear,cubic"}, "pnmm"),
        ({"residual_layers": "4"}, "1, 2 or 3"),
        ({"epochs": "-1"}, "epochs"),
        ({"epochs": "many"}, "expected int"),
        ({"nonsense": "1"}, "valid keys"),
    ],
)
def test_bad_settings_are_config_errors(settings, needle):
    with pytest.raises(ConfigError, match=needle):
        make_config(CResDAEConfig, settings)


def test_set_parses_tuples_and_bools():
    cfg = make_config(
        CResDAEConfig, {"synth_snr_db": "20,30", "decoder_skip": "false", "lr_decoder": "1e-4"}
    )
    assert cfg.synth_snr_db == (20.0, 30.0) and cfg.decoder_skip is False
    assert cfg.lr_decoder == 1e-4


def test_frozen_true_decoder_recovers_noiseless_abundances():
    """cresdae.md §8: decoder fixed at the true endmembers with g = 0."""
    Y, M, A = mixtures(n=2000, k=3, bands=40)
    model = CResDAEUnmixer(CResDAEConfig(lr_decoder=0.0))
    net = model.new_network(40, 3)
    with torch.no_grad():
        net.linear.weight.copy_(torch.from_numpy(M.T).float())
        net.nonlinear[-1].weight.zero_()
        net.nonlinear[-1].bias.zero_()
    opt = make_optimizer(model.param_groups(net))
    with torch_threads(1):
        train(
            net,
            torch.from_numpy(Y),
            lambda xb: model.loss(net, xb),
            opt,
            TrainSettings(epochs=40, batch_size=128),
            stage="frozen",
        )
    with torch.no_grad():
        est = net.encode(torch.from_numpy(Y)).numpy()
    assert np.sqrt(np.mean((est - A) ** 2)) < 0.05


@pytest.mark.slow
def test_converges_on_a_synthetic_bilinear_scene():
    """Default CResDAE on 8000 GBM-mixed pixels at 30 dB from perturbed endmembers."""
    rng = np.random.default_rng(0)
    M = endmembers(4, 60, seed=5)
    A = dirichlet_abundances(8000, 4, rng, alpha=0.7)
    Y, A = synthesize(M, 8000, "bilinear", 30.0, rng, A=A)
    M0 = M * (1 + 0.03 * rng.standard_normal(M.shape))  # VCA-like, not exact
    model = CResDAEUnmixer(CResDAEConfig())
    model.fit(Y.astype(np.float32), M0)
    perm = match_endmembers(M, model.endmembers)
    est = model.abundances(Y.astype(np.float32))[:, perm]
    armse = float(np.sqrt(np.mean((est - A) ** 2)))
    recon = model.reconstruct(model.abundances(Y.astype(np.float32)))
    assert sad(M, model.endmembers[perm]).mean() < 0.05
    assert armse < 0.1, armse
    assert np.sqrt(np.mean((recon - Y) ** 2)) < 0.05 * Y.max()
    first, last = (model.fit_info["stages"]["finetune"]["loss_history"][i] for i in (0, -1))
    assert last < first


def test_synthetic_supervision_is_off_by_default_and_teaches_the_encoder():
    assert CResDAEConfig().synth_supervision == 0.0 and CResDAEConfig().synth_lr_decoder == 0.0
    M = endmembers(3, 20)
    Y = synthesize(M, 200, "linear", None, np.random.default_rng(0))[0]
    errors = {}
    for weight in (0.0, 5.0):
        model = CResDAEUnmixer(tiny_config(
            CResDAEUnmixer, synth_supervision=weight, synth_mixings=("linear",),
            synth_snr_db=(30.0,), synth_pixels=512, synth_epochs=40, epochs=0,
            synth_lr_decoder=1e-4))
        model.fit(Y, M)
        stage = model.fit_info["stages"]["synthetic_pretrain"]
        assert stage["abundance_supervision"] == weight
        assert stage["learning_rates"]["endmembers"] == 1e-4
        assert stage["learning_rates"]["nonlinear"] == 1e-4
        assert ("abundance_error" in stage["final_terms"]) == (weight > 0)
        A_true = dirichlet_abundances(300, 3, np.random.default_rng(1))
        errors[weight] = float(np.sqrt(((model.abundances(A_true @ M) - A_true) ** 2).mean()))
    assert errors[5.0] < errors[0.0]
    with pytest.raises(ConfigError, match="synth_supervision"):
        CResDAEConfig(synth_supervision=-1.0)
