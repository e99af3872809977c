"""SSANU-Net (shared/models/ssanu_net.md): registry and halo, network shapes, receptive field
and the linear-mixing identity, loss terms, whole-image training (duplicate crops, reflect
padding), the pixel endmember read-out, tiling and nodata through the spatial engine, seeding,
checkpoints, bad input, and ``hsu-geo unmix -m ssanu_net`` end to end on a small GeoTIFF."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr

from hsu_geo.errors import ConfigError, EndmemberError, InvalidSceneError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep.checkpoint import read_checkpoint, save_checkpoint
from hsu_geo.unmix.deep.ssanu_net import (
    SSANUNet,
    SSANUNetConfig,
    SSANUNetUnmixer,
    nuclear_norm,
    unique_crops,
)
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
K = 3


def tiny(**kw) -> SSANUNetConfig:
    # 20 steps: BatchNorm's running statistics (momentum 0.1) have moved off their start, so
    # the eval-mode abundances are not all 0
    return SSANUNetConfig(**{"epochs": 20, "features": (16, 8), "patch_size": 64, **kw})


def as_cube(arr: np.ndarray, chunk: int) -> xr.DataArray:
    L, H, W = arr.shape
    return xr.DataArray(da.from_array(arr, chunks=(-1, chunk, chunk)), dims=("band", "y", "x"),
                        coords={"band": np.arange(1, L + 1), "y": 100.0 - np.arange(H),
                                "x": np.arange(W) * 2.0})


@pytest.fixture(scope="module")
def data():
    cube, E, A, _ = linear_scene(rows=28, cols=28, k=K, seed=5, wl=WL)
    return cube, E, A


@pytest.fixture(scope="module")
def model(data) -> SSANUNetUnmixer:
    cube, E, _ = data
    m = SSANUNetUnmixer(tiny(seed=2))
    m.fit(sample_patches(cube, 64, 4, seed=0), E)  # 4 draws of the whole 28 x 28 scene
    return m


def test_registered_as_an_image_model_with_the_receptive_field_as_halo():
    cls = MODELS.get("ssanu_net")
    assert cls is SSANUNetUnmixer and cls.input == "image" and cls.halo == 3
    assert SSANUNetUnmixer().halo == 3
    assert SSANUNetUnmixer(SSANUNetConfig(spatial_kernels=(3, 3))).halo == 2
    assert SSANUNetUnmixer(SSANUNetConfig(encoder_streams="spectral")).halo == 0
    d = SSANUNetConfig()  # spec §3-§5: the paper's Samson row (chosen on synthetic data)
    assert (d.epochs, d.lr_encoder, d.lr_decoder, d.weight_decay) == (500, 1e-2, 1e-2, 0.0)
    assert (d.encoder_weights, d.decoder_weights) == ((0.01, 0.99), (0.9, 0.1))
    assert (d.sum_weight, d.nuclear_weight, d.dropout) == (1e-5, 1e-5, 0.2)
    assert (d.features, d.spatial_kernels, d.abundance_act, d.readout) == \
        ((128, 64), (5, 3), "relu", "pixels")
    with pytest.raises(ConfigError, match="spatial_kernels"):
        SSANUNetConfig(spatial_kernels=(4, 3))
    with pytest.raises(ConfigError, match="abundance_act='sigmoid': choose one of relu"):
        SSANUNetConfig(abundance_act="sigmoid")
    with pytest.raises(ConfigError, match="encoder_weights"):
        SSANUNetConfig(encoder_weights=(1.5, 0.3))


def test_network_shapes_activations_and_receptive_field():
    net = SSANUNet(10, K, SSANUNetConfig()).eval()
    assert net.radius == 3
    x = torch.rand(2, 10, 20, 22)
    a = net.encode(x)
    assert a.shape == (2, K, 14, 16) and (a >= 0).all()
    assert net.decode(a).shape == (2, 10, 14, 16)
    soft = SSANUNet(10, K, SSANUNetConfig(abundance_act="softmax")).eval()
    torch.testing.assert_close(soft.encode(x).sum(dim=1), torch.ones(2, 14, 16))
    # the output pixel of a 7 x 7 input sees all of it (spatial stream 5x5 then 3x3)
    x = torch.rand(1, 10, 7, 7, requires_grad=True)
    net.decode(net.encode(x))[0, :, 0, 0].sum().backward()
    assert (x.grad.abs().sum(dim=(0, 1)) > 0).all()
    inner = SSANUNet(10, K, SSANUNetConfig(nonlinear_inner_relu=True))
    assert sum(isinstance(m, torch.nn.ReLU) for m in inner.nonlinear) == 3
    assert sum(isinstance(m, torch.nn.ReLU) for m in net.nonlinear) == 1


@pytest.mark.parametrize("cfg", [
    {}, {"nonlinear_inner_relu": True, "abundance_act": "softmax"},
    {"encoder_streams": "spatial", "decoder_streams": "nonlinear"},
    {"encoder_streams": "spectral", "decoder_streams": "linear", "conv_bias": False}])
def test_fused_block_predict_equals_the_network_with_batchnorm_folded(cfg):
    m = SSANUNetUnmixer(SSANUNetConfig(features=(16, 8), **cfg))
    net = m.new_network(12, K)
    net.train()
    with torch.no_grad():  # BatchNorm running statistics away from their start
        for _ in range(3):
            net.encode(torch.rand(2, 12, 12, 12) * 3)
    net.eval().perm.copy_(torch.tensor([2, 0, 1]))
    m.network, m.scale, m.n_bands, m.k = net, 2.0, 12, K
    d = m.halo
    block = np.random.default_rng(1).random((12, 9 + 2 * d, 11 + 2 * d), dtype=np.float32)
    A, rmse = m.abundances_image(block)
    with torch.no_grad():
        x = torch.from_numpy(block)[None] / 2.0
        a = net.encode(x)
        ref = torch.sqrt(torch.square(net.decode(a) - m.crop(x, d)).mean(dim=1))[0] * 2.0
    assert A.shape == (K, 9, 11) and rmse.shape == (9, 11)
    np.testing.assert_allclose(A, a[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(rmse, ref.numpy(), atol=1e-5)


def test_linear_stream_from_true_endmembers_reproduces_a_linear_mixture(data):
    cube, E, A = data  # spec §9: w_d2 = 0 (no nonlinear stream), A fixed to the truth
    net = SSANUNet(len(WL), K, SSANUNetConfig(decoder_streams="linear",
                                              decoder_weights=(1.0, 0.0)))
    assert net.nonlinear is None
    net.init_endmembers(torch.from_numpy(E.astype(np.float32)))
    with torch.no_grad():
        out = net.decode(torch.from_numpy(A.astype(np.float32))[None])[0].numpy()
    np.testing.assert_allclose(out, cube, rtol=1e-5, atol=1e-6)


def test_nuclear_norm_is_the_sum_of_singular_values_over_valid_pixels():
    a = torch.rand(2, K, 5, 6, requires_grad=True)
    mask = torch.ones(2, 5, 6)
    mask[1, 2, 3] = 0
    flat = a.detach().numpy().transpose(1, 0, 2, 3).reshape(K, -1)
    keep = mask.numpy().reshape(-1) > 0
    ref = np.linalg.svd(flat[:, keep], compute_uv=False).sum()
    nuc = nuclear_norm(a, mask)
    assert float(nuc.detach()) == pytest.approx(ref, rel=1e-5)
    nuc.backward()  # differentiable; the masked pixel gets no gradient
    assert torch.isfinite(a.grad).all() and (a.grad[1, :, 2, 3] == 0).all()
    with torch.no_grad():  # one step against the gradient lowers it
        b = a - 0.01 * a.grad
    assert float(nuclear_norm(b, mask)) < float(nuc.detach())


def test_whole_scene_training_and_fit_record(model, data):
    cube, _, _ = data
    info = model.fit_info
    json.dumps(info)
    assert info["duplicate_crops_dropped"] == 3 and info["patches"] == 1
    assert info["patch_size"] == [28, 28] and info["train_padding"] == "reflect"
    assert info["training_pixels"] == 28 * 28  # reflect padding: every pixel is in the loss
    st = info["stages"]["train"]
    assert st["steps"] == 20 and set(st["final_terms"]) == {"reconstruction", "sum_to_one",
                                                           "nuclear"}
    for v in info["fusion_weights"]["encoder"] + info["fusion_weights"]["decoder"]:
        assert 0.0 <= v <= 1.0
    assert model.endmembers.shape == (K, len(WL)) and np.isfinite(model.endmembers).all()
    # no reflect padding: the 3-pixel border of the crop is left out of the loss
    m = SSANUNetUnmixer(tiny(train_padding="none", epochs=1))
    m.fit(cube[None], data[1])
    assert m.fit_info["training_pixels"] == 22 * 22


def test_fusion_weights_are_clamped_to_the_unit_interval(data):
    cube, E, _ = data
    w = {}
    for clamp in (True, False):
        m = SSANUNetUnmixer(tiny(encoder_weights=(1.0, 0.0), decoder_weights=(1.0, 0.0),
                                 lr_encoder=0.5, lr_decoder=0.5, epochs=3, clamp_fusion=clamp))
        m.fit(cube[None], E)
        w[clamp] = torch.cat([m.network.w_e, m.network.w_d]).detach()
    assert ((w[True] >= 0) & (w[True] <= 1)).all()
    assert ((w[False] < 0) | (w[False] > 1)).any()  # Adam at lr 0.5 leaves [0, 1] unclamped


def test_pixel_readout_is_the_mean_spectrum_of_confident_pixels(model, data):
    cube, _, _ = data
    d = model.halo
    A, _ = model.abundances_image(np.pad(cube, ((0, 0), (d, d), (d, d)), mode="symmetric"))
    A = A.reshape(K, -1)
    Y = cube.reshape(len(WL), -1)
    info = model.fit_info["readout"]
    assert info["method"] == "pixels" and info["fallback_top_pixels"] == 1  # ceil(0.001 * 784)
    for r in range(K):
        sel = A[r] > 0.9
        assert int(sel.sum()) == info["pixels_above"][r]
        if not sel.any():
            sel = np.argsort(-A[r], kind="stable")[:1]  # ties in pixel order
        np.testing.assert_allclose(model.endmembers[r], Y[:, sel].mean(axis=1), rtol=2e-4,
                                   atol=1e-6)
    assert len(info["sad_pixels_vs_decoder_rad"]) == K
    dec = SSANUNetUnmixer(tiny(seed=2, readout="decoder"))
    dec.fit(cube[None], data[1])
    W = dec.network.endmember_weight().detach().numpy().T * dec.scale
    np.testing.assert_allclose(dec.endmembers, W, rtol=1e-5)


def test_receptive_field_a_pixel_beyond_the_halo_changes_nothing(model, data):
    cube, _, _ = data
    state = model.state()  # both encoder streams on (training may clamp w_e1 to 0)
    state["state_dict"]["w_e"] = torch.tensor([0.5, 0.5])
    model = SSANUNetUnmixer(model.config)
    model.load_state(state)
    changed = cube.copy()
    changed[:, 15, 14] *= 1.7
    d = model.halo

    def run(c):  # abundances and reconstruction RMSE
        A, rmse = model.abundances_image(np.pad(c, ((0, 0), (d, d), (d, d)), mode="symmetric"))
        return np.concatenate([A, rmse[None]])

    diff = np.abs(run(changed) - run(cube))
    yy, xx = np.mgrid[:28, :28]
    far = np.maximum(abs(yy - 15), abs(xx - 14)) > d
    assert (diff[:, far] == 0).all()
    assert (diff[:K, ~far].max(axis=0) > 0).sum() > 1  # abundances within the halo do change


def test_tiling_two_chunk_sizes_give_the_same_abundances(model, data):
    cube, _, _ = data
    a = spatial_stacked(as_cube(cube, 8), model, K).compute().values
    b = spatial_stacked(as_cube(cube, 13), model, K).compute().values
    assert a.shape == (K + 1, 28, 28) and np.isfinite(a).all() and a[:K].std() > 0
    np.testing.assert_allclose(a, b, atol=1e-5)
    slabs = pickle.loads(pickle.dumps(model))  # 2-row slabs inside each block: same maps
    slabs.config = replace(model.config, infer_batch=8 * (28 + 6))
    np.testing.assert_allclose(spatial_stacked(as_cube(cube, 28), slabs, K).compute().values,
                               a, atol=1e-5)


def test_nodata_is_remasked_and_does_not_reach_beyond_the_halo(model, data):
    cube, _, _ = data
    dirty = cube.copy()
    dirty[:, 12, 10] = np.nan
    dirty[5, 20, 20] = np.inf
    clean = spatial_stacked(as_cube(cube, 10), model, K).compute().values
    out = spatial_stacked(as_cube(dirty, 10), model, K).compute().values
    assert np.isnan(out[:, 12, 10]).all() and np.isnan(out[:, 20, 20]).all()
    yy, xx = np.mgrid[:28, :28]
    near = np.zeros((28, 28), bool)
    for r, c in ((12, 10), (20, 20)):
        near |= np.maximum(abs(yy - r), abs(xx - c)) <= model.halo
    np.testing.assert_allclose(out[:, ~near], clean[:, ~near], atol=1e-6)
    assert np.isfinite(out[:, near & np.isfinite(dirty).all(axis=0)]).all()


def test_same_seed_same_model_other_seed_differs(data):
    cube, E, _ = data
    a, b, c = (SSANUNetUnmixer(tiny(seed=s)) for s in (4, 4, 5))
    for m in (a, b, c):
        m.fit(cube[None], E)
    np.testing.assert_array_equal(a.abundances_image(cube)[0], b.abundances_image(cube)[0])
    np.testing.assert_array_equal(a.endmembers, b.endmembers)
    assert a.abundances_image(cube)[0].max() > 0
    assert not np.array_equal(a.abundances_image(cube)[0], c.abundances_image(cube)[0])


def test_unique_crops_keeps_distinct_windows():
    P = np.random.default_rng(0).random((4, 2, 5, 5)).astype(np.float32)
    P[2] = P[0]
    P[3, 0, 0, 0] = np.nan
    Q, dropped = unique_crops(P)
    assert dropped == 1 and Q.shape[0] == 3
    np.testing.assert_array_equal(Q[2], P[3])


def test_pickle_and_checkpoint_keep_network_fusion_weights_and_fill(model, data, tmp_path):
    cube, _, _ = data
    ref = model.abundances_image(cube)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.abundances_image(cube)[0], ref[0])
    path = save_checkpoint(tmp_path / "s.pt", model, WL, ["a", "b", "c"], np.arange(len(WL)))
    loaded = read_checkpoint(path).build("cpu")
    assert loaded.halo == 3 and loaded.input == "image" and loaded.config == model.config
    torch.testing.assert_close(loaded.network.w_e, model.network.w_e)
    torch.testing.assert_close(loaded.network.w_d, model.network.w_d)
    np.testing.assert_array_equal(loaded.abundances_image(cube)[0], ref[0])
    np.testing.assert_array_equal(loaded.abundances_image(cube)[1], ref[1])
    np.testing.assert_array_equal(loaded.fill_spectrum, model.fill_spectrum)
    np.testing.assert_array_equal(loaded.endmembers, model.endmembers)
    # a non-default architecture survives the round trip too
    odd = SSANUNetUnmixer(tiny(epochs=1, nonlinear_inner_relu=True, spatial_kernels=(3, 3),
                               abundance_act="softmax"))
    odd.fit(cube[None], data[1])
    p2 = save_checkpoint(tmp_path / "o.pt", odd, WL, ["a", "b", "c"], np.arange(len(WL)))
    back = read_checkpoint(p2).build("cpu")
    assert back.halo == 2
    np.testing.assert_array_equal(back.abundances_image(cube)[0], odd.abundances_image(cube)[0])


def test_bad_input_is_a_clear_error(data, model):
    cube, E, _ = data
    with pytest.raises(InvalidSceneError, match=r"needs patches \(and a scene\) of at least "
                                                r"7 x 7.*got 6 x 6.*-m fcls"):
        SSANUNetUnmixer(tiny()).fit(cube[None, :, :6, :6], E)
    with pytest.raises(InvalidSceneError, match=r"trains on patches \(n, L, p, p\)"):
        SSANUNetUnmixer(tiny()).fit(cube.reshape(len(WL), -1).T, E)
    with pytest.raises(InvalidSceneError, match="valid pixels"):
        SSANUNetUnmixer(tiny()).fit(np.full_like(cube[None], np.nan), E)
    with pytest.raises(EndmemberError, match="bands"):
        SSANUNetUnmixer(tiny()).fit(cube[None], E[:, :30])
    with pytest.raises(InvalidSceneError, match="another band set"):
        model.abundances_image(cube[:30])
    with pytest.raises(InvalidSceneError, match="no interior"):
        model.abundances_image(cube[:, :6, :6])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``hsu-geo unmix scene.tif -m ssanu_net -k 3 -o out --save-model m.pt`` on a 24 x 24
    scene with one nodata pixel."""
    tmp = tmp_path_factory.mktemp("ssanu_cli")
    return tmp, unmix_and_save(tmp, "ssanu_net", ["epochs=20", "features=16,8"], WL,
                               rows=24, cols=24)


