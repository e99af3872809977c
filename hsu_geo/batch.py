"""``hsu-geo batch``: every scene of an archive, the same settings, resumable, on dask.

:func:`run_batch` discovers the scenes (:mod:`hsu_geo.batch_discovery`), unmixes each into
``DIR/<scene_id>/`` and keeps ``DIR/batch.json`` (+ ``batch.csv``) up to date after every
scene, so a killed batch resumes where it stopped: a scene is redone unless its record says
done, its source files are unchanged (sizes and times) and every output still has its
recorded sha256. The outputs of one scene appear all at once (see
:mod:`hsu_geo.write.atomic`). At the end ``DIR/catalog.json`` (STAC, :mod:`hsu_geo.stac`)
lists the done scenes.

Safety: the batch never deletes a folder. In ``DIR/<scene_id>/`` it replaces or removes only
files that an hsu-geo run wrote and recorded there (each ``*_run.json`` lists its set); a scene
folder that holds anything else, or is a link, fails that scene with a message. Scene ids are
plain visible names, never a batch file's name, and no output folder may be, contain or lie
inside an input of the run.

Execution: with the threaded scheduler scenes run one after another; with a dask.distributed
scheduler (``local[:N]`` or an address) each scene is one task on a worker (``"scenes"``, the
default: throughput), or scenes run one after another with their chunks spread over the
workers (``"chunks"``: for a few very large scenes). Either way the numbers match the threaded
scheduler's.

Train once, apply many: ``train_on`` fits the model on one scene (:func:`fit_on`) and
applies that fitted unmixer, with its endmember names and order, to every scene with the same
bands (:func:`unmix_with_model`); other scenes fail with a message saying how they differ. The
fitted model is stored in ``DIR`` without pickle (:mod:`hsu_geo.unmix.fitted_io`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import dask

import hsu_geo
from hsu_geo.batch_discovery import (
    SceneSource,
    check_patterns,
    discover,
    open_source,
    readers_for,
)
from hsu_geo.config import UnmixOptions
from hsu_geo.errors import (
    ConfigError,
    HsuGeoError,
    OutputError,
    SceneNotFoundError,
)
from hsu_geo.naming import safe_id
from hsu_geo.pipeline import FittedModel, apply_and_write, fit_model, prepare_scene
from hsu_geo.scheduler import scheduler
from hsu_geo.write.atomic import atomic_path, ensure_writable_dir, recover
from hsu_geo.write.guard import overlaps
from hsu_geo.write.provenance import SCHEMA as RUN_SCHEMA
from hsu_geo.write.provenance import sha256_file

log = logging.getLogger(__name__)

SCHEMA = "hsu-geo/batch/1"
RECORD, TABLE, CATALOG = "batch.json", "batch.csv", "catalog.json"
SCRATCH, LOCK, MODEL_STEM = ".hsu-geo-batch-scratch", ".hsu-geo-batch.lock", "trained_model"
#: names a scene id may not take (the batch's own files in DIR)
RESERVED = frozenset({RECORD, TABLE, CATALOG, SCRATCH, LOCK, f"{MODEL_STEM}.pt",
                      f"{MODEL_STEM}.npz", f"{MODEL_STEM}.pkl"})
STATUSES = ("done", "failed", "skipped", "pending")
TOPIC = "hsu-geo-batch"
DISTRIBUTE = ("scenes", "chunks")
#: skipped files named per reason in the log (all of them are in batch.json/batch.csv)
SKIPPED_SHOWN = 3
#: options that change how, not what, is computed (left out of the settings check)
EXECUTION_ONLY = ("scheduler", "save_model")

Say = Callable[[str], None]


# -- train once, apply many ---------------------------------------------------------------
def epoch_reporter(say: Say) -> Callable[[Any], None]:
    """Deep-model training events as a few progress lines (every quarter of a stage)."""
    def report(event: Any) -> None:
        step = max(1, event.epochs // 4)
        if event.epoch == event.epochs or event.epoch % step == 0:
            say(f"{event.stage} {event.epoch}/{event.epochs} loss {event.loss:.4g}")

    return report


def fit_on(scene: str | Path, opts: UnmixOptions, on_stage: Say | None = None) -> FittedModel:
    """Scan ``scene``, find its endmembers and fit ``opts.model`` once (the pipeline stages)."""
    say = on_stage or (lambda _msg: None)
    prepared = prepare_scene(scene, opts, model=opts.model, say=say)
    return fit_model(prepared, opts, on_epoch=epoch_reporter(say), say=say)


def unmix_with_model(scene: str | Path, out_dir: str | Path, opts: UnmixOptions,
                     fitted: FittedModel, *, overwrite: bool = False, progress: bool = False,
                     on_stage: Say | None = None, replaceable: frozenset[str] = frozenset()
                     ) -> dict[str, Any]:
    """Apply a model fitted on another scene: same bands (else an error), same names/order."""
    say = on_stage or (lambda _msg: None)
    out = Path(out_dir)
    prepared = prepare_scene(scene, opts, model=fitted.model, out_dir=out, overwrite=overwrite,
                             bands_of=fitted, replaceable=replaceable, say=say)
    return apply_and_write(prepared, fitted, out, opts, overwrite=overwrite, progress=progress,
                           say=say)


# -- one scene ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneTask:
    """What a worker needs to process one scene (picklable)."""

    scene_id: str
    path: str
    out_dir: str
    opts: UnmixOptions
    #: files in ``out_dir`` an earlier hsu-geo run recorded (they may be replaced)
    replaceable: frozenset[str] = frozenset()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def one_line(exc: BaseException) -> str:
    """The CLI's one-line form of an error."""
    if isinstance(exc, HsuGeoError):
        msg = str(exc)
    elif isinstance(exc, OSError) and exc.filename:
        msg = f"{exc.strerror or exc}: {exc.filename}"
    else:
        msg = f"internal error ({type(exc).__name__}: {exc})"
    return (msg.splitlines() or [type(exc).__name__])[0]


