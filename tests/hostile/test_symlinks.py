"""Symbolic links never lead batch (or a GF-5/EnMAP reader) out of the input (issue 9, item C),
and sidecar errors never echo the content of the file they read."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hsu_geo.batch_discovery import (
    LINK_BROKEN_REASON,
    LINK_DIR_REASON,
    LINK_OUT_REASON,
    FolderSource,
    discover,
    readers_for,
)
from hsu_geo.cli.main import cli
from hsu_geo.testing import DEFAULT_GF5_PRODUCT, write_gf5_delivery
from tests.ingest.fakes import write_envi
from tests.unmix.scenes import linear_scene, write_scene

SECRET = "TOPSECRET-hunter2 0.5 0.5"
RADCAL = "GF5B_AHSI_RadCal_VNIR.raw"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="symbolic links")


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def gf5_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vn = np.full((150, 4, 4), 100, "uint16")
    sw = np.full((180, 4, 4), 100, "uint16")
    return write_gf5_delivery(tmp_path_factory.mktemp("gf5"), vn, sw)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text(SECRET + "\n")
    return path


def _tree_with_linked_sidecar(tmp_path: Path, template: Path, target: Path) -> Path:
    tree = tmp_path / "tree"
    delivery = tree / template.name
    shutil.copytree(template, delivery)
    (delivery / RADCAL).unlink()
    (delivery / RADCAL).symlink_to(target)
    return tree


def _discover(tree: Path):
    return discover(FolderSource(tree), readers_for("auto"))


def test_sidecar_linked_to_a_secret_is_skipped_and_never_echoed(tmp_path: Path,
                                                                gf5_template: Path,
                                                                secret: Path):
    tree = _tree_with_linked_sidecar(tmp_path, gf5_template, secret)
    out = tmp_path / "out"
    res = invoke("batch", tree, "-o", out, "-k", "3", "-m", "fcls", "--sample-size", "100")
    assert res.exit_code == 1  # the delivery lacks its (unfollowed) RadCal file
    record = json.loads((out / "batch.json").read_text())
    text = res.stdout + res.stderr + (out / "batch.csv").read_text() + json.dumps(record)
    assert "TOPSECRET" not in text and "hunter2" not in text
    skipped = {e["source"]: e["error"] for e in record["scenes"] if e["status"] == "skipped"}
    assert skipped == {f"{DEFAULT_GF5_PRODUCT}/{RADCAL}": LINK_OUT_REASON}
    failed = [e for e in record["scenes"] if e["status"] == "failed"]
    assert len(failed) == 1 and "no VNIR RadCal file" in failed[0]["error"]


def test_unmix_of_a_delivery_ignores_links_out_of_its_folder(tmp_path: Path,
                                                             gf5_template: Path, secret: Path):
    tree = _tree_with_linked_sidecar(tmp_path, gf5_template, secret)
    res = invoke("unmix", tree / DEFAULT_GF5_PRODUCT, "-o", tmp_path / "o", "-q")
    assert res.exit_code == 1
    assert "GF-5 delivery has no VNIR RadCal file" in res.stderr
    assert "TOPSECRET" not in res.stderr


def test_link_to_a_system_folder_is_not_walked(tmp_path: Path):
    outside = tmp_path / "etc_like"
    outside.mkdir()
    cube, _, _, wl = linear_scene(rows=6, cols=5, k=2)
    for i in range(300):
        (outside / f"f{i:03}.conf").write_text("x = 1\n")
    write_scene(outside / "not_mine.tif", cube, wl)
    tree = tmp_path / "tree"
    tree.mkdir()
    write_scene(tree / "mine.tif", cube, wl)
    (tree / "etc").symlink_to(outside)
    t0 = time.monotonic()
    source = FolderSource(tree)
    assert source.count_files() == 1
    scenes, skipped = _discover(tree)
    assert time.monotonic() - t0 < 10
    assert [s.scene_id for s in scenes] == ["mine"]
    assert [(s.rel, s.reason) for s in skipped] == [("etc", LINK_OUT_REASON)]


def test_link_to_a_folder_holding_only_an_outside_scene(tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cube, _, _, wl = linear_scene(rows=6, cols=5, k=2)
    write_scene(outside / "not_mine.tif", cube, wl)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "etc").symlink_to(outside)
    (tree / "notes.txt").write_text("hello\n")
    res = invoke("batch", tree, "-o", tmp_path / "out", "-q")
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert "no scenes found among 1 files" in lines[0]
    assert not (tmp_path / "out" / "not_mine").exists()


def test_loop_of_links_inside_the_tree_terminates(tmp_path: Path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    cube, _, _, wl = linear_scene(rows=6, cols=5, k=2)
    write_scene(tree / "a" / "b" / "s.tif", cube, wl)
    (tree / "a" / "b" / "up").symlink_to(tree)          # to an ancestor
    (tree / "a" / "again").symlink_to(tree / "a" / "b")  # a second way to the same folder
    t0 = time.monotonic()
    scenes, skipped = _discover(tree)
    assert time.monotonic() - t0 < 10
    assert [s.rel for s in scenes] == ["a/b/s.tif"]
    assert {(s.rel, s.reason) for s in skipped} == {("a/b/up", LINK_DIR_REASON),
                                                    ("a/again", LINK_DIR_REASON)}


def test_link_to_a_file_inside_the_tree_is_followed(tmp_path: Path):
    tree = tmp_path / "tree"
    (tree / "data").mkdir(parents=True)
    (tree / "scenes").mkdir()
    cube, _, _, wl = linear_scene(rows=6, cols=5, k=2)
    write_scene(tree / "data" / "real.tif", cube, wl)
    (tree / "scenes" / "alias.tif").symlink_to(Path("..") / "data" / "real.tif")
    scenes, skipped = _discover(tree)
    assert sorted(s.scene_id for s in scenes) == ["alias", "real"]
    assert skipped == []


def test_broken_and_self_links_are_listed(tmp_path: Path):
    tree = tmp_path / "tree"
    tree.mkdir()
    cube, _, _, wl = linear_scene(rows=6, cols=5, k=2)
    write_scene(tree / "s.tif", cube, wl)
    (tree / "gone.tif").symlink_to(tmp_path / "nowhere.tif")
    (tree / "self").symlink_to(tree / "self")
    scenes, skipped = _discover(tree)
    assert [s.scene_id for s in scenes] == ["s"]
    assert {(s.rel, s.reason) for s in skipped} == {("gone.tif", LINK_BROKEN_REASON),
                                                    ("self", LINK_BROKEN_REASON)}


def test_link_to_a_secret_inside_a_claimed_folder_is_reported(tmp_path: Path, secret: Path):
    tree = tmp_path / "tree"
    envi_dir = tree / "flight"
    envi_dir.mkdir(parents=True)
    data = np.ones((3, 4, 5), "float32")
    write_envi(envi_dir / "ang20200101t000000_rfl.hdr", data, wavelengths=[500, 600, 700])
    (envi_dir / "ang20200101t000000_rfl.txt").symlink_to(secret)
    scenes, skipped = _discover(tree)
    assert [s.scene_id for s in scenes] == ["ang20200101t000000_rfl"]
    assert all("txt" not in m for m in scenes[0].members)
    assert [(s.rel, s.reason) for s in skipped] == [
        ("flight/ang20200101t000000_rfl.txt", LINK_OUT_REASON)]


# -- error messages never echo the content of the file they read ----------------------------

def test_non_numeric_radcal_is_reported_without_its_content(tmp_path: Path, gf5_template: Path):
    delivery = tmp_path / gf5_template.name
    shutil.copytree(gf5_template, delivery)
    (delivery / RADCAL).write_text(SECRET + "\n")
    res = invoke("unmix", delivery, "-o", tmp_path / "o", "-q")
    assert res.exit_code == 1
    assert f"{RADCAL}: line 1 is not numeric" in res.stderr
    assert "TOPSECRET" not in res.stderr and "hunter2" not in res.stderr


def test_non_numeric_header_list_is_reported_without_its_content(tmp_path: Path):
    data = np.ones((3, 4, 5), "float32")
    hdr = write_envi(tmp_path / "s.hdr", data, wavelengths=[500, 600, 700],
                     extra={"fwhm": "{10, hunter2, 10}"})
    res = invoke("info", hdr)
    assert res.exit_code == 1
    assert "s.hdr: fwhm holds a non-numeric value (entry 2); give numbers only" in res.stderr
    assert "hunter2" not in res.stderr
