"""DFFN (dffn.md): block-wise feature fusion equals the dense N x N form, the exact and the
sampled (full-scene) forms, tiling independence, nodata, seeding, bad input, checkpoints and
``hsu-geo unmix -m dffn`` end to end on a small synthetic GeoTIFF."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import xarray as xr

from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep.checkpoint import read_checkpoint, save_checkpoint
from hsu_geo.unmix.deep.dffn import DFFNConfig, DFFNNet, DFFNUnmixer, mirror
from hsu_geo.unmix.deep.dffn_fusion import Fusion, band_distance, pixel_similarity_product
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


def tiny(**kw) -> DFFNConfig:
    return DFFNConfig(**{"epochs": 4, "features": (12, 8), "n_patches": 6, "patch_size": 20,
                         "ref_pixels": 128, **kw})


@pytest.fixture(scope="module")
def data():
    cube, E, A, _ = linear_scene(rows=30, cols=28, k=3, seed=5, wl=WL)
    return cube, E, A, sample_patches(cube, 20, 6, seed=0)


@pytest.fixture(scope="module")
def exact(data) -> DFFNUnmixer:
    cube, E, _, _ = data
    m = DFFNUnmixer(tiny(seed=2))
    m.fit(cube[None], E)
    return m


@pytest.fixture(scope="module")
def sampled(data) -> DFFNUnmixer:
    _, E, _, P = data
    m = DFFNUnmixer(tiny(seed=2, fusion="sampled"))
    m.fit(P, E)
    return m


def dense_ffm(Y: torch.Tensor, w: float) -> torch.Tensor:
    """The authors' FFM with both similarity matrices held (dffn.md §4)."""
    S_B = torch.exp(-torch.cdist(Y.double(), Y.double()) ** 2)
    S_P = torch.exp(-torch.cdist(Y.T.double(), Y.T.double()) ** 2)

    def mm(Z: torch.Tensor) -> torch.Tensor:
        return (Z - Z.min()) / (Z.max() - Z.min())

    return mm(w * mm(S_B @ Y.double()) + (1 - w) * mm(Y.double() @ S_P)).float()


def test_registered_with_its_forms_and_the_paper_defaults():
    cls = MODELS.get("dffn")
    assert cls is DFFNUnmixer and cls.input == "image" and cls.halo == 6
    assert DFFNUnmixer(DFFNConfig(kernel=3)).halo == 3
    d = DFFNConfig()  # dffn.md §5-7 [C, Samson script]
    assert (d.w, d.loss_b, d.loss_c, d.kernel, d.features, d.eem_hidden) == \
        (0.5, 0.01, 0.001, 5, (128, 64), 100)
    assert (d.lr_encoder, d.weight_decay, d.lr_step, d.lr_gamma, d.keep_best) == \
        (1e-3, 1e-6, 245, 0.9, True)
    assert (d.fusion, d.exact_max_pixels) == ("auto", 100_000)
    with pytest.raises(ConfigError, match="eem=mlp needs fusion=exact"):
        DFFNConfig(eem="mlp", fusion="sampled")
    with pytest.raises(ConfigError, match="fusion='dense': choose one of auto, exact"):
        DFFNConfig(fusion="dense")


def test_blockwise_similarity_products_equal_the_dense_ones():
    rng = np.random.default_rng(0)
    Y = torch.from_numpy(rng.random((7, 150), dtype=np.float32) * 0.6)
    S_P = torch.exp(-torch.cdist(Y.T.double(), Y.T.double()) ** 2)
    dense = (Y.double() @ S_P).float()
    for block in (1, 17, 150, 1000):  # never an N x N matrix unless block >= N
        torch.testing.assert_close(pixel_similarity_product(Y, Y, block), dense,
                                   rtol=1e-5, atol=1e-5)
    D_B = torch.cdist(Y.double(), Y.double()) ** 2
    torch.testing.assert_close(band_distance(Y, block=13), D_B.float(), rtol=1e-4, atol=1e-4)
    fusion, fused = Fusion.calibrate(Y, Y, 0.5)
    ref = dense_ffm(Y, 0.5)
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-5)
    # the fitted fusion is a per-pixel map: any subset of pixels gets the same values
    torch.testing.assert_close(fusion.apply(Y[:, 40:57]), ref[:, 40:57], rtol=1e-4, atol=1e-5)
    _, only_bands = Fusion.calibrate(Y, Y, 1.0)
    torch.testing.assert_close(only_bands, dense_ffm(Y, 1.0), rtol=1e-4, atol=1e-5)


