"""Small hostile inputs cost bounded memory and time and end in one clear line (issue 9).

Each case is a file of a few KB to a few hundred KB that used to take GBs or never end: a gzip
named ``.tar``, a zip holding a huge XML, a "billion laughs" preset, an ENVI header declaring
20,000 bands, a checkpoint declaring 10^9 bands, ``/dev/zero`` / a FIFO / a folder as an
input file, and an unbounded ``--scheduler local:N``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import resource
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.cube import MAX_BANDS, check_band_count
from hsu_geo.errors import InvalidSceneError
from hsu_geo.ingest.gf5_archive import sniff_archive
from hsu_geo.safe_io import XML_LIMIT, read_capped, read_small_file
from hsu_geo.scheduler import MAX_LOCAL_WORKERS, check_scheduler
from hsu_geo.testing import DEFAULT_GF5_PRODUCT, write_gf5_delivery
from tests.ingest.fakes import write_envi
from tests.unmix.scenes import linear_scene, write_scene

MIB = 1024 * 1024


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, code: int = 1) -> str:
    """The single ``Error:`` line of a failed run (exit ``code``, no traceback)."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr
    if code == 1:
        assert len(lines) == 1, result.stderr
    return lines[-1]


class Expired(BaseException):
    """Raised by :func:`deadline` (a BaseException, so the CLI's handler cannot swallow it)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""
    def expired(signum, frame):
        raise Expired(f"did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cube, _, _, wl = linear_scene(rows=12, cols=10, k=3, seed=2)
    return write_scene(tmp_path_factory.mktemp("scene") / "small.tif", cube, wl)


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vn = np.full((150, 4, 4), 100, "uint16")
    sw = np.full((180, 4, 4), 100, "uint16")
    return write_gf5_delivery(tmp_path_factory.mktemp("gf5"), vn, sw)


def child_peak_rss_mb(args: list[str], cwd: Path, timeout: float = 240) -> tuple[int, str, float]:
    """Run ``hsu-geo ARGS`` in a fresh interpreter: (exit code, stderr, peak RSS in MB)."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run([sys.executable, '-c', 'from hsu_geo.cli.main import cli; cli()',"
            " *sys.argv[1:]], capture_output=True, text=True)\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
            "sys.stderr.write(p.stderr)\n"
            "print(peak)\n"
            "sys.exit(p.returncode)\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stderr, float(proc.stdout.strip().splitlines()[-1])


# -- A1: a misnamed archive is recognised by its first bytes --------------------------------

def _gzip_named_tar(delivery: Path, target: Path) -> Path:
    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.add(delivery, arcname=delivery.name)
    return target


def test_gzip_named_tar_is_refused_by_batch_naming_the_fix(delivery: Path, tmp_path: Path):
    bad = _gzip_named_tar(delivery, tmp_path / "x.tar")
    out = tmp_path / "out"
    with deadline(60):
        msg = one_line_error(invoke("batch", bad, "-o", out, "-q"))
    assert "x.tar: named .tar but the content is gzip-compressed" in msg
    assert "rename it to x.tar.gz" in msg
    assert "PAX" not in msg
    visible = [p for p in out.rglob("*") if not p.name.startswith(".")] if out.exists() else []
    assert visible == []  # no record, no scene folder


