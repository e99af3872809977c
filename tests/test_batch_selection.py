"""Batch inputs as users keep them (issue 14): label rasters beside scenes, ``--include`` /
``--exclude`` globs, and a sensor preset that reads every product format of its sensor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from hsu_geo.batch import run_batch
from hsu_geo.batch_discovery import discover, open_source, readers_for
from hsu_geo.cli.main import cli
from hsu_geo.config import UnmixOptions, load_preset
from hsu_geo.errors import ConfigError, UnsupportedFormatError
from hsu_geo.ingest import find_reader, open_scene, reader_candidates
from tests.test_batch import mixture, pack, write_scene

PRESET = Path(__file__).resolve().parents[1] / "pipelines" / "enmap_landcover.yaml"
OPTS = UnmixOptions(k="3", sample_size=500, extractor="vca")


def write_label(path: Path, size: int = 24) -> Path:
    """A class raster on a scene's grid: one float32 band, values 0-5, no wavelengths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "height": size,
               "width": size, "crs": "EPSG:32611",
               "transform": from_origin(538_000.0, 4_142_000.0, 30.0, 30.0)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).integers(0, 6, (1, size, size)).astype("float32"))
    return path


@pytest.fixture
def tiles(tmp_path: Path) -> Path:
    """tiles/a.tif, tiles/b.tif (scenes) and tiles/labels/{a,b}.tif (class rasters)."""
    root = tmp_path / "tiles"
    for i, name in enumerate(("a", "b")):
        write_scene(root / f"{name}.tif", seed=i)
        write_label(root / "labels" / f"{name}.tif")
    return root


def _skipped(record: dict) -> dict[str, str]:
    return {e["source"]: e["error"] for e in record["scenes"] if e["status"] == "skipped"}


def test_label_rasters_named_like_scenes_are_skipped_not_a_duplicate_id(tiles: Path,
                                                                         tmp_path: Path) -> None:
    lines: list[str] = []
    record = run_batch(tiles, tmp_path / "out", OPTS, say=lines.append)
    assert record["summary"]["done"] == 2
    skipped = _skipped(record)
    assert set(skipped) == {"labels/a.tif", "labels/b.tif"}
    assert all("no wavelengths" in r for r in skipped.values())
    assert any(line.startswith("skipped 2 (GeoTIFF bands have no wavelengths") and
               "labels/a.tif" in line for line in lines)
    table = (tmp_path / "out" / "batch.csv").read_text()
    assert "labels/a.tif" in table and "skipped" in table


def test_a_label_raster_is_a_scene_when_wavelengths_are_given(tiles: Path, tmp_path: Path
                                                              ) -> None:
    source = open_source(tiles, tmp_path / "scratch")
    scenes, _ = discover(source, readers_for("auto"), need_wavelengths=False)
    assert sorted(s.rel for s in scenes) == ["a.tif", "b.tif", "labels/a.tif", "labels/b.tif"]


@pytest.mark.parametrize("kind", [".zip", ".tar", ".tar.gz"])
def test_labels_are_recognised_inside_archives(tiles: Path, tmp_path: Path, kind: str) -> None:
    archive = pack(tiles, tmp_path / f"tiles{kind}")
    source = open_source(archive, tmp_path / "scratch")
    scenes, skipped = discover(source, readers_for("auto"))
    assert sorted(s.scene_id for s in scenes) == ["a", "b"]
    assert {s.rel for s in skipped} == {"labels/a.tif", "labels/b.tif"}


def test_a_large_scene_in_a_zip_is_checked_through_gdal_without_unpacking(tmp_path: Path
                                                                          ) -> None:
    write_scene(tmp_path / "in" / "big.tif", size=96)  # > 64 KiB: the listing holds its head
    archive = pack(tmp_path / "in", tmp_path / "big.zip")
    source = open_source(archive, tmp_path / "scratch")
    assert source.gdal_path("big.tif").startswith("/vsizip/")
    scenes, skipped = discover(source, readers_for("auto"))
    assert [s.scene_id for s in scenes] == ["big"] and not skipped


def test_include_and_exclude_select_scenes_and_list_the_rest(tiles: Path, tmp_path: Path
                                                             ) -> None:
    record = run_batch(tiles, tmp_path / "out", OPTS, include=("a*",))
    assert [e["scene_id"] for e in record["scenes"] if e["status"] == "done"] == ["a"]
    assert _skipped(record)["b.tif"] == "not selected by --include a*"
    assert record["selection"] == {"include": ["a*"], "exclude": []}
    # excluding a folder by name leaves its files out before any is opened
    source = open_source(tiles, tmp_path / "scratch")
    scenes, skipped = discover(source, readers_for("auto"), exclude=("labels", "b.tif"))
    assert [s.rel for s in scenes] == ["a.tif"]
    reasons = {s.rel: s.reason for s in skipped}
    assert reasons["labels/a.tif"] == "excluded by --exclude labels"
    assert reasons["b.tif"] == "excluded by --exclude b.tif"


