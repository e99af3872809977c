"""CNNAEU (baselines.md §D2): network shapes and receptive field, patch training (seeding,
nodata, endmember read-out in scene units), bad input, checkpoints, and ``hsu-geo unmix -m
cnnaeu`` end to end on a small synthetic GeoTIFF."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep.checkpoint import read_checkpoint, save_checkpoint
from hsu_geo.unmix.deep.cnnaeu import CNNAEUConfig, CNNAEUNet, CNNAEUUnmixer
from hsu_geo.unmix.metrics import match_endmembers, sad
from hsu_geo.unmix.spatial import sample_patches
from tests.unmix.deep.cli_checks import (
    check_reload_gives_the_same_maps,
    check_usual_outputs,
    one_line_error,
    unmix_and_save,
)
from tests.unmix.scenes import linear_scene, write_scene

WL = np.arange(400.0, 2401.0, 50.0)  # 41 bands


def tiny(**kw) -> CNNAEUConfig:
    return CNNAEUConfig(**{"epochs": 2, "n_patches": 10, "patch_size": 18, **kw})


@pytest.fixture(scope="module")
def data():
    cube, E, A, _ = linear_scene(rows=30, cols=28, k=3, seed=5, wl=WL)
    return cube, E, A, sample_patches(cube, 18, 10, seed=0)


@pytest.fixture(scope="module")
def model(data) -> CNNAEUUnmixer:
    _, E, _, P = data
    m = CNNAEUUnmixer(tiny(seed=2))
    m.fit(P, E)
    return m


def test_registered_as_a_patch_model_with_the_receptive_field_as_halo():
    cls = MODELS.get("cnnaeu")
    assert cls is CNNAEUUnmixer and cls.input == "patches" and cls.halo == 7
    assert CNNAEUUnmixer(CNNAEUConfig(decoder_kernel=5)).halo == 1 + 2
    d = CNNAEUConfig()  # baselines.md §D2 [C]
    assert (d.patch_size, d.n_patches, d.batch_size, d.lr_encoder, d.optimizer) == \
        (40, 250, 15, 3e-3, "rmsprop")
    assert (d.features, d.encoder_kernel, d.decoder_kernel, d.temperature) == (48, 3, 13, 3.0)
    with pytest.raises(ConfigError, match="decoder_kernel=4 must be an odd number"):
        CNNAEUConfig(decoder_kernel=4)


def test_network_shapes_and_receptive_field():
    cfg = CNNAEUConfig()
    net = CNNAEUNet(10, 3, cfg).eval()
    x = torch.rand(2, 10, 20, 22)
    a = net.encode(x)
    assert a.shape == (2, 3, 18, 20)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(2, 18, 20))
    assert net.decode(a).shape == (2, 10, 6, 8)
    assert (net.decoder.weight >= 0).all()
    # the output pixel (0, 0) of a 15x15 input sees all of it and nothing else
    x = torch.rand(1, 10, 15, 15, requires_grad=True)
    net.decode(net.encode(x))[0, :, 0, 0].sum().backward()
    assert (x.grad.abs().sum(dim=(0, 1)) > 0).all()


def test_fit_gives_simplex_abundances_and_endmembers_in_scene_units(model, data):
    cube, _, _, _ = data
    assert model.endmembers.shape == (3, len(WL)) and np.isfinite(model.endmembers).all()
    W = model.network.endmember_weight().detach().numpy().T * model.scale
    np.testing.assert_allclose(model.endmembers, W, rtol=1e-5)
    info = model.fit_info
    json.dumps(info)
    assert info["patches"] == 10 and info["patch_size"] == [18, 18] and info["halo"] == 7
    assert info["training_pixels"] == 10 * 4 * 4  # the 18 - 2*7 interior of each patch
    assert len(info["stages"]["train"]["loss_history"]) == 2
    assert info["decoder_rescale"] > 0 and info["matched_to_m0"]["order"]
    d = model.halo
    A, rmse = model.abundances_image(np.pad(cube, ((0, 0), (d, d), (d, d)), mode="symmetric"))
    assert A.shape == (3, 30, 28) and rmse.shape == (30, 28)
    assert (A >= 0).all()
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-5)
    # rescaled decoder: the reconstruction error is small next to the data, in its units
    assert float(rmse.mean()) < 0.5 * float(np.linalg.norm(cube, axis=0).mean()
                                            / np.sqrt(len(WL)))
    # single pixels: a homogeneous neighbourhood
    Y = cube.reshape(len(WL), -1).T[:7]
    Ap = model.abundances(Y)
    assert Ap.shape == (7, 3)
    np.testing.assert_allclose(Ap.sum(axis=1), 1.0, atol=1e-5)
    flat = np.broadcast_to(Y[0][:, None, None], (len(WL), 15, 15)).copy()
    np.testing.assert_allclose(model.abundances_image(flat)[0][:, 0, 0], Ap[0], atol=1e-5)
    assert model.reconstruct(Ap).shape == (7, len(WL))


def test_same_seed_same_model_other_seed_differs(data):
    _, E, _, P = data
    a, b, c = (CNNAEUUnmixer(tiny(seed=s)) for s in (4, 4, 5))
    for m in (a, b, c):
        m.fit(P, E)
    block = P[0]
    np.testing.assert_array_equal(a.abundances_image(block)[0], b.abundances_image(block)[0])
    np.testing.assert_array_equal(a.endmembers, b.endmembers)
    assert not np.array_equal(a.abundances_image(block)[0], c.abundances_image(block)[0])


def test_nodata_in_patches_is_filled_and_left_out_of_the_loss(data):
    _, E, _, P = data
    dirty = P.copy()
    dirty[0, :, 9, 9] = np.nan  # interior pixel
    dirty[1, 3, 0, 0] = np.inf  # border pixel, one band
    m = CNNAEUUnmixer(tiny())
    m.fit(dirty, E)
    assert m.fit_info["nonfinite_pixels_filled"] == 2
    assert m.fit_info["training_pixels"] == 10 * 16 - 1
    valid = np.isfinite(P).all(axis=1)
    np.testing.assert_allclose(m.fill_spectrum, P.transpose(1, 0, 2, 3)[:, valid].mean(axis=1),
                               rtol=1e-4)
    assert np.isfinite(m.endmembers).all()


def test_bad_input_is_a_clear_error(data, model):
    cube, E, _, P = data
    with pytest.raises(InvalidSceneError, match=r"needs patches \(and a scene\) of at least "
                                                r"15 x 15.*got 12 x 12.*-m fcls"):
        CNNAEUUnmixer(tiny()).fit(P[:, :, :12, :12], E)
    with pytest.raises(InvalidSceneError, match=r"trains on patches \(n, L, p, p\)"):
        CNNAEUUnmixer(tiny()).fit(cube.reshape(len(WL), -1).T, E)
    with pytest.raises(InvalidSceneError, match="valid pixels away from their borders"):
        CNNAEUUnmixer(tiny()).fit(np.full_like(P, np.nan), E)
    with pytest.raises(EndmemberError, match="bands"):
        CNNAEUUnmixer(tiny()).fit(P, E[:, :30])
    with pytest.raises(InvalidSceneError, match="not fitted"):
        CNNAEUUnmixer(tiny()).abundances_image(P[0])
    with pytest.raises(InvalidSceneError, match="another band set"):
        model.abundances_image(P[0, :30])
    with pytest.raises(InvalidSceneError, match="no interior"):
        model.abundances_image(P[0, :, :14, :14])


def test_pickle_and_checkpoint_keep_network_and_fill(model, data, tmp_path):
    _, _, _, P = data
    ref = model.abundances_image(P[3])
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.abundances_image(P[3])[0], ref[0])
    np.testing.assert_array_equal(clone.fill_spectrum, model.fill_spectrum)
    path = save_checkpoint(tmp_path / "c.pt", model, WL, ["a", "b", "c"], np.arange(len(WL)))
    loaded = read_checkpoint(path).build("cpu")
    assert loaded.halo == 7 and loaded.input == "patches"
    np.testing.assert_array_equal(loaded.abundances_image(P[3])[0], ref[0])
    np.testing.assert_array_equal(loaded.fill_spectrum, model.fill_spectrum)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``hsu-geo unmix scene.tif -m cnnaeu -k 3 -o out --save-model m.pt`` on a 26 x 22
    scene with one nodata pixel."""
    tmp = tmp_path_factory.mktemp("cnnaeu_cli")
    return tmp, unmix_and_save(tmp, "cnnaeu", ["epochs=2", "n_patches=8"], WL)


