"""Hostile inputs that used to delete or replace a user's data: batch reruns, scene ids that
are path components, outputs on inputs, user folders in -o, tampered batch records."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hsu_geo.batch import RECORD, recorded_files, run_batch
from hsu_geo.cli.main import cli
from hsu_geo.config import UnmixOptions
from hsu_geo.errors import ConfigError, OutputError
from hsu_geo.naming import safe_id
from tests.test_batch import GF5_A, write_gf5, write_scene

OPTS = UnmixOptions(k="3", sample_size=2000)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (what must survive)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def batch_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["batch", *args, "-k", "3", "--sample-size", "2000", "-q"])
    return result.exit_code, result.output


@pytest.mark.parametrize("text, expected", [
    ("..", "scene"), (".", "scene"), ("", "scene"), ("_..", "scene"), ("_.", "scene"),
    (".hidden", "hidden"), ("...x..", "x"), ("a b/c", "a_b_c"), ("-rf", "rf"),
    ("ang2019_rfl", "ang2019_rfl")])
def test_scene_ids_are_plain_visible_names(text: str, expected: str) -> None:
    assert safe_id(text) == expected


@pytest.mark.parametrize("name", ["_..tif", "_.tif"])
def test_a_scene_named_like_a_path_component_never_deletes_anything(tmp_path: Path,
                                                                     name: str) -> None:
    # was: id ".." -> the rerun ran rmtree(out / "..") and deleted the inputs and -o's parent
    project = tmp_path / "project"
    inputs = project / "in"
    inputs.mkdir(parents=True)
    (inputs / name).write_bytes(b"II*\0 not a tiff")
    write_scene(inputs / "good.tif")
    (project / "notes.txt").write_text("field notes")
    before = snapshot(project)
    out = project / "out"
    for _ in range(2):  # the first run fails the broken scene, the rerun retries it
        code, output = batch_cli(str(inputs), "-o", str(out))
        assert code == 1
        assert "1 scene(s) failed" in output
    record = json.loads((out / RECORD).read_text())
    ids = {e["scene_id"]: e["source"] for e in record["scenes"]}
    assert ids == {"good": "good.tif", "scene": name}  # the record says from which file
    after = snapshot(project)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before
    assert (out / "good" / "good_fcls_abundance.tif").is_file()


def test_a_hostile_tar_member_name_never_deletes_anything(tmp_path: Path) -> None:
    good = write_scene(tmp_path / "src" / "good.tif")
    (tmp_path / "src" / "_..tif").write_bytes(b"II*\0 broken")
    archive = tmp_path / "scenes.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(good, "good.tif")
        tf.add(tmp_path / "src" / "_..tif", "_..tif")
    out = tmp_path / "work" / "out"
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "keep.txt").write_text("keep")
    for _ in range(2):
        code, _output = batch_cli(str(archive), "-o", str(out))
        assert code == 1
    assert (tmp_path / "work" / "keep.txt").read_text() == "keep"
    assert archive.is_file() and (out / "good" / "good_fcls_run.json").is_file()


def test_batch_into_its_own_input_folder_is_refused(tmp_path: Path) -> None:
    deliveries = tmp_path / "D"
    write_gf5(deliveries, GF5_A)
    before = snapshot(deliveries)
    code, output = batch_cli(str(deliveries), "-o", str(deliveries))
    assert code == 1 and "is the input folder itself" in output
    assert snapshot(deliveries) == before


def test_output_folder_that_is_the_input_delivery_is_refused(tmp_path: Path) -> None:
    # batch proj/<delivery> -o proj: the scene's folder proj/<delivery> *is* the input
    delivery = write_gf5(tmp_path / "proj", GF5_A)
    before = snapshot(tmp_path / "proj")
    for _ in range(2):
        code, output = batch_cli(str(delivery), "-o", str(tmp_path / "proj"))
        assert code == 1 and "choose an -o outside the input" in output, output
    after = snapshot(tmp_path / "proj")
    assert {k: v for k, v in after.items() if not k.startswith(".hsu-geo")} == before


def test_out_inside_a_delivery_is_refused(tmp_path: Path) -> None:
    delivery = write_gf5(tmp_path / "D", GF5_A)
    with pytest.raises(ConfigError, match="overlaps its input"):
        run_batch(tmp_path / "D", delivery / "results", OPTS)


def test_a_user_folder_named_like_a_scene_is_left_alone(tmp_path: Path) -> None:
    write_scene(tmp_path / "in" / "s0.tif")
    write_scene(tmp_path / "in" / "s1.tif", seed=1)
    mine = tmp_path / "out" / "s0"
    mine.mkdir(parents=True)
    (mine / "thesis.docx").write_bytes(b"years of work")
    for _ in range(2):
        record = run_batch(tmp_path / "in", tmp_path / "out", OPTS)
        s0 = next(e for e in record["scenes"] if e["scene_id"] == "s0")
        assert s0["status"] == "failed" and "thesis.docx" in s0["error"] \
            and "did not write" in s0["error"]
    assert (mine / "thesis.docx").read_bytes() == b"years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.docx"]


def test_a_scene_folder_that_is_a_link_is_not_written_through(tmp_path: Path) -> None:
    write_scene(tmp_path / "in" / "s0.tif")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "s0").symlink_to(elsewhere)
    record = run_batch(tmp_path / "in", tmp_path / "out", OPTS)
    assert "symbolic link" in record["scenes"][0]["error"]
    assert list(elsewhere.iterdir()) == []


def test_rerun_replaces_only_recorded_files_and_removes_superseded_ones(tmp_path: Path) -> None:
    write_scene(tmp_path / "in" / "s0.tif")
    out = tmp_path / "out"
    run_batch(tmp_path / "in", out, OPTS)
    folder = out / "s0"
    (folder / "s0_fcls_abundance.tif.aux.xml").write_text("<PAMDataset/>")  # QGIS statistics
    ours = recorded_files(folder)
    assert "s0_fcls_abundance.tif" in ours and "s0_fcls_run.json" in ours \
        and "s0.json" in ours and "s0_fcls_abundance.tif.aux.xml" not in ours
    # another model, same folder: the old model's recorded set goes, the user's file stays
    record = run_batch(tmp_path / "in", out, OPTS.updated(model="nnls"), overwrite=True)
    assert record["scenes"][0]["status"] == "failed"  # the aux.xml is not ours: refused
    (folder / "s0_fcls_abundance.tif.aux.xml").unlink()
    record = run_batch(tmp_path / "in", out, OPTS.updated(model="nnls"), overwrite=True)
    assert record["scenes"][0]["status"] == "done"
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if "_fcls_" in n] and "s0_nnls_run.json" in names


@pytest.mark.parametrize("damage, message", [
    ({"scenes": {"a": 1}}, "scenes is not a list"),
    ({"scenes": [{"scene_id": "..", "status": "done"}]}, "not a plain scene id"),
    ({"scenes": [{"scene_id": "s0", "status": "done", "outputs": [{"name": "../../x"}]}]},
     "outputs[0]"),
    ({"scenes": [{"scene_id": "s0", "status": 3}]}, "status is 3"),
    ({"settings": [1, 2]}, "settings is not an object"),
    ({"training": {"scene_id": 5}}, "training is not"),
])
def test_a_damaged_batch_record_is_a_clear_error(tmp_path: Path, damage: dict,
                                                 message: str) -> None:
    write_scene(tmp_path / "in" / "s0.tif")
    out = tmp_path / "out"
    out.mkdir()
    (out / RECORD).write_text(json.dumps({"schema": "hsu-geo/batch/1", **damage}))
    code, output = batch_cli(str(tmp_path / "in"), "-o", str(out))
    assert code == 1 and "is damaged" in output and message in output, output
    assert len(output.strip().splitlines()) == 1


def test_save_model_onto_the_input_scene_is_refused(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "scene.tif")
    before = scene.read_bytes()
    result = CliRunner().invoke(cli, [
        "unmix", str(scene), "-m", "linear_ae", "-k", "3", "--sample-size", "500",
        "-o", str(tmp_path / "out"), "--save-model", str(scene),
        "--overwrite", "-q"])
    assert result.exit_code == 1
    assert "--save-model" in result.output and "would replace the input" in result.output
    assert scene.read_bytes() == before and not (tmp_path / "out").exists()


def test_unmix_outputs_inside_the_input_delivery_are_refused(tmp_path: Path) -> None:
    delivery = write_gf5(tmp_path, GF5_A)
    before = snapshot(delivery)
    result = CliRunner().invoke(cli, ["unmix", str(delivery), "-k", "3", "-o",
                                      str(delivery / "out"), "-q"])
    assert result.exit_code == 1 and "lies inside the input" in result.output, result.output
    assert snapshot(delivery) == before


def test_batch_save_model_onto_an_input_is_refused(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "in" / "s0.tif")
    with pytest.raises(OutputError, match="would replace the input"):
        run_batch(tmp_path / "in", tmp_path / "out", OPTS.updated(save_model=str(scene)),
                  train_on="s0")


def test_a_failed_unmix_leaves_no_empty_output_folder(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "scene.tif")
    out = tmp_path / "new" / "out"
    result = CliRunner().invoke(cli, ["unmix", str(scene), "-k", "500", "-o", str(out), "-q"])
    assert result.exit_code == 1 and "-k 500" in result.output, result.output
    assert not out.exists()  # made by the run, removed again when it failed
