"""ACR-Net (shared/models/acr_net.md): registry and halo, network shapes and exact receptive
field, the memory-bounded ACAD decoder against the released code's unfold form, patch
training (seeding, nodata, read-out in scene units), chunk-independent block inference,
bad input, checkpoints, and ``hsu-geo unmix -m acr_net`` end to end on a small GeoTIFF."""

from __future__ import annotations

import json
import pickle

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from torch.nn import functional

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep.acr_net import ACRNet, ACRNetConfig, ACRNetUnmixer
from hsu_geo.unmix.deep.checkpoint import read_checkpoint, save_checkpoint
from hsu_geo.unmix.metrics import match_endmembers, sad
from hsu_geo.unmix.spatial import sample_patches, spatial_stacked
from tests.unmix.deep.cli_checks import (
    check_reload_gives_the_same_maps,
    check_usual_outputs,
    one_line_error,
    unmix_and_save,
)
from tests.unmix.scenes import linear_scene, write_scene

WL = np.arange(400.0, 2401.0, 50.0)  # 41 bands


def tiny(**kw) -> ACRNetConfig:
    return ACRNetConfig(**{"epochs": 2, "n_patches": 10, "batch_size": 5, **kw})


@pytest.fixture(scope="module")
def data():
    cube, E, A, _ = linear_scene(rows=30, cols=28, k=3, seed=5, wl=WL)
    return cube, E, A, sample_patches(cube, 13, 10, seed=0)


@pytest.fixture(scope="module")
def model(data) -> ACRNetUnmixer:
    _, E, _, P = data
    m = ACRNetUnmixer(tiny(seed=2))
    m.fit(P, E)
    return m


def trained_net(n_bands: int = 6, k: int = 3, **kw) -> ACRNet:
    """A network with random (non-trivial) BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    net = ACRNet(n_bands, k, ACRNetConfig(**kw))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def released_acad(net: ACRNet, a: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The released code's decoder: unfold with zero padding, the full (b, N, K, R, B)
    tensor, attention-weighted sum over K, ReLU."""
    b, k, h, w = a.shape
    n, r = net.kernel, net.kernel // 2
    q = net.query(f).flatten(2).transpose(1, 2)  # (b, N, C2)
    kf = functional.unfold(net.key(f), n, padding=r)  # (b, C2·K, N)
    kf = kf.reshape(b, f.shape[1], n * n, h * w).permute(0, 3, 2, 1)  # (b, N, K, C2)
    att = torch.softmax((q[:, :, None] * kf).sum(-1) * net.tau, dim=-1)  # (b, N, K)
    au = functional.unfold(a, n, padding=r).reshape(b, k, n * n, h * w).permute(0, 3, 2, 1)
    y = au[..., None] * net.W[None, None]  # (b, N, K, R, B)
    x = (att[..., None] * y.sum(dim=3)).sum(dim=2)  # (b, N, B)
    return torch.relu(x).transpose(1, 2).reshape(b, -1, h, w)


def test_registered_as_a_patch_model_with_the_receptive_field_as_halo():
    cls = MODELS.get("acr_net")
    assert cls is ACRNetUnmixer and cls.input == "patches" and cls.halo == 9
    assert ACRNetUnmixer().halo == 7 + 2
    assert ACRNetUnmixer(ACRNetConfig(encoder="four_layer")).halo == 15 + 2
    assert ACRNetUnmixer(ACRNetConfig(encoder="six_layer", decoder_kernel=3)).halo == 23 + 1
    d = ACRNetConfig()  # acr_net.md §3, §6, §7 [C]
    assert (d.patch_size, d.n_patches, d.batch_size, d.drop_last, d.epochs) == \
        (13, 800, 32, True, 200)
    assert (d.lr_encoder, d.weight_decay, d.rmsprop_alpha, d.w_half, d.half_schedule) == \
        (1e-3, 1e-3, 0.99, 0.5, "cosine")
    assert (d.c1_per_endmember, d.c2_per_endmember, d.casa_kernel, d.decoder_kernel) == \
        (16, 8, 7, 5)
    assert d.train_padding == "zero" and d.decoder_init == "m0"
    with pytest.raises(ConfigError, match="decoder_kernel=4 must be an odd number"):
        ACRNetConfig(decoder_kernel=4)
    with pytest.raises(ConfigError, match="train_padding='same'"):
        ACRNetConfig(train_padding="same")


