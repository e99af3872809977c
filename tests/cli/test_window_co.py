"""`hsu-geo unmix --window/--bounds/--co`: a georeferenced subset, GDAL creation options."""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.config import options_from_mapping
from hsu_geo.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "minerals_aviris_like.tif"


def _abundance(out: Path) -> Path:
    return next(out.glob("*_abundance.tif"))


def test_window_and_creation_options_reach_the_cog(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["unmix", str(SAMPLE), "-m", "fcls", "-k", "3", "-q",
                                   "--window", "10,20,40,30", "--co", "COMPRESS=DEFLATE",
                                   "--co", "level=6", "-o", str(out)])
    assert res.exit_code == 0, res.output
    with rasterio.open(SAMPLE) as src, rasterio.open(_abundance(out)) as dst:
        assert (dst.height, dst.width) == (30, 40)
        assert dst.transform == src.transform @ Affine.translation(10, 20)
        assert dst.crs == src.crs
        assert dst.compression.name == "deflate"


def test_bounds_give_the_same_pixels_as_the_window(tmp_path: Path) -> None:
    with rasterio.open(SAMPLE) as src:
        t = src.transform
    left, top = t @ (10, 20)
    right, bottom = t @ (50, 50)
    out = tmp_path / "b"
    res = CliRunner().invoke(cli, ["unmix", str(SAMPLE), "-m", "fcls", "-k", "3", "-q",
                                   "--bounds", f"{left},{bottom},{right},{top}",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    with rasterio.open(_abundance(out)) as dst:
        assert (dst.height, dst.width) == (30, 40)
        assert dst.transform == t @ Affine.translation(10, 20)


@pytest.mark.parametrize("args", [["--window", "1,2,3"], ["--bounds", "5,0,1,1"],
                                  ["--co", "NOPE=1"], ["--co", "TARGET_SRS=EPSG:4326"],
                                  ["--co", "COMPRESS"]])
def test_bad_values_are_usage_errors_before_any_output(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "x"
    res = CliRunner().invoke(cli, ["unmix", str(SAMPLE), "-k", "3", "-o", str(out), *args])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert not out.exists()


def test_preset_creation_options_are_checked() -> None:
    opts = options_from_mapping({"creation_options": ["compress=lzw"]}, "p.yaml")
    assert opts.creation_options == ("COMPRESS=lzw",)
    with pytest.raises(ConfigError, match=r"p\.yaml: creation_options"):
        options_from_mapping({"creation_options": ["EXTENT=1,2,3,4"]}, "p.yaml")
