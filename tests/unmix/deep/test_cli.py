"""Deep models through ``hsu-geo``: the model listing, --set, --device, progress bars,
--save-model / --load-model, and a third-party model added through the entry-point group."""

from __future__ import annotations

import json
import textwrap
from importlib.metadata import entry_points

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.registry import Registry
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.deep import DeepUnmixer
from tests.unmix.deep import tiny_settings
from tests.unmix.scenes import linear_scene, write_scene


def tiny_sets(name: str) -> list[str]:
    """``--set key=value`` arguments that make ``name`` train in well under a second."""
    return [
        arg
        for key, value in tiny_settings(MODELS.get(name)).items()
        for arg in ("--set", f"{key}={value}")
    ]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("Error:") and "Traceback" not in result.stderr
    return lines[-1]


@pytest.fixture
def scene(tmp_path):
    cube, _, _, wl = linear_scene(rows=12, cols=10, k=3, seed=4)
    return write_scene(tmp_path / "tiny.tif", cube, wl)


def test_models_lists_every_deep_model_with_doi_input_and_defaults():
    res = invoke("models", "--json")
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["cresdae"]["doi"] == "10.3390/rs17213622"
    assert rows["cresdae"]["defaults"]["lr_decoder"] == 1e-5
    assert rows["cresdae"]["defaults"]["batch_size"] == 1024
    for name in ("cresdae", "nae", "linear_ae"):
        assert rows[name]["input"] == "pixels" and rows[name]["doi"]
    text = invoke("models").stdout
    assert "cresdae" in text and "gamma_uniform = 0.4" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--set", "learning_rate=1e-3"), "valid keys: "),
        (("--set", "epochs=forty"), "expected int"),
        (("--set", "decoder_skip=maybe"), "expected bool"),
        (("--set", "abundance=sigmoid"), "softmax, absnorm"),
    ],
)
def test_bad_settings_are_one_line_errors(scene, tmp_path, args, needle):
    msg = error_line(invoke("unmix", scene, "-m", "cresdae", "-o", tmp_path / "o", "-q", *args))
    assert needle in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda_names_the_alternatives(scene, tmp_path):
    msg = error_line(
        invoke("unmix", scene, "-m", "cresdae", "--device", "cuda", "-o", tmp_path / "o", "-q")
    )
    assert "--device auto" in msg and "cpu" in msg


def test_progress_bar_on_stderr_and_silenced_by_quiet(scene, tmp_path):
    res = invoke(
        "unmix", scene, "-m", "cresdae", "-k", "3", "-o", tmp_path / "a", *tiny_sets("cresdae"),
        "--set", "decoder_init=pretrain",  # the optional NAE-style stage, to see its label too
    )
    assert res.exit_code == 0, res.output
    err = res.stderr
    for label in ("pretraining decoder", "synthetic pretrain", "fine-tuning"):
        assert f"[hsu-geo] {label}: " in err
    # stderr is not a terminal here: one line per training stage, no bar redrawn with \r
    assert "[hsu-geo] fine-tuning: 2 epochs, loss " in err and "\r" not in err
    quiet = invoke(
        "unmix",
        scene,
        "-m",
        "cresdae",
        "-k",
        "3",
        "-o",
        tmp_path / "b",
        "-q",
        *tiny_sets("cresdae"),
    )
    assert quiet.exit_code == 0 and "loss" not in quiet.stderr