def test_far_pixels_give_no_subnormal_similarities():
    # squared distances of 90-100: exp(-D) would be float32 subnormals (slow on x86); they are
    # floored at exp(-87), a change far below float32 resolution of the sums
    R = torch.full((4, 64), 0.05)
    Q = 0.05 + (torch.tensor([90.0, 95.0, 100.0]) / 4).sqrt()[None, :].expand(4, 3)
    out = pixel_similarity_product(Q, R)
    d2 = ((Q[:, :, None] - R[:, None, :]) ** 2).sum(dim=0)
    assert bool((d2 > 87).all()) and bool((d2 < 104).all())
    tiny = torch.finfo(torch.float32).tiny
    assert bool((out >= tiny).all())  # normal numbers, not subnormals or 0
    dense = (R.double() @ torch.exp(-d2.double()).T)
    assert float((out.double() - dense).abs().max()) < 1e-35


def test_network_shapes_and_receptive_field():
    net = DFFNNet(10, 3, tiny(), "matrix", 0, 5).eval()
    x = torch.rand(2, 10, 20, 22)
    a = net.encode(x)
    assert a.shape == (2, 3, 8, 10) and net.decode(a).shape == (2, 10, 8, 10)
    # the abundance convolutions (before their last ReLU) at the output pixel (0, 0) of a
    # 13 x 13 input see all of it
    x = torch.rand(1, 10, 13, 13, requires_grad=True)
    out = net.abundance[:-1](x)
    assert out.shape == (1, 3, 1, 1)
    out.sum().backward()
    assert (x.grad.abs().sum(dim=(0, 1)) > 0).all()
    mlp = DFFNNet(10, 3, tiny(), "mlp", 20 * 22, 5)
    y1 = torch.rand(1, 10, 20, 22)
    E = mlp.live_endmembers(y1)
    assert E.shape == (10, 3) and ((E > 0) & (E < 1)).all()
    assert mirror(torch.arange(4.0).reshape(1, 1, 1, 4), 2)[0, 0, 2].tolist() == \
        [1, 0, 0, 1, 2, 3, 3, 2]


def test_exact_form_fits_and_inference_equals_the_full_image_forward(exact, data):
    cube, _, _, _ = data
    info = exact.fit_info
    json.dumps(info)
    assert (info["form"], info["eem"], info["reference_pixels"]) == ("exact", "mlp", 30 * 28)
    assert exact.input == "image" and info["eem_inputs"] == 30 * 28
    assert exact.network.eem is None  # training only: no N-sized weights in the model
    assert len(info["stages"]["train"]["loss_history"]) == 4
    assert exact.endmembers.shape == (3, len(WL)) and np.isfinite(exact.endmembers).all()
    d = exact.halo
    A, rmse = exact.abundances_image(np.pad(cube, ((0, 0), (d, d), (d, d)), mode="symmetric"))
    assert A.shape == (3, 30, 28) and rmse.shape == (30, 28) and (A >= 0).all()
    # the same as one forward pass of the whole mirrored image through the fitted network
    net = exact.network
    with torch.no_grad():
        x = torch.from_numpy(cube)[None] / exact.scale
        a = net.abundance(mirror(net.fuse(x), d))[0]
        a = (a / a.sum(dim=0).clamp(min=1e-8))[net.perm]
    np.testing.assert_allclose(A, a.numpy(), atol=2e-4)  # float32 sums in other blocks
    s = A.sum(axis=0)
    assert np.all((np.abs(s - 1) < 1e-5) | (s == 0))


def test_sampled_form_needs_no_scene_size(sampled, data):
    cube, _, _, _ = data
    info = sampled.fit_info
    assert (info["form"], info["eem"]) == ("sampled", "matrix") and sampled.input == "patches"
    assert sampled.network.ref.shape == (len(WL), 128)
    assert not any("eem.0" in k for k in sampled.network.state_dict())
    d = sampled.halo
    A, rmse = sampled.abundances_image(np.pad(cube, ((0, 0), (d, d), (d, d)), "symmetric"))
    assert A.shape == (3, 30, 28) and np.isfinite(rmse).all()
    bigger = np.tile(cube, (1, 2, 2))  # another scene size: fine
    assert sampled.abundances_image(bigger)[0].shape == (3, 60 - 2 * d, 56 - 2 * d)
    Ap = sampled.abundances(cube.reshape(len(WL), -1).T[:5])
    assert Ap.shape == (5, 3) and np.isfinite(Ap).all()