@pytest.mark.parametrize("pattern", ["", "/abs/*.tif"])
def test_bad_globs_are_refused_in_one_line(tiles: Path, tmp_path: Path, pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"--exclude .*give a glob relative to the input"):
        run_batch(tiles, tmp_path / "out", OPTS, exclude=(pattern,))


def test_cli_include_exclude(tiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["batch", str(tiles), "-o", str(out), "-k", "3",
                                      "--extractor", "vca", "--sample-size", "500", "-q",
                                      "--exclude", "labels", "--include", "*.tif",
                                      "--exclude", "b*"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "batch.json").read_text())
    assert [e["scene_id"] for e in record["scenes"] if e["status"] == "done"] == ["a"]
    assert record["selection"] == {"include": ["*.tif"], "exclude": ["labels", "b*"]}


# -- a preset names the readers of its sensor's formats ---------------------------------------
def test_reader_lists_detect_among_the_named_readers(tiles: Path, tmp_path: Path) -> None:
    from tests.ingest.fakes import write_enmap_l2a

    Y, wl = mixture(bands=30)
    product = write_enmap_l2a(tmp_path / "l2a", np.round(Y * 10_000).astype("int16"),
                              wavelengths=wl)
    assert [n for n, _ in reader_candidates("geotiff, enmap")] == ["enmap", "geotiff"]
    assert find_reader(tiles / "a.tif", "enmap,geotiff").name == "geotiff"
    assert find_reader(product, "enmap,geotiff").name == "enmap"
    assert find_reader(tiles / "a.tif", "enmap").name == "enmap"  # one name still forces
    with pytest.raises(UnsupportedFormatError, match=r"none of the readers (gf5, envi|envi, gf5)"):
        find_reader(tiles / "a.tif", "gf5,envi")
    with pytest.raises(ConfigError, match="unknown reader 'enmapp'"):
        reader_candidates("enmap,enmapp")
    assert open_scene(tiles / "a.tif", sensor="enmap,geotiff").attrs["reader"] == "geotiff"


def test_enmap_preset_reads_l2a_products_and_enmap_geotiffs(tiles: Path, tmp_path: Path
                                                            ) -> None:
    opts = load_preset(PRESET)
    assert [n for n, _ in reader_candidates(opts.sensor)] == ["enmap", "geotiff"]
    record = run_batch(tiles, tmp_path / "out", opts.updated(sample_size=500, k="3"))
    assert record["summary"]["done"] == 2, record["scenes"]
    assert {e["reader"] for e in record["scenes"] if e["status"] == "done"} == {"geotiff"}
    assert set(_skipped(record)) == {"labels/a.tif", "labels/b.tif"}


def test_presets_cite_only_files_in_the_repository() -> None:
    for preset in PRESET.parent.glob("*.yaml"):
        text = preset.read_text()
        assert "formats.md" not in text, preset.name
        for cited in ("hsu_geo/ingest/badbands.py", "hsu_geo/ingest/enmap.py"):
            if cited in text:
                assert (PRESET.parents[1] / cited).is_file()


def test_enmap_preset_on_the_real_potsdam_tiles(shared_data: Path, tmp_path: Path) -> None:
    """The real folder: 18 EnMAP GeoTIFF tiles, labels/ with the same names, gpkg and csv."""
    tiles = shared_data / "scenes" / "enmap_potsdam_tiles"
    opts = load_preset(PRESET).updated(sample_size=500)
    source = open_source(tiles, tmp_path / "scratch")
    scenes, skipped = discover(source, readers_for(opts.sensor))
    assert len(scenes) == 18 and {s.reader for s in scenes} == {"geotiff"}
    assert sum(s.rel.startswith("labels/") for s in skipped) == 18
    record = run_batch(tiles, tmp_path / "out", opts, include=("enmap_potsdam_tile_64_0.tif",))
    assert record["summary"]["done"] == 1, record["scenes"]
    done = next(e for e in record["scenes"] if e["status"] == "done")
    assert done["scene_id"] == "enmap_potsdam_tile_64_0" and len(done["endmembers"]) == 6


@pytest.mark.parametrize("value,message", [
    ("enmap,enmapp", "p.yaml: sensor: unknown reader 'enmapp'"),
    (",", "p.yaml: sensor: --sensor ',': give 'auto', a reader name or a comma-separated"),
])
def test_a_preset_naming_an_unknown_reader_is_refused_when_loaded(tmp_path: Path, value: str,
                                                                  message: str) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text(f"sensor: '{value}'\n")
    with pytest.raises(ConfigError) as info:
        load_preset(preset)
    assert str(info.value).startswith(str(preset.parent) + "/" + message)
