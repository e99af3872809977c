"""All-or-nothing output sets: ``unmix --overwrite`` killed at many points leaves the old set
or the new set, complete, every time; a failed move restores the old set."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.errors import OutputError
from hsu_geo.write import atomic
from hsu_geo.write.atomic import OutputTransaction, recover
from hsu_geo.write.outputs import output_names
from tests.test_batch import write_scene

#: one subprocess imports hsu-geo once, then forks a child per kill point; each child runs
#: ``hsu-geo`` and SIGKILLs itself just before its Nth file-system change (N=0: runs through);
#: the parent prints {N: [termination signal, exit code, changes made]} as JSON
DRIVER = r"""
import builtins, json, os, shutil, signal, sys
import hsu_geo.pipeline, hsu_geo.write.outputs, hsu_geo.unmix.classical.model  # warm imports
import matplotlib.pyplot
from hsu_geo.cli.main import cli
args, pristine, root, points = json.loads(sys.argv[1])

def child(limit, out, w):
    count = 0
    def hit():
        nonlocal count
        count += 1
        if count == limit:
            os.kill(os.getpid(), signal.SIGKILL)
    def wrap(mod, name):
        real = getattr(mod, name)
        def patched(*a, **k):
            hit()
            return real(*a, **k)
        setattr(mod, name, patched)
    for name in ("replace", "rename", "unlink", "mkdir", "rmdir", "fsync"):
        wrap(os, name)
    wrap(shutil, "rmtree")
    real_open = builtins.open
    def counting_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+"):
            hit()
        return real_open(file, mode, *a, **k)
    builtins.open = counting_open
    code = 0
    try:
        cli.main([*args, "-o", out], standalone_mode=False)
    except SystemExit as exc:
        code = exc.code or 0
    except BaseException:
        code = 1
    os.write(w, str(count).encode())
    os._exit(code)

results = {}
for n in points:
    out = os.path.join(root, f"kill{n}")
    shutil.copytree(pristine, out)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        child(n, out, w)
    os.close(w)
    made = os.read(r, 64)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    results[n] = [os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                  os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                  int(made) if made else None]