def test_gzip_named_tar_is_refused_by_unmix_before_gdal(delivery: Path, tmp_path: Path):
    bad = _gzip_named_tar(delivery, tmp_path / f"{DEFAULT_GF5_PRODUCT}.tar")
    msg = one_line_error(invoke("unmix", bad, "-o", tmp_path / "o", "-q"))
    assert "rename it to" in msg and f"{DEFAULT_GF5_PRODUCT}.tar.gz" in msg
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("a.zip", "tar", "named .zip but the content is a tar archive; rename it to a.tar"),
    ("a.tar.gz", "tar", "named .tar.gz but the content is a tar archive; rename it to a.tar"),
    ("a.tar", "zip", "named .tar but the content is a zip archive; rename it to a.zip"),
    ("a.tar", "junk", "named .tar but the content is not a tar archive"),
    ("a.zip", "bzip2", "bzip2-compressed, which hsu-geo does not read"),
])
def test_every_misnamed_archive_kind_is_named(tmp_path: Path, name: str, content: str,
                                              needle: str):
    member = tmp_path / "m.txt"
    member.write_text("x" * 100)
    path = tmp_path / name
    if content == "tar":
        with tarfile.open(path, "w") as tf:
            tf.add(member, arcname="m.txt")
    elif content == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.write(member, "m.txt")
    elif content == "bzip2":
        import bz2
        path.write_bytes(bz2.compress(b"x" * 1000))
    else:
        path.write_bytes(b"just some text, no archive at all\n" * 40)
    msg = one_line_error(invoke("batch", path, "-o", tmp_path / "out", "-q"))
    assert needle in msg
    assert sniff_archive(path) == {"tar": "tar", "zip": "zip", "bzip2": "bzip2"}.get(content)


# -- A2: sidecars and archive members are read up to a cap -----------------------------------

