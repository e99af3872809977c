"""`hsu-geo unmix` end to end: outputs, accuracy, refusals and bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.scoring import score_outputs
from tests.unmix.scenes import linear_scene, write_scene

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data" / "minerals_aviris_like.tif"
OUTPUT_KEYS = ("abundance", "rmse", "endmembers_csv", "endmembers_sli", "endmembers_hdr",
               "style", "quicklook", "run")


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert result.exit_code == 1, result.output
    assert lines and lines[-1].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


@pytest.fixture
def noise_free(tmp_path):
    cube, E, A, wl = linear_scene(rows=36, cols=28, k=4, seed=1)
    cube[:, 30, 3:6] = np.nan  # a few nodata pixels
    return write_scene(tmp_path / "linear.tif", cube, wl), E, A


def test_sample_scene_writes_every_output(tmp_path):
    res = invoke("unmix", SAMPLE, "-m", "fcls", "-k", "auto", "-o", tmp_path, "-q")
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in tmp_path.iterdir())
    stem = "minerals_aviris_like_fcls_"
    assert written == sorted(stem + s for s in (
        "abundance.tif", "rmse.tif", "endmembers.csv", "endmembers.sli", "endmembers.hdr",
        "abundance.qml", "rmse.qml", "dominant.tif", "dominant.qml", "quicklook.png",
        "run.json"))
    with rasterio.open(tmp_path / f"{stem}abundance.tif") as dst, rasterio.open(SAMPLE) as src:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert dst.count == 5 and all(dst.descriptions)
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    record = json.loads((tmp_path / f"{stem}run.json").read_text())
    text = json.dumps(record)
    for key in ("hysime_k", "timings", "seed", "device", "sha256"):
        assert key in text, key


@pytest.mark.parametrize("extractor, sad, armse", [
    ("vca", 0.01, 0.01),  # pure pixels, no noise: the vertices are the endmembers, exactly
    # the default refines to means of "pure" pixels, which on a scene without variability pulls
    # each vertex slightly inwards (measured 0.0165 rad): a known cost, see the README
    (None, 0.02, 0.025),
])
def test_noise_free_scene_is_recovered(noise_free, tmp_path, extractor, sad, armse):
    path, E, A = noise_free
    more = ["--extractor", extractor] if extractor else []
    res = invoke("unmix", path, "-m", "fcls", "-k", "4", "-o", tmp_path, "-q", *more)
    assert res.exit_code == 0, res.output
    stem = tmp_path / "linear_fcls_"
    scores = score_outputs(f"{stem}abundance.tif", f"{stem}endmembers.csv", E,
                           np.arange(1, E.shape[1] + 1), A)
    assert scores.mean_sad < sad
    assert scores.armse < armse
    with rasterio.open(f"{stem}abundance.tif") as src:
        est = src.read()
    assert np.isnan(est[:, 30, 3:6]).all()
    assert np.isfinite(est[:, :30]).all()


def test_existing_outputs_are_kept_without_overwrite(tmp_path):
    assert invoke("unmix", SAMPLE, "-k", "3", "-o", tmp_path, "-q").exit_code == 0
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    msg = one_line_error(invoke("unmix", SAMPLE, "-k", "4", "-o", tmp_path, "-q"))
    assert "--overwrite" in msg
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    assert after == before
    assert invoke("unmix", SAMPLE, "-k", "4", "-o", tmp_path, "-q",
                  "--overwrite").exit_code == 0
    with rasterio.open(tmp_path / "minerals_aviris_like_fcls_abundance.tif") as src:
        assert src.count == 4


@pytest.mark.parametrize(("args", "needle"), [
    (("-m", "nosuchmodel"), "fcls"),
    (("--extractor", "nosuch"), "vca"),
    (("-k", "5000"), "-k 5000"),
    (("--device", "tpu"), "cpu"),
    (("--set", "oops"), "key=value"),
    (("--library", "usgs:unobtainium"), "unobtainium"),
    (("--library", "ecostress"), "usgs"),
    (("-m", "sunsal", "-k", "4"), "-k 4 does not apply to -m sunsal"),
    (("--library", "usgs:alunite,calcite", "-k", "3"), "does not match the 2 endmember(s)"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, needle):
    msg = one_line_error(invoke("unmix", SAMPLE, "-o", tmp_path, "-q", *args))
    assert needle in msg
    assert not any(tmp_path.iterdir())


def test_endmember_csv_that_does_not_cover_the_scene(tmp_path):
    csv = tmp_path / "em.csv"
    wl = np.arange(400, 1001, 10)
    rows = "\n".join(f"{w},{0.2 + w / 1e4},{0.5}" for w in wl)
    csv.write_text("wavelength_nm,soil,leaf\n" + rows + "\n")
    msg = one_line_error(invoke("unmix", SAMPLE, "--endmembers", csv, "-o", tmp_path / "o"))
    assert "cover" in msg


def test_k_equal_to_the_library_size_is_accepted(tmp_path):
    """-k is redundant with --library/--endmembers, so it must match their count; then it runs."""
    csv = tmp_path / "em.csv"
    wl = np.arange(350, 2601, 10)
    csv.write_text("wavelength_nm,soil,leaf\n"
                   + "\n".join(f"{w},{0.2 + w / 1e4},{0.5}" for w in wl) + "\n")
    msg = one_line_error(invoke("unmix", SAMPLE, "--endmembers", csv, "-k", "3",
                                "-o", tmp_path / "o"))
    assert "does not match the 2 endmember(s) of --endmembers" in msg
    res = invoke("unmix", SAMPLE, "--library", "usgs:alunite,calcite", "-k", "2",
                 "-o", tmp_path / "lib", "-q")
    assert res.exit_code == 0, res.output
    with rasterio.open(next((tmp_path / "lib").glob("*_abundance.tif"))) as src:
        assert src.count == 2


def test_library_endmembers_on_a_radiance_scene_are_refused(tmp_path):
    gf5 = next((REPO / "sample_data").glob("GF5B_AHSI_*"))
    msg = one_line_error(invoke("unmix", gf5, "--library", "usgs:alunite,calcite",
                                "-o", tmp_path))
    assert "radiance" in msg


def test_output_dir_that_is_a_file_is_a_usage_error(tmp_path):
    target = tmp_path / "not_a_dir"
    target.write_text("x")
    res = invoke("unmix", SAMPLE, "-k", "3", "-o", target)
    assert res.exit_code == 2 and "not_a_dir" in res.stderr
    assert target.read_text() == "x"


def test_output_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    msg = one_line_error(invoke("unmix", SAMPLE, "-k", "3", "-o", tmp_path / "file" / "sub"))
    assert "file" in msg


def test_missing_scene(tmp_path):
    msg = one_line_error(invoke("unmix", tmp_path / "nope.tif", "-o", tmp_path))
    assert "nope.tif" in msg


def test_interrupt_while_writing_leaves_no_outputs(tmp_path, monkeypatch):
    import hsu_geo.write.outputs as outputs

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_quicklook", boom)
    res = CliRunner().invoke(cli, ["unmix", str(SAMPLE), "-k", "3", "-o", str(tmp_path), "-q"])
    assert res.exit_code == 130
    assert list(tmp_path.iterdir()) == []


def test_local_cluster_gives_the_same_result_as_threads(noise_free, tmp_path):
    path, _, _ = noise_free
    a, b = tmp_path / "threads", tmp_path / "cluster"
    assert invoke("unmix", path, "-k", "4", "-o", a, "-q", "--chunk-size", "16").exit_code == 0
    res = invoke("unmix", path, "-k", "4", "-o", b, "-q", "--chunk-size", "16",
                 "--scheduler", "local:2")
    assert res.exit_code == 0, res.output
    for name in ("linear_fcls_abundance.tif", "linear_fcls_rmse.tif"):
        with rasterio.open(a / name) as s1, rasterio.open(b / name) as s2:
            np.testing.assert_array_equal(s1.read(), s2.read())


def test_gf5_delivery_is_unmixed_and_orthorectified(tmp_path):
    gf5 = next((REPO / "sample_data").glob("GF5B_AHSI_*"))
    src = tmp_path / gf5.name
    shutil.copytree(gf5, src)
    res = invoke("unmix", src, "-k", "5", "-o", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.output
    tif = next((tmp_path / "out").glob("*_abundance.tif"))
    with rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 32650  # UTM 50N for 116.5 E, 41.2 N
        lon_lat = rasterio.warp.transform(ds.crs, "EPSG:4326",
                                          [(ds.bounds.left + ds.bounds.right) / 2],
                                          [(ds.bounds.top + ds.bounds.bottom) / 2])
        assert abs(lon_lat[0][0] - 116.5) < 0.1 and abs(lon_lat[1][0] - 41.2) < 0.1
        assert ds.transform.b == 0 and ds.transform.d == 0


@pytest.mark.skipif(os.environ.get("HSU_GEO_FAST") == "1", reason="fast mode")
def test_blind_accuracy_on_samson(shared_data, tmp_path):
    from hsu_geo.datasets import load_samson, write_geotiff

    scene = load_samson(shared_data)
    tif = write_geotiff(scene, tmp_path / "samson.tif")
    assert invoke("unmix", tif, "-k", "3", "-o", tmp_path, "-q").exit_code == 0
    scores = score_outputs(tmp_path / "samson_fcls_abundance.tif",
                           tmp_path / "samson_fcls_endmembers.csv", scene.endmembers,
                           np.arange(1, scene.cube.shape[0] + 1), scene.abundances)
    # VCA+FCLS on Samson: published mean SAD is typically 0.05-0.15 rad
    assert scores.mean_sad < 0.15
    assert scores.perm.tolist() != []


def test_preset_values_are_not_overridden_by_flag_defaults(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("model: fcls\nk: 3\nchunk_size: 32\nextractor: atgp\n")
    res = invoke("unmix", SAMPLE, "--pipeline", preset, "-o", tmp_path / "a", "-q")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "a" / "minerals_aviris_like_fcls_run.json").read_text())
    opts = record["config"]["options"]
    assert (opts["k"], opts["chunk_size"], opts["extractor"]) == ("3", 32, "atgp")
    res = invoke("unmix", SAMPLE, "--pipeline", preset, "-k", "4", "-o", tmp_path / "b", "-q")
    record = json.loads((tmp_path / "b" / "minerals_aviris_like_fcls_run.json").read_text())
    assert record["config"]["options"]["k"] == "4"  # a flag given overrides the preset
