"""Checkpoints: save -> load gives the same abundances; band checks; foreign files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsu_geo.errors import ConfigError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.classical.model import FclsUnmixer
from hsu_geo.unmix.deep.checkpoint import (
    config_from_dict,
    read_checkpoint,
    save_checkpoint,
)
from tests.unmix.deep import deep_model_names, mixtures, tiny_config

WL = np.linspace(400.0, 2400.0, 40)


@pytest.mark.parametrize("name", deep_model_names())
def test_saved_and_loaded_model_gives_the_same_abundances(name, tmp_path):
    Y, M, _ = mixtures()
    cls = MODELS.get(name)
    model = cls(tiny_config(cls, seed=2))
    model.fit(Y, M)
    path = save_checkpoint(tmp_path / "m.pt", model, WL, ["a", "b", "c"], np.arange(1, 41))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind
    ckpt = read_checkpoint(path)
    assert ckpt.model == name and ckpt.endmember_names == ["a", "b", "c"]
    np.testing.assert_array_equal(ckpt.wavelengths, WL)
    assert ckpt.config() == model.config
    loaded = ckpt.build("cpu")
    np.testing.assert_array_equal(loaded.abundances(Y), model.abundances(Y))
    np.testing.assert_array_equal(loaded.endmembers, model.endmembers)
    np.testing.assert_array_equal(
        loaded.reconstruct(loaded.abundances(Y[:9])), model.reconstruct(model.abundances(Y[:9]))
    )
    assert loaded.fit_info["stages"] == model.fit_info["stages"]


def test_band_compatibility_is_checked(tmp_path):
    Y, M, _ = mixtures(n=50)
    cls = MODELS.get("linear_ae")
    model = cls(tiny_config(cls))
    model.fit(Y, M)
    ckpt = read_checkpoint(save_checkpoint(tmp_path / "m.pt", model, WL, ["a", "b", "c"]))
    ckpt.check_bands(WL + 0.4)  # within 0.5 nm
    with pytest.raises(ConfigError, match=r"trained on 40 bands .* scene has 39"):
        ckpt.check_bands(WL[:-1])
    shifted = WL.copy()
    shifted[7] += 2.0
    with pytest.raises(ConfigError, match=r"band 8 is at .* \(tolerance 0.5 nm\)"):
        ckpt.check_bands(shifted)


def test_foreign_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a hsu-geo model checkpoint"):
        read_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ConfigError, match="not a hsu-geo model checkpoint"):
        read_checkpoint(other)


def test_only_deep_models_can_be_saved(tmp_path):
    Y, M, _ = mixtures(n=20)
    fcls = FclsUnmixer()
    fcls.fit(Y, M)
    with pytest.raises(ConfigError, match="deep model"):
        save_checkpoint(tmp_path / "m.pt", fcls, WL, ["a", "b", "c"])


def test_config_round_trip_rejects_unknown_keys():
    cfg_cls = MODELS.get("cresdae").Config
    cfg = cfg_cls(synth_snr_db=(20.0,))
    from dataclasses import asdict

    data = asdict(cfg)
    data["synth_snr_db"] = list(data["synth_snr_db"])
    assert config_from_dict(cfg_cls, data) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict(cfg_cls, {**data, "future_option": 1})


def test_weight_shapes_are_recorded_and_a_mismatch_names_the_tensor(tmp_path):
    """A checkpoint records input kind, halo and every weight's shape; a config that builds
    other shapes (here: edited features) is refused naming the first tensor that differs."""
    from hsu_geo.unmix.deep.cnnaeu import CNNAEUConfig, CNNAEUUnmixer
    from hsu_geo.unmix.spatial import sample_patches
    from tests.unmix.scenes import linear_scene

    cube, E, _, _ = linear_scene(rows=20, cols=20, k=3, seed=1, wl=WL)
    model = CNNAEUUnmixer(CNNAEUConfig(epochs=1, n_patches=2, patch_size=16, features=8))
    model.fit(sample_patches(cube, 16, 2, seed=0), E)
    path = save_checkpoint(tmp_path / "m.pt", model, WL, ["a", "b", "c"])
    payload = read_checkpoint(path).payload
    assert payload["input"] == "patches" and payload["halo"] == 7
    assert payload["shapes"]["encoder.0.weight"] == [8, 40, 3, 3]
    payload["config"]["features"] = 16
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(ConfigError, match=r"weight encoder.0.weight has shape \[8, 40, 3, 3\] "
                                          r"but this cnnaeu config builds \[16, 40, 3, 3\]"):
        read_checkpoint(tmp_path / "edited.pt").build("cpu")
    payload["shapes"]["encoder.0.weight"] = [1, 2]
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(ConfigError, match="shapes does not match the state_dict"):
        read_checkpoint(tmp_path / "damaged.pt")
