"""The pipeline presets in ``pipelines/``: they load, every value names something real, and
each runs end to end on a tiny fake of its sensor's product."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hsu_geo.batch import run_batch
from hsu_geo.config import UnmixOptions, load_preset
from hsu_geo.endmembers.extract import EXTRACTORS
from hsu_geo.errors import ConfigError
from hsu_geo.ingest import READERS
from hsu_geo.ingest.badbands import parse_band_selection
from hsu_geo.unmix import MODELS
from hsu_geo.unmix.base import make_config
from tests.ingest.fakes import write_enmap_l2a, write_envi
from tests.test_batch import GF5_A, mixture, write_gf5

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
REQUIRED = ("gf5_minerals", "aviris_ng_fcls", "enmap_landcover")


def test_the_required_presets_exist() -> None:
    assert {p.stem for p in PIPELINES.glob("*.yaml")} >= set(REQUIRED)


@pytest.mark.parametrize("path", sorted(PIPELINES.glob("*.yaml")), ids=lambda p: p.stem)
def test_preset_loads_and_validates(path: Path) -> None:
    opts = load_preset(path)
    assert isinstance(opts, UnmixOptions)
    model = MODELS.get(opts.model)  # ConfigError for an unknown model
    make_config(model.Config, opts.settings)  # unknown or mistyped settings raise
    assert opts.extractor.lower() in EXTRACTORS
    assert opts.sensor == "auto" or all(name.strip() in READERS
                                        for name in opts.sensor.split(","))
    assert opts.k == "auto" or int(opts.k) >= 2
    assert not (opts.endmembers and opts.library)
    wl = np.arange(350.0, 2520.0, 10.0)
    for spec in (opts.drop_bands, opts.keep_bands):
        if spec:
            parse_band_selection(spec, np.arange(1, wl.size + 1), wl)
    assert opts.scheduler is None  # where to run is a command-line choice, not a preset's


def test_preset_sensors_match_their_names() -> None:
    assert load_preset(PIPELINES / "gf5_minerals.yaml").sensor == "gf5"
    assert load_preset(PIPELINES / "aviris_ng_fcls.yaml").model == "fcls"
    # EnMAP comes as L2A products (enmap reader) and as GeoTIFFs (geotiff reader)
    assert load_preset(PIPELINES / "enmap_landcover.yaml").sensor == "enmap,geotiff"


def _run(preset: str, src: Path, out: Path, **changes: object) -> dict:
    opts = load_preset(PIPELINES / f"{preset}.yaml").updated(sample_size=2000, **changes)
    return run_batch(src, out, opts)


def test_aviris_ng_preset_runs_on_an_aviris_ng_flight_line(tmp_path: Path) -> None:
    Y, wl = mixture(bands=60)
    flight = "ang20190707t200215"
    (tmp_path / "in").mkdir()
    write_envi(tmp_path / "in" / f"{flight}_rfl_v2p5_img.hdr", Y, wavelengths=wl, ext="")
    write_envi(tmp_path / "in" / f"{flight}_obs_ort.hdr", Y[:10], ext="")  # no wavelengths
    record = _run("aviris_ng_fcls", tmp_path / "in", tmp_path / "out")
    status = {e["source"]: e["status"] for e in record["scenes"]}
    assert status == {f"{flight}_rfl_v2p5_img.hdr": "done", f"{flight}_obs_ort.hdr": "skipped"}


def test_enmap_preset_runs_on_an_enmap_product(tmp_path: Path) -> None:
    Y, wl = mixture(bands=60)
    zipped = write_enmap_l2a(tmp_path / "in", np.round(Y * 10_000).astype("int16"),
                             wavelengths=wl, zipped=True)
    shutil.rmtree(zipped.with_suffix(""))  # keep only the .ZIP, as DLR delivers it
    record = _run("enmap_landcover", tmp_path / "in", tmp_path / "out")
    assert record["summary"]["done"] == 1, record["scenes"]
    assert len(record["scenes"][0]["endmembers"]) == 6  # k: 6 land-cover endmembers


def test_gf5_preset_runs_on_a_gf5_delivery(tmp_path: Path) -> None:
    write_gf5(tmp_path / "in", GF5_A, archive="tar")
    fast = {"epochs": "1", "min_steps": "0", "synthetic_pretrain": "false",
            "pretrain_steps": "5"}  # CResDAE
    record = _run("gf5_minerals", tmp_path / "in", tmp_path / "out", settings=fast)
    assert record["summary"]["done"] == 1, record["scenes"]
    assert record["scenes"][0]["model"] == "cresdae"


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: fcls\nendmember_count: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) endmember_count; valid keys: "):
        load_preset(bad)
    bad.write_text("- model\n- fcls\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_preset(bad)