def _release_unpacked(path: Path) -> None:
    """Delete the scratch copy of a ``.tar.gz`` delivery gf5_archive keeps per process."""
    from hsu_geo.ingest import gf5_archive

    key = str(path.resolve())
    for k in [k for k in gf5_archive._UNPACKED if k[0] == key]:
        shutil.rmtree(gf5_archive._UNPACKED.pop(k), ignore_errors=True)


def scene_metadata(path: Path, opts: UnmixOptions) -> dict[str, Any]:
    """Scene attrs the catalog uses (time, footprint, platform); reads headers only."""
    from hsu_geo.ingest import open_scene

    cube = open_scene(path, sensor=opts.sensor, chunks=opts.chunk_size,
                      wavelengths=opts.wavelengths)
    keys = ("sensor", "satellite", "product_id", "acquisition_time", "acquisition_date",
            "footprint_lonlat", "reader", "quantity")
    return {k: cube.attrs[k] for k in keys if cube.attrs.get(k) not in (None, "")}


def process_scene(task: SceneTask, fitted: FittedModel | None = None, *,
                  on_stage: Say | None = None, progress: bool = False) -> dict[str, Any]:
    """Unmix one scene into ``task.out_dir``; never raises for a bad scene (status failed)."""
    from hsu_geo.pipeline import run_unmix
    from hsu_geo.stac import scene_properties

    started, t0 = _now(), time.perf_counter()
    path = Path(task.path)
    outcome: dict[str, Any] = {"started_utc": started}
    try:
        meta = scene_metadata(path, task.opts)
        if fitted is not None:
            result = unmix_with_model(path, task.out_dir, task.opts, fitted,
                                      replaceable=task.replaceable, progress=progress,
                                      on_stage=on_stage)
        else:
            result = run_unmix(path, task.out_dir, task.opts, replaceable=task.replaceable,
                               progress=progress, on_stage=on_stage,
                               on_epoch=epoch_reporter(on_stage) if on_stage else None)
        outputs = [{"key": key, "name": p.name, "bytes": p.stat().st_size,
                    "sha256": sha256_file(p)} for key, p in result["outputs"].items()]
        outcome.update(status="done", error=None, outputs=outputs,
                       endmembers=list(result["endmembers"]),
                       model=result["record"].get("model"),
                       timings_s={**result["timings"], **result["record"]["timings_s"]},
                       stac=scene_properties(result["outputs"]["abundance"], meta))
    except Exception as exc:
        log.debug("scene %s failed", task.scene_id, exc_info=True)
        outcome.update(status="failed", error=one_line(exc), outputs=[])
        with contextlib.suppress(OSError):
            Path(task.out_dir).rmdir()  # only when the failed scene left it empty
    finally:
        _release_unpacked(path)
    outcome.update(finished_utc=_now(), seconds=round(time.perf_counter() - t0, 3))
    return outcome


