"""write_outputs: every file, one pass over the data, all-or-nothing, clear refusals."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

import hsu_geo.write.outputs as outputs_mod
from hsu_geo.errors import HsuGeoError, OutputError, OutputExistsError
from hsu_geo.write.outputs import output_paths, write_outputs
from hsu_geo.write.provenance import build_run_record
from hsu_geo.write.tables import read_endmember_csv

SUFFIXES = ["abundance.tif", "rmse.tif", "endmembers.csv", "endmembers.sli", "endmembers.hdr",
            "abundance.qml", "rmse.qml", "dominant.tif", "dominant.qml", "quicklook.png",
            "run.json"]


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_writes_every_output(tmp_path: Path, fakes) -> None:
    ds = fakes.make_result(600, 700)
    out = tmp_path / "out"
    record = build_run_record(scene_id="S", model="fcls", config={"k": 3}, seed=0,
                              device="cpu", inputs=[Path(__file__)],
                              timings={"unmix": 1.5}, endmembers=fakes.NAMES,
                              endmember_angles_deg=[1.0, 2.0, 3.5])
    paths = write_outputs(ds, out, "S", "fcls", run_record=record)
    assert listing(out) == sorted(f"S_fcls_{s}" for s in SUFFIXES)
    assert paths == output_paths(out, "S", "fcls")
    with rasterio.open(paths["abundance"]) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.count == 3 and src.descriptions == tuple(fakes.NAMES)
        assert src.tags(3).items() >= {"ENDMEMBER": "vegetation", "ENDMEMBER_INDEX": "3"}.items()
        assert src.units == ("fraction",) * 3
        tags = src.tags()
        assert tags["HSU_MODEL"] == "fcls" and tags["SOURCE_SENSOR"] == "test"
        assert tags["SOURCE_PRODUCT"] == "SCENE_L1" and "HSU_VERSION" in tags
        assert src.crs == CRS.from_epsg(32650) and src.transform == fakes.NORTH_UP
        np.testing.assert_array_equal(src.read(), ds["abundance"].values)
    with rasterio.open(paths["rmse"]) as src:
        assert src.count == 1 and src.descriptions == ("reconstruction_rmse",)
        np.testing.assert_allclose(src.read(1), ds["reconstruction_rmse"].values)
    table = read_endmember_csv(paths["endmembers_csv"])
    assert list(table.names) == fakes.NAMES  # same names and order as the band descriptions
    np.testing.assert_array_equal(table.band, ds["band"].values)
    assert "spectra names = { kaolinite , alunite , vegetation }" in \
        paths["endmembers_hdr"].read_text()
    run = json.loads(paths["run"].read_text())
    assert run["inputs"][0]["sha256"] and run["inputs"][0]["bytes"] > 0
    assert run["timings_s"]["unmix"] == 1.5 and run["timings_s"]["write_rasters"] > 0
    assert run["endmember_angles_deg"] == {"kaolinite": 1.0, "alunite": 2.0, "vegetation": 3.5}
    assert run["outputs"]["abundance"] == "S_fcls_abundance.tif"
    assert run["versions"]["gdal"] and run["versions"]["numpy"]
    assert run["output_grid"]["crs"] == "EPSG:32650"
    assert paths["quicklook"].read_bytes()[:4] == b"\x89PNG"


def test_run_record_defaults_from_result(tmp_path: Path, fakes) -> None:
    paths = write_outputs(fakes.make_result(), tmp_path, "S", "fcls")
    run = json.loads(paths["run"].read_text())
    assert run["config"] == {"k": 3} and run["seed"] == 0 and run["device"] == "cpu"


def test_scene_is_read_once_for_abundance_and_rmse(tmp_path: Path, fakes) -> None:
    """Abundance and RMSE share the graph that reads the scene; it must run once per chunk."""
    reads: list[tuple[int, ...]] = []
    lock = threading.Lock()

    def read_scene(block: np.ndarray) -> np.ndarray:
        if block.size > 1:  # skip dask's meta probes
            with lock:
                reads.append(block.shape)
        return block

    scene = da.random.RandomState(0).random_sample((3, 256, 256), chunks=(3, 128, 128))
    scene = scene.astype("float32").map_blocks(read_scene, dtype="float32")
    ds = fakes.make_result(256, 256, abundance=scene / scene.sum(axis=0))
    write_outputs(ds, tmp_path, "S", "m")
    assert len(reads) == 4  # 2 x 2 chunks, each read once


def test_refuses_existing_outputs_without_overwrite(tmp_path: Path, fakes) -> None:
    existing = tmp_path / "S_fcls_rmse.tif"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match=r"S_fcls_rmse\.tif.*--overwrite"):
        write_outputs(fakes.make_result(), tmp_path, "S", "fcls")
    assert listing(tmp_path) == ["S_fcls_rmse.tif"]  # nothing else written, nothing clobbered
    assert existing.read_bytes() == b"keep me"
    paths = write_outputs(fakes.make_result(), tmp_path, "S", "fcls", overwrite=True)
    assert len(listing(tmp_path)) == len(SUFFIXES)
    with rasterio.open(paths["rmse"]) as src:
        assert src.count == 1


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_nothing(tmp_path: Path, fakes, monkeypatch, exc) -> None:
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(outputs_mod, "write_quicklook", fail)  # after the COGs are written
    out = tmp_path / "new"
    with pytest.raises(type(exc)):
        write_outputs(fakes.make_result(), out, "S", "fcls")
    assert not out.exists()  # created by the run, removed again when empty


def test_failure_during_compute_keeps_old_outputs(tmp_path: Path, fakes) -> None:
    first = write_outputs(fakes.make_result(), tmp_path, "S", "fcls")
    before = {p.name: p.read_bytes() for p in first.values()}

    def explode(block: np.ndarray) -> np.ndarray:
        if block.size > 1 and np.nanmax(block) > -1:
            raise RuntimeError("model crashed in a chunk")
        return block

    bad = fakes.make_result()
    bad["abundance"].data = bad["abundance"].data.map_blocks(explode, dtype="float32")
    with pytest.raises(RuntimeError, match="model crashed"):
        write_outputs(bad, tmp_path, "S", "fcls", overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hsu-geo")]


def test_unwritable_directory(tmp_path: Path, fakes) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"file.*not a directory|cannot create"):
        write_outputs(fakes.make_result(), blocker, "S", "fcls")
    with pytest.raises(OutputError, match="cannot create output directory"):
        write_outputs(fakes.make_result(), blocker / "sub", "S", "fcls")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_directory(tmp_path: Path, fakes) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=r"ro.*not writable"):
            write_outputs(fakes.make_result(), ro, "S", "fcls")
    finally:
        ro.chmod(0o755)


def test_bad_names_and_result(tmp_path: Path, fakes) -> None:
    with pytest.raises(OutputError, match="file name"):
        write_outputs(fakes.make_result(), tmp_path, "a/b", "fcls")
    with pytest.raises(HsuGeoError, match="reconstruction_rmse"):
        write_outputs(fakes.make_result().drop_vars("reconstruction_rmse"), tmp_path, "S", "m")
    assert listing(tmp_path) == []


def test_rpc_result_is_orthorectified(tmp_path: Path, fakes) -> None:
    paths = write_outputs(fakes.make_result(200, 150, georef="rpc"), tmp_path, "GF5", "fcls")
    for key in ("abundance", "rmse"):
        with rasterio.open(paths[key]) as src:
            assert src.crs == CRS.from_epsg(32648) and src.res == (30.0, 30.0)
            assert src.transform.b == 0 and src.transform.d == 0
    run = json.loads(paths["run"].read_text())
    assert run["output_grid"]["orthorectified_from_rpc"] is True


def test_progress_bar_on_stderr(tmp_path: Path, fakes, capsys) -> None:
    write_outputs(fakes.make_result(), tmp_path, "S", "fcls", progress=True)
    captured = capsys.readouterr()
    # a tqdm bar over the dask tasks, cleared when done (leave=False); nothing on stdout
    assert "task/s" in captured.err and captured.out == ""
    assert captured.err.rstrip(" ").endswith("\r")
