"""``hsu_geo.batch`` and ``hsu_geo.batch_discovery``: discovery, the batch record, resume,
failure isolation, archives, train once / apply many, and dask.distributed execution.

Scenes are tiny (24 x 24 px, 60 bands) linear mixtures written on the fly.
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from hsu_geo.batch import RECORD, SCRATCH, run_batch, settings_difference
from hsu_geo.batch_discovery import ArchiveSource, discover, open_source, readers_for
from hsu_geo.config import UnmixOptions
from hsu_geo.errors import ConfigError, InvalidSceneError, SceneNotFoundError
from hsu_geo.testing import write_gf5_delivery

OPTS = UnmixOptions(k="3", sample_size=2000)
#: outputs compared bit for bit between runs (run.json holds times; see test_distributed)
COMPARED = ("abundance", "rmse", "endmembers_csv", "endmembers_sli", "style", "quicklook")


def mixture(seed: int = 0, bands: int = 60, size: int = 24, k: int = 3
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(Y (bands, size, size) float32 reflectance, wavelengths nm)``: a noisy linear
    mixture of ``k`` smooth spectra with Dirichlet abundances."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(420.0, 2400.0, bands)
    E = np.stack([0.25 + 0.15 * np.sin(wl / 300.0 + 1.7 * i) + 0.05 * i for i in range(k)])
    A = rng.dirichlet(np.full(k, 0.5), size=size * size).T
    Y = (E.T @ A).reshape(bands, size, size) + rng.normal(0.0, 0.002, (bands, size, size))
    return Y.astype("float32"), wl


def write_scene(path: Path, seed: int = 0, bands: int = 60, size: int = 24, k: int = 3,
                acquired: str = "2023-06-15T18:30:00Z") -> Path:
    """A ``size`` x ``size`` GeoTIFF of :func:`mixture`, with per-band wavelength tags (nm)
    and an acquisition time; UTM 11N, 30 m pixels."""
    Y, wl = mixture(seed, bands, size, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "dtype": "float32", "count": bands, "height": size,
               "width": size, "crs": "EPSG:32611",
               "transform": from_origin(538_000.0 + 1_000.0 * seed, 4_142_000.0, 30.0, 30.0)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(Y)
        dst.update_tags(acquisition_time=acquired, quantity="reflectance")
        for b in range(bands):
            dst.update_tags(b + 1, wavelength=f"{wl[b]:.2f}", wavelength_units="Nanometers",
                            fwhm="30")
    return path


def write_gf5(parent: Path, product: str, archive: str | None = None) -> Path:
    """A 16 x 16 px GF-5B delivery (40 VNIR + 50 SWIR bands) as a folder or archive."""
    rng = np.random.default_rng(len(product))
    vn = rng.integers(200, 4000, (40, 16, 16), dtype="uint16")
    sw = rng.integers(200, 4000, (50, 16, 16), dtype="uint16")
    return write_gf5_delivery(parent, vn, sw, product=product, archive=archive)


GF5_A = "GF5B_AHSI_E113.2_N36.3_20221208_006658_L10000252104"
GF5_B = "GF5B_AHSI_E116.5_N41.2_20230615_010123_L10000312345"


def record_of(out: Path) -> dict:
    return json.loads((out / RECORD).read_text())


def checksums(out: Path, keys: tuple[str, ...] = COMPARED) -> dict[str, dict[str, str]]:
    """scene id -> {output key: sha256} from a batch record."""
    return {e["scene_id"]: {o["key"]: o["sha256"] for o in e["outputs"] if o["key"] in keys}
            for e in record_of(out)["scenes"] if e["scene_id"]}


def pack(folder: Path, target: Path) -> Path:
    """``folder``'s files as a .tar/.tar.gz/.zip at ``target`` (paths relative to folder)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if target.suffix == ".zip":
        with zipfile.ZipFile(target, "w") as zf:
            for f in files:
                zf.write(f, f.relative_to(folder).as_posix())
    else:
        with tarfile.open(target, "w:gz" if target.name.endswith(".gz") else "w",
                          format=tarfile.GNU_FORMAT) as tf:
            for f in files:
                tf.add(f, f.relative_to(folder).as_posix())
    return target


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    write_scene(root / "s0.tif", 0)
    write_scene(root / "s1.tif", 1)
    write_scene(root / "sub" / "s2.tif", 2)
    (root / "README.txt").write_text("notes\n")
    return root