def _process_on_worker(task: SceneTask, fitted: FittedModel | None) -> dict[str, Any]:
    """:func:`process_scene` inside a dask worker: threads of this worker only."""
    from distributed import get_worker

    worker = get_worker()

    def say(msg: str) -> None:
        worker.log_event(TOPIC, {"scene": task.scene_id, "msg": msg})

    with dask.config.set(scheduler="threads", num_workers=max(1, worker.state.nthreads)):
        return process_scene(task, fitted, on_stage=say)


# -- the batch record -----------------------------------------------------------------------
def settings_of(archive: Path, opts: UnmixOptions, train_on: str | None) -> dict[str, Any]:
    """What makes results differ: options (minus execution-only ones), archive, train_on."""
    out = {k: v for k, v in opts.to_dict().items() if k not in EXECUTION_ONLY}
    out.update(archive=str(archive.resolve()), train_on=train_on)
    return json.loads(json.dumps(out, default=str))


def settings_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """``"k was '3', now 'auto'"`` for the first differing setting, else None.

    A setting missing from the old record counts as its default (options added later).
    """
    defaults = {f.name: f.default for f in fields(UnmixOptions) if f.default is not MISSING}
    defaults = json.loads(json.dumps(defaults, default=str))  # as recorded: tuples are lists
    for key in sorted(set(old) | set(new)):
        a = old.get(key, defaults.get(key))
        b = new.get(key, defaults.get(key))
        if key == "settings":
            a, b = a or {}, b or {}
        if a != b:
            return f"{key} was {a!r}, now {b!r}"
    return None


def load_record(out_dir: Path) -> dict[str, Any] | None:
    """The batch record in ``out_dir``, or None; a foreign or broken one is an error."""
    path = out_dir / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path} is unreadable ({exc}); remove it or choose another -o") \
            from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise OutputError(f"{path} is not an hsu-geo batch record; choose another -o")
    problem = record_problem(record)
    if problem:
        raise OutputError(f"{path} is damaged ({problem}); move it away to start the batch "
                          "afresh, or choose another -o")
    return record