def test_cli_unmix_writes_the_usual_outputs(cli_run):
    tmp, scene = cli_run
    record = check_usual_outputs(tmp, scene, "cnnaeu", shape=(26, 22))
    text = json.dumps(record)
    assert '"patch_size": [26, 22]' in text and '"halo": 7' in text  # scene < 40: scene-sized
    assert record["config"]["model_config"]["seed"] == 3


def test_cli_load_model_at_another_chunk_size_gives_the_same_maps(cli_run):
    check_reload_gives_the_same_maps(*cli_run, "cnnaeu")


def test_cli_scene_smaller_than_the_receptive_field_is_one_line(tmp_path):
    cube, _, _, wl = linear_scene(rows=12, cols=20, k=3, seed=2, wl=WL)
    scene = write_scene(tmp_path / "small.tif", cube, wl)
    line = one_line_error(["unmix", str(scene), "-m", "cnnaeu", "-k", "3", "-o",
                           str(tmp_path / "o"), "-q"])
    assert "15 x 15" in line and "got 12 x 20" in line


@pytest.mark.slow
def test_recovers_the_endmembers_of_a_linear_scene():
    cube, E, _, _ = linear_scene(rows=48, cols=48, k=3, seed=7, wl=WL)
    m = CNNAEUUnmixer(CNNAEUConfig(epochs=30, n_patches=60, patch_size=24, seed=0))
    m.fit(sample_patches(cube, 24, 60, seed=0), E)
    perm = match_endmembers(E, m.endmembers)
    assert float(np.mean(sad(E, m.endmembers[perm]))) < 0.1