print(json.dumps(results))
"""


def unmix_args(scene: Path, k: int) -> list[str]:
    return ["unmix", str(scene), "-k", str(k), "--overwrite", "-q", "--sample-size", "500"]


def set_state(out: Path, names: dict[str, str], old: dict[str, bytes]) -> str:
    """``"old"`` or ``"new"`` for a complete, consistent set, else a description."""
    present = {k: (out / n).is_file() for k, n in names.items()}
    if not all(present.values()):
        return f"incomplete: missing {[k for k, v in present.items() if not v]}"
    if {n: (out / n).read_bytes() for n in names.values()} == old:
        return "old"
    k_run = len(json.loads((out / names["run"]).read_text())["endmembers"])
    with open(out / names["endmembers_csv"], newline="") as fh:
        k_csv = len(next(csv.reader(fh))) - 2  # band, wavelength_nm, <names>
    with rasterio.open(out / names["abundance"]) as src:
        k_tif = src.count
    if k_run == k_csv == k_tif == 4:
        return "new"
    return f"mixed: run.json {k_run}, csv {k_csv}, abundance {k_tif} endmembers"


@pytest.fixture(scope="module")
def old_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("sets")
    scene = write_scene(root / "scene.tif", size=16, bands=30)
    pristine = root / "pristine"
    result = CliRunner().invoke(cli, [*unmix_args(scene, 3), "-o", str(pristine)])
    assert result.exit_code == 0, result.output
    return scene, pristine, output_names("scene", "fcls")


def run_killed(root: Path, scene: Path, pristine: Path, points: list[int]
               ) -> dict[int, list[int | None]]:
    """Run ``unmix -k 4 --overwrite`` over a copy of the old set once per kill point."""
    (root / "driver.py").write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(root / "driver.py"),
                           json.dumps([unmix_args(scene, 4), str(pristine), str(root), points])],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def test_kill_at_any_point_leaves_old_or_new_set(tmp_path: Path, old_set) -> None:
    scene, pristine, names = old_set
    old = {n: (pristine / n).read_bytes() for n in names.values()}
    (tmp_path / "full").mkdir()
    signal_, code, total = run_killed(tmp_path / "full", scene, pristine, [0])[0]
    assert (signal_, code) == (0, 0) and total
    assert set_state(tmp_path / "full" / "kill0", names, old) == "new"
    # every change of the commit phase plus points spread over the whole run: >= 20 kills
    points = sorted({*range(max(1, total - 20), total + 1), *range(1, total, max(1, total // 8))})
    assert len(points) >= 20
    runs = run_killed(tmp_path, scene, pristine, points)
    seen = {}
    for n in points:
        signal_, code, _made = runs[n]
        assert signal_ == signal.SIGKILL, f"kill at {n}: not killed ({runs[n]})"
        out = tmp_path / f"kill{n}"
        before = set_state(out, names, old)
        recover(out)
        after = set_state(out, names, old)
        assert after in ("old", "new"), f"kill at change {n}/{total}: {after}"
        assert sorted(p.name for p in out.iterdir()) == sorted(names.values()), n
        seen[n] = (before, after)
    outcomes = {after for _before, after in seen.values()}
    assert outcomes == {"old", "new"}, seen  # the kills did land on both sides of the swap
    # without recovery, a set is only torn inside the swap itself: moving the old files aside,
    # one journal write, moving the new ones in
    torn = [n for n, (before, _after) in seen.items() if before not in ("old", "new")]
    assert len(torn) <= 2 * len(names) + 4, seen
    window = [n for n in points if min(torn) <= n <= max(torn)]
    assert torn == window, {n: seen[n] for n in window}  # one window: the swap


def test_next_run_finishes_an_interrupted_swap(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.tif", "a.csv"):
        (out / name).write_text("old " + name)
    stage = out / ".hsu-geo-txn-00000000000a"
    (stage / "new").mkdir(parents=True)
    (stage / "old").mkdir()
    (stage / "new" / "a.csv").write_text("new a.csv")  # a.tif was already swapped in
    os.replace(out / "a.tif", stage / "old" / "a.tif")
    (out / "a.tif").write_text("new a.tif")
    (stage / "journal.json").write_text(json.dumps({"state": "swapping",
                                                    "names": ["a.tif", "a.csv"]}))
    with OutputTransaction(out, ["b.txt"]) as tx:  # any later write into the folder
        tx.temp("b.txt").write_text("b")
    assert (out / "a.csv").read_text() == "new a.csv" and not stage.exists()


def test_a_set_killed_before_its_swap_is_discarded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.tif").write_text("old")
    stage = out / ".hsu-geo-txn-00000000000b"
    (stage / "new").mkdir(parents=True)
    (stage / "old").mkdir()
    (stage / "new" / "a.tif").write_text("half")
    (stage / "journal.json").write_text(json.dumps({"state": "prepared", "names": ["a.tif"]}))
    os.replace(out / "a.tif", stage / "old" / "a.tif")  # killed while moving the old aside
    assert recover(out)
    assert (out / "a.tif").read_text() == "old" and not stage.exists()


def test_a_live_transaction_is_not_recovered_by_another_process(tmp_path: Path) -> None:
    with OutputTransaction(tmp_path, ["x.txt"]) as tx:
        tx.temp("x.txt").write_text("in progress")
        assert recover(tmp_path) == []  # locked: left alone
        assert tx.temp("x.txt").read_text() == "in progress"
    assert (tmp_path / "x.txt").read_text() == "in progress"


def test_a_failed_move_keeps_the_previous_set(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a.tif", "a.csv", "a_run.json"):
        (tmp_path / name).write_text("old")
    real = os.replace

    def failing(src, dst):
        if Path(dst).name == "a.csv" and Path(src).parent.name == "new":
            raise PermissionError(13, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OutputError, match="previous files were kept"), \
            OutputTransaction(tmp_path, ["a.tif", "a.csv", "a_run.json"], overwrite=True) as tx:
        for name in tx.names:
            tx.temp(name).write_text("new")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "a.tif": "old", "a.csv": "old", "a_run.json": "old"}