def _entry_problem(i: int, e: Any) -> str | None:
    where = f"scenes[{i}]"
    if not isinstance(e, dict):
        return f"{where} is not an object"
    if e.get("status") not in STATUSES:
        return f"{where}.status is {e.get('status')!r}"
    sid = e.get("scene_id")
    if sid is not None and (not isinstance(sid, str) or safe_id(sid, "") != sid):
        return f"{where}.scene_id {sid!r} is not a plain scene id"
    for key in ("source", "fingerprint", "error"):
        if e.get(key) is not None and not isinstance(e[key], str):
            return f"{where}.{key} is not text"
    outputs = e.get("outputs") or []
    if not isinstance(outputs, list):
        return f"{where}.outputs is not a list"
    for j, item in enumerate(outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or Path(item["name"]).name != item["name"] \
                or not isinstance(item.get("bytes"), int) \
                or not isinstance(item.get("sha256"), str):
            return f"{where}.outputs[{j}] is not a name, bytes and sha256"
    return None


def record_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with the types of a batch record, or None (a record is user-writable)."""
    if not isinstance(record.get("settings", {}), dict):
        return "settings is not an object"
    scenes = record.get("scenes", [])
    if not isinstance(scenes, list):
        return "scenes is not a list"
    for i, e in enumerate(scenes):
        problem = _entry_problem(i, e)
        if problem:
            return problem
    training = record.get("training")
    if training is not None and (not isinstance(training, dict) or not all(
            isinstance(training.get(k), str) for k in ("scene_id", "sha256", "file"))):
        return "training is not a scene id, file and sha256"
    return None


def recorded_files(scene_dir: Path) -> frozenset[str]:
    """Names of the files that hsu-geo runs wrote in ``scene_dir`` and listed in a run record
    (``*_run.json`` with the run schema), the records included."""
    names: set[str] = set()
    if not scene_dir.is_dir() or scene_dir.is_symlink():
        return frozenset()
    for run in scene_dir.glob("*_run.json"):
        if not run.is_file() or run.is_symlink() or run.stat().st_size > 16 * 2**20:
            continue
        try:
            data = json.loads(run.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        outputs = data.get("outputs") if isinstance(data, dict) else None
        if data.get("schema") != RUN_SCHEMA or not isinstance(outputs, dict):
            continue
        listed = [n for n in outputs.values() if isinstance(n, str) and Path(n).name == n
                  and n not in ("", ".", "..")]
        names.update(listed)
        names.add(run.name)
    item = scene_dir / f"{scene_dir.name}.json"  # the scene's STAC Item (hsu_geo.stac)
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(item.read_text(encoding="utf-8")) if item.is_file() \
            and not item.is_symlink() and item.stat().st_size < 2**20 else None
        if isinstance(data, dict) and data.get("type") == "Feature" \
                and data.get("id") == scene_dir.name:
            names.add(item.name)
    return frozenset(names)


def scene_folder_problem(scene_dir: Path) -> str | None:
    """Why hsu-geo may not write into ``scene_dir`` (a link, or files it did not record)."""
    if scene_dir.is_symlink():
        return f"{scene_dir} is a symbolic link; hsu-geo writes only into folders it made"
    if not scene_dir.exists():
        return None
    if not scene_dir.is_dir():
        return f"{scene_dir} exists and is not a folder"
    recover(scene_dir)
    ours = recorded_files(scene_dir)
    foreign = sorted(p.name for p in scene_dir.iterdir() if p.name not in ours)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        return (f"{scene_dir} holds {foreign[0]}{more}, which hsu-geo did not write; move it "
                "out or choose another -o")
    return None


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n",
                       encoding="utf-8")


def write_table(out_dir: Path, record: Mapping[str, Any]) -> Path:
    """``batch.csv``: one row per scene or skipped entry."""
    path = out_dir / TABLE
    cols = ["scene_id", "status", "seconds", "reader", "source", "outputs", "error"]
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="",
                                                        encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for e in record["scenes"]:
            writer.writerow([e.get("scene_id") or "", e["status"], e.get("seconds", ""),
                             e.get("reader") or "", e["source"], len(e.get("outputs") or []),
                             e.get("error") or ""])
    return path


def verify_outputs(scene_dir: Path, entry: Mapping[str, Any]) -> bool:
    """True if every recorded output exists with its recorded size and sha256."""
    outputs = entry.get("outputs") or []
    if entry.get("status") != "done" or not outputs:
        return False
    for item in outputs:
        path = scene_dir / item["name"]
        if not path.is_file() or path.stat().st_size != item["bytes"] \
                or sha256_file(path) != item["sha256"]:
            return False
    return True


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` (released by the OS even on SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out_dir / LOCK, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"{out_dir} is in use by another hsu-geo batch; wait for it or "
                              "choose another -o") from None
        yield


# -- the batch ------------------------------------------------------------------------------
@dataclass
class _Batch:
    out: Path
    opts: UnmixOptions
    source: Any
    record: dict[str, Any]
    say: Say
    progress: bool
    fail_fast: bool
    overwrite: bool
    fitted: FittedModel | None = None
    done_count: int = 0
    todo_count: int = 0
    stopped: bool = False
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    superseded: dict[str, frozenset[str]] = field(default_factory=dict)

    def save(self) -> None:
        summary = {s: 0 for s in ("done", "failed", "skipped", "pending")}
        for e in self.record["scenes"]:
            summary[e["status"]] = summary.get(e["status"], 0) + 1
        self.record["summary"] = summary
        self.record["updated_utc"] = _now()
        _write_json(self.out / RECORD, self.record)

    def task(self, scene: SceneSource, path: Path, scene_opts: UnmixOptions) -> SceneTask:
        """The scene's task; OutputError if its folder is not hsu-geo's to write into."""
        scene_dir = self.out / scene.scene_id
        problem = scene_folder_problem(scene_dir)
        if problem:
            raise OutputError(problem)
        replaceable = recorded_files(scene_dir)
        self.superseded[scene.scene_id] = replaceable
        return SceneTask(scene.scene_id, str(path), str(scene_dir), scene_opts, replaceable)

    def remove_superseded(self, scene_id: str, outputs: list[Mapping[str, Any]]) -> None:
        """Delete the recorded files of earlier runs of a scene that its new set does not
        replace (e.g. another model's outputs after ``--overwrite``)."""
        scene_dir = self.out / scene_id
        keep = {item["name"] for item in outputs}
        for name in sorted(self.superseded.pop(scene_id, frozenset()) - keep):
            path = scene_dir / name
            if path.is_file() and not path.is_symlink() \
                    and path.resolve().parent == scene_dir.resolve():
                with contextlib.suppress(OSError):
                    path.unlink()

    def finish(self, scene: SceneSource, outcome: Mapping[str, Any]) -> None:
        self.source.release(scene)
        entry = self.entries[scene.scene_id]
        entry.update(outcome)
        if entry["status"] == "done":
            self.remove_superseded(scene.scene_id, entry.get("outputs") or [])
        self.done_count += 1
        where = f"[{self.done_count}/{self.todo_count}] {scene.scene_id}"
        if entry["status"] == "done":
            self.say(f"{where}: done in {entry.get('seconds', 0):.1f} s")
        else:
            self.say(f"{where}: failed: {entry['error']}")
            self.stopped = self.fail_fast
        self.save()

    def stage_reporter(self, scene_id: str) -> Say:
        def report(msg: str) -> None:
            self.say(f"  {scene_id}: {msg}")

        return report

    def fail(self, scene: SceneSource, exc: BaseException) -> None:
        self.finish(scene, {"status": "failed", "error": one_line(exc), "outputs": [],
                            "finished_utc": _now()})

    def run_sequential(self, todo: list[SceneSource], scene_opts: UnmixOptions) -> None:
        for scene in todo:
            if self.stopped:
                break
            try:
                path = self.source.materialize(scene)
                task = self.task(scene, path, scene_opts)
            except HsuGeoError as exc:
                self.fail(scene, exc)
                continue
            self.finish(scene, process_scene(task, self.fitted,
                                             on_stage=self.stage_reporter(scene.scene_id),
                                             progress=self.progress))

    def run_parallel(self, client: Any, todo: list[SceneSource], scene_opts: UnmixOptions
                     ) -> None:
        from distributed import as_completed

        fitted = client.scatter(self.fitted, broadcast=True) if self.fitted else None
        window = sum(client.nthreads().values()) + 1
        queue, running = list(todo), {}
        pending = as_completed()

        def fill() -> None:
            while queue and len(running) < window and not self.stopped:
                scene = queue.pop(0)
                try:
                    path = self.source.materialize(scene)
                    task = self.task(scene, path, scene_opts)
                except HsuGeoError as exc:
                    self.fail(scene, exc)
                    continue
                fut = client.submit(_process_on_worker, task, fitted, pure=False,
                                    key=f"hsu-geo-scene-{scene.scene_id}-{os.urandom(4).hex()}")
                running[fut.key] = (fut, scene)
                pending.add(fut)

        client.subscribe_topic(TOPIC, lambda event: self.stage_reporter(event[1]["scene"])(
            event[1]["msg"]))
        try:
            fill()
            for fut in pending:
                _, scene = running.pop(fut.key)
                try:
                    outcome = fut.result()
                except Exception as exc:  # the worker died (memory, signal)
                    outcome = {"status": "failed", "error": one_line(exc), "outputs": []}
                self.finish(scene, outcome)
                if self.stopped:
                    client.cancel([f for f, _ in running.values()])
                    break
                fill()
        finally:
            client.unsubscribe_topic(TOPIC)


def _client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _fingerprint_model(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _training(batch: _Batch, scene: SceneSource, previous: Mapping[str, Any] | None
              ) -> bool:
    """Fit (or reload) the shared model; True if the stored one was reused.

    The model file is a weights-only checkpoint (deep) or an npz (classical), never a pickle:
    reading it executes no code, whoever wrote it.
    """
    from hsu_geo.unmix.fitted_io import file_name, load_fitted, save_fitted

    name = file_name(batch.opts.model, MODEL_STEM)
    path = batch.out / name
    old = (previous or {}).get("training") or {}
    if path.is_file() and not path.is_symlink() and old.get("file") == name \
            and old.get("sha256") and old.get("scene_id") == scene.scene_id \
            and _fingerprint_model(path) == old["sha256"]:
        from hsu_geo.unmix.device import resolve_device

        try:
            batch.fitted = load_fitted(path, resolve_device(batch.opts.device))
        except HsuGeoError as exc:
            batch.say(f"the stored model cannot be used ({one_line(exc)}); retraining")
        else:
            batch.record["training"] = dict(old)
            return True
    batch.say(f"training {batch.opts.model} on {scene.scene_id}")
    scene_path = batch.source.materialize(scene)
    try:
        batch.fitted = fit_on(scene_path, batch.opts,
                              on_stage=batch.stage_reporter(scene.scene_id))
    except HsuGeoError as exc:
        raise type(exc)(f"--train-on {scene.scene_id}: {one_line(exc)}") from None
    finally:
        _release_unpacked(scene_path)
    save_fitted(path, batch.fitted)
    if batch.opts.save_model:  # a checkpoint hsu-geo unmix/batch --load-model can apply
        from hsu_geo.unmix.deep.checkpoint import save_checkpoint
        from hsu_geo.write.atomic import check_targets

        check_targets([Path(batch.opts.save_model)], overwrite=batch.overwrite)
        save_checkpoint(batch.opts.save_model, batch.fitted.unmixer, batch.fitted.wavelength,
                        batch.fitted.names, batch.fitted.band)
    batch.record["training"] = {
        "scene_id": scene.scene_id, "model": batch.fitted.model,
        "endmembers": batch.fitted.names, "bands": int(batch.fitted.wavelength.size),
        "wavelength_nm": [round(float(w), 3) for w in batch.fitted.wavelength],
        "file": name, "sha256": _fingerprint_model(path)}
    return False


def _unreserved(scenes: list[SceneSource]) -> list[SceneSource]:
    """Scenes whose id is a batch file's name get ``<id>_scene`` (the record keeps the source);
    ids are already plain visible names (:func:`hsu_geo.naming.safe_id`)."""
    from dataclasses import replace

    return [replace(s, scene_id=f"{s.scene_id}_scene")
            if s.scene_id in RESERVED or s.scene_id.lower() in RESERVED else s for s in scenes]


def _check_unique(scenes: list[SceneSource]) -> None:
    seen: dict[str, SceneSource] = {}
    for scene in scenes:
        if safe_id(scene.scene_id, "") != scene.scene_id or scene.scene_id in RESERVED:
            raise ConfigError(f"scene id {scene.scene_id!r} ({scene.rel}) is not a plain "
                              "folder name; rename the scene")
        if scene.scene_id in seen:
            raise ConfigError(
                f"scene id {scene.scene_id!r} is used by both {seen[scene.scene_id].rel} and "
                f"{scene.rel}; rename one (outputs go to DIR/<scene id>/)")
        seen[scene.scene_id] = scene


def _inputs(source: Any, scene: SceneSource) -> list[Path]:
    """The files (and the delivery folder) a scene is read from, as paths on disk."""
    if source.kind != "folder":
        return [source.path]
    return [source.root / scene.rel, *(source.root / m for m in scene.members)]


def check_paths(archive: Path, out: Path, source: Any, scenes: list[SceneSource],
                save_model: str | None) -> None:
    """ConfigError unless every scene folder ``out/<id>`` stays clear of every input.

    A scene folder may not be, contain or lie inside an input file or delivery folder (nor
    contain the archive); ``--save-model`` may not be an input or lie inside a delivery.
    """
    from hsu_geo.write.guard import refuse_inputs_as_outputs

    root = archive.resolve()
    all_inputs: list[Path] = [archive]
    for scene in scenes:
        folder = out / scene.scene_id
        where = folder.resolve()
        inputs = _inputs(source, scene)
        all_inputs += inputs
        if where == root or where in root.parents:
            raise ConfigError(f"scene {scene.scene_id}: its output folder {folder} holds the "
                              f"input {archive}; choose an -o outside the input")
        for path in inputs:
            if overlaps(where, path.resolve()):
                raise ConfigError(f"scene {scene.scene_id}: its output folder {folder} overlaps "
                                  f"its input {path}; choose an -o outside the input folder")
    if save_model:
        refuse_inputs_as_outputs([("--save-model", save_model)],
                                 [p for p in all_inputs if p != archive or source.kind != "folder"])


def _scene_opts(opts: UnmixOptions, client: Any, distribute: str) -> UnmixOptions:
    from dataclasses import replace

    address = client.scheduler.address if client is not None and distribute == "chunks" \
        else None
    return replace(opts, scheduler=address, save_model=None)


def run_batch(
    archive: str | Path,
    out_dir: str | Path,
    opts: UnmixOptions,
    *,
    train_on: str | None = None,
    fail_fast: bool = False,
    overwrite: bool = False,
    distribute: str = "scenes",
    say: Say | None = None,
    progress: bool = False,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Unmix every scene of ``archive`` into ``out_dir/<scene_id>/``; returns the record.

    ``say`` receives progress lines; ``progress`` shows dask progress bars (threads only).
    ``include``/``exclude``: globs on scene paths relative to ``archive`` (``*.tif``,
    ``labels/*``, ``labels``); scenes left out are listed as skipped. They select scenes and
    are not settings: a rerun with other globs keeps the scenes already done.
    Raises for bad input (missing/empty archive, duplicate scene ids, settings that differ
    from a previous batch in ``out_dir`` without ``overwrite``); a bad scene only fails.
    """
    if distribute not in DISTRIBUTE:
        raise ConfigError(f"--distribute {distribute!r}: use one of {', '.join(DISTRIBUTE)}")
    if train_on is not None and opts.load_model:
        raise ConfigError("give either --train-on SCENE_ID or --load-model PATH, not both")
    if opts.save_model and train_on is None:
        raise ConfigError("--save-model in a batch needs --train-on SCENE_ID (one model for "
                          "every scene); or save it with hsu-geo unmix --save-model")
    archive, out = Path(archive), Path(out_dir)
    if not archive.exists():
        raise SceneNotFoundError(f"{archive}: no such folder or archive; check the path")
    if out.resolve() == archive.resolve():
        raise ConfigError(f"-o {out} is the input folder itself; choose another folder (a new "
                          "subfolder of it is fine)")
    selection = (check_patterns(include, "--include"), check_patterns(exclude, "--exclude"))
    ensure_writable_dir(out)
    with _exclusive(out):
        return _run_locked(archive, out, opts, train_on, fail_fast, overwrite, distribute,
                           say or (lambda _msg: None), progress, selection)


def _run_locked(archive: Path, out: Path, opts: UnmixOptions, train_on: str | None,
                fail_fast: bool, overwrite: bool, distribute: str, say: Say,
                progress: bool, selection: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
                ) -> dict[str, Any]:
    settings = settings_of(archive, opts, train_on)
    previous = load_record(out)
    if previous is not None and not overwrite:
        diff = settings_difference(previous.get("settings", {}), settings)
        if diff:
            raise ConfigError(f"{out} holds a batch run with other settings ({diff}); pass "
                              "--overwrite to redo every scene, or choose another -o")
    if overwrite:
        previous = None
    scratch = out / SCRATCH
    if scratch.is_dir() and not scratch.is_symlink():  # ours, left by a killed batch
        shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    source = None
    try:
        source = open_source(archive, scratch, exclude=out)
        scenes, skipped = discover(source, readers_for(opts.sensor),
                                   need_wavelengths=opts.wavelengths is None,
                                   include=selection[0], exclude=selection[1])
        if not scenes:
            first = f" (first: {skipped[0].rel}: {skipped[0].reason})" if skipped else ""
            raise ConfigError(f"{archive}: no scenes found among {source.count_files()} "
                              f"files{first}")
        scenes = _unreserved(scenes)
        _check_unique(scenes)
        check_paths(archive, out, source, scenes, opts.save_model)
        ids = [s.scene_id for s in scenes]
        if train_on is not None and train_on not in ids:
            raise ConfigError(f"--train-on {train_on!r} is not a scene of {archive}; scene "
                              f"ids: {', '.join(ids[:8])}{' …' if len(ids) > 8 else ''}")
        batch = _Batch(out, opts, source, {}, say, progress, fail_fast, overwrite)
        batch.record["selection"] = {"include": list(selection[0]),
                                     "exclude": list(selection[1])}
        return _process(batch, archive, scenes, skipped, previous, settings, train_on,
                        distribute)
    finally:
        if source is not None:
            source.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _process(batch: _Batch, archive: Path, scenes: list[SceneSource], skipped: list[Any],
             previous: Mapping[str, Any] | None, settings: dict[str, Any],
             train_on: str | None, distribute: str) -> dict[str, Any]:
    from hsu_geo.stac import write_catalog

    out, opts, source, say = batch.out, batch.opts, batch.source, batch.say

    old = {e.get("scene_id"): e for e in (previous or {}).get("scenes", []) if e.get("scene_id")}
    record = batch.record
    record.update({
        "schema": SCHEMA, "hsu_geo": hsu_geo.__version__, "archive": str(archive),
        "settings": settings,
        "created_utc": (previous or {}).get("created_utc") or _now(),
        "started_utc": _now(), "archive_error": source.error, "training": None,
        "scenes": [],
    })
    if source.error:
        say(f"warning: {archive}: {source.error}")
    kept: list[str] = []
    for scene in scenes:
        prior = old.get(scene.scene_id)
        entry = {"scene_id": scene.scene_id, "source": scene.rel, "reader": scene.reader,
                 "fingerprint": scene.fingerprint, "status": "pending", "error": None}
        if prior and prior.get("fingerprint") == scene.fingerprint \
                and verify_outputs(out / scene.scene_id, prior):
            entry = {**prior, **entry, "status": "done", "reused": True}
            kept.append(scene.scene_id)
            recover(out / scene.scene_id)  # staging folders of killed runs, if any
        batch.entries[scene.scene_id] = entry
        record["scenes"].append(entry)
    record["scenes"] += [{"scene_id": None, "source": s.rel, "reader": None,
                          "status": "skipped", "error": s.reason} for s in skipped]
    todo = source.ordered([s for s in scenes if s.scene_id not in kept])
    say(f"{len(scenes)} scenes ({len(kept)} already done), {len(skipped)} skipped")
    by_reason: dict[str, list[str]] = {}
    for s in skipped:
        by_reason.setdefault(s.reason, []).append(s.rel)
    for reason, rels in by_reason.items():  # one line per reason; every file is in batch.csv
        shown = ", ".join(rels[:SKIPPED_SHOWN]) + (", ..." if len(rels) > SKIPPED_SHOWN else "")
        say(f"skipped {len(rels)} ({reason}): {shown}")
    with scheduler(opts.scheduler) as description:
        say(f"running on {description}")
        record["scheduler"] = description
        client = _client() if opts.scheduler else None
        record["distribute"] = distribute if client is not None else "threads"
        if train_on is not None and todo:
            train_scene = next(s for s in scenes if s.scene_id == train_on)
            if not _training(batch, train_scene, previous) and kept:
                say("the stored model could not be reused: redoing every scene")
                for sid in kept:
                    batch.entries[sid].update(status="pending", outputs=[], reused=False)
                todo, kept = source.ordered(scenes), []
            todo.sort(key=lambda s: s.scene_id != train_on)  # stable: archive order otherwise
        elif train_on is not None:
            record["training"] = (previous or {}).get("training")
        batch.todo_count = len(todo)
        batch.save()
        source.plan(todo)
        scene_opts = _scene_opts(opts, client, distribute)
        if client is not None and distribute == "scenes":
            batch.run_parallel(client, todo, scene_opts)
        else:
            batch.run_sequential(todo, scene_opts)
    for entry in record["scenes"]:
        if entry["status"] == "pending":
            entry["error"] = "not run: --fail-fast stopped the batch after a failure"
    record["finished_utc"] = _now()
    write_catalog(out, record)
    batch.save()
    write_table(out, record)
    return record
