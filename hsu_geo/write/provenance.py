"""``run.json``: what was run, on what, with which software, how long each stage took.

:func:`build_run_record` gathers the record (effective config, seed, device, package versions,
sha256 of every input file, timings in seconds, endmember names and angles);
:func:`write_run_json` writes it atomically. Values that JSON cannot hold (numpy scalars and
arrays, paths, dataclasses, datetimes) are converted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hsu_geo.errors import OutputError, SceneNotFoundError
from hsu_geo.write.atomic import atomic_path

SCHEMA = "hsu-geo/run/1"
BLOCK_BYTES = 1 << 20
#: distribution name -> key in ``versions``; missing optional packages are left out
PACKAGES = {"hsu-geo": "hsu_geo", "numpy": "numpy", "rasterio": "rasterio", "xarray": "xarray",
            "rioxarray": "rioxarray", "dask": "dask", "spectral": "spectral", "scipy": "scipy",
            "torch": "torch"}


def sha256_file(path: str | os.PathLike[str], block: int = BLOCK_BYTES) -> str:
    """Hex sha256 of a file read in ``block``-byte pieces (constant memory)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(block):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise SceneNotFoundError(f"input file {path} disappeared; rerun on a complete scene") \
            from exc
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the result, plus GDAL and Python.

    Read from installed metadata, so torch is reported without being imported.
    """
    import rasterio

    import hsu_geo

    out: dict[str, str] = {"python": platform.python_version()}
    for dist, key in PACKAGES.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            if key == "hsu_geo":
                out[key] = hsu_geo.__version__
    out["gdal"] = rasterio.__gdal_version__
    return out


def input_checksums(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """``[{"path", "bytes", "sha256"}]`` for every input file (directories are walked)."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
    return [{"path": str(f.resolve()), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
            for f in files]


def build_run_record(
    *,
    scene_id: str,
    model: str,
    config: Mapping[str, Any],
    seed: int | None,
    device: str,
    inputs: Sequence[str | os.PathLike[str]] = (),
    timings: Mapping[str, float] | None = None,
    endmembers: Sequence[str] = (),
    endmember_angles_deg: Mapping[str, float] | Sequence[float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run record as a JSON-ready dict.

    ``timings`` are seconds per stage; ``endmember_angles_deg`` are spectral angles (degrees)
    to the matched library spectra when endmembers were named from a library.
    """
    angles: Any = endmember_angles_deg
    if angles is not None and not isinstance(angles, Mapping):
        angles = dict(zip(endmembers, angles, strict=True))
    return _jsonable({
        "schema": SCHEMA,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "scene_id": scene_id,
        "model": model,
        "config": dict(config),
        "seed": seed,
        "device": device,
        "command": sys.argv,
        "host": {"platform": platform.platform(), "machine": platform.machine(),
                 "cpus": os.cpu_count()},
        "versions": package_versions(),
        "inputs": input_checksums(inputs),
        "timings_s": dict(timings or {}),
        "endmembers": list(endmembers),
        "endmember_angles_deg": angles,
        "extra": dict(extra or {}),
    })


def _jsonable(value: Any) -> Any:
    """Recursively convert numpy/Path/dataclass/datetime values to JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN/Infinity
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def dump_run_json(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Write ``record`` as indented UTF-8 JSON to ``path`` (no atomicity; see write_run_json)."""
    path = Path(path)
    try:
        path.write_text(json.dumps(_jsonable(record), indent=2, ensure_ascii=False,
                                   allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); check the directory") \
            from exc
    return path


def write_run_json(path: str | os.PathLike[str], record: Mapping[str, Any], *,
                   overwrite: bool = False) -> Path:
    """Write ``record`` to ``path`` atomically; refuses an existing file unless ``overwrite``."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        dump_run_json(tmp, record)
    return Path(path)