def test_network_shapes_simplex_and_padded_training_mode():
    net = trained_net(6, 3)
    assert (net.unit1a.conv.out_channels, net.unit5.conv.out_channels) == (48, 24)
    x = torch.rand(2, 6, 21, 23)
    a, f = net.features(x)
    assert a.shape == (2, 3, 7, 9) and f.shape == (2, 24, 7, 9)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(2, 7, 9))
    assert net.decode(a, f).shape == (2, 6, 3, 5)
    assert net.endmember_weight().shape == (6, 3)
    net.padded = True  # training like the code: sizes kept
    a2, f2 = net.features(x)
    assert a2.shape == (2, 3, 21, 23) and net.decode(a2, f2).shape == (2, 6, 21, 23)
    # the padded and unpadded forms agree where the padding is out of reach
    torch.testing.assert_close(a2[:, :, 7:-7, 7:-7], a, rtol=1e-5, atol=1e-6)


def test_receptive_field_is_exactly_the_halo():
    net = trained_net(5, 3).double()  # float64: no rounding noise from blocked kernels
    with torch.no_grad():
        net.W.uniform_(0.1, 1.0)  # output away from the ReLU's zero
    d = 9
    x = torch.rand(1, 5, 2 * d + 1, 2 * d + 1, dtype=torch.float64, requires_grad=True)
    a, f = net.features(x)
    net.decode(a, f)[0, :, 0, 0].sum().backward()
    assert (x.grad.abs().sum(dim=(0, 1)) > 0).all()  # every pixel within the halo matters
    # a pixel farther than the halo changes nothing; one at the halo's edge does
    big = torch.rand(1, 5, 2 * d + 5, 2 * d + 5, dtype=torch.float64)
    with torch.no_grad():
        ref = net.decode(*net.features(big))[0, :, 2, 2]
        far, near = big.clone(), big.clone()
        far[0, :, 2 + d, 2 + 2 * d + 1] += 1.0  # output (2, 2) is input (2 + d, 2 + d)
        near[0, :, 2 + d, 2 + 2 * d] += 1.0
        far_diff = float((net.decode(*net.features(far))[0, :, 2, 2] - ref).abs().max())
        near_diff = float((net.decode(*net.features(near))[0, :, 2, 2] - ref).abs().max())
    assert far_diff < 1e-13 and near_diff > 1e-9


def test_chunked_decoder_equals_the_released_unfold_form():
    net = trained_net(7, 4)
    with torch.no_grad():
        net.W.uniform_(-0.2, 1.0)  # negative entries: the output ReLU matters
        x = torch.rand(2, 7, 30, 26)
        net.padded = True
        a, f = net.features(x)
        ref = released_acad(net, a, f)
        torch.testing.assert_close(net.decode(a, f), ref, rtol=1e-5, atol=1e-6)
        # row tiles of 3 output rows (26 px): the same numbers
        torch.testing.assert_close(net.decode(a, f, tile_pixels=3 * 26), ref, rtol=1e-5,
                                   atol=1e-6)
        net.padded = False  # unpadded = the interior of the padded form
        torch.testing.assert_close(net.decode(a, f, tile_pixels=50), ref[:, :, 2:-2, 2:-2],
                                   rtol=1e-5, atol=1e-6)
        # homogeneous neighbourhood: uniform attention, ReLU(a · mean_j W_j)
        a0 = torch.softmax(torch.rand(1, 4), dim=1)
        flat_a = a0[:, :, None, None].expand(1, 4, 5, 5)
        flat_f = torch.rand(1, 32, 1, 1).expand(1, 32, 5, 5)  # C2 = 8·4
        torch.testing.assert_close(net.decode(flat_a, flat_f)[0, :, 0, 0],
                                   net.homogeneous(a0)[0], rtol=1e-5, atol=1e-6)


