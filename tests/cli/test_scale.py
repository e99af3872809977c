"""``--scale`` (reflectance = stored x factor) and the implausible-reflectance-range warning in
``hsu-geo info`` and ``hsu-geo unmix``; the preset key ``scale``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.config import load_preset, options_from_mapping
from hsu_geo.cube import take_bands
from hsu_geo.errors import ConfigError
from hsu_geo.ingest import open_scene
from hsu_geo.ingest.scale import range_record, reflectance_level, suggested_scale
from tests.unmix.scenes import MINERALS, linear_scene, write_scene

LIBRARY = "usgs:" + ",".join(MINERALS[:3])


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def scenes(tmp_path):
    """The same 3-mineral mixture stored as 0-1 reflectance and x10000 (no scale factor)."""
    cube, _, A, wl = linear_scene(rows=16, cols=12, k=3, seed=4)
    unit = write_scene(tmp_path / "unit.tif", cube, wl)
    big = write_scene(tmp_path / "x10000.tif", np.round(cube * 10000), wl)
    return unit, big, A


def test_info_flags_x10000_and_scale_fixes_it(scenes):
    _, big, _ = scenes
    res = invoke("info", big, "--json")
    rng = json.loads(res.stdout)["value_range"]
    assert rng["plausible"] is False and rng["suggested_scale"] == pytest.approx(1e-4)
    assert "--scale 0.0001" in rng["warning"]
    text = invoke("info", big).stdout
    assert "IMPLAUSIBLE" in text and "--scale 0.0001" in text
    fixed = json.loads(invoke("info", big, "--scale", "0.0001", "--json").stdout)
    assert fixed["value_range"]["plausible"] is True and fixed["value_range"]["warning"] is None
    assert fixed["scale_factor"] == pytest.approx(10000)
    assert "--scale 0.0001" in fixed["calibration"]


def test_scaled_values_equal_the_unit_scene_and_band_reads_still_reach_the_file(scenes):
    unit, big, _ = scenes
    a = open_scene(unit)
    b = open_scene(big, scale=1e-4)
    np.testing.assert_allclose(b.values, a.values, atol=1e-4)
    sub = take_bands(b, [2, 40])
    assert sub.data.name.startswith("read-")  # the selection is pushed into the file read
    np.testing.assert_allclose(sub.values, a.values[[2, 40]], atol=1e-4)


def test_scale_replaces_a_header_factor(tmp_path):
    cube, _, _, wl = linear_scene(rows=10, cols=8, k=3, seed=1)
    path = write_scene(tmp_path / "tagged.tif", np.round(cube * 10000), wl)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(reflectance_scale_factor="10000")
    plain = open_scene(path)
    assert plain.attrs["scale_factor"] == 10000
    again = open_scene(path, scale=1e-4)  # same result: replaces, does not divide twice
    np.testing.assert_allclose(again.values, plain.values, rtol=1e-6)
    percent = open_scene(path, scale=0.01)
    np.testing.assert_allclose(percent.values, plain.values * 100, rtol=1e-5)


def test_unmix_warns_without_scale_and_matches_truth_with_it(scenes, tmp_path, caplog):
    _, big, A = scenes
    with caplog.at_level(logging.WARNING):
        res = invoke("unmix", big, "--library", LIBRARY, "--set", "brightness=none",
                     "-o", tmp_path / "refused")
    assert res.exit_code == 1 and "--scale 0.0001" in res.stderr.strip().splitlines()[-1]
    assert any("too large for 0-1 reflectance" in r.getMessage() for r in caplog.records)
    res = invoke("unmix", big, "--library", LIBRARY, "--set", "brightness=none",
                 "--scale", "0.0001", "-o", tmp_path / "s", "-q")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "s" / "x10000_fcls_abundance.tif") as src:
        got = src.read()
    assert np.max(np.abs(got - A)) < 0.02
    with rasterio.open(tmp_path / "s" / "x10000_fcls_rmse.tif") as src:
        assert np.nanmedian(src.read(1)) < 1e-3  # reflectance units, not x10000
    record = json.loads((tmp_path / "s" / "x10000_fcls_run.json").read_text())
    assert record["config"]["options"]["scale"] == pytest.approx(1e-4)
    assert record["extra"]["fit"]["reflectance_range"]["plausible"] is True


def test_extracted_endmembers_record_the_range_warning(scenes, tmp_path):
    _, big, _ = scenes
    res = invoke("unmix", big, "-k", "3", "--extractor", "vca", "-o", tmp_path / "w", "-q")
    assert res.exit_code == 0, res.output
    fit = json.loads((tmp_path / "w" / "x10000_fcls_run.json").read_text())["extra"]["fit"]
    assert any("--scale 0.0001" in w for w in fit["warnings"])
    assert fit["reflectance_range"]["level"] > 1000


def test_level_and_thresholds():
    rng = np.random.default_rng(0)
    refl = rng.uniform(0.02, 0.6, (500, 50))
    refl[:5] = 40.0  # a few saturated pixels or spiky bands do not move the level
    assert reflectance_level(refl) < 0.6
    assert suggested_scale(reflectance_level(refl)) is None
    assert suggested_scale(reflectance_level(refl * 100)) == 0.01
    assert suggested_scale(reflectance_level(refl * 10000)) == 1e-4

    radiance = xr.DataArray(0.0, attrs={"quantity": "radiance", "product_id": "r"})
    assert range_record(refl * 10000, radiance)["warning"] is None  # radiance is not judged
    twice = xr.DataArray(0.0, attrs={"quantity": "reflectance", "product_id": "r",
                                     "user_scale": 1e-4})
    assert "scaled twice" in range_record(refl * 1e-4, twice)["warning"]


def test_preset_and_flag_validation(tmp_path):
    assert options_from_mapping({"scale": "1e-4"}, "p").scale == pytest.approx(1e-4)
    assert options_from_mapping({"scale": 0.01}, "p").scale == 0.01
    for bad in (0, -1, "abc", True, [1]):
        with pytest.raises(ConfigError, match="scale"):
            options_from_mapping({"scale": bad}, "p")
    preset = tmp_path / "p.yaml"
    preset.write_text("model: fcls\nscale: 0.0001\n")
    assert load_preset(preset).scale == pytest.approx(1e-4)
    res = CliRunner().invoke(cli, ["info", "x.tif", "--scale", "nan"])
    assert res.exit_code == 2 and "--scale" in res.stderr
