"""Every registered deep model: 2-epoch CPU smoke test, seeding, pickling, bad input, and a
full ``run_unmix`` on a tiny GeoTIFF (parametrised over the registry)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import rasterio
import torch

from hsu_geo.config import UnmixOptions
from hsu_geo.errors import InvalidSceneError
from hsu_geo.pipeline import run_unmix
from hsu_geo.unmix import MODELS
from tests.unmix.deep import (
    deep_model_names,
    mixtures,
    needs_cuda,
    tiny_config,
    tiny_settings,
)
from tests.unmix.scenes import TRANSFORM, linear_scene, write_scene

MODELS_UNDER_TEST = deep_model_names()


def fitted(name: str, Y: np.ndarray, M: np.ndarray, device: str = "cpu", **overrides):
    cls = MODELS.get(name)
    model = cls(tiny_config(cls, **overrides), device=device)
    model.fit(Y, M)
    return model


def test_the_paper_models_are_registered():
    assert {"cresdae", "nae", "linear_ae"} <= set(MODELS_UNDER_TEST)
    for name in MODELS_UNDER_TEST:
        cls = MODELS.get(name)
        assert cls.doi and cls.input == "pixels" and cls.description
    spatial = set(deep_model_names(("patches", "image")))
    assert "cnnaeu" in spatial and not spatial & set(MODELS_UNDER_TEST)
    for name in spatial:  # tests/unmix/deep/test_cnnaeu.py and tests/unmix/test_spatial.py
        cls = MODELS.get(name)
        assert cls.doi and cls.description and cls.halo > 0


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_smoke_shapes_constraints_and_endmembers(name):
    Y, M, _ = mixtures()
    model = fitted(name, Y, M)
    A = model.abundances(Y)
    assert A.shape == (400, 3) and A.dtype == np.float32
    assert (A >= 0).all()
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-5)
    R = model.reconstruct(A)
    assert R.shape == Y.shape and R.dtype == np.float32 and np.isfinite(R).all()
    E = model.endmembers
    assert E.shape == (3, 40) and E.dtype == np.float32 and np.isfinite(E).all()
    # read out of the linear decoder, in the units of Y
    W = model.network.endmember_weight().detach().numpy().T * model.scale
    np.testing.assert_allclose(E, W, rtol=1e-6)
    info = model.fit_info
    json.dumps(info)  # goes into run.json
    assert info["training_pixels"] == 400 and info["stages"]
    for stage in info["stages"].values():
        assert stage["seconds"] >= 0 and stage["pixels"] > 0
        assert np.isfinite(stage["final_loss"])
        assert len(stage["loss_history"]) == stage["epochs_run"]


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_same_seed_gives_identical_results(name):
    Y, M, _ = mixtures()
    a = fitted(name, Y, M, seed=3)
    b = fitted(name, Y, M, seed=3)
    c = fitted(name, Y, M, seed=4)
    np.testing.assert_array_equal(a.abundances(Y), b.abundances(Y))
    np.testing.assert_array_equal(a.endmembers, b.endmembers)
    assert not np.array_equal(a.abundances(Y), c.abundances(Y))


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_pickling_ships_a_state_dict_and_rebuilds_the_network(name):
    Y, M, _ = mixtures()
    model = fitted(name, Y, M)
    state = model.__getstate__()
    assert "network" not in state and "progress" not in state
    assert all(
        isinstance(v, torch.Tensor) and v.device.type == "cpu"
        for v in state["_state"]["state_dict"].values()
    )
    clone = pickle.loads(pickle.dumps(model))
    assert clone.network is not model.network
    np.testing.assert_array_equal(clone.abundances(Y), model.abundances(Y))
    np.testing.assert_array_equal(
        clone.reconstruct(clone.abundances(Y[:5])), model.reconstruct(model.abundances(Y[:5]))
    )


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_nan_pixels_are_excluded_not_trained_on(name):
    Y, M, _ = mixtures()
    dirty = Y.copy()
    dirty[[3, 50, 51], 7] = np.nan
    dirty[99, :] = np.inf
    clean = np.delete(Y, [3, 50, 51, 99], axis=0)
    a, b = fitted(name, dirty, M), fitted(name, clean, M)
    assert a.fit_info["nonfinite_pixels_dropped"] == 4
    assert a.fit_info["training_pixels"] == 396
    np.testing.assert_array_equal(a.abundances(clean), b.abundances(clean))


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_fewer_pixels_than_a_batch_still_trains(name):
    Y, M, _ = mixtures(n=9)
    model = fitted(name, Y, M, batch_size=1024, pretrain_pixels=1024)
    assert model.abundances(Y).shape == (9, 3)
    stages = model.fit_info["stages"]
    assert all(s["batch_size"] <= 9 for k, s in stages.items() if k != "synthetic_pretrain")


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_bad_input_is_a_clear_error(name):
    Y, M, _ = mixtures(n=20)
    cls = MODELS.get(name)
    with pytest.raises(InvalidSceneError, match="not fitted"):
        cls(tiny_config(cls)).abundances(Y)
    bad = np.full_like(Y, np.nan)
    bad[0] = Y[0]
    with pytest.raises(InvalidSceneError, match="valid"):
        cls(tiny_config(cls)).fit(bad, M)
    model = fitted(name, Y, M)
    with pytest.raises(InvalidSceneError, match="band"):
        model.abundances(Y[:, :30])


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_run_unmix_on_a_tiny_geotiff_keeps_grid_and_crs(name, tmp_path):
    cube, _, _, wl = linear_scene(rows=12, cols=10, k=3, seed=2)
    cube[:, 4, 4] = np.nan
    scene = write_scene(tmp_path / "tiny.tif", cube, wl)
    cls = MODELS.get(name)
    opts = UnmixOptions(model=name, k="3", device="cpu", settings=tiny_settings(cls), seed=5)
    result = run_unmix(scene, tmp_path / "out", opts)
    out = result["outputs"]
    with rasterio.open(out["abundance"]) as ds, rasterio.open(scene) as src:
        assert ds.crs == src.crs and ds.transform == src.transform == TRANSFORM
        assert ds.count == 3 and (ds.height, ds.width) == (12, 10)
        A = ds.read()
    assert np.isnan(A[:, 4, 4]).all()
    valid = np.isfinite(A).all(axis=0)
    assert valid.sum() == 12 * 10 - 1
    assert (A[:, valid] >= 0).all()
    np.testing.assert_allclose(A[:, valid].sum(axis=0), 1.0, atol=1e-5)
    record = json.loads(out["run"].read_text())
    text = json.dumps(record)
    assert "finetune" in text or "train" in text
    assert record["config"]["model_config"]["seed"] == 5  # --seed reaches the model


@pytest.mark.requires_cuda
@needs_cuda
@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_cuda_fit_inference_and_pickle(name):
    Y, M, _ = mixtures()
    model = fitted(name, Y, M, device="cuda:0")
    assert next(model.network.parameters()).device.type == "cuda"
    A = model.abundances(Y)
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-5)
    clone = pickle.loads(pickle.dumps(model))
    assert next(clone.network.parameters()).device.type == "cuda"
    np.testing.assert_allclose(clone.abundances(Y), A, atol=1e-6)
