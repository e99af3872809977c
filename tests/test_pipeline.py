"""``hsu_geo.pipeline``: a patch model's first-round training windows come from the scene's one
scan (on the kept bands), and fitting uses them; pixel models and models with their own
training sample get none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hsu_geo.config import UnmixOptions
from hsu_geo.pipeline import _same_windows, fit_model, prepare_scene
from hsu_geo.unmix.spatial import first_round, training_patches
from tests.unmix.scenes import linear_scene, write_scene

WL = np.arange(400.0, 2401.0, 50.0)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    cube, _, _, wl = linear_scene(rows=34, cols=30, k=3, seed=2, wl=WL)
    cube[3] = np.nan  # an empty band: dropped, so the kept bands differ from the file's
    return write_scene(tmp_path_factory.mktemp("pipe") / "scene.tif", cube, wl)


def test_patch_models_get_their_first_windows_from_the_scan(scene):
    opts = UnmixOptions(model="cnnaeu", k="3", settings={"n_patches": "6", "patch_size": "16",
                                                         "epochs": "1"}, seed=7, chunk_size=16)
    prepared = prepare_scene(scene, opts, model="cnnaeu")
    cube = prepared.cube.values
    assert cube.shape[0] < len(WL) and 550.0 not in prepared.cube["wavelength"].values
    req = first_round(34, 30, 16, 6, seed=7)
    expected = np.stack([cube[:, r:r + 16, c:c + 16] for r, c in zip(req.rows, req.cols,
                                                                     strict=True)])
    np.testing.assert_array_equal(prepared.first_patches, expected)
    fitted = fit_model(prepared, opts)
    assert _same_windows(prepared.first_request, fitted.unmixer.config, prepared.cube)
    np.testing.assert_array_equal(
        training_patches(prepared.cube, fitted.unmixer, prepared.first_patches),
        training_patches(prepared.cube, fitted.unmixer))


@pytest.mark.parametrize("model", ["fcls", "dffn", "linear_ae"])
def test_other_models_get_no_windows(scene, model):
    prepared = prepare_scene(scene, UnmixOptions(model=model, k="3"), model=model)
    assert prepared.first_patches is None and prepared.first_request is None
