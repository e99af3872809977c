"""ConvAE (the CResDAE paper's convolutional comparator = CNNAEU at the code's 320 epochs,
baselines.md §D2): its own registry entry and defaults, and ``hsu-geo unmix -m convae`` end to
end (outputs named after it, its checkpoint rebuilds a ConvAE, the maps do not depend on
``--chunk-size``, a scene smaller than the receptive field is one line)."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep.checkpoint import read_checkpoint
from hsu_geo.unmix.deep.cnnaeu import CNNAEUConfig, CNNAEUUnmixer
from hsu_geo.unmix.deep.convae import ConvAEConfig, ConvAEUnmixer
from tests.unmix.deep.cli_checks import (
    check_reload_gives_the_same_maps,
    check_usual_outputs,
    one_line_error,
    unmix_and_save,
)
from tests.unmix.scenes import linear_scene, write_scene

WL = np.arange(400.0, 2401.0, 50.0)  # 41 bands


def test_registered_under_its_own_name_with_the_code_budget():
    cls = MODELS.get("convae")
    assert cls is ConvAEUnmixer and issubclass(cls, CNNAEUUnmixer)
    assert cls.name == "convae" and cls.input == "patches" and cls.halo == 7
    conv, cnn = asdict(ConvAEConfig()), asdict(CNNAEUConfig())
    assert conv.pop("epochs") == 320 and cnn.pop("epochs") == 40
    assert conv == cnn  # everything but the budget is CNNAEU's


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("convae_cli")
    return tmp, unmix_and_save(tmp, "convae", ["epochs=2", "n_patches=8"], WL)


def test_cli_unmix_writes_convae_outputs(cli_run):
    tmp, scene = cli_run
    record = check_usual_outputs(tmp, scene, "convae", shape=(26, 22))
    assert record["model"] == "convae"
    assert record["config"]["model_config"]["epochs"] == 2  # the --set override, recorded
    assert '"halo": 7' in json.dumps(record)
    rebuilt = read_checkpoint(tmp / "m.pt").build("cpu")
    assert isinstance(rebuilt, ConvAEUnmixer) and rebuilt.config.epochs == 2


def test_cli_load_model_at_another_chunk_size_gives_the_same_maps(cli_run):
    check_reload_gives_the_same_maps(*cli_run, "convae")


def test_cli_scene_smaller_than_the_receptive_field_is_one_line(tmp_path):
    cube, _, _, wl = linear_scene(rows=20, cols=12, k=3, seed=2, wl=WL)
    scene = write_scene(tmp_path / "small.tif", cube, wl)
    line = one_line_error(["unmix", str(scene), "-m", "convae", "-k", "3", "-o",
                           str(tmp_path / "o"), "-q"])
    assert "15 x 15" in line and "got 20 x 12" in line