@pytest.fixture(scope="module")
def threads_run(scene_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "batch"
    run_batch(scene_dir, out, OPTS)
    return out


# -- discovery ----------------------------------------------------------------------------
def test_discovery_groups_products_sidecars_and_skips_the_rest(tmp_path: Path) -> None:
    from tests.ingest.fakes import linear_wavelengths, ramp, write_envi

    write_gf5(tmp_path, GF5_A)  # a delivery folder
    write_gf5(tmp_path / "tars", GF5_B, archive="tar")  # a delivery tarball
    write_scene(tmp_path / "geo" / "a.tif")
    (tmp_path / "geo" / "a.tif.aux.xml").write_text("<PAMDataset/>")
    (tmp_path / "envi").mkdir()
    write_envi(tmp_path / "envi" / "flight.hdr", ramp(8, 4, 5),
               wavelengths=linear_wavelengths(8))
    write_envi(tmp_path / "envi" / "flight_glt.hdr", ramp(2, 4, 5, dtype="int32"))
    (tmp_path / "notes.txt").write_text("x")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("x.txt", "x")

    source = open_source(tmp_path, tmp_path / "scratch")
    scenes, skipped = discover(source, readers_for("auto"))
    by_id = {s.scene_id: s for s in scenes}
    assert set(by_id) == {GF5_A, GF5_B, "a", "flight"}
    assert by_id[GF5_A].reader == "gf5" and by_id[GF5_A].rel == GF5_A
    assert len(by_id[GF5_A].members) == 10  # images, RPCs, RadCal, Spectralresponse, XML, JPG
    assert by_id[GF5_B].rel == f"tars/{GF5_B}.tar"
    assert by_id["a"].members == ("geo/a.tif", "geo/a.tif.aux.xml")  # sidecar joins its scene
    assert by_id["flight"].reader == "envi" and by_id["flight"].rel == "envi/flight.hdr"
    assert set(by_id["flight"].members) == {"envi/flight.hdr", "envi/flight.img"}
    reasons = {s.rel: s.reason for s in skipped}
    assert "no band wavelengths" in reasons["envi/flight_glt.hdr"]
    assert "no reader recognises" in reasons["notes.txt"]
    assert "not a recognised product" in reasons["other.zip"]


def test_discovery_in_an_archive_unpacks_one_scene_at_a_time(scene_dir: Path,
                                                               tmp_path: Path) -> None:
    for name in ("a.tar", "a.tar.gz", "a.zip"):
        archive = pack(scene_dir, tmp_path / name)
        source = ArchiveSource(archive, tmp_path / f"scratch-{name}")
        scenes, skipped = discover(source, readers_for("auto"))
        assert [s.scene_id for s in scenes] == ["s0", "s1", "s2"]
        assert [s.rel for s in skipped] == ["README.txt"]
        shadow = source.root / "s0.tif"
        assert shadow.stat().st_size < (scene_dir / "s0.tif").stat().st_size  # head only
        source.plan(scenes)
        path = source.materialize(scenes[2])
        assert path.read_bytes() == (scene_dir / "sub" / "s2.tif").read_bytes()
        source.release(scenes[2])
        assert not path.exists()
        assert source.materialize(scenes[0]).read_bytes() == (scene_dir / "s0.tif").read_bytes()
        source.close()


@pytest.mark.parametrize("name", ["cut.tar", "cut.tar.gz"])
def test_truncated_archive_fails_only_the_cut_scene(scene_dir: Path, tmp_path: Path,
                                                    name: str) -> None:
    data = pack(scene_dir, tmp_path / name.replace("cut", "full")).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * 0.55)])  # ends inside s1.tif (s0 is complete)
    source = ArchiveSource(cut, tmp_path / "scratch")
    scenes, _ = discover(source, readers_for("auto"))
    assert source.error and source.truncated == "s1.tif"
    by_id = {s.scene_id: s for s in scenes}
    assert source.materialize(by_id["s0"]).read_bytes() == (scene_dir / "s0.tif").read_bytes()
    with pytest.raises(InvalidSceneError, match=r"truncated inside s1\.tif"):
        source.materialize(by_id["s1"])
    source.close()


