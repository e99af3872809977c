"""``hsu-geo batch``: summary table and exit codes, -q, presets vs flags, bad input, and a
batch killed with SIGKILL mid-scene that, rerun, ends exactly like an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hsu_geo.batch import RECORD, SCRATCH, run_batch
from hsu_geo.cli.main import cli
from tests.test_batch import OPTS, checksums, write_scene

FAST = ("-k", "3", "--sample-size", "2000")
CLI = "from hsu_geo.cli.main import cli; cli()"


def _run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def two_scenes(tmp_path: Path) -> Path:
    good = write_scene(tmp_path / "in" / "b_good.tif")
    (tmp_path / "in" / "a_broken.tif").write_bytes(good.read_bytes()[:4000])
    (tmp_path / "in" / "notes.txt").write_text("x")
    return tmp_path / "in"


def test_summary_table_progress_and_exit_code(two_scenes: Path, tmp_path: Path) -> None:
    result = _run("batch", two_scenes, "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SCENE", "STATUS", "SECONDS", "DETAIL"]
    assert lines[1].split()[:2] == ["a_broken", "failed"]
    assert lines[2].split()[:2] == ["b_good", "done"]
    assert lines[3].split()[:2] == ["notes.txt", "skipped"]
    assert lines[4] == "1 done (0 kept from before), 1 failed, 1 skipped"
    assert "[hsu-geo] [2/2] b_good: done in" in result.stderr
    assert "[hsu-geo]   b_good: unmixing and writing" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: 1 scene(s) failed")

    (two_scenes / "a_broken.tif").unlink()  # removed: the rerun has nothing left to do
    quiet = _run("batch", two_scenes, "-o", tmp_path / "out", *FAST, "-q")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert quiet.stdout.splitlines()[1].split()[:3] == ["b_good", "done", "(kept)"]


def test_preset_values_and_flags_that_override_them(tmp_path: Path) -> None:
    write_scene(tmp_path / "in" / "s0.tif")
    preset = tmp_path / "preset.yaml"
    preset.write_text("model: fcls\nk: 2\nsample_size: 3000\nsensor: geotiff\nchunk_size: 256\n")
    result = _run("batch", tmp_path / "in", "-o", tmp_path / "out", "--pipeline", preset,
                  "-k", "3", "-q")
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "out" / RECORD).read_text())["settings"]
    assert settings["k"] == "3"  # the flag wins
    # preset values survive options whose defaults the command line did not set
    assert (settings["sample_size"], settings["sensor"], settings["chunk_size"]) == \
        (3000, "geotiff", 256)

    again = _run("batch", tmp_path / "in", "-o", tmp_path / "out", "--pipeline", preset, "-q")
    assert again.exit_code == 1
    assert again.stderr.strip() == (
        f"Error: {tmp_path / 'out'} holds a batch run with other settings (k was '3', now '2'); "
        "pass --overwrite to redo every scene, or choose another -o")


@pytest.mark.parametrize(("args", "message"), [
    (("{tmp}/missing", "-o", "{tmp}/out"), "no such folder or archive"),
    (("{tmp}/in", "-o", "{tmp}/out", "--pipeline", "{tmp}/bad.yaml"),
     "unknown key(s) colour; valid keys:"),
    (("{tmp}/in", "-o", "{tmp}/out", "--train-on", "s0", "--load-model", "{tmp}/m.pt"),
     "give either --train-on SCENE_ID or --load-model PATH, not both"),
    (("{tmp}/in", "-o", "{tmp}/out", "--save-model", "{tmp}/m.pt"),
     "--save-model in a batch needs --train-on SCENE_ID"),
    (("{tmp}/in", "-o", "{tmp}/out", "--distribute", "nodes"), "Invalid value for '--distribute'"),
    (("{tmp}/in", "-o", "{tmp}/out", "-m", "sunsal", "-k", "4"), "-k 4 does not apply"),
])
def test_bad_input_is_one_line_error(tmp_path: Path, args: tuple[str, ...],
                                     message: str) -> None:
    write_scene(tmp_path / "in" / "s0.tif")
    (tmp_path / "bad.yaml").write_text("model: fcls\ncolour: red\n")
    (tmp_path / "m.pt").write_bytes(b"")
    result = _run("batch", *(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # refused before any scene


def _glob_live(folder: Path, pattern: str) -> list[Path]:
    """``folder.glob(pattern)`` while a batch runs: it renames and removes its transaction
    folders concurrently, so one can vanish mid-scan (then nothing is seen this time)."""
    try:
        return list(folder.glob(pattern))
    except FileNotFoundError:
        return []


def test_sigkill_mid_batch_then_rerun_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for i in range(4):
        write_scene(src / f"s{i}.tif", seed=i)
    out = tmp_path / "out"
    args = ["batch", str(src), "-o", str(out), *FAST, "-q"]
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    half_files = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _glob_live(out / "s0", "*_run.json"):  # the first scene is complete
                break
            time.sleep(0.005)
        wait_for_half_file = time.monotonic() + 3
        while time.monotonic() < wait_for_half_file and proc.poll() is None:
            half_files = _glob_live(out, "s*/.hsu-geo-txn-*/new/*")
            if half_files:  # kill while the next scene's files are being written
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    killed = json.loads((out / RECORD).read_text())  # never half written
    assert killed["scenes"][0]["status"] == "done"
    assert any(e["status"] == "pending" for e in killed["scenes"])

    rerun = _run(*args)
    assert rerun.exit_code == 0, rerun.output
    reference = tmp_path / "reference"
    run_batch(src, reference, OPTS)
    assert checksums(out) == checksums(reference)
    for i in range(4):
        names = sorted(p.name for p in (out / f"s{i}").iterdir())
        assert names == sorted(p.name for p in (reference / f"s{i}").iterdir())
    assert not list(out.rglob(".hsu-geo-txn-*")) and not (out / SCRATCH).exists()
    record = json.loads((out / RECORD).read_text())
    assert [e["scene_id"] for e in record["scenes"]] == ["s0", "s1", "s2", "s3"]
    assert record["scenes"][0].get("reused") is True  # s0 was kept, not redone
    assert record["summary"]["done"] == 4
