"""The spatial engine (hsu_geo/unmix/spatial.py): input kinds in the registry, block inference
with a halo (tiling, receptive field, reflect edge, nodata fill and re-mask, small chunks),
the output layout of apply_unmixer, and seeded patch sampling."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.adapter import apply_unmixer
from hsu_geo.unmix.base import INPUT_KINDS
from hsu_geo.unmix.deep.cnnaeu import CNNAEUConfig, CNNAEUUnmixer
from hsu_geo.unmix.spatial import (
    chunk_memory_bytes,
    first_round,
    is_spatial,
    sample_patches,
    spatial_chunks,
    spatial_stacked,
    training_patches,
)
from tests.unmix.deep import deep_model_names, needs_cuda, tiny_config
from tests.unmix.scenes import linear_scene

WL = np.arange(400.0, 2401.0, 50.0)  # 41 bands keep the convolutions cheap
ROWS, COLS, K = 40, 36, 3


def as_cube(arr: np.ndarray, chunk: int) -> xr.DataArray:
    """``arr (L, H, W)`` as a dask-backed cube with the coordinates the readers give."""
    L, H, W = arr.shape
    return xr.DataArray(
        da.from_array(arr, chunks=(-1, chunk, chunk)), dims=("band", "y", "x"),
        coords={"band": np.arange(1, L + 1), "y": 100.0 - np.arange(H), "x": np.arange(W) * 2.0,
                "wavelength": ("band", WL[:L]), "fwhm": ("band", np.full(L, 10.0))})


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    cube, E, _, _ = linear_scene(rows=ROWS, cols=COLS, k=K, seed=3, wl=WL)
    return cube, E


@pytest.fixture(scope="module")
def model(scene) -> CNNAEUUnmixer:
    cube, E = scene
    m = CNNAEUUnmixer(CNNAEUConfig(epochs=2, n_patches=12, patch_size=20, seed=1))
    m.fit(sample_patches(cube, 20, 12, seed=1), E)
    return m


def stacked(model, arr: np.ndarray, chunk: int) -> np.ndarray:
    return spatial_stacked(as_cube(arr, chunk), model, K).compute().values


def test_every_model_declares_a_known_input_kind():
    kinds = {name: cls.input for name, cls in MODELS.items()}
    assert set(kinds.values()) <= set(INPUT_KINDS)
    assert kinds["cnnaeu"] == "patches" and kinds["fcls"] == "pixels"
    for name, cls in MODELS.items():
        assert is_spatial(cls) == (cls.input != "pixels")
        if is_spatial(cls):  # the engine's contract
            assert cls.halo > 0 and callable(getattr(cls, "abundances_image", None)), name


def test_unknown_input_kind_is_refused():
    class Odd:
        input = "voxels"

    with pytest.raises(ConfigError, match=r"input kind 'voxels'.*pixels, patches, image"):
        is_spatial(Odd)


def test_tiling_gives_the_same_abundances_at_any_chunk_size(model, scene):
    cube, _ = scene
    ref = stacked(model, cube, COLS + 10)  # one block
    for chunk in (16, 24):
        np.testing.assert_allclose(stacked(model, cube, chunk), ref, atol=1e-5, rtol=0)
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(ref[:K].sum(axis=0), 1.0, atol=1e-5)


def test_row_tiles_inside_a_block_change_nothing(model, scene, monkeypatch):
    cube, _ = scene
    ref = stacked(model, cube, COLS + 10)
    monkeypatch.setattr("hsu_geo.unmix.spatial.TILE_PIXELS", 200)  # 4-row tiles of 50 px
    np.testing.assert_allclose(stacked(model, cube, COLS + 10), ref, atol=1e-5, rtol=0)


def test_scene_edge_is_reflected(model, scene):
    cube, _ = scene
    d = model.halo
    padded = np.pad(cube, ((0, 0), (d, d), (d, d)), mode="symmetric")
    A, rmse = model.abundances_image(padded)
    out = stacked(model, cube, 16)
    np.testing.assert_allclose(out[:K], A, atol=1e-5)
    np.testing.assert_allclose(out[K], rmse, rtol=1e-4)


def test_a_pixel_beyond_the_halo_changes_nothing(model, scene):
    cube, _ = scene
    d, (r, c) = model.halo, (20, 18)
    before = stacked(model, cube, 16)
    changed = cube.copy()
    changed[:, r, c] = cube[:, 3, 3] * 1.7
    after = stacked(model, changed, 16)
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    far = np.maximum(abs(yy - r), abs(xx - c)) > d
    np.testing.assert_allclose(after[:, far], before[:, far], atol=1e-6, rtol=0)
    near = ~far
    assert np.abs(after[:, near] - before[:, near]).max() > 1e-4  # the test can fail
    assert np.abs(after[:K, r, c] - before[:K, r, c]).max() > 1e-4


def test_nodata_pixels_are_nan_and_filled_with_the_training_mean(model, scene):
    cube, _ = scene
    d, (r, c) = model.halo, (12, 30)
    dirty = cube.copy()
    dirty[:, r, c] = np.nan
    dirty[4, 0, 0] = np.nan  # one bad band makes the pixel nodata
    out = stacked(model, dirty, 16)
    assert np.isnan(out[:, r, c]).all() and np.isnan(out[:, 0, 0]).all()
    assert np.isfinite(out).sum() == out.size - 2 * (K + 1)
    filled = cube.copy()
    filled[:, r, c] = model.fill_spectrum  # the documented fill
    filled[:, 0, 0] = model.fill_spectrum
    ref = stacked(model, filled, 16)
    ok = np.isfinite(out)
    np.testing.assert_allclose(out[ok], ref[ok], atol=1e-6)
    clean = stacked(model, cube, 16)
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    far = (np.maximum(abs(yy - r), abs(xx - c)) > d) & (np.maximum(yy, xx) > d)
    np.testing.assert_allclose(out[:, far], clean[:, far], atol=1e-6)


def test_an_all_nodata_block_is_nan_without_calling_the_model(model, scene):
    cube, _ = scene
    dirty = cube.copy()
    dirty[:, :16, :16] = np.nan
    out = stacked(model, dirty, 16)
    assert np.isnan(out[:, :16, :16]).all() and np.isfinite(out[:, 16:, 16:]).all()


def test_chunks_smaller_than_the_halo_are_merged(model, scene):
    cube, _ = scene
    arr = da.from_array(cube, chunks=(10, 16, 16))  # last chunks: 8 rows (kept), 4 columns
    fixed = spatial_chunks(arr, model.halo)
    assert fixed.chunks[0] == (cube.shape[0],)
    assert fixed.chunks[1] == (16, 16, 8) and fixed.chunks[2] == (16, 20)
    assert spatial_chunks(da.from_array(cube, chunks=(-1, 3, 3)), 7).chunks[1] == (9, 9, 9, 13)
    np.testing.assert_allclose(stacked(model, cube, 5), stacked(model, cube, 40), atol=1e-5)


def test_scene_smaller_than_the_halo_is_refused(model, scene):
    cube, _ = scene
    with pytest.raises(InvalidSceneError, match=r"6 pixels but cnnaeu needs 7 pixels.*-m fcls"):
        spatial_stacked(as_cube(cube[:, :6, :], 16), model, K)


def test_apply_unmixer_gives_the_per_pixel_layout(model, scene):
    cube, _ = scene
    ds = apply_unmixer(as_cube(cube, 16), model, ["a", "b", "c"])
    assert ds["abundance"].dims == ("endmember", "y", "x")
    assert ds["reconstruction_rmse"].dims == ("y", "x")
    assert ds["endmember_spectrum"].dims == ("endmember", "band")
    assert list(ds["endmember"].values) == ["a", "b", "c"]
    np.testing.assert_array_equal(ds["y"].values, 100.0 - np.arange(ROWS))
    A = ds["abundance"].values
    np.testing.assert_allclose(A, stacked(model, cube, 16)[:K], atol=1e-6)
    # RMSE against the model's own reconstruction, in scene units
    assert 0 < float(ds["reconstruction_rmse"].mean()) < float(np.abs(cube).mean())


def test_memory_formula():
    small = chunk_memory_bytes(64, 100, 7, 3)
    assert small == 4 * (2 * 100 * 78**2 + 78 * 78 * (100 + 2 * 51) + 3 * 100 * 64**2
                         + 4 * 64**2)
    big = chunk_memory_bytes(512, 224, 7, 3)  # row tiles: half of an untiled block
    untiled = 4 * (3 * 224 * 526**2 + 2 * 51 * 526**2 + 3 * 224 * 512**2 + 4 * 512**2)
    assert 0.6 * 2**30 < big < 0.8 * 2**30 < 0.55 * untiled


def test_memory_formula_uses_each_models_widest_layer():
    from hsu_geo.unmix import MODELS

    widths = {name: MODELS.get(name)().hidden_width(300, 3)
              for name in ("cnnaeu", "ssanu_net", "acr_net", "dffn")}
    # CNNAEU's encoder, SSANU-Net's two B-channel decoder maps, ACR-Net's decoder window
    # (2·25 + 2·25·3), DFFN's restore convolution (B)
    assert widths == {"cnnaeu": 48, "ssanu_net": 600, "acr_net": 200, "dffn": 300}
    assert chunk_memory_bytes(256, 300, 9, 3, hidden=200) > chunk_memory_bytes(256, 300, 9, 3)


# --- patch sampling ---------------------------------------------------------------------

def test_patches_are_seeded_and_independent_of_chunking(scene):
    cube, _ = scene
    a = sample_patches(as_cube(cube, 16), 12, 20, seed=5)
    b = sample_patches(as_cube(cube, 40), 12, 20, seed=5)
    c = sample_patches(cube, 12, 20, seed=6)
    assert a.shape == (20, len(WL), 12, 12) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # every patch is a window of the scene
    L = cube.shape[0]
    win = np.lib.stride_tricks.sliding_window_view(cube, (L, 12, 12))[0]
    found = (win[:, :, None] == a[None, None]).all(axis=(3, 4, 5))
    assert found.any(axis=(0, 1)).all()


def test_patches_respect_the_valid_fraction(scene):
    cube, _ = scene
    dirty = cube.copy()
    dirty[:, :, : COLS // 2] = np.nan  # left half nodata
    P = sample_patches(as_cube(dirty, 16), 10, 30, seed=0, min_valid=0.9)
    frac = np.isfinite(P).all(axis=1).mean(axis=(1, 2))
    assert P.shape[0] == 30 and (frac >= 0.9).all()
    loose = sample_patches(as_cube(dirty, 16), 10, 30, seed=0, min_valid=0.05)
    assert (np.isfinite(loose).all(axis=1).mean(axis=(1, 2)) < 0.9).any()


def test_nan_only_scene_and_oversized_requests_are_refused(scene):
    cube, _ = scene
    with pytest.raises(InvalidSceneError, match=r"none of .* windows .* valid pixels.*nodata"):
        sample_patches(np.full_like(cube, np.nan), 10, 5, seed=0)
    with pytest.raises(ConfigError, match=r"GiB.*lower --set n_patches or patch_size"):
        sample_patches(as_cube(cube, 16), 30, 10**7, seed=0)
    with pytest.raises(ConfigError, match="min_valid"):
        sample_patches(cube, 10, 5, seed=0, min_valid=0.0)


def test_scene_smaller_than_the_patch_gives_scene_sized_windows(scene):
    cube, _ = scene
    P = sample_patches(cube[:, :15, :30], 40, 4, seed=0)  # the whole non-square scene
    assert P.shape == (4, len(WL), 15, 30)
    np.testing.assert_array_equal(P[0], np.asarray(cube[:, :15, :30], dtype=np.float32))
    P = sample_patches(cube[:, :15, :30], 20, 4, seed=0)  # shorter than the patch in y only
    assert P.shape == (4, len(WL), 15, 20)


def _cut(arr: np.ndarray, req) -> np.ndarray:
    return np.stack([arr[:, r:r + req.height, c:c + req.width]
                     for r, c in zip(req.rows, req.cols, strict=True)]).astype(np.float32)


@pytest.mark.parametrize("nodata", [False, True])
def test_pre_read_first_round_gives_the_same_patches(scene, nodata):
    cube, _ = scene
    arr = cube.copy()
    if nodata:  # rejections: later rounds are drawn and read as before
        arr[:, :, : COLS // 2] = np.nan
    req = first_round(ROWS, COLS, 10, 30, seed=4)
    assert (req.height, req.width) == (10, 10) and req.rows.size == 30
    first = _cut(arr, req)
    a = sample_patches(as_cube(arr, 16), 10, 30, seed=4, first=first)
    b = sample_patches(as_cube(arr, 16), 10, 30, seed=4)
    np.testing.assert_array_equal(a, b)
    # the first round is taken from `first`, not read again
    marked = first + 1000.0
    c = sample_patches(as_cube(arr, 16), 10, 30, seed=4, first=marked)
    good = np.isfinite(first).all(axis=1).mean(axis=(1, 2)) >= 0.9
    np.testing.assert_array_equal(c[:good.sum()], marked[good])
    with pytest.raises(ConfigError, match="pre-read windows"):
        sample_patches(as_cube(arr, 16), 10, 30, seed=4, first=first[:3])


def fit_on_cpu_and_copy(name: str, scene, device: str):
    """A tiny ``name`` fitted on the CPU and the same weights on ``device``."""
    cube, E = scene
    cls = MODELS.get(name)
    cfg = tiny_config(cls, n_patches=6, patch_size=20, seed=1, precision="fp32")
    cpu = cls(cfg, device="cpu")
    c = as_cube(cube, 16)
    own = getattr(cpu, "training_sample", None)
    cpu.fit(own(c) if own else training_patches(c, cpu), E)
    dev = cls(cfg, device=device)
    dev.load_state(cpu.state())
    if hasattr(cpu, "fill_spectrum"):
        dev.fill_spectrum = cpu.fill_spectrum
    return cpu, dev


@pytest.mark.requires_cuda
@needs_cuda
@pytest.mark.parametrize("name", deep_model_names(("patches", "image")))
def test_spatial_models_on_cuda_give_the_cpu_maps_at_any_chunk_size(name, scene):
    cube, _ = scene
    cpu, dev = fit_on_cpu_and_copy(name, scene, "cuda:0")
    assert next(dev.network.parameters()).device.type == "cuda"
    ref = stacked(cpu, cube, 16)
    for chunk in (16, 40):
        np.testing.assert_allclose(stacked(dev, cube, chunk), ref, atol=1e-4)
