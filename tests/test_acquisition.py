"""Acquisition time from scene ids (issue 14): the STAC datetime of AVIRIS-NG, EMIT, EnMAP,
AVIRIS-Classic and GF-5 scenes is their acquisition, not the processing time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hsu_geo.acquisition import time_from_id
from hsu_geo.batch import run_batch
from hsu_geo.config import UnmixOptions
from hsu_geo.stac import _datetime


@pytest.mark.parametrize("name,expected", [
    ("ang20140912t192359", ("2014-09-12T19:23:59Z", True)),
    ("ang20140912t192359_corr_v1c_img_2580-2590_540-550.hdr", ("2014-09-12T19:23:59Z", True)),
    ("ANG20190707T200215_rfl_v2p5_img", ("2019-07-07T20:02:15Z", True)),
    ("emit20250324t221005_jpl_unmix_ex", ("2025-03-24T22:10:05Z", True)),
    ("EMIT_L2A_RFL_001_20230123T004529_2302216_001.nc", ("2023-01-23T00:45:29Z", True)),
    ("granules/EMIT_L2A_RFL_001_20230123T004529_2302216_001", ("2023-01-23T00:45:29Z", True)),
    ("ENMAP01-____L2A-DT0000001867_20220724T104526Z_001_V010110_20221118T153717Z",
     ("2022-07-24T10:45:26Z", True)),
    ("f130612t01p00r10", ("2013-06-12T00:00:00Z", False)),
    ("f080702t01p00r08rdn_c_sc01_ort_img_123_456", ("2008-07-02T00:00:00Z", False)),
    ("f970619t01p02_r02_sc03", None),  # not the fYYMMDDtNNpNNrNN run id
    ("f970619t01p02r02_sc03", ("1997-06-19T00:00:00Z", False)),
    ("GF5B_AHSI_E113.2_N36.3_20221208_006658_L10000252104", ("2022-12-08T00:00:00Z", False)),
    ("ZY1E_AHSI_E89.27_N38.38_20191028_000668_L1A0000007321", ("2019-10-28T00:00:00Z", False)),
    ("GF5_AHSI_W102.8_N32.3_20220424_003345_L10000118222", ("2022-04-24T00:00:00Z", False)),
])
def test_time_from_id_reads_the_naming_conventions(name: str, expected: object) -> None:
    assert time_from_id(name) == expected


@pytest.mark.parametrize("name", [
    "scene", "enmap_potsdam_tile_64_0", "orange20140912t192359",  # 'ang' inside a word
    "ang20141312t192359",  # month 13
    "ang20140931t192359",  # 31 September
    "ang20140912t256000",  # hour 25
    "ang2014091t192359", "emit_20250324", "cubus_gamsberg_subset",
])
def test_time_from_id_refuses_what_is_not_a_date(name: str) -> None:
    assert time_from_id(name) is None


def test_datetime_prefers_the_id_time_then_metadata_then_id_date() -> None:
    meta = {"product_id": "ang20140912t192359_corr", "acquisition_time": "2014-09-12T20:00:00"}
    assert _datetime(meta) == ("2014-09-12T19:23:59Z", "scene_id")
    # a date-only id gives way to the reader's time (GF-5: the XML has the time of day)
    meta = {"product_id": "GF5B_AHSI_E113.2_N36.3_20221208_006658_L10000252104",
            "acquisition_time": "2022-12-08T03:12:41"}
    assert _datetime(meta) == ("2022-12-08T03:12:41Z", "acquisition_time")
    assert _datetime({"product_id": "f130612t01p00r10rdn"}) == \
        ("2013-06-12T00:00:00Z", "scene_id_date")
    assert _datetime({"product_id": "x"}, ["emit20250324t221005_fcls_abundance.tif"]) == \
        ("2025-03-24T22:10:05Z", "scene_id")
    assert _datetime({"product_id": "x", "acquisition_date": "2022-12-08"}) == \
        ("2022-12-08T00:00:00Z", "acquisition_date")
    assert _datetime({"product_id": "x"})[1] == "processing"


def test_stac_items_of_real_aviris_ng_and_emit_scenes_carry_their_acquisition(
        shared_data: Path, tmp_path: Path) -> None:
    scenes = shared_data / "scenes"
    src = tmp_path / "in"
    src.mkdir()
    for f in ("aviris_ng_pycoal/ang20140912t192359_corr_v1c_img_2580-2590_540-550",
              "emit_unmix_ex/emit20250324t221005_jpl_unmix_ex"):
        for part in (scenes / f).parent.glob(Path(f).name + "*"):
            if not part.name.endswith(("_class.hdr", "_class.img")):
                shutil.copy(part, src / part.name)
    opts = UnmixOptions(k="3", extractor="vca", sample_size=100)
    record = run_batch(src, tmp_path / "out", opts)
    assert record["summary"]["done"] == 2, record["scenes"]
    found = {}
    for entry in record["scenes"]:
        item = json.loads((tmp_path / "out" / entry["scene_id"] /
                           f"{entry['scene_id']}.json").read_text())
        found[entry["scene_id"][:18]] = (item["properties"]["datetime"],
                                         item["properties"]["hsu:datetime_source"])
    assert found == {"ang20140912t192359": ("2014-09-12T19:23:59Z", "scene_id"),
                     "emit20250324t22100": ("2025-03-24T22:10:05Z", "scene_id")}
