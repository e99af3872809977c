"""Checks shared by the deep models' CLI tests: one ``hsu-geo unmix`` run that saves the model,
the outputs every run writes, a reload of the saved model, and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from tests.unmix.scenes import linear_scene, write_scene

#: files every `hsu-geo unmix` run of a deep model writes (scene id "scene")
USUAL = ("abundance.tif", "rmse.tif", "endmembers.csv", "run.json", "dominant.tif")


def unmix_and_save(tmp: Path, model: str, settings: Sequence[str], wl: np.ndarray, *,
                   rows: int = 26, cols: int = 22, nodata: tuple[int, int] = (5, 7),
                   seed: int = 3, chunk: int | None = 16) -> Path:
    """``hsu-geo unmix scene.tif -m MODEL -k 3 -o tmp/out --save-model tmp/m.pt`` on a
    ``rows x cols`` linear scene with one nodata pixel; returns the scene's path."""
    cube, _, _, wl = linear_scene(rows=rows, cols=cols, k=3, seed=2, wl=wl)
    cube[:, nodata[0], nodata[1]] = np.nan
    scene = write_scene(tmp / "scene.tif", cube, wl)
    args = ["unmix", str(scene), "-m", model, "-k", "3", "-o", str(tmp / "out"), "-q",
            "--seed", str(seed), "--save-model", str(tmp / "m.pt")]
    if chunk:
        args += ["--chunk-size", str(chunk)]
    for setting in settings:
        args += ["--set", setting]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return scene


def check_usual_outputs(tmp: Path, scene: Path, model: str, *, shape: tuple[int, int],
                        nodata: tuple[int, int] = (5, 7), sum_to_one: bool = True,
                        files: Sequence[str] = USUAL) -> dict[str, Any]:
    """The run of :func:`unmix_and_save` wrote ``files``, georeferenced like the scene, NaN at
    the nodata pixel only, abundances >= 0 (summing to one with ``sum_to_one``) and a finite
    RMSE; returns ``run.json``."""
    out = tmp / "out"
    names = {p.name for p in out.iterdir()}
    for suffix in files:
        assert f"scene_{model}_{suffix}" in names
    with rasterio.open(out / f"scene_{model}_abundance.tif") as ds, rasterio.open(scene) as src:
        assert (ds.count, ds.height, ds.width) == (3, *shape)
        assert ds.crs == src.crs and ds.transform == src.transform
        A = ds.read()
    with rasterio.open(out / f"scene_{model}_rmse.tif") as ds:
        rmse = ds.read(1)
    assert np.isnan(A[:, nodata[0], nodata[1]]).all() and np.isnan(rmse[nodata])
    ok = np.isfinite(A).all(axis=0)
    assert ok.sum() == shape[0] * shape[1] - 1 and np.isfinite(rmse[ok]).all()
    assert (A[:, ok] >= 0).all()
    if sum_to_one:
        np.testing.assert_allclose(A[:, ok].sum(axis=0), 1.0, atol=1e-5)
    return json.loads((out / f"scene_{model}_run.json").read_text())


def check_reload_gives_the_same_maps(tmp: Path, scene: Path, model: str, *,
                                     chunk: int | None = 32, atol: float = 1e-5) -> None:
    """``--load-model tmp/m.pt`` (at another ``--chunk-size``) writes the first run's maps."""
    args = ["unmix", str(scene), "--load-model", str(tmp / "m.pt"), "-o", str(tmp / "b"), "-q"]
    if chunk:
        args += ["--chunk-size", str(chunk)]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp / "b" / f"scene_{model}_abundance.tif") as b, \
            rasterio.open(tmp / "out" / f"scene_{model}_abundance.tif") as a:
        np.testing.assert_allclose(b.read(), a.read(), atol=atol)


def one_line_error(args: Sequence[str]) -> str:
    """Run ``hsu-geo ARGS``, which must fail with an ``Error:`` line and no traceback; returns
    that (last) line."""
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("Error:"), lines
    return lines[-1]
