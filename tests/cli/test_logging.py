"""What the CLI prints: ``-q`` silence, third-party noise only with ``-v``, progress bars only
on a terminal, a quiet exit when stdout is closed (``| head``), ``--json`` summaries."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import dask.array as da
import pytest
from click.testing import CliRunner
from rasterio.errors import NotGeoreferencedWarning

from hsu_geo import console
from hsu_geo.cli.main import cli
from hsu_geo.unmix.deep._training import TrainEvent
from tests.unmix.scenes import linear_scene, write_scene

REPO = Path(__file__).resolve().parents[2]
#: outputs every run writes (a run may write more: run.json lists them)
OUTPUT_KEYS = {"abundance", "rmse", "endmembers_csv", "endmembers_sli", "endmembers_hdr",
               "style", "quicklook", "run"}
#: what a progress bar or terminal control leaves in a log: carriage returns, ANSI escapes,
#: tqdm's "NN%|" and dask's "[####  ] | NN% Completed"
BAR = re.compile(r"\r|\x1b\[|\d+%\||% Completed")


def _scene(folder: Path, name: str = "plain", seed: int = 0) -> Path:
    """A small scene without georeferencing: rasterio warns NotGeoreferencedWarning when
    hsu-geo reads its outputs back (the quicklook)."""
    cube, _, _, wl = linear_scene(rows=16, cols=12, k=3, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return write_scene(folder / f"{name}.tif", cube, wl, crs=None)


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _subprocess(*args: object, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess:
    """A real process (pytest would capture Python warnings a user sees on stderr)."""
    return subprocess.run(
        [sys.executable, "-c", "from hsu_geo.cli.main import cli; cli()", *map(str, args)],
        stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300, check=False,
        env={**os.environ, "MPLBACKEND": "Agg"})


@pytest.fixture(autouse=True)
def _default_console():
    yield
    console.setup()  # a -v or -q command leaves its levels in this process: reset them


# --- the rules, unit by unit -----------------------------------------------------------------

@pytest.fixture
def stderr(monkeypatch):
    """A StringIO as sys.stderr (set inside the test: pytest swaps sys.stderr after the
    fixtures' setup)."""
    buf = io.StringIO()

    def install() -> io.StringIO:
        monkeypatch.setattr(sys, "stderr", buf)
        return buf

    return install


def _emit_everything() -> None:
    logging.getLogger("hsu_geo.pipeline").info("own info")
    logging.getLogger("hsu_geo.pipeline").warning("own warning")
    logging.getLogger("distributed.scheduler").info("State start")
    logging.getLogger("distributed.scheduler").warning("dask warning")
    warnings.warn("no geotransform", NotGeoreferencedWarning, stacklevel=1)


@pytest.mark.parametrize(("flags", "shown", "hidden"), [
    ((0, 1), ["own warning"], ["own info", "State start", "dask warning", "no geotransform"]),
    ((0, 0), ["own warning"], ["own info", "State start", "dask warning", "no geotransform"]),
    ((1, 0), ["own warning", "own info", "State start", "dask warning",
              "NotGeoreferencedWarning: no geotransform"], []),
    ((0, 2), [], ["own warning", "own info", "State start", "no geotransform"]),
])
def test_levels(stderr, flags, shown, hidden):
    stderr = stderr()
    with warnings.catch_warnings():
        console.setup(*flags)
        _emit_everything()
    text = stderr.getvalue()
    for msg in shown:
        assert msg in text, text
    for msg in hidden:
        assert msg not in text, text
    assert console.collected_warnings() == ["own warning"]  # kept for --json, shown or not


def test_hsu_geo_warnings_count_by_who_issued_them(stderr):
    """A RuntimeWarning raised by hsu-geo code is shown under -q even when its stacklevel
    points elsewhere (lsq's solver warning is raised inside a dask chunk function); the same
    category from other code is noise."""
    import hsu_geo

    ns: dict = {}
    code = ("import warnings\n"
            "def solver():\n"
            "    warnings.warn('solver stopped early', RuntimeWarning, stacklevel=2)\n")
    exec(compile(code, str(Path(hsu_geo.__file__).parent / "_fake_solver.py"), "exec"), ns)
    stderr = stderr()
    with warnings.catch_warnings():
        console.setup(0, 1)
        ns["solver"]()
        warnings.warn("divide by zero", RuntimeWarning, stacklevel=1)
    assert stderr.getvalue() == "WARNING solver stopped early\n"
    assert console.collected_warnings() == ["solver stopped early"]


def test_bars_only_on_a_terminal(stderr, monkeypatch):
    stderr = stderr()
    console.setup()
    assert console.show_stages() and not console.show_bars()  # a StringIO is no terminal
    monkeypatch.setattr(stderr, "isatty", lambda: True)
    assert console.show_bars()
    console.setup(0, 1)
    assert not console.show_stages() and not console.show_bars()  # -q: no bar, even there


def test_dask_bar_is_tqdm(stderr):
    stderr = stderr()
    with console.dask_bar("summing"):
        assert int(da.ones(100, chunks=10).sum().compute(scheduler="sync")) == 100
    text = stderr.getvalue()
    assert "[hsu-geo] summing" in text and "task" in text and "%|" in text
    stderr.truncate(0)
    with console.dask_bar("summing", enabled=False):
        da.ones(100, chunks=10).sum().compute(scheduler="sync")
    assert stderr.getvalue() == ""


def test_epoch_progress_off_a_terminal_is_one_line_per_stage():
    lines: list[str] = []
    progress = console.EpochProgress(bars=False, say=lines.append)
    for epoch in range(1, 6):
        progress(TrainEvent("train", epoch, 5, 1.0 / epoch))
    for epoch in range(1, 4):  # stops early: the next stage (or close) ends its line
        progress(TrainEvent("decoder_pretrain", epoch, 100, 0.5))
    progress.close()
    assert len(lines) == 2, lines
    assert lines[0].startswith("training: 5 epochs, loss 0.2,")
    assert lines[1].startswith("pretraining decoder: 3 epochs (stopped early of 100), loss 0.5")


def test_epoch_progress_on_a_terminal_is_a_tqdm_bar(stderr):
    stderr = stderr()
    progress = console.EpochProgress(bars=True, say=pytest.fail)
    for epoch in range(1, 5):
        progress(TrainEvent("finetune", epoch, 4, 0.25))
    text = stderr.getvalue()
    assert "fine-tuning" in text and "4/4" in text and "loss 0.25" in text and "\r" in text


# --- the CLI ---------------------------------------------------------------------------------

def test_quiet_clean_run_prints_nothing_and_verbose_shows_the_noise(tmp_path):
    scene = _scene(tmp_path)
    quiet = _invoke("unmix", scene, "-k", "3", "-o", tmp_path / "q", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    assert {Path(p).exists() for p in quiet.stdout.split()} == {True}
    # the warning is real and only hidden: -v shows it (and INFO logs)
    loud = _invoke("unmix", scene, "-k", "3", "-o", tmp_path / "v", "-v")
    assert loud.exit_code == 0
    assert "NotGeoreferencedWarning" in loud.stderr


def test_default_run_off_a_terminal_has_stage_lines_and_no_bar(tmp_path):
    result = _invoke("unmix", _scene(tmp_path), "-k", "3", "-o", tmp_path / "o")
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert "[hsu-geo] unmixing and writing" in lines
    assert all(line.startswith("[hsu-geo] ") for line in lines), result.stderr
    assert not BAR.search(result.stderr), repr(result.stderr)


def test_unmix_json(tmp_path):
    result = _invoke("unmix", _scene(tmp_path), "-k", "3", "-o", tmp_path / "o", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    assert summary["schema"] == "hsu-geo/unmix-summary/1"
    run = json.loads(Path(summary["outputs"]["run"]).read_text())
    assert set(summary["outputs"]) == {*run["outputs"], "run"} >= OUTPUT_KEYS
    assert all(Path(p).is_file() and Path(p).is_absolute() for p in summary["outputs"].values())
    assert [e["name"] for e in summary["endmembers"]] == run["endmembers"]
    assert summary["k"] == 3 == len(summary["endmembers"]) and summary["k_requested"] == "3"
    assert {"open", "endmembers", "fit", "write_rasters", "unmix_and_write"} \
        <= set(summary["timings_s"])
    assert isinstance(summary["warnings"], list) and summary["seconds"] > 0
    assert "[hsu-geo] unmixing and writing" in result.stderr  # stage lines stay on stderr


def test_unmix_json_k_auto_reports_the_estimate(tmp_path):
    result = _invoke("unmix", _scene(tmp_path), "-k", "auto", "-o", tmp_path / "o", "--json",
                     "-q")
    summary = json.loads(result.stdout)
    assert summary["k_requested"] == "auto"
    assert summary["k"] == len(summary["endmembers"]) == max(2, summary["k_estimate"]["k"])


def test_batch_json(tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    _scene(scenes, "a", seed=0)
    _scene(scenes, "b", seed=1)
    result = _invoke("batch", scenes, "-o", tmp_path / "out", "-k", "3", "-q", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    assert summary["schema"] == "hsu-geo/batch-summary/1"
    assert summary["summary"]["done"] == 2 and Path(summary["record"]).is_file()
    assert [s["scene_id"] for s in summary["scenes"]] == ["a", "b"]
    for s in summary["scenes"]:
        assert s["status"] == "done" and s["k"] == 3
        assert set(s["outputs"]) >= OUTPUT_KEYS
        assert all(Path(p).is_file() for p in s["outputs"].values())


def test_closed_stdout_exits_quietly(tmp_path):
    """``hsu-geo unmix ... -q | head -0``: a real process writing into a pipe nobody reads
    (its read end closed first, so the first write fails, as after ``head`` has quit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = _subprocess("unmix", _scene(tmp_path), "-k", "3", "-o", tmp_path / "o", "-q",
                           stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr  # what a shell reports for a SIGPIPE'd tool
    # no "Broken pipe" message, no Python warning: -q in a real process is silent
    assert proc.stderr == ""
    assert (tmp_path / "o" / "plain_fcls_run.json").is_file()  # the run itself completed


@pytest.mark.slow
def test_quiet_local_cluster_is_silent(tmp_path):
    """``--scheduler local:2 -q``: no dask.distributed INFO lines, nor warnings from the
    worker processes (a batch runs whole scenes on them)."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    _scene(scenes, "a", seed=0)
    _scene(scenes, "b", seed=1)
    proc = _subprocess("unmix", scenes / "a.tif", "-k", "3", "-o", tmp_path / "o", "-q",
                       "--scheduler", "local:2")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert len(proc.stdout.split()) >= len(OUTPUT_KEYS)
    proc = _subprocess("batch", scenes, "-o", tmp_path / "b", "-k", "3", "-q",
                       "--scheduler", "local:2")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_info_help_examples_exist():
    text = _invoke("info", "--help").stdout
    paths = re.findall(r"hsu-geo info (\S+)", text)
    assert paths and all((REPO / p).exists() for p in paths), paths