def test_cli_unmix_writes_the_usual_outputs(cli_run):
    tmp, scene = cli_run
    # ReLU abundances: non-negative, not constrained to sum to one
    record = check_usual_outputs(tmp, scene, "ssanu_net", shape=(24, 24), sum_to_one=False)
    text = json.dumps(record)
    assert '"patch_size": [24, 24]' in text and '"halo": 3' in text  # the whole scene
    assert '"duplicate_crops_dropped": 3' in text and '"readout"' in text
    assert record["config"]["model_config"]["seed"] == 3


def test_cli_load_model_at_another_chunk_size_gives_the_same_maps(cli_run):
    check_reload_gives_the_same_maps(*cli_run, "ssanu_net")


def test_cli_checkpoint_on_a_scene_with_other_bands_is_one_line(cli_run):
    tmp, _ = cli_run
    cube, _, _, wl = linear_scene(rows=26, cols=22, k=K, seed=2, wl=WL[:-3])
    other = write_scene(tmp / "other.tif", cube, wl)
    line = one_line_error(["unmix", str(other), "--load-model", str(tmp / "m.pt"),
                           "-o", str(tmp / "c"), "-q"])
    assert "needs a band at 2400.00 nm" in line


def test_cli_scene_smaller_than_the_receptive_field_is_one_line(tmp_path):
    cube, _, _, wl = linear_scene(rows=12, cols=20, k=K, seed=2, wl=WL)
    scene = write_scene(tmp_path / "small.tif", cube[:, :6], wl)
    line = one_line_error(["unmix", str(scene), "-m", "ssanu_net", "-k", "3", "-o",
                           str(tmp_path / "o"), "-q"])
    assert "7 x 7" in line and "got 6 x 20" in line


@pytest.mark.slow
def test_a_linear_scene_gives_endmembers_near_the_truth():
    # the start is 0.021 rad off the truth and the fit ends near 0.044 (150 epochs): the
    # paper's loss does not pin unconstrained ReLU abundances to the simplex, so the pixel
    # read-out does not improve on a good start; this guards against a broken fit
    cube, E, _, _ = linear_scene(rows=40, cols=40, k=K, seed=7, wl=WL)
    m = SSANUNetUnmixer(SSANUNetConfig(epochs=150, features=(32, 16), seed=0))
    start = E + 0.05 * np.random.default_rng(0).random(E.shape)  # a perturbed start
    m.fit(cube[None], start)
    perm = match_endmembers(E, m.endmembers)
    assert float(np.mean(sad(E, m.endmembers[perm]))) < 0.1