def test_bad_input_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(SceneNotFoundError, match="no such folder or archive"):
        run_batch(tmp_path / "missing", tmp_path / "out", OPTS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidSceneError, match="holds no files"):
        run_batch(tmp_path / "empty", tmp_path / "out", OPTS)
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(InvalidSceneError, match="holds no files"):
        run_batch(tmp_path / "empty.tar", tmp_path / "out", OPTS)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="no scenes found among 1 files"):
        run_batch(tmp_path / "junk", tmp_path / "out", OPTS)
    write_scene(tmp_path / "dup" / "a" / "x.tif")
    write_scene(tmp_path / "dup" / "b" / "x.tif")
    with pytest.raises(ConfigError, match=r"scene id 'x' is used by both a/x.tif and b/x.tif"):
        run_batch(tmp_path / "dup", tmp_path / "out", OPTS)
    with pytest.raises(ConfigError, match="--train-on 'nope' is not a scene"):
        run_batch(tmp_path / "dup" / "a", tmp_path / "out", OPTS, train_on="nope")
    assert not (tmp_path / "out" / SCRATCH).exists()


# -- the batch record, resume -------------------------------------------------------------
def test_batch_record_outputs_and_table(threads_run: Path) -> None:
    record = record_of(threads_run)
    assert record["summary"] == {"done": 3, "failed": 0, "skipped": 1, "pending": 0}
    assert record["settings"]["k"] == "3" and "scheduler" not in record["settings"]
    for entry in record["scenes"][:3]:
        folder = threads_run / entry["scene_id"]
        assert entry["status"] == "done" and entry["seconds"] > 0
        assert {o["key"] for o in entry["outputs"]} >= {"abundance", "rmse", "run"}
        for out in entry["outputs"]:
            from hsu_geo.write.provenance import sha256_file

            assert sha256_file(folder / out["name"]) == out["sha256"]
        assert not list(folder.glob(".hsu-geo*"))
    assert record["scenes"][3] == {"scene_id": None, "source": "README.txt", "reader": None,
                                   "status": "skipped",
                                   "error": "no reader recognises this file (see `hsu-geo "
                                            "readers`)"}
    rows = (threads_run / "batch.csv").read_text().splitlines()
    assert rows[0] == "scene_id,status,seconds,reader,source,outputs,error"
    assert rows[1].startswith("s0,done,") and rows[3].split(",")[4] == "sub/s2.tif"
    assert not (threads_run / SCRATCH).exists()


