"""What a dask worker does with a deep model it receives: one network build per process and
device (cached across tasks), ``--device auto`` resolved on the worker, a clear error for
``--device cuda`` on a worker without CUDA; and ``--set precision``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hsu_geo.errors import ConfigError, DeviceError
from hsu_geo.unmix.deep import base as deep_base
from hsu_geo.unmix.deep.cnnaeu import CNNAEUConfig, CNNAEUUnmixer
from hsu_geo.unmix.deep.linear_ae import LinearAEConfig, LinearAEUnmixer
from hsu_geo.unmix.spatial import sample_patches
from tests.unmix.scenes import linear_scene

WL = np.arange(400.0, 2401.0, 50.0)


@pytest.fixture(scope="module")
def fitted() -> tuple[LinearAEUnmixer, np.ndarray]:
    cube, E, _, _ = linear_scene(rows=12, cols=10, k=3, seed=1, wl=WL)
    Y = cube.reshape(cube.shape[0], -1).T
    model = LinearAEUnmixer(LinearAEConfig(epochs=1, seed=0))
    model.fit(Y, E)
    return model, Y


def test_tasks_after_the_first_reuse_the_built_network(fitted) -> None:
    model, Y = fitted
    blob = pickle.dumps(model)  # what every dask task carries
    builds = deep_base.NETWORK_BUILDS["count"]
    first, second = pickle.loads(blob), pickle.loads(blob)
    assert deep_base.NETWORK_BUILDS["count"] == builds + 1
    assert second.network is first.network and first.network is not model.network
    np.testing.assert_array_equal(second.abundances(Y), model.abundances(Y))
    other = LinearAEUnmixer(LinearAEConfig(epochs=1, seed=1))  # other weights: own network
    other.fit(Y, model.endmembers)
    assert pickle.loads(pickle.dumps(other)).network is not first.network


def test_device_auto_is_resolved_on_the_worker(fitted, monkeypatch) -> None:
    model, _ = fitted
    model.device_request = "auto"
    calls = []

    def fake_resolve(spec: str = "auto") -> str:
        calls.append(spec)
        return "cpu"

    monkeypatch.setattr("hsu_geo.unmix.device.resolve_device", fake_resolve)
    worker_copy = pickle.loads(pickle.dumps(model))
    assert calls == ["auto"] and worker_copy.device == "cpu"
    model.device_request = model.device


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_explicit_cuda_on_a_worker_without_cuda_is_a_clear_error(fitted) -> None:
    model, _ = fitted
    clone = pickle.loads(pickle.dumps(model))
    clone.device = clone.device_request = "cuda:0"
    clone.token = "other-weights"  # not in this process's cache
    with pytest.raises(DeviceError, match="no CUDA device is available here"):
        pickle.loads(pickle.dumps(clone))


def test_precision_setting() -> None:
    with pytest.raises(ConfigError, match="precision='fp16'"):
        LinearAEConfig(precision="fp16")
    cube, E, _, _ = linear_scene(rows=30, cols=28, k=3, seed=5, wl=WL)
    P = sample_patches(cube, 18, 4, seed=0)
    model = CNNAEUUnmixer(CNNAEUConfig(epochs=1, n_patches=4, patch_size=18, seed=0))
    model.fit(P, E)
    block = np.ascontiguousarray(cube[:, :20, :20], dtype=np.float32)
    A32, rmse32 = model.abundances_image(block)
    model.config = CNNAEUConfig(epochs=1, n_patches=4, patch_size=18, precision="bf16")
    A16, rmse16 = model.abundances_image(block)
    assert A16.dtype == np.float32 and A16.shape == A32.shape
    assert np.abs(A16 - A32).max() < 0.05  # bfloat16: ~3 significant digits
    assert not np.array_equal(A16, A32)  # the setting is applied
    np.testing.assert_allclose(rmse16, rmse32, rtol=0.1, atol=1e-3)