def test_save_then_load_model_reproduces_the_abundances(scene, tmp_path):
    model = tmp_path / "nae.pt"
    res = invoke(
        "unmix",
        scene,
        "-m",
        "nae",
        "-k",
        "3",
        "-o",
        tmp_path / "train",
        "-q",
        "--save-model",
        model,
        *tiny_sets("nae"),
    )
    assert res.exit_code == 0, res.output
    assert model.is_file()
    again = invoke(
        "unmix", scene, "-m", "nae", "-k", "3", "-o", tmp_path / "x", "-q", "--save-model", model
    )
    assert "--overwrite" in error_line(again)

    res = invoke("unmix", scene, "--load-model", model, "-o", tmp_path / "apply", "-q")
    assert res.exit_code == 0, res.output
    with (
        rasterio.open(tmp_path / "train" / "tiny_nae_abundance.tif") as a,
        rasterio.open(tmp_path / "apply" / "tiny_nae_abundance.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.descriptions == b.descriptions
    record = json.loads((tmp_path / "apply" / "tiny_nae_run.json").read_text())
    assert "load_model" in record["timings_s"] and "fit" not in record["timings_s"]
    assert record["extra"]["model_checkpoint"]["loaded"] == str(model)


def test_load_model_refusals(scene, tmp_path):
    model = tmp_path / "lae.pt"
    assert (
        invoke(
            "unmix",
            scene,
            "-m",
            "linear_ae",
            "-k",
            "3",
            "-o",
            tmp_path / "t",
            "-q",
            "--save-model",
            model,
            "--set",
            "epochs=1",
        ).exit_code
        == 0
    )
    cube, _, _, wl = linear_scene(rows=12, cols=10, k=3, wl=np.arange(400.0, 2401.0, 25.0))
    other = write_scene(tmp_path / "other.tif", cube, wl)
    out = tmp_path / "o"
    msg = error_line(invoke("unmix", other, "--load-model", model, "-o", out, "-q"))
    assert "needs a band at" in msg and "refit the model" in msg
    msg = error_line(invoke("unmix", scene, "--load-model", model, "-m", "cresdae", "-o", out))
    assert "linear_ae" in msg and "-m" in msg
    msg = error_line(invoke("unmix", scene, "--load-model", model, "--set", "epochs=3", "-o", out))
    assert "--set" in msg
    msg = error_line(invoke("unmix", scene, "--load-model", tmp_path / "none.pt", "-o", out))
    assert "none.pt" in msg
    msg = error_line(
        invoke("unmix", scene, "-m", "fcls", "--save-model", tmp_path / "f.pt", "-o", out)
    )
    assert "deep model" in msg
    assert not out.exists() or not any(out.iterdir())


PLUGIN = """
from dataclasses import dataclass

import torch
from torch import nn

from hsu_geo.unmix.deep import DeepConfig, DeepUnmixer
from hsu_geo.unmix.deep.losses import mse_sum


@dataclass(frozen=True)
class TinyConfig(DeepConfig):
    epochs: int = 2
    batch_size: int = 32
    hidden: int = 8


class TinyNet(nn.Module):
    def __init__(self, bands, k, hidden):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(bands, hidden), nn.ReLU(), nn.Linear(hidden, k))
        self.linear = nn.Linear(k, bands, bias=False)

    def encode(self, x):
        return torch.softmax(self.encoder(x), dim=1)

    def decode(self, a):
        return self.linear(a)

    def endmember_weight(self):
        return self.linear.weight


class TinyUnmixer(DeepUnmixer):
    name = "tiny_plugin"
    description = "A third-party test model"
    doi = "10.0000/tiny"
    Config = TinyConfig

    def build_network(self, n_bands, k):
        return TinyNet(n_bands, k, self.config.hidden)

    def _fit_stages(self, net, X, M0):
        with torch.no_grad():
            net.linear.weight.copy_(torch.from_numpy(M0.T).float())
        groups = [{"params": list(net.parameters()), "lr": 1e-3, "name": "all"}]
        self.run_stage("train", net, X, lambda xb: (mse_sum(net.decode(net.encode(xb)), xb), {}),
                       groups, self.train_settings(self.config.epochs, self.config.batch_size))
"""


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """A fake installed distribution declaring ``tiny_plugin`` in ``hsu_geo.models``."""
    site = tmp_path / "site"
    (site / "fake_hsu_plugin").mkdir(parents=True)
    (site / "fake_hsu_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "fake_hsu_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-hsu-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[hsu_geo.models]\ntiny_plugin = fake_hsu_plugin:TinyUnmixer\n"
    )
    monkeypatch.syspath_prepend(str(site))
    # let the shared registry discover entry points again, and restore it afterwards
    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))
    monkeypatch.setattr(MODELS, "_loaders", dict(MODELS._loaders))
    monkeypatch.setattr(MODELS, "_entry_points_loaded", False)
    return site


def test_a_third_party_model_plugs_in_through_the_entry_point(fake_distribution, scene, tmp_path):
    assert "tiny_plugin" in {ep.name for ep in entry_points(group="hsu_geo.models")}
    fresh = Registry("model", group="hsu_geo.models")
    cls = fresh.get("tiny_plugin")
    assert issubclass(cls, DeepUnmixer) and cls.doi == "10.0000/tiny"

    rows = {r["name"]: r for r in json.loads(invoke("models", "--json").stdout)}
    assert rows["tiny_plugin"]["defaults"]["hidden"] == 8
    assert "cresdae" in rows  # built-ins still there

    res = invoke(
        "unmix",
        scene,
        "-m",
        "tiny_plugin",
        "-k",
        "3",
        "-o",
        tmp_path / "out",
        "-q",
        "--set",
        "hidden=4",
        "--save-model",
        tmp_path / "tiny.pt",
    )
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "out" / "tiny_tiny_plugin_abundance.tif") as ds:
        A = ds.read()
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-5)
    res = invoke("unmix", scene, "--load-model", tmp_path / "tiny.pt", "-o", tmp_path / "ld", "-q")
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_distributed_workers_rebuild_the_model_from_its_state_dict(tmp_path):
    """Worker processes get the pickled state dict (about 15 s: LocalCluster start-up)."""
    cube, _, _, wl = linear_scene(rows=24, cols=20, k=3, seed=4)
    scene = write_scene(tmp_path / "tiny.tif", cube, wl)
    common = ["-m", "cresdae", "-k", "3", "-q", "--chunk-size", "16", *tiny_sets("cresdae")]
    assert invoke("unmix", scene, "-o", tmp_path / "threads", *common).exit_code == 0
    res = invoke("unmix", scene, "-o", tmp_path / "cluster", "--scheduler", "local:2", *common)
    assert res.exit_code == 0, res.output
    with (
        rasterio.open(tmp_path / "threads" / "tiny_cresdae_abundance.tif") as a,
        rasterio.open(tmp_path / "cluster" / "tiny_cresdae_abundance.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(), b.read())
