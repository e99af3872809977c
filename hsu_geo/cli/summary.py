"""``--json`` summaries of ``hsu-geo unmix`` and ``hsu-geo batch``, built from what each
scene's ``run.json`` holds (:mod:`hsu_geo.write.provenance`).

One JSON object on stdout, nothing else there; paths are absolute, times in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hsu_geo.write.provenance import _jsonable

UNMIX_SCHEMA = "hsu-geo/unmix-summary/1"
BATCH_SCHEMA = "hsu-geo/batch-summary/1"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _unique(items: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and str(item) not in out:
            out.append(str(item))
    return out


def scene_summary(run: Mapping[str, Any], outputs: Mapping[str, Any],
                  timings: Mapping[str, float] | None = None,
                  warnings: Sequence[str] = ()) -> dict[str, Any]:
    """One scene's summary from its run record ``run`` (run.json) and written ``outputs``
    ({key: path}).

    ``endmembers[i].library_angle_deg`` is the spectral angle (degrees) to the library
    spectrum the endmember was named after (a confidence in the name: smaller is closer;
    null when it was not named from a library); ``abundance_mean`` and ``dominant_share``
    come from the library fit diagnostics when library endmembers were fitted.
    """
    extra = run.get("extra") or {}
    fit = extra.get("fit") or {}
    library_fit = fit.get("library_fit") or {}
    per_em = library_fit.get("abundance") or {}
    angles = run.get("endmember_angles_deg") or {}
    names = list(run.get("endmembers") or [])
    endmembers = []
    for name in names:
        entry: dict[str, Any] = {"name": name, "library_angle_deg": angles.get(name)}
        if name in per_em:
            entry["abundance_mean"] = per_em[name].get("mean")
            entry["dominant_share"] = per_em[name].get("dominant_share")
        endmembers.append(entry)
    options = (run.get("config") or {}).get("options") or {}
    seconds = {**dict(run.get("timings_s") or {}), **dict(timings or {})}
    return _jsonable({
        "scene_id": run.get("scene_id"),
        "scene": extra.get("scene"),
        "reader": extra.get("reader"),
        "model": run.get("model"),
        "outputs": {k: str(Path(p).resolve()) for k, p in outputs.items()},
        "endmembers": endmembers,
        "k": len(names),
        "k_requested": options.get("k"),
        "k_estimate": extra.get("k_estimate"),
        "endmember_source": extra.get("endmember_source"),
        "fit": {k: library_fit[k] for k in ("median_rmse", "median_relative_residual")
                if k in library_fit} or None,
        "timings_s": {k: round(float(v), 3) for k, v in seconds.items()},
        "warnings": _unique([*warnings, *(fit.get("warnings") or [])]),
    })


def unmix_summary(result: Mapping[str, Any], warnings: Sequence[str], seconds: float
                  ) -> dict[str, Any]:
    """The ``hsu-geo unmix --json`` object from :func:`hsu_geo.pipeline.run_unmix`'s result
    (its run.json as written, its timings) and the hsu-geo warnings of the command."""
    outputs = dict(result["outputs"])
    run = _read_json(Path(outputs["run"])) if "run" in outputs else {}
    return {"schema": UNMIX_SCHEMA,
            **scene_summary(run or result.get("record") or {}, outputs,
                            result.get("timings"), warnings),
            "seconds": round(seconds, 3)}


def batch_summary(record: Mapping[str, Any], out_dir: str | Path, warnings: Sequence[str],
                  seconds: float) -> dict[str, Any]:
    """The ``hsu-geo batch --json`` object: the batch record's status of every scene, with
    the :func:`scene_summary` of each done scene (read from its run.json)."""
    out = Path(out_dir).resolve()
    scenes = []
    for entry in record.get("scenes", []):
        item: dict[str, Any] = {k: entry.get(k) for k in ("scene_id", "source", "status",
                                                            "error", "seconds")}
        item["kept_from_before"] = bool(entry.get("reused"))
        if entry.get("status") == "done" and entry.get("scene_id"):
            folder = out / entry["scene_id"]
            paths = {o.get("key") or o["name"]: folder / o["name"]
                     for o in entry.get("outputs") or []}
            run = _read_json(paths["run"]) if "run" in paths else {}
            item.update(scene_summary(run, paths, entry.get("timings_s")))
            item["status"], item["scene_id"] = entry["status"], entry["scene_id"]
        scenes.append(item)
    return _jsonable({
        "schema": BATCH_SCHEMA,
        "archive": record.get("archive"),
        "out": str(out),
        "record": str(out / "batch.json"),
        "catalog": str(out / "catalog.json"),
        "summary": record.get("summary", {}),
        "archive_error": record.get("archive_error"),
        "scenes": scenes,
        "warnings": _unique(list(warnings)),
        "seconds": round(seconds, 3),
    })