def _zip_with_big_xml(delivery: Path, target: Path, xml_bytes: int) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for f in sorted(delivery.iterdir()):
            if f.suffix == ".xml":
                with zf.open(f"{delivery.name}/{f.name}", "w", force_zip64=True) as fh:
                    fh.write(b'<?xml version="1.0"?><ProductMetaData>')
                    block = b" " * MIB
                    for _ in range(xml_bytes // MIB):
                        fh.write(block)
                    fh.write(b"</ProductMetaData>")
            else:
                zf.write(f, f"{delivery.name}/{f.name}")
    return target


def test_gf5_zip_with_a_huge_xml_is_refused_in_bounded_memory(delivery: Path, tmp_path: Path):
    path = _zip_with_big_xml(delivery, tmp_path / f"{DEFAULT_GF5_PRODUCT}.zip", 200 * MIB)
    assert path.stat().st_size < 2 * MIB  # ~200 KB on disk, 200 MB inflated
    t0 = time.monotonic()
    code, stderr, peak_mb = child_peak_rss_mb(["info", str(path)], tmp_path)
    assert code == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error:") and "Traceback" not in stderr
    assert f"{DEFAULT_GF5_PRODUCT}.xml: product XML is too large" in last
    assert f"more than the {XML_LIMIT // MIB}.0 MiB" in last
    # the CLI alone peaks near 200 MB; reading and parsing the XML took > 1 GB before
    assert peak_mb < 600, peak_mb
    assert time.monotonic() - t0 < 200


def test_batch_refuses_an_oversized_sidecar_before_unpacking(delivery: Path, tmp_path: Path):
    path = _zip_with_big_xml(delivery, tmp_path / f"{DEFAULT_GF5_PRODUCT}.zip", 40 * MIB)
    out = tmp_path / "out"
    res = invoke("batch", path, "-o", out, "-q")
    assert res.exit_code == 1
    row = (out / "batch.csv").read_text()
    assert f"{DEFAULT_GF5_PRODUCT}.xml: sidecar file is too large" in row
    assert "Traceback" not in res.stderr
    assert not (out / DEFAULT_GF5_PRODUCT).exists() or \
        not any((out / DEFAULT_GF5_PRODUCT).iterdir())


def test_capped_read_holds_even_when_the_size_lies(tmp_path: Path):
    import io

    with pytest.raises(InvalidSceneError, match=r"m\.xml: header is too large"):
        read_capped(io.BytesIO(b"x" * 101), 100, "m.xml", "header")
    assert read_capped(io.BytesIO(b"x" * 100), 100, "m.xml", "header") == b"x" * 100
    big = tmp_path / "big.hdr"
    big.write_bytes(b"ENVI\n" + b" " * 2000)
    with pytest.raises(InvalidSceneError, match=r"big\.hdr: ENVI header is too large \(2005 "):
        read_small_file(big, 1000, "ENVI header")


def test_enmap_zip_metadata_is_capped(tmp_path: Path):
    path = tmp_path / "ENMAP01-____L2A-DT0000001_20230101T000000Z_001_V010111_20230102T000000Z.zip"
    stem = path.stem
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(f"{stem}/{stem}-SPECTRAL_IMAGE.TIF", b"II*\0")
        with zf.open(f"{stem}/{stem}-METADATA.XML", "w", force_zip64=True) as fh:
            for _ in range(XML_LIMIT // MIB + 1):
                fh.write(b" " * MIB)
    msg = one_line_error(invoke("info", path))
    assert "METADATA.XML: metadata XML is too large" in msg


# -- A3: YAML aliases ("billion laughs") -----------------------------------------------------

def _laughs(tmp_path: Path) -> Path:
    lines = ["settings:", '  x0: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for i, name in enumerate("bcdefghi", start=1):
        lines.append(f"  x{i}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    lines.append("k: *i")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_billion_laughs_preset_is_refused_at_once(scene: Path, tmp_path: Path):
    preset = _laughs(tmp_path)
    assert preset.stat().st_size < 600
    t0 = time.monotonic()
    with deadline(30):
        msg = one_line_error(invoke("unmix", scene, "--pipeline", preset, "-o", tmp_path / "o"))
    assert time.monotonic() - t0 < 10
    assert "laughs.yaml: line 2: YAML anchors and aliases (&name, *name) are not allowed" in msg
    assert "write each value out" in msg
    assert not (tmp_path / "o").exists()


# -- A4: band counts beyond what the methods take --------------------------------------------

def test_envi_with_20000_bands_is_refused_from_its_header(tmp_path: Path):
    n = 20_000
    hdr = write_envi(tmp_path / "wide.hdr", np.ones((n, 2, 2), "uint8"),
                     wavelengths=np.linspace(400, 2500, n), writer="numpy")
    t0 = time.monotonic()
    with deadline(60):
        msg = one_line_error(invoke("unmix", hdr, "-k", "3", "-o", tmp_path / "o", "-q"))
    assert time.monotonic() - t0 < 30
    assert f"wide.hdr: declares {n} bands, more than the {MAX_BANDS}" in msg
    assert "subset the bands" in msg
    assert not (tmp_path / "o").exists()


def test_band_cap_boundary():
    check_band_count(MAX_BANDS, "scene")
    with pytest.raises(InvalidSceneError, match=f"declares {MAX_BANDS + 1} bands"):
        check_band_count(MAX_BANDS + 1, "scene")
    with pytest.raises(InvalidSceneError, match="declares 0 bands"):
        check_band_count(0, "scene")


def test_sample_larger_than_memory_budget_is_refused_before_reading(monkeypatch):
    import dask.array as da
    import xarray as xr

    from hsu_geo.errors import ConfigError
    from hsu_geo.ingest import scan

    calls = []
    data = da.zeros((500, 4000, 4000), dtype="float32", chunks=(500, 512, 512))
    cube = xr.DataArray(data.map_blocks(lambda b: calls.append(1) or b,
                                        meta=np.empty((0, 0, 0), "float32")),
                        dims=("band", "y", "x"))
    with pytest.raises(ConfigError, match=r"--sample-size 10000000: .* use --sample-size \d+"):
        scan.scan_cube(cube, 10_000_000)
    assert calls == []


# -- A5: checkpoints are validated before a network is built ---------------------------------

def _payload(n: int = 4, k: int = 2) -> dict:
    from hsu_geo.unmix import MODELS

    cls = MODELS.get("linear_ae")
    net = cls(cls.Config()).build_network(n, k)
    return {"format": "hsu-geo-deep-model", "format_version": 1, "hsu_geo_version": "0",
            "model": "linear_ae", "config": asdict(cls.Config()),
            "state_dict": {key: v.clone() for key, v in net.state_dict().items()},
            "n_bands": n, "k": k, "scale": 1.0, "endmembers": torch.rand(k, n),
            "wavelengths": [500.0 + 100 * i for i in range(n)],
            "endmember_names": [f"em_{i}" for i in range(k)], "band_numbers": list(range(1, n + 1)),
            "fit_info": {}}


def _tamper(payload: dict, change: str) -> dict:
    if change == "huge_n_bands":
        payload["n_bands"] = 10**9
    elif change == "n_bands_text":
        payload["n_bands"] = "4"
    elif change == "k_too_big":
        payload["k"] = 9
    elif change == "scale_text":
        payload["scale"] = "abc"
    elif change == "wavelengths_short":
        payload["wavelengths"] = [500.0]
    elif change == "names_not_list":
        payload["endmember_names"] = "em_0,em_1"
    elif change == "endmembers_shape":
        payload["endmembers"] = torch.rand(3, 4)
    elif change == "endmembers_list":
        payload["endmembers"] = [[0.1] * 4] * 2
    elif change == "model_unknown":
        payload["model"] = "nosuch"
    elif change == "model_classical":
        payload["model"] = "fcls"
    elif change == "config_list":
        payload["config"] = [1, 2]
    elif change == "version_text":
        payload["format_version"] = "one"
    elif change == "band_numbers_short":
        payload["band_numbers"] = [1]
    elif change == "state_dict_shape":
        key = next(iter(payload["state_dict"]))
        payload["state_dict"][key] = torch.zeros(7, 7, 7)
    elif change == "state_dict_not_tensors":
        payload["state_dict"] = {"w": [1, 2]}
    return payload


CHANGES = ("huge_n_bands", "n_bands_text", "k_too_big", "scale_text", "wavelengths_short",
           "names_not_list", "endmembers_shape", "endmembers_list", "model_unknown",
           "model_classical", "config_list", "version_text", "band_numbers_short",
           "state_dict_shape", "state_dict_not_tensors")


@pytest.mark.parametrize("change", CHANGES)
def test_malformed_checkpoint_is_a_one_line_error(scene: Path, tmp_path: Path, change: str):
    path = tmp_path / "model.pt"
    torch.save(_tamper(_payload(), change), path)
    with deadline(60):
        msg = one_line_error(invoke("unmix", scene, "--load-model", path, "-o", tmp_path / "o"))
    assert f"--load-model {path}" in msg
    assert "internal error" not in msg
    assert "retrain" in msg or "upgrade" in msg or "--save-model" in msg
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_checkpoint_declaring_a_billion_bands_allocates_nothing(scene: Path, tmp_path: Path):
    path = tmp_path / "huge.pt"
    torch.save(_tamper(_payload(), "huge_n_bands"), path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    msg = one_line_error(invoke("unmix", scene, "--load-model", path, "-o", tmp_path / "o"))
    assert "n_bands 1000000000 is not a band count from 1 to 2000" in msg
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200  # building it would have asked for 108 GB


def test_valid_handmade_checkpoint_passes_the_checks(tmp_path: Path):
    from hsu_geo.unmix.deep.checkpoint import read_checkpoint

    path = tmp_path / "ok.pt"
    torch.save(_payload(), path)
    unmixer = read_checkpoint(path).build("cpu")
    assert unmixer.n_bands == 4 and unmixer.k == 2


# -- A6: /dev/zero, FIFOs and folders as input files -----------------------------------------

FILE_FLAGS = ("--wavelengths", "--endmembers", "--pipeline", "--load-model")


@pytest.mark.parametrize("flag", FILE_FLAGS)
def test_dev_zero_as_input_file_is_refused(scene: Path, tmp_path: Path, flag: str):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with deadline(60):
        msg = one_line_error(invoke("unmix", scene, flag, "/dev/zero", "-o", tmp_path / "o"))
    assert "/dev/zero: not a regular file (a device, FIFO or socket)" in msg
    assert f"({flag})" in msg and "as an ordinary file" in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag", FILE_FLAGS)
def test_fifo_as_input_file_is_refused_without_blocking(scene: Path, tmp_path: Path, flag: str):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with deadline(60):  # opening a FIFO for reading would block forever
        msg = one_line_error(invoke("unmix", scene, flag, fifo, "-o", tmp_path / "o"))
    assert f"{fifo}: not a regular file" in msg and f"({flag})" in msg


@pytest.mark.parametrize("flag", FILE_FLAGS)
def test_folder_as_input_file_is_a_usage_error(scene: Path, tmp_path: Path, flag: str):
    res = invoke("unmix", scene, flag, tmp_path, "-o", tmp_path / "o")
    assert res.exit_code == 2
    assert "is a directory" in res.stderr
    assert not (tmp_path / "o").exists()


def test_batch_checks_input_files_too(scene: Path, tmp_path: Path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with deadline(60):
        msg = one_line_error(invoke("batch", scene.parent, "--endmembers", fifo, "-o",
                                    tmp_path / "o", "-q"))
    assert f"{fifo}: not a regular file" in msg


def test_oversized_endmember_csv_is_refused(scene: Path, tmp_path: Path, monkeypatch):
    import hsu_geo.safe_io as safe_io

    big = tmp_path / "em.csv"
    big.write_text("wavelength_nm,a\n" + "500,0.1\n" * 2000)
    monkeypatch.setattr(safe_io, "ENDMEMBER_LIMIT", 1000)  # read at call time by the check
    msg = one_line_error(invoke("unmix", scene, "--endmembers", big, "-o", tmp_path / "o"))
    assert "em.csv: endmember file (--endmembers) is too large" in msg


# -- A7: --scheduler local:N is bounded ------------------------------------------------------

@pytest.mark.parametrize("spec", ["local:100000", "local:0", "local:-1", "local:abc",
                                  f"local:{MAX_LOCAL_WORKERS + 1}", "local:", "local:２"])
def test_unbounded_or_bad_local_worker_count_is_a_usage_error(scene: Path, tmp_path: Path,
                                                              spec: str):
    t0 = time.monotonic()
    res = invoke("unmix", scene, "--scheduler", spec, "-o", tmp_path / "o")
    assert time.monotonic() - t0 < 20
    assert res.exit_code == 2, res.output
    assert f"'{spec}'" in res.stderr
    assert f"from 1 to {MAX_LOCAL_WORKERS}" in res.stderr
    assert not (tmp_path / "o").exists()


def test_scheduler_rule_accepts_the_documented_forms():
    for spec in ("local", "local:1", f"local:{MAX_LOCAL_WORKERS}", "tcp://10.0.0.1:8786"):
        assert check_scheduler(spec) == spec
    assert 4 * (os.cpu_count() or 1) == MAX_LOCAL_WORKERS


def test_preset_scheduler_is_bounded_the_same_way(scene: Path, tmp_path: Path):
    preset = tmp_path / "p.yaml"
    preset.write_text("scheduler: local:100000\n")
    msg = one_line_error(invoke("unmix", scene, "--pipeline", preset, "-o", tmp_path / "o"))
    assert "p.yaml: scheduler:" in msg and f"from 1 to {MAX_LOCAL_WORKERS}" in msg


def test_archive_with_too_many_members_is_refused(tmp_path: Path, monkeypatch):
    import hsu_geo.batch_discovery as discovery

    monkeypatch.setattr(discovery, "MAX_MEMBERS", 5)
    path = tmp_path / "many.tar"
    with tarfile.open(path, "w") as tf:
        for i in range(10):
            info = tarfile.TarInfo(f"f{i}.txt")
            info.size = 0
            tf.addfile(info)
    msg = one_line_error(invoke("batch", path, "-o", tmp_path / "out", "-q"))
    assert "many.tar: holds more than 5 members" in msg and "split it" in msg


def test_tar_listing_keeps_only_small_text_sidecars_in_memory(tmp_path: Path):
    import io

    from hsu_geo.ingest.gf5_archive import open_delivery

    path = tmp_path / f"{DEFAULT_GF5_PRODUCT}.tar"
    with tarfile.open(path, "w") as tf:
        for name, size in ((f"{DEFAULT_GF5_PRODUCT}_VN.tif", 3 * MIB), ("a.xml", 100),
                           ("b.bin", 3 * MIB), ("GF5B_AHSI_RadCal_VNIR.raw", 50)):
            info = tarfile.TarInfo(name)
            info.size = size
            tf.addfile(info, io.BytesIO(b"0" * size))
    delivery = open_delivery(path)
    assert sorted(delivery.cached) == ["GF5B_AHSI_RadCal_VNIR.raw", "a.xml"]
    assert delivery.read_bytes("a.xml") == b"0" * 100