def test_fit_gives_simplex_abundances_and_endmembers_in_scene_units(model, data):
    cube, _, _, _ = data
    assert model.endmembers.shape == (3, len(WL)) and np.isfinite(model.endmembers).all()
    W = model.network.endmember_weight().detach().numpy().T * model.scale
    np.testing.assert_allclose(model.endmembers, W, rtol=1e-5)
    assert (model.endmembers >= 0).all()
    info = model.fit_info
    json.dumps(info)
    assert info["patches"] == 10 and info["patch_size"] == [13, 13] and info["halo"] == 9
    assert info["train_padding"] == "zero" and info["training_pixels"] == 10 * 13 * 13
    train = info["stages"]["train"]
    assert train["steps"] == 2 * 2 and len(train["loss_history"]) == 2
    assert set(train["final_terms"]) == {"sad", "half", "smooth"}
    assert train["learning_rates"] == {"encoder": 1e-3, "decoder": 1e-3, "endmembers": 1e-3}
    assert info["decoder_rescale"] > 0 and info["matched_to_m0"]["order"]
    assert not model.network.padded and model.halo == 9
    d = model.halo
    A, rmse = model.abundances_image(np.pad(cube, ((0, 0), (d, d), (d, d)), mode="symmetric"))
    assert A.shape == (3, 30, 28) and rmse.shape == (30, 28)
    assert (A >= 0).all()
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-5)
    assert float(rmse.mean()) < 0.5 * float(np.linalg.norm(cube, axis=0).mean()
                                            / np.sqrt(len(WL)))
    # single pixels = homogeneous neighbourhoods, consistent with the block predict
    Y = cube.reshape(len(WL), -1).T[:7]
    Ap = model.abundances(Y)
    np.testing.assert_allclose(Ap.sum(axis=1), 1.0, atol=1e-5)
    flat = np.broadcast_to(Y[0][:, None, None], (len(WL), 19, 19)).copy()
    Af, rf = model.abundances_image(flat)
    np.testing.assert_allclose(Af[:, 0, 0], Ap[0], atol=1e-5)
    recon = model.reconstruct(Ap[:1])[0]
    np.testing.assert_allclose(np.sqrt(np.mean((recon - Y[0]) ** 2)), rf[0, 0], rtol=1e-3,
                               atol=1e-6)


def test_block_inference_does_not_depend_on_the_chunking_and_masks_nodata(model, data):
    cube, _, _, _ = data
    dirty = cube.copy()
    dirty[:, 11, 4] = np.nan
    outs = []
    for c in (8, 17):
        arr = xr.DataArray(da.from_array(dirty, chunks=(len(WL), c, c)),
                           dims=("band", "y", "x"))
        outs.append(spatial_stacked(arr, model, 3).values)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    out = outs[0]
    assert out.shape == (4, 30, 28)
    assert np.isnan(out[:, 11, 4]).all() and np.isfinite(np.delete(out.reshape(4, -1),
                                                                   11 * 28 + 4, axis=1)).all()


def test_same_seed_same_model_other_seed_differs(data):
    _, E, _, P = data
    a, b, c = (ACRNetUnmixer(tiny(seed=s)) for s in (4, 4, 5))
    for m in (a, b, c):
        m.fit(P, E)
    block = np.pad(P[0], ((0, 0), (3, 3), (3, 3)), mode="symmetric")
    np.testing.assert_array_equal(a.abundances_image(block)[0], b.abundances_image(block)[0])
    np.testing.assert_array_equal(a.endmembers, b.endmembers)
    assert not np.array_equal(a.abundances_image(block)[0], c.abundances_image(block)[0])


def test_nodata_in_patches_is_filled_and_left_out_of_the_loss(data):
    _, E, _, P = data
    dirty = P.copy()
    dirty[0, :, 6, 6] = np.nan
    dirty[1, 3, 0, 0] = np.inf
    m = ACRNetUnmixer(tiny())
    m.fit(dirty, E)
    assert m.fit_info["nonfinite_pixels_filled"] == 2
    assert m.fit_info["training_pixels"] == 10 * 169 - 2
    valid = np.isfinite(dirty).all(axis=1)
    np.testing.assert_allclose(m.fill_spectrum, P.transpose(1, 0, 2, 3)[:, valid].mean(axis=1),
                               rtol=1e-4)
    assert np.isfinite(m.endmembers).all()


def test_valid_training_uses_the_patch_interior(data):
    cube, E, _, _ = data
    P = sample_patches(cube, 21, 6, seed=1)
    m = ACRNetUnmixer(tiny(train_padding="valid", n_patches=6, batch_size=3, patch_size=21))
    m.fit(P, E)
    assert m.fit_info["training_pixels"] == 6 * 3 * 3 and m.fit_info["halo"] == 9
    with pytest.raises(InvalidSceneError, match=r"at least 19 x 19.*got 13 x 13"):
        ACRNetUnmixer(tiny(train_padding="valid")).fit(P[:, :, :13, :13], E)


