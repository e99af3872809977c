"""The shared training loop: batching, seeding, early stop, progress, divergence, threads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from hsu_geo.errors import ConfigError
from hsu_geo.unmix.deep._training import (
    TrainSettings,
    _batches,
    deterministic,
    make_optimizer,
    torch_threads,
    train,
)


def regression(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    X = torch.rand(300, 8, generator=torch.Generator().manual_seed(1))
    return net, X


def fit(seed: int = 0, **kw):
    net, X = regression()
    opt = make_optimizer([{"params": list(net.parameters()), "lr": 1e-2, "name": "all"}])
    events = []
    settings = TrainSettings(**{"epochs": 5, "batch_size": 64, "seed": seed, **kw})
    with torch_threads(1):
        res = train(
            net,
            X,
            lambda xb: (torch.square(net(xb) - xb).mean(), {}),
            opt,
            settings,
            stage="test",
            progress=events.append,
        )
    return net, res, events


def test_batches_cover_every_pixel_once_and_never_leave_a_single_pixel():
    for n, b in ((300, 64), (1025, 1024), (7, 1024), (2, 1), (1, 5)):
        parts = _batches(n, b)
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a2 == b1 for (_, b1), (a2, _) in itertools.pairwise(parts))
        assert max(stop - start for start, stop in parts) <= b
        if n > 1 and b > 1:
            assert min(stop - start for start, stop in parts) > 1


def test_history_progress_and_loss_decrease():
    _, res, events = fit(epochs=8)
    assert res.epochs_run == 8 and len(res.history) == 8
    assert res.history[-1] < res.history[0]
    assert [e.epoch for e in events] == list(range(1, 9))
    assert all(e.epochs == 8 and e.stage == "test" for e in events)
    assert res.steps == 8 * 5 and res.batch_size == 64 and res.pixels == 300
    record = res.as_dict()
    assert record["final_loss"] == pytest.approx(res.history[-1], rel=1e-5)


def test_seeded_runs_are_identical_and_the_seed_changes_the_order():
    a, ra, _ = fit(seed=1)
    b, rb, _ = fit(seed=1)
    _c, rc, _ = fit(seed=2)
    assert ra.history == rb.history
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert ra.history != rc.history


def test_batch_is_clamped_to_the_number_of_pixels():
    _, res, _ = fit(batch_size=10_000, epochs=2)
    assert res.batch_size == 300 and res.steps == 2


def test_early_stop_on_plateau_and_on_target_loss():
    net = nn.Linear(2, 2)
    opt = make_optimizer([{"params": list(net.parameters()), "lr": 0.0, "name": "frozen"}])
    X = torch.ones(10, 2)
    res = train(
        net,
        X,
        lambda xb: (torch.square(net(xb)).mean(), {}),
        opt,
        TrainSettings(epochs=50, batch_size=10, patience=3),
        stage="flat",
    )
    assert res.stopped_early and res.epochs_run == 4  # the first epoch sets the best
    _, res, _ = fit(epochs=100, target_loss=1.0)
    assert res.stopped_early and res.epochs_run == 1


def test_divergence_is_a_config_error_naming_the_learning_rate():
    net, X = regression()
    opt = make_optimizer([{"params": list(net.parameters()), "lr": 1e-3, "name": "all"}])
    with pytest.raises(ConfigError, match="lr_encoder"):
        train(
            net,
            X,
            lambda xb: (net(xb).sum() * float("nan"), {}),
            opt,
            TrainSettings(epochs=2, batch_size=100),
            stage="nan",
        )


def test_terms_are_averaged_per_epoch():
    net, X = regression()
    opt = make_optimizer([{"params": list(net.parameters()), "lr": 0.0, "name": "all"}])
    res = train(
        net,
        X,
        lambda xb: (net(xb).mean() * 0 + 1.0, {"one": torch.tensor(2.0)}),
        opt,
        TrainSettings(epochs=1, batch_size=64),
        stage="terms",
    )
    assert res.terms == {"one": pytest.approx(2.0)}
    assert res.history == [pytest.approx(1.0)]


def test_optimizer_groups_keep_their_learning_rates():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = make_optimizer(
        [
            {"params": list(a.parameters()), "lr": 1e-3, "name": "enc"},
            {"params": list(b.parameters()), "lr": 1e-5, "name": "dec"},
            {"params": [], "lr": 1.0, "name": "empty"},
        ],
        weight_decay=1e-5,
    )
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [("enc", 1e-3), ("dec", 1e-5)]
    assert isinstance(
        make_optimizer([{"params": list(a.parameters()), "lr": 1.0}], "rmsprop"),
        torch.optim.RMSprop,
    )
    with pytest.raises(ConfigError, match="adam"):
        make_optimizer([{"params": list(a.parameters()), "lr": 1.0}], "sgd")


def test_thread_and_determinism_settings_are_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    flag = torch.are_deterministic_algorithms_enabled()
    with deterministic():
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == flag


def test_training_does_not_touch_the_global_torch_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    from hsu_geo.unmix.deep.nae import NAEUnmixer
    from tests.unmix.deep import mixtures, tiny_config

    Y, M, _ = mixtures(n=50)
    NAEUnmixer(tiny_config(NAEUnmixer)).fit(Y, M)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_determinism_modes():
    flag = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with deterministic("strict"):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    with deterministic("off"):
        assert torch.are_deterministic_algorithms_enabled() == flag
    assert torch.are_deterministic_algorithms_enabled() == flag
    assert torch.is_deterministic_algorithms_warn_only_enabled() == warn_only
    with pytest.raises(ConfigError, match="deterministic='exact'"), deterministic("exact"):
        pass


def test_strict_determinism_names_the_op_in_one_line():
    # put_ without accumulation has no deterministic kernel on any device
    flag = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(ConfigError) as err, deterministic("strict"):
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
    msg = str(err.value)
    assert "put_" in msg and "--set deterministic=warn" in msg and "\n" not in msg
    assert torch.are_deterministic_algorithms_enabled() == flag  # restored after the error
    with pytest.warns(UserWarning, match="put_"), deterministic("warn"):  # warn-only: it runs
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
    # other RuntimeErrors pass through unchanged
    with pytest.raises(RuntimeError, match="boom"), deterministic("strict"):
        raise RuntimeError("boom")


def test_strict_determinism_trains_like_the_default_on_cpu():
    from hsu_geo.unmix.deep.nae import NAEUnmixer
    from tests.unmix.deep import mixtures, tiny_config

    Y, M, _ = mixtures(n=50)
    runs = [NAEUnmixer(tiny_config(NAEUnmixer, deterministic=mode)) for mode in ("warn",
                                                                                 "strict")]
    for u in runs:
        u.fit(Y, M)
    np.testing.assert_array_equal(runs[0].endmembers, runs[1].endmembers)
    with pytest.raises(ConfigError, match="deterministic"):
        tiny_config(NAEUnmixer, deterministic="always")