@pytest.mark.parametrize("form", ["exact", "sampled"])
def test_tiles_do_not_change_the_maps(form, exact, sampled, data):
    cube, _, _, _ = data
    model = exact if form == "exact" else sampled
    da_cube = xr.DataArray(cube, dims=("band", "y", "x"))
    maps = [spatial_stacked(da_cube.chunk({"band": -1, "y": c, "x": c}), model, 3).values
            for c in (8, 30)]
    assert np.isfinite(maps[0]).all()
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    d = model.halo
    block = np.pad(cube, ((0, 0), (d, d), (d, d)), mode="symmetric")
    whole = model.abundances_image(block)
    model.TILE_PIXELS = 400  # row tiles of 400 // 40 - 12 = -2 -> 1 row each
    try:
        tiled = model.abundances_image(block)
    finally:
        del model.TILE_PIXELS
    np.testing.assert_allclose(tiled[0], whole[0], atol=1e-5)
    np.testing.assert_allclose(tiled[1], whole[1], rtol=1e-4, atol=1e-6)


def test_sampled_form_a_pixel_beyond_the_halo_changes_nothing(sampled, data):
    """The full-scene form is local apart from its fixed reference pixels: changing one pixel
    changes the maps within the halo only (the exact form is non-local by design)."""
    cube, _, _, _ = data
    d, (r, c) = sampled.halo, (15, 14)

    def maps(arr: np.ndarray) -> np.ndarray:
        da_cube = xr.DataArray(arr, dims=("band", "y", "x")).chunk({"band": -1, "y": 10,
                                                                     "x": 10})
        return spatial_stacked(da_cube, sampled, 3).values

    before = maps(cube)
    changed = cube.copy()
    changed[:, r, c] = cube[:, 2, 2] * 1.7
    after = maps(changed)
    yy, xx = np.mgrid[0:cube.shape[1], 0:cube.shape[2]]
    far = np.maximum(abs(yy - r), abs(xx - c)) > d
    np.testing.assert_allclose(after[:, far], before[:, far], atol=1e-6, rtol=0)
    assert np.abs(after[:3, ~far] - before[:3, ~far]).max() > 1e-4  # the test can fail


def test_training_sample_follows_the_scene_size(data):
    cube, E, _, _ = data
    scene = xr.DataArray(cube, dims=("band", "y", "x"))
    assert DFFNUnmixer(tiny()).training_sample(scene).shape == (1, len(WL), 30, 28)
    m = DFFNUnmixer(tiny(exact_max_pixels=500))  # 840 pixels: the full-scene form
    P = m.training_sample(scene)
    assert P.shape == (6, len(WL), 20, 20)
    m.fit(P[:1], E)  # one window that would fit the limit: still the planned form
    assert m.fit_info["form"] == "sampled" and m.fit_info["training_pixels"] == 4 * 4


def test_nodata_is_filled_and_left_out(data):
    cube, E, _, _ = data
    dirty = cube.copy()
    dirty[:, 9, 9] = np.nan
    m = DFFNUnmixer(tiny())
    m.fit(dirty[None], E)
    assert m.fit_info["nonfinite_pixels_filled"] == 1
    assert m.fit_info["reference_pixels"] == 30 * 28 - 1  # not in the non-local sum
    assert np.isfinite(m.network.ref).all() and np.isfinite(m.endmembers).all()
    out = spatial_stacked(xr.DataArray(dirty, dims=("band", "y", "x")).chunk(
        {"band": -1, "y": 16, "x": 16}), m, 3).values
    assert np.isnan(out[:, 9, 9]).all() and np.isfinite(out[:, 0, 0]).all()


