"""The abundance COG and its .qml, opened and rendered by real QGIS (PyQGIS, offscreen).

PyQGIS is usually installed for the system Python (Debian: ``apt-get install python3-qgis``),
not for the interpreter running the tests, so the check runs ``qgis_check.py`` in a subprocess
with the first Python that can ``import qgis.core``: ``$HSU_GEO_QGIS_PYTHON``, this one, or
``/usr/bin/python3``. Skipped when there is none. ``HSU_GEO_QGIS_PNG=path`` keeps the render.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

from hsu_geo.write.outputs import write_outputs

pytestmark = pytest.mark.qgis
CHECK_SCRIPT = Path(__file__).with_name("qgis_check.py")


def _clean_env(runtime_dir: Path | None = None) -> dict[str, str]:
    """Environment without this interpreter's Python settings, Qt offscreen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYENV"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    if runtime_dir is not None:  # Qt wants a private (0700) runtime directory
        runtime_dir.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime_dir)
    return env


@functools.cache
def qgis_python() -> str | None:
    """First interpreter that imports qgis.core, or None."""
    candidates = [os.environ.get("HSU_GEO_QGIS_PYTHON"), sys.executable, "/usr/bin/python3"]
    for exe in filter(None, candidates):
        if not shutil.which(exe) and not Path(exe).exists():
            continue
        probe = subprocess.run([exe, "-c", "import qgis.core"], env=_clean_env(),
                               capture_output=True, timeout=120)
        if probe.returncode == 0:
            return exe
    return None


@pytest.fixture(scope="module")
def pyqgis() -> str:
    exe = qgis_python()
    if exe is None:
        pytest.skip("PyQGIS not found (apt-get install python3-qgis, or set HSU_GEO_QGIS_PYTHON)")
    return exe


def run_check(exe: str, tif: Path, qml: Path, png: Path) -> dict:
    proc = subprocess.run([exe, str(CHECK_SCRIPT), str(tif), str(qml), str(png)],
                          env=_clean_env(png.parent / "xdg-runtime"), capture_output=True,
                          text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"qgis_check failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])


@pytest.mark.parametrize("georef", ["north_up", "rpc"])
def test_qgis_opens_styles_and_renders(tmp_path: Path, fakes, pyqgis: str, georef: str) -> None:
    ds = fakes.make_result(600, 500, georef=georef)
    paths = write_outputs(ds, tmp_path, "SCENE", "fcls")
    png = tmp_path / "render.png"
    report = run_check(pyqgis, paths["abundance"], paths["style"], png)
    if os.environ.get("HSU_GEO_QGIS_PNG"):
        keep = Path(os.environ["HSU_GEO_QGIS_PNG"])
        shutil.copy(png, keep.with_name(f"{keep.stem}_{georef}{keep.suffix}"))

    assert report["valid"], report
    assert report["default_style_renderer"] == "singlebandpseudocolor"  # sidecar .qml used
    assert report["load_style_ok"], report["load_style_message"]
    assert report["renderer"] == "singlebandpseudocolor" and report["renderer_band"] == 1
    assert report["classification"] == [0.0, 1.0]
    assert report["ramp_items"][0][1] == "#440154" and report["ramp_items"][-1][1] == "#fde725"
    assert report["ramp_items"][-1][2] == "1 (pure)"  # generic: right for any band
    assert report["band_count"] == 3
    for i, name in enumerate(fakes.NAMES):
        assert name in report["band_names"][i], report["band_names"]
    assert report["has_nodata"] and report["nodata_is_nan"]
    with rasterio.open(paths["abundance"]) as src:
        assert report["crs"] == f"EPSG:{src.crs.to_epsg()}"
        b = src.bounds
        assert report["extent"] == pytest.approx([b.left, b.bottom, b.right, b.top])
        assert (report["width"], report["height"]) == (src.width, src.height)
    if georef == "north_up":
        assert report["crs"] == "EPSG:32650"
    else:
        assert report["crs"] == "EPSG:32648"
    assert report["png_saved"] and png.stat().st_size > 1000
    assert report["distinct_colors"] > 20  # a colour ramp, not a blank or flat image
    assert report["non_white_fraction"] > 0.5


def test_qgis_rmse_and_dominant_styles(tmp_path: Path, fakes, pyqgis: str) -> None:
    ds = fakes.make_result(400, 300)
    paths = write_outputs(ds, tmp_path, "SCENE", "fcls")
    keep = os.environ.get("HSU_GEO_QGIS_PNG")

    rmse = run_check(pyqgis, paths["rmse"], paths["rmse_style"], tmp_path / "rmse.png")
    assert rmse["valid"] and rmse["load_style_ok"], rmse
    assert rmse["default_style_renderer"] == "singlebandpseudocolor"  # sidecar rmse.qml
    assert rmse["ramp_items"][0][1] == "#000004" and rmse["ramp_items"][-1][1] == "#fcfdbf"
    assert all("value (reflectance)" in label for _, _, label in rmse["ramp_items"])
    assert rmse["legend"] and all("reflectance" in label for label, _ in rmse["legend"])

    dom = run_check(pyqgis, paths["dominant"], paths["dominant_style"], tmp_path / "dom.png")
    assert dom["valid"] and dom["load_style_ok"], dom
    assert dom["default_style_renderer"] == "paletted"
    assert [c[2] for c in dom["classes"]] == fakes.NAMES
    assert [c[0] for c in dom["classes"]] == [0, 1, 2]
    assert [label for label, _ in dom["legend"]] == fakes.NAMES
    assert dom["has_nodata"] and dom["png_saved"]
    assert dom["distinct_colors"] >= 3  # the three classes (plus nodata / background)

    abundance = run_check(pyqgis, paths["abundance"], paths["style"], tmp_path / "ab.png")
    labels = [label for label, _ in abundance["legend"]]
    assert labels[0].startswith("0") and "absent" in labels[0] and "pure" in labels[-1]
    assert not any(name in label for label in labels for name in fakes.NAMES)
    if keep:
        for name in ("rmse.png", "dom.png"):
            shutil.copy(tmp_path / name, Path(keep).with_name(f"{Path(keep).stem}_{name}"))
