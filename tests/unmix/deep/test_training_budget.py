"""Training budgets in optimiser steps, seeding, keep-best, drop_last, optimiser constants, no
weight decay on the endmember matrix, and CResDAE's zero-initialised nonlinear decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hsu_geo.errors import ConfigError
from hsu_geo.unmix.base import make_config
from hsu_geo.unmix.deep._training import TrainSettings, make_optimizer, torch_threads, train
from hsu_geo.unmix.deep.cresdae import CResDAEConfig, CResDAENet, CResDAEUnmixer
from hsu_geo.unmix.deep.nae import NAEUnmixer
from tests.unmix.deep import endmembers, mixtures, tiny_config


def run(n: int = 100, net: nn.Module | None = None, opt=None, **kw):
    """Train a small regression net on ``n`` rows; returns (net, result, batch sizes seen)."""
    torch.manual_seed(0)
    net = net or nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 8))
    X = torch.rand(n, 8, generator=torch.Generator().manual_seed(1))
    opt = opt or make_optimizer([{"params": list(net.parameters()), "lr": 1e-2}])
    seen: list[int] = []

    def loss(xb):
        seen.append(int(xb.shape[0]))
        return torch.square(net(xb) - xb).mean(), {}

    with torch_threads(1):
        res = train(net, X, loss, opt, TrainSettings(**{"epochs": 2, "batch_size": 64, **kw}),
                    stage="t")
    return net, res, seen


def test_min_steps_raises_the_budget_in_whole_epochs_and_zero_keeps_the_epochs():
    _, res, seen = run(n=100, min_steps=51)  # 2 batches per epoch -> 26 epochs, 52 steps
    assert (res.epochs_run, res.steps, res.epochs_planned) == (26, 52, 26)
    assert res.as_dict()["steps"] == 52 and len(seen) == 52
    _, res, _ = run(n=100, min_steps=0)  # the paper's setting: epochs x batches exactly
    assert (res.epochs_run, res.steps) == (2, 4)
    _, res, _ = run(n=100, epochs=30, min_steps=10)  # the epochs already give more steps
    assert res.steps == 60
    _, res, _ = run(n=100, epochs=0, min_steps=10)  # epochs 0 still means no training
    assert res.steps == 0


def test_default_budgets_the_papers_stay_reachable():
    # a 1000-step floor by default; min_steps=0 gives the paper's epochs exactly
    assert CResDAEConfig().min_steps == 1000 and NAEUnmixer.Config().min_steps == 1000
    Y, M, _ = mixtures(n=300)
    model = CResDAEUnmixer(tiny_config(CResDAEUnmixer, epochs=3, synthetic_pretrain=False,
                                       min_steps=0))
    model.fit(Y, M)
    assert model.fit_info["stages"]["finetune"]["steps"] == 3 * 5  # 3 epochs x 5 batches of 64


def test_drop_last_trains_on_full_batches_only():
    _, res, seen = run(n=150, drop_last=True, epochs=3)
    assert seen == [64] * 6 and res.steps == 6
    _, _, seen = run(n=150, drop_last=False, epochs=1)
    assert sorted(seen) == [50, 50, 50]  # near-equal batches cover every pixel
    _, _, seen = run(n=40, drop_last=True, epochs=1)  # fewer pixels than a batch: one batch
    assert seen == [40]


def test_same_seed_gives_identical_weights_with_dropout_and_leaves_global_rng_alone():
    torch.manual_seed(0)  # what run() does to build its network
    nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 8))
    expected = torch.get_rng_state()
    a, _, _ = run(seed=5, epochs=4)
    assert torch.equal(torch.get_rng_state(), expected)  # dropout drew from a forked RNG
    b, _, _ = run(seed=5, epochs=4)
    c, _, _ = run(seed=6, epochs=4)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(),
                                                         strict=True))


def test_same_seed_gives_identical_cresdae_weights_on_cpu():
    Y, M, _ = mixtures(n=200)
    states = []
    for seed in (0, 0, 1):
        model = CResDAEUnmixer(tiny_config(CResDAEUnmixer, seed=seed, min_steps=12))
        model.fit(Y, M)
        states.append(model.state()["state_dict"])
        assert model.fit_info["stages"]["finetune"]["steps"] >= 12
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_keep_best_restores_the_parameters_of_the_lowest_loss_epoch():
    p = nn.Parameter(torch.zeros(1))
    holder = nn.Module()
    holder.p = p
    opt = torch.optim.SGD([p], lr=0.3)
    snapshots: dict[int, float] = {}
    X = torch.zeros(4, 1)

    def loss(xb):
        return torch.square(p - 1.0).sum() + 0.0 * xb.sum(), {}

    def after_step():  # from step 4 on the learning rate makes SGD oscillate outwards
        if len(snapshots) >= 3:
            opt.param_groups[0]["lr"] = 1.05

    def progress(event):
        snapshots[event.epoch] = p.item()

    res = train(holder, X, loss, opt, TrainSettings(epochs=12, batch_size=4, keep_best=True),
                stage="t", progress=progress, after_step=after_step)
    best = int(np.argmin(res.history)) + 1
    assert 1 < best < 12 and res.best_epoch == best
    assert p.item() == snapshots[best] != snapshots[12]
    assert res.as_dict()["restored_best_epoch"] == best
    # without keep_best the last parameters stay
    p.data.zero_()
    opt.param_groups[0]["lr"] = 0.3
    snapshots.clear()
    res = train(holder, X, loss, opt, TrainSettings(epochs=12, batch_size=4), stage="t",
                progress=progress, after_step=after_step)
    assert res.best_epoch is None and p.item() == snapshots[12]


def zero_loss_fit(decay_endmembers: bool) -> tuple[CResDAENet, torch.Tensor, torch.Tensor]:
    """Ten Adam steps at a huge weight decay on a loss with zero gradient everywhere, so only
    the decay moves parameters; returns (net, endmembers before, nonlinear weight before)."""
    model = CResDAEUnmixer(CResDAEConfig(weight_decay=10.0, lr_decoder=1e-2,
                                         decay_endmembers=decay_endmembers))
    net = model.build_network(20, 3)
    with torch.no_grad():
        net.linear.weight.copy_(torch.from_numpy(endmembers(3, 20).T.astype(np.float32)))
    W0 = net.linear.weight.detach().clone()
    N0 = net.nonlinear[0].weight.detach().clone()
    opt = make_optimizer(model.param_groups(net), weight_decay=10.0)
    X = torch.rand(64, 20, generator=torch.Generator().manual_seed(0))
    train(net, X, lambda xb: (0.0 * net.decode(net.encode(xb)).sum(), {}), opt,
          TrainSettings(epochs=10, batch_size=64), stage="t")
    return net, W0, N0


def test_weight_decay_does_not_touch_the_endmember_matrix_unless_asked():
    net, W0, N0 = zero_loss_fit(decay_endmembers=False)
    assert torch.equal(net.linear.weight, W0)
    assert not torch.allclose(net.nonlinear[0].weight, N0)  # the decay is really on
    net, W0, _ = zero_loss_fit(decay_endmembers=True)
    assert net.linear.weight.abs().sum() < 0.95 * W0.abs().sum()
    groups = {g["name"]: g for g in NAEUnmixer().param_groups(NAEUnmixer().build_network(20, 3))}
    assert groups["endmembers"]["weight_decay"] == 0.0
    assert groups["nonlinear"]["weight_decay"] == 1e-5


def test_optimiser_constants_come_from_the_config():
    cfg = make_config(CResDAEConfig, {"adam_betas": "0.5,0.9", "adam_eps": "1e-6",
                                      "min_steps": "0", "drop_last": "true",
                                      "keep_best": "true"})
    assert cfg.adam_betas == (0.5, 0.9) and cfg.adam_eps == 1e-6 and cfg.min_steps == 0
    Y, M, _ = mixtures(n=150)
    model = CResDAEUnmixer(tiny_config(CResDAEUnmixer, adam_betas=(0.5, 0.9), keep_best=True,
                                       drop_last=True))
    captured = {}
    original = torch.optim.Adam.__init__

    def spy(self, params, **kw):
        captured.update(kw)
        original(self, params, **kw)

    torch.optim.Adam.__init__ = spy
    try:
        model.fit(Y, M)
    finally:
        torch.optim.Adam.__init__ = original
    assert captured["betas"] == (0.5, 0.9)
    finetune = model.fit_info["stages"]["finetune"]
    assert finetune["pixels"] == 150 and finetune["steps"] == 2 * (150 // 64)
    assert "restored_best_epoch" in finetune
    for bad in ({"adam_betas": (1.0, 0.9)}, {"min_steps": -1}, {"adam_eps": 0.0}):
        with pytest.raises(ConfigError):
            CResDAEConfig(**bad)


def test_zero_initialised_decoder_is_exactly_the_linear_mixing_model_at_start():
    M = endmembers(3, 20)
    a = torch.softmax(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    nets = {init: CResDAENet(20, 3, CResDAEConfig(decoder_init=init))
            for init in ("auto", "zero", "pretrain")}
    linear = a @ torch.from_numpy(M.astype(np.float32))
    for init, net in nets.items():
        with torch.no_grad():
            net.linear.weight.copy_(torch.from_numpy(M.T.astype(np.float32)))
            out = net.decode(a)
        if init == "pretrain":  # default init: the nonlinear path is not zero
            assert not torch.allclose(out, linear, atol=1e-3)
        else:
            assert torch.equal(out, linear)
    assert CResDAEConfig(decoder_skip=False).decoder_start == "pretrain"
    with pytest.raises(ConfigError, match="decoder_init=pretrain"):
        CResDAEConfig(decoder_init="zero", decoder_skip=False)


def test_zero_init_skips_the_pretraining_stage_and_pretrain_keeps_it():
    Y, M, _ = mixtures(n=200)
    stages = {}
    for init in ("auto", "pretrain"):
        model = CResDAEUnmixer(tiny_config(CResDAEUnmixer, decoder_init=init,
                                           synthetic_pretrain=False))
        model.fit(Y, M)
        stages[init] = list(model.fit_info["stages"])
    assert stages == {"auto": ["finetune"], "pretrain": ["decoder_pretrain", "finetune"]}


def test_lr_schedule_of_the_main_stage() -> None:
    """``--set lr_schedule=step`` multiplies the learning rates by ``lr_gamma`` every
    ``lr_step`` epochs (StepLR); ``cosine`` anneals them to 0 over the planned epochs."""
    from hsu_geo.unmix.deep.linear_ae import LinearAEConfig, LinearAEUnmixer
    from tests.unmix.scenes import linear_scene

    cube, E, _, _ = linear_scene(rows=10, cols=10, k=3, seed=0)
    Y = cube.reshape(cube.shape[0], -1).T
    base = {"epochs": 4, "min_steps": 0, "batch_size": 50, "seed": 0}
    step = LinearAEUnmixer(LinearAEConfig(**base, lr_schedule="step", lr_step=2, lr_gamma=0.5))
    step.fit(Y, E)
    stage = step.fit_info["stages"]["train"]
    lr0 = LinearAEConfig().lr_encoder
    assert stage["lr_schedule"] == "step" and stage["learning_rates"]["encoder"] == lr0
    assert stage["final_learning_rates"]["encoder"] == pytest.approx(lr0 * 0.25)
    cos = LinearAEUnmixer(LinearAEConfig(**base, lr_schedule="cosine"))
    cos.fit(Y, E)
    assert cos.fit_info["stages"]["train"]["final_learning_rates"]["encoder"] == \
        pytest.approx(0.0, abs=1e-12)
    plain = LinearAEUnmixer(LinearAEConfig(**base))
    plain.fit(Y, E)
    assert "lr_schedule" not in plain.fit_info["stages"]["train"]
    with pytest.raises(ConfigError, match="lr_schedule='linear'"):
        LinearAEConfig(lr_schedule="linear")