def test_rerun_keeps_verified_scenes_and_redoes_the_others(threads_run: Path,
                                                            scene_dir: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "batch"
    shutil.copytree(threads_run, out)
    abundance = next((out / "s1").glob("*_abundance.tif"))
    abundance.write_bytes(abundance.read_bytes() + b"\0")  # tampered output
    stage = out / "s2" / ".hsu-geo-txn-0123456789ab"  # a set killed before its swap
    (stage / "new").mkdir(parents=True)
    (stage / "new" / "s2_fcls_rmse.tif").write_bytes(b"half")
    record = run_batch(scene_dir, out, OPTS)
    status = {e["scene_id"]: (e["status"], bool(e.get("reused"))) for e in record["scenes"]}
    assert status == {"s0": ("done", True), "s1": ("done", False), "s2": ("done", True),
                      None: ("skipped", False)}
    assert checksums(out) == checksums(threads_run)
    assert not list(out.glob("*/.hsu-geo-txn-*"))
    assert [e["scene_id"] for e in record["scenes"]].count("s1") == 1


def test_other_settings_are_refused_unless_overwrite(threads_run: Path, scene_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"other settings \(k was '3', now '4'\).*--overwrite"):
        run_batch(scene_dir, threads_run, OPTS.updated(k="4"))
    old = record_of(threads_run)["settings"]
    assert settings_difference(old, dict(old)) is None
    assert settings_difference({**old, "settings": {"lr": "1"}}, old) == \
        "settings was {'lr': '1'}, now {}"
    legacy = {k: v for k, v in old.items() if k != "load_model"}  # record of an older version
    assert settings_difference(legacy, old) is None


def test_one_bad_scene_does_not_stop_the_others_and_fail_fast_does(tmp_path: Path) -> None:
    good = write_scene(tmp_path / "in" / "b_good.tif")
    (tmp_path / "in" / "a_broken.tif").write_bytes(good.read_bytes()[:4000])
    record = run_batch(tmp_path / "in", tmp_path / "out", OPTS)
    status = {e["scene_id"]: e["status"] for e in record["scenes"]}
    assert status == {"a_broken": "failed", "b_good": "done"}
    assert "not a readable raster" in record["scenes"][0]["error"]
    assert not (tmp_path / "out" / "a_broken").exists()

    record = run_batch(tmp_path / "in", tmp_path / "ff", OPTS, fail_fast=True)
    assert [e["status"] for e in record["scenes"]] == ["failed", "pending"]
    assert "--fail-fast" in record["scenes"][1]["error"]


def test_an_archive_gives_the_same_outputs_as_the_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_scene(src / "scenes" / "s0.tif")
    write_gf5(src / "scenes", GF5_A, archive="tar.gz")  # a GF-5 tarball inside the archive
    folder = run_batch(src, tmp_path / "from_folder", OPTS)
    assert folder["summary"]["done"] == 2
    # streamed .tar.gz; .tar and .zip members unpack byte-identically (test above)
    record = run_batch(pack(src, tmp_path / "a.tar.gz"), tmp_path / "from_archive", OPTS)
    assert record["summary"]["done"] == 2, record["scenes"]
    assert checksums(tmp_path / "from_archive") == checksums(tmp_path / "from_folder")
    assert not (tmp_path / "from_archive" / SCRATCH).exists()


# -- train once, apply many ---------------------------------------------------------------
def test_train_once_apply_many(tmp_path: Path) -> None:
    for i in range(3):
        write_scene(tmp_path / "in" / f"t{i}.tif", seed=i)
    write_scene(tmp_path / "in" / "odd.tif", seed=3, bands=50)
    record = run_batch(tmp_path / "in", tmp_path / "out", OPTS, train_on="t1")
    status = {e["scene_id"]: e["status"] for e in record["scenes"]}
    assert status == {"odd": "failed", "t0": "done", "t1": "done", "t2": "done"}
    odd = next(e for e in record["scenes"] if e["scene_id"] == "odd")
    assert "the model from t1 needs a band at" in odd["error"]
    training = record["training"]
    assert training["scene_id"] == "t1" and training["endmembers"] == ["em_1", "em_2", "em_3"]
    csvs = {(tmp_path / "out" / f"t{i}" / f"t{i}_fcls_endmembers.csv").read_text()
            for i in range(3)}
    assert len(csvs) == 1  # the same endmembers, names and order for every scene
    run = json.loads((tmp_path / "out" / "t0" / "t0_fcls_run.json").read_text())
    assert run["extra"]["trained_on"] == "t1"

    again = run_batch(tmp_path / "in", tmp_path / "out", OPTS, train_on="t1")
    assert again["training"]["sha256"] == training["sha256"]  # the stored model was reused
    assert [e.get("reused") for e in again["scenes"] if e["status"] == "done"] == [True] * 3


# -- dask.distributed ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster_address():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


@pytest.mark.parametrize("distribute", ["scenes", "chunks"])
def test_distributed_matches_threads(threads_run: Path, scene_dir: Path, tmp_path: Path,
                                     cluster_address: str, distribute: str) -> None:
    # joins a running cluster by its address (local:N starts one the same way, then the same
    # code runs: tests/cli/test_unmix.py covers local:N)
    out = tmp_path / distribute
    record = run_batch(scene_dir, out, OPTS.updated(scheduler=cluster_address),
                       distribute=distribute)
    assert record["summary"]["done"] == 3
    assert record["distribute"] == distribute
    exact = ("abundance", "rmse", "endmembers_csv", "endmembers_sli")
    assert checksums(out, exact) == checksums(threads_run, exact)
