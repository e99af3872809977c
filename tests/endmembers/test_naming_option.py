"""`--naming features|sam` (and the preset key `naming`) choose how extracted endmembers are
named; both name the bundled sample scene's USGS minerals right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.config import options_from_mapping
from hsu_geo.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "minerals_aviris_like.tif"
TRUTH = {"alunite", "kaolinite", "muscovite", "calcite", "hematite"}


@pytest.mark.parametrize("naming", ["features", "sam"])
def test_both_namings_name_the_sample_minerals(tmp_path: Path, naming: str) -> None:
    res = CliRunner().invoke(cli, ["unmix", str(SAMPLE), "-k", "5", "-q", "--json",
                                   "--naming", naming, "-o", str(tmp_path / naming)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert {e["name"] for e in summary["endmembers"]} == TRUTH
    run = json.loads(next((tmp_path / naming).glob("*_run.json")).read_text())
    assert run["config"]["options"]["naming"] == naming
    evidence = run["extra"]["endmember_naming"]
    assert (evidence is not None and evidence[0].get("decision")) if naming == "features" \
        else all(set(e) == {"name"} for e in evidence)


def test_preset_naming_is_checked() -> None:
    assert options_from_mapping({"naming": "SAM"}, "p.yaml").naming == "sam"
    with pytest.raises(ConfigError, match="choose features or sam"):
        options_from_mapping({"naming": "tetracorder"}, "p.yaml")