def test_exact_form_fuses_the_image_once_and_as_apply_would(data):
    """The exact form reuses calibrate's Ỹ of the valid pixels (one N x N product, not two);
    it equals the per-pixel apply of the calibrated fusion, filled nodata pixels included."""
    cube, _, _, _ = data
    m = DFFNUnmixer(tiny())
    m.form = "exact"
    L = cube.shape[0]
    X = torch.from_numpy(np.concatenate([cube, np.ones((1, *cube.shape[1:]))])[None]
                         ).float()
    X[0, L, 3, 4] = 0.0  # a nodata pixel (filled spectrum, mask 0)
    net = DFFNNet(L, 3, m.config, "matrix", 0, 30 * 28 - 1)
    calls = []
    orig = pixel_similarity_product

    def counting(Q, R, *a, **kw):
        calls.append(Q.shape[1])
        return orig(Q, R, *a, **kw)

    import hsu_geo.unmix.deep.dffn_fusion as fusion_module
    fusion_module.pixel_similarity_product = counting
    try:
        T = m._fusion_inputs(net, X)
    finally:
        fusion_module.pixel_similarity_product = orig
    assert calls == [30 * 28 - 1, 1]  # calibration on the valid pixels, then the one filled
    pad = 4 * (m.config.kernel // 2)
    fused = T[0, :L, pad:-pad, pad:-pad]
    np.testing.assert_allclose(fused.numpy(), net.fuse(X[:, :L])[0].numpy(), atol=1e-5)


def test_same_seed_same_model_other_seed_differs(data):
    _, E, _, P = data
    a, b, c = (DFFNUnmixer(tiny(seed=s, fusion="sampled")) for s in (4, 4, 5))
    for m in (a, b, c):
        m.fit(P, E)
    block = P[0]
    np.testing.assert_array_equal(a.abundances_image(block)[0], b.abundances_image(block)[0])
    np.testing.assert_array_equal(a.endmembers, b.endmembers)
    assert not np.array_equal(a.abundances_image(block)[0], c.abundances_image(block)[0])


def test_bad_input_is_a_clear_error(data, exact):
    cube, E, _, P = data
    with pytest.raises(ConfigError, match=r"fusion=exact .* limited to 500 pixels \(this scene: "
                                          r"840\); use --set fusion=sampled"):
        DFFNUnmixer(tiny(fusion="exact", exact_max_pixels=500)).fit(cube[None], E)
    over = DFFNUnmixer(tiny(exact_max_pixels=500))  # auto: the full-scene form instead
    over.fit(P, E)
    assert over.fit_info["form"] == "sampled"
    with pytest.raises(InvalidSceneError, match="fusion=exact trains on one whole image"):
        DFFNUnmixer(tiny(fusion="exact")).fit(P, E)
    with pytest.raises(InvalidSceneError, match=r"image \(1, L, H, W\) or patches"):
        DFFNUnmixer(tiny()).fit(cube.reshape(len(WL), -1).T, E)
    with pytest.raises(InvalidSceneError, match="larger than 16 pixels"):
        DFFNUnmixer(tiny(fusion="sampled")).fit(P[:, :, :15, :15], E)
    with pytest.raises(InvalidSceneError, match="another band set"):
        exact.abundances_image(P[0, :30])


def test_pickle_and_checkpoint_round_trip(exact, sampled, data, tmp_path):
    _, _, _, P = data
    for i, model in enumerate((exact, sampled)):
        ref = model.abundances_image(P[3])
        clone = pickle.loads(pickle.dumps(model))
        np.testing.assert_array_equal(clone.abundances_image(P[3])[0], ref[0])
        path = save_checkpoint(tmp_path / f"c{i}.pt", model, WL, ["a", "b", "c"],
                               np.arange(len(WL)))
        loaded = read_checkpoint(path).build("cpu")
        assert loaded.halo == 6 and loaded.input == model.input and loaded.form == model.form
        np.testing.assert_array_equal(loaded.abundances_image(P[3])[0], ref[0])
        np.testing.assert_array_equal(loaded.endmembers, model.endmembers)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``hsu-geo unmix scene.tif -m dffn -k 3`` on a 26 x 22 scene with one nodata pixel."""
    tmp = tmp_path_factory.mktemp("dffn_cli")
    return tmp, unmix_and_save(tmp, "dffn", ["epochs=3", "features=12,8"], WL)


def test_cli_unmix_writes_the_usual_outputs(cli_run):
    tmp, scene = cli_run
    record = check_usual_outputs(tmp, scene, "dffn", shape=(26, 22))
    text = json.dumps(record)
    assert '"form": "exact"' in text and '"patch_size": [26, 22]' in text  # the whole scene
    check_reload_gives_the_same_maps(tmp, scene, "dffn")


def test_cli_exact_form_over_its_limit_is_one_line(tmp_path):
    cube, _, _, wl = linear_scene(rows=26, cols=22, k=3, seed=2, wl=WL)
    scene = write_scene(tmp_path / "s.tif", cube, wl)
    line = one_line_error(["unmix", str(scene), "-m", "dffn", "-k", "3", "-o",
                           str(tmp_path / "o"), "-q", "--set", "fusion=exact",
                           "--set", "exact_max_pixels=100"])
    assert "limited to 100 pixels" in line and "fusion=sampled" in line


@pytest.mark.slow
def test_recovers_the_endmembers_of_a_linear_scene():
    cube, E, _, _ = linear_scene(rows=40, cols=40, k=3, seed=7, wl=WL)
    m = DFFNUnmixer(DFFNConfig(epochs=300, features=(32, 16), seed=0))
    m.fit(cube[None], E)
    perm = match_endmembers(E, m.endmembers)
    assert float(np.mean(sad(E, m.endmembers[perm]))) < 0.15