def test_bad_input_is_a_clear_error(data, model):
    cube, E, _, P = data
    with pytest.raises(InvalidSceneError, match=r"at least 10 x 10 pixels.*got patches of "
                                                r"9 x 9.*-m fcls"):
        ACRNetUnmixer(tiny()).fit(P[:, :, :9, :9], E)
    with pytest.raises(InvalidSceneError, match=r"trains on patches \(n, L, p, p\)"):
        ACRNetUnmixer(tiny()).fit(cube.reshape(len(WL), -1).T, E)
    with pytest.raises(InvalidSceneError, match="valid pixels away from their borders"):
        ACRNetUnmixer(tiny()).fit(np.full_like(P, np.nan), E)
    with pytest.raises(EndmemberError, match="bands"):
        ACRNetUnmixer(tiny()).fit(P, E[:, :30])
    with pytest.raises(InvalidSceneError, match="not fitted"):
        ACRNetUnmixer(tiny()).abundances_image(P[0])
    with pytest.raises(InvalidSceneError, match="another band set"):
        model.abundances_image(cube[:30])
    with pytest.raises(InvalidSceneError, match="no interior"):
        model.abundances_image(cube[:, :18, :18])
    with pytest.raises(InvalidSceneError, match="needs 9 pixels of context"):
        spatial_stacked(xr.DataArray(cube[:, :9, :20], dims=("band", "y", "x")), model, 3)


def test_pickle_and_checkpoint_round_trip(model, data, tmp_path):
    cube, _, _, _ = data
    block = cube[:, :25, :22]
    ref = model.abundances_image(block)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.abundances_image(block)[0], ref[0])
    path = save_checkpoint(tmp_path / "c.pt", model, WL, ["a", "b", "c"], np.arange(len(WL)))
    ck = read_checkpoint(path)
    loaded = ck.build("cpu")
    assert loaded.halo == 9 and loaded.input == "patches" and loaded.config == model.config
    for got, want in zip(loaded.abundances_image(block), ref, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.fill_spectrum, model.fill_spectrum)
    np.testing.assert_array_equal(loaded.endmembers, model.endmembers)
    with pytest.raises(ConfigError, match="41 bands"):
        ck.check_bands(WL[:30])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``hsu-geo unmix scene.tif -m acr_net -k 3 --save-model m.pt`` on a 26 x 22 scene with
    one nodata pixel."""
    tmp = tmp_path_factory.mktemp("acr_cli")
    return tmp, unmix_and_save(tmp, "acr_net", ["epochs=2", "n_patches=12"], WL)


def test_cli_unmix_writes_the_usual_outputs(cli_run):
    tmp, scene = cli_run
    record = check_usual_outputs(tmp, scene, "acr_net", shape=(26, 22))
    text = json.dumps(record)
    assert '"patch_size": [13, 13]' in text and '"halo": 9' in text
    assert record["config"]["model_config"]["seed"] == 3


def test_cli_load_model_at_another_chunk_size_gives_the_same_maps(cli_run):
    check_reload_gives_the_same_maps(*cli_run, "acr_net")


def test_cli_checkpoint_on_a_scene_with_other_bands_is_one_line(cli_run):
    tmp, _ = cli_run
    cube, _, _, wl = linear_scene(rows=26, cols=22, k=3, seed=2, wl=WL[:30])
    other = write_scene(tmp / "other.tif", cube, wl)
    line = one_line_error(["unmix", str(other), "--load-model", str(tmp / "m.pt"),
                           "-o", str(tmp / "c"), "-q"])
    assert "checkpoint m.pt needs a band" in line


def test_cli_scene_smaller_than_the_receptive_field_is_one_line(tmp_path):
    cube, _, _, wl = linear_scene(rows=9, cols=20, k=3, seed=2, wl=WL)
    scene = write_scene(tmp_path / "small.tif", cube, wl)
    line = one_line_error(["unmix", str(scene), "-m", "acr_net", "-k", "3", "-o",
                           str(tmp_path / "o"), "-q"])
    assert "10 x 10" in line and "got patches of 9 x 13" in line


@pytest.mark.slow
def test_recovers_the_endmembers_of_a_linear_scene():
    cube, E, _, _ = linear_scene(rows=48, cols=48, k=3, seed=7, wl=WL)
    M0 = E * (1 + 0.15 * np.random.default_rng(0).standard_normal(E.shape))
    m = ACRNetUnmixer(ACRNetConfig(epochs=30, n_patches=200, seed=0))
    m.fit(sample_patches(cube, 13, 200, seed=0), M0)
    perm = match_endmembers(E, m.endmembers)
    assert float(np.mean(sad(E, m.endmembers[perm]))) < 0.5 * float(np.mean(sad(E, M0)))
