"""All-or-nothing output sets: refuse to clobber, stage the whole set, swap it in, recover.

A transaction writes every file of a set into a hidden staging folder beside the outputs,
``DIR/.hsu-geo-txn-<token>/new/`` (same file system, so every move is an atomic rename), while
holding an exclusive lock on ``lock`` inside it. Only when the set is complete does it commit,
in three journalled steps:

1. ``journal.json`` says ``prepared`` and lists the names; the existing files of the set (with
   ``overwrite``) are moved aside into ``old/``;
2. ``journal.json`` says ``swapping``; the new files are moved to their final names;
3. the staging folder is removed.

A process killed at any point leaves its staging folder, unlocked. :func:`recover` (run by every
transaction and by ``hsu-geo unmix``/``batch`` before they check their targets) finds such
folders and finishes them: before step 2 it puts the previous files back (the old set, complete),
from step 2 on it moves the remaining new files in (the new set, complete). A failed move
inside the process is rolled back the same way. Staging folders of live runs are locked and
left alone. Nothing outside the set's own names and the staging folder is ever touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from hsu_geo.errors import OutputError, OutputExistsError

STAGE_PREFIX = ".hsu-geo-txn-"
_STAGE = re.compile(r"\.hsu-geo-txn-[0-9a-f]{12}")
_INIT_SUFFIX, _DONE_SUFFIX = ".init", ".done"
#: an unlocked ``.init`` staging folder younger than this may still be being set up
_INIT_GRACE_S = 60.0
JOURNAL = "journal.json"
PREPARED, SWAPPING = "prepared", "swapping"


def ensure_writable_dir(out_dir: Path) -> bool:
    """Create ``out_dir`` if needed and prove it is writable with a probe file.

    Returns True when this call created the directory. Raises :class:`OutputError` naming the
    directory otherwise (``os.access`` is not enough: it says yes to root on read-only mounts).
    """
    created = False
    if not out_dir.exists():
        try:
            out_dir.mkdir(parents=True)
            created = True
        except OSError as exc:
            raise OutputError(
                f"cannot create output directory {out_dir} ({exc.strerror or exc}); "
                "choose another -o directory"
            ) from exc
    if not out_dir.is_dir():
        raise OutputError(f"output path {out_dir} is not a directory; choose another -o directory")
    try:  # an unnamed file where the OS has O_TMPFILE: nothing to leave behind if killed
        with tempfile.TemporaryFile(dir=out_dir, prefix=".hsu-geo-probe"):
            pass
    except OSError as exc:
        raise OutputError(
            f"output directory {out_dir} is not writable ({exc.strerror or exc}); "
            "fix its permissions or choose another -o directory"
        ) from exc
    return created


def check_targets(paths: Sequence[Path], *, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if any target exists and ``overwrite`` is False.

    With ``overwrite`` a target that is a directory is still refused (:class:`OutputError`).
    """
    for path in paths:
        if path.is_dir():
            raise OutputError(f"output {path} is a directory; remove it or choose another -o")
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"output {existing[0]} already exists{more}; pass --overwrite to replace it"
        )


# -- locks and the journal -------------------------------------------------------------------
def _try_lock(path: Path) -> IO[str] | None:
    """An open, exclusively locked ``path`` (created if missing), or None if another process
    holds it. The OS releases the lock when the process dies, even on SIGKILL."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no way to tell a live run from a dead one
        return None
    fh = open(path, "a+")  # noqa: SIM115 - held for the transaction's lifetime
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def _write_journal(stage: Path, state: str, names: Sequence[str], replaced: Sequence[str]
                   ) -> None:
    tmp = stage / f"{JOURNAL}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"state": state, "names": list(names), "replaced": list(replaced),
                   "pid": os.getpid()}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, stage / JOURNAL)
    with contextlib.suppress(OSError):  # make the rename durable too (not on every OS)
        fd = os.open(stage, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_journal(stage: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((stage / JOURNAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("state") not in (PREPARED, SWAPPING):
        return None
    names = data.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) and _plain(n) for n in names):
        return None
    return data


def _plain(name: str) -> bool:
    return bool(name) and Path(name).name == name and name not in (".", "..")


def _roll_back(stage: Path, out_dir: Path, names: Sequence[str]) -> None:
    """Undo a commit that had not reached ``swapping``: restore every moved-aside file."""
    old = stage / "old"
    for name in names:
        placed, saved = out_dir / name, old / name
        if saved.exists() or saved.is_symlink():
            os.replace(saved, placed)


def _roll_forward(stage: Path, out_dir: Path, names: Sequence[str]) -> None:
    """Finish a commit that reached ``swapping``: move every remaining new file in."""
    new = stage / "new"
    for name in names:
        if (new / name).exists():
            os.replace(new / name, out_dir / name)


def _stage_name(name: str) -> bool:
    return bool(_STAGE.fullmatch(name.removesuffix(_INIT_SUFFIX).removesuffix(_DONE_SUFFIX)))


def _remove_stage(stage: Path) -> None:
    """Delete a staging folder of ours (checked by name; links inside are not followed).

    It is first renamed to ``….done`` in one step, so a process killed while deleting leaves
    a folder that is plainly garbage, never a half-deleted journal that recovery would act on.
    """
    if not _stage_name(stage.name) or not stage.is_dir() or stage.is_symlink():
        return
    if not stage.name.endswith(_DONE_SUFFIX):
        done = stage.with_name(stage.name + _DONE_SUFFIX)
        try:
            os.rename(stage, done)
        except OSError:
            return
        stage = done
    shutil.rmtree(stage, ignore_errors=True)


def recover(out_dir: str | os.PathLike[str]) -> list[str]:
    """Finish or undo the output sets that killed runs left in ``out_dir``; returns what it did.

    Each unlocked staging folder is resolved as its journal says (see the module docstring),
    then removed. Folders of live runs (locked) are left alone.
    """
    folder = Path(out_dir)
    done: list[str] = []
    if not folder.is_dir():
        return done
    try:
        stages = [p for p in folder.iterdir() if p.name.startswith(STAGE_PREFIX)]
    except OSError:
        return done
    for stage in sorted(stages):
        init = stage.name.endswith(_INIT_SUFFIX)
        if not _stage_name(stage.name) or stage.is_symlink() or not stage.is_dir():
            continue
        if stage.name.endswith(_DONE_SUFFIX):  # finished; its deletion was cut short
            _remove_stage(stage)
            continue
        if init:
            with contextlib.suppress(OSError):
                if time.time() - stage.stat().st_mtime < _INIT_GRACE_S:
                    continue
        lock = _try_lock(stage / "lock")
        if lock is None:
            continue
        try:
            journal = _read_journal(stage)
            if journal is None:  # killed while writing: nothing was moved yet
                done.append(f"{stage.name}: interrupted while writing; discarded")
            elif journal["state"] == PREPARED:
                _roll_back(stage, folder, journal["names"])
                done.append(f"{stage.name}: interrupted before its swap; previous files kept")
            else:
                _roll_forward(stage, folder, journal["names"])
                done.append(f"{stage.name}: interrupted during its swap; new set completed")
        except OSError as exc:
            raise OutputError(f"cannot recover the interrupted output set {stage} "
                              f"({exc.strerror or exc}); check the folder's permissions") from exc
        finally:
            lock.close()
        _remove_stage(stage)
    return done


class OutputTransaction:
    """Write several files in one directory so that either all appear, complete, or none.

    Use as a context manager::

        with OutputTransaction(out_dir, ["a.tif", "a.csv"], overwrite=False) as tx:
            write_tif(tx.temp("a.tif"))
            write_csv(tx.temp("a.csv"))
        # on success the whole set replaced any previous one

    Entering recovers interrupted sets, checks the directory and every final name before
    anything is written, and creates the locked staging folder. Leaving with an exception
    (any ``BaseException``) deletes the staging folder and leaves existing finals untouched; a
    directory the transaction created is removed again if left empty.
    """

    def __init__(self, out_dir: str | os.PathLike[str], names: Sequence[str], *,
                 overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        for name in names:
            if not _plain(name):
                raise OutputError(f"output name {name!r} must be a plain file name, not a path")
        if len(set(names)) != len(names):
            raise OutputError(f"output names repeat: {sorted(names)}")
        self.names = list(names)
        self.overwrite = overwrite
        self.token = secrets.token_hex(6)
        self.stage = self.out_dir / f"{STAGE_PREFIX}{self.token}"
        self._lock: IO[str] | None = None
        self._created_dir = False
        self._done = False
        self._keep = False

    def final(self, name: str) -> Path:
        """Final path of ``name``."""
        self._known(name)
        return self.out_dir / name

    def temp(self, name: str) -> Path:
        """Staging path to write ``name`` to (same name, so drivers pick the format)."""
        self._known(name)
        return self.stage / "new" / name

    def __enter__(self) -> OutputTransaction:
        self._created_dir = ensure_writable_dir(self.out_dir)
        recover(self.out_dir)
        check_targets([self.out_dir / n for n in self.names], overwrite=self.overwrite)
        self._open_stage()
        return self

    def _open_stage(self) -> None:
        init = self.stage.with_name(self.stage.name + _INIT_SUFFIX)
        try:
            (init / "new").mkdir(parents=True)
            (init / "old").mkdir()
            self._lock = _try_lock(init / "lock")
            os.rename(init, self.stage)
        except OSError as exc:
            _remove_stage(init)
            raise OutputError(f"cannot create a staging folder in {self.out_dir} "
                              f"({exc.strerror or exc}); check the folder") from exc

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()

    def commit(self) -> None:
        """Swap the staged set in (every staged file must exist)."""
        if self._done:
            return
        missing = [n for n in self.names if not self.temp(n).exists()]
        if missing:
            raise OutputError(
                f"internal error: {', '.join(missing)} was not written to {self.out_dir}; "
                "nothing was renamed"
            )
        # another process may have created a final since __enter__
        check_targets([self.out_dir / n for n in self.names], overwrite=self.overwrite)
        replaced = [n for n in self.names
                    if (self.out_dir / n).exists() or (self.out_dir / n).is_symlink()]
        try:
            _write_journal(self.stage, PREPARED, self.names, replaced)
            for name in replaced:
                os.replace(self.out_dir / name, self.stage / "old" / name)
        except OSError as exc:
            self._undo(exc)
        try:
            _write_journal(self.stage, SWAPPING, self.names, replaced)
            _roll_forward(self.stage, self.out_dir, self.names)
        except OSError as exc:
            self._undo(exc, placed=True)
        self._done = True
        self._close()

    def _undo(self, exc: OSError, *, placed: bool = False) -> None:
        """Put the previous set back after a failed move; raise the one-line error."""
        try:
            if placed:  # move the new files that made it back out of the way
                for name in self.names:
                    if (self.out_dir / name).exists() and not (self.stage / "new" / name).exists():
                        os.replace(self.out_dir / name, self.stage / "new" / name)
            _roll_back(self.stage, self.out_dir, self.names)
        except OSError:
            self._keep = True  # leave the journal: the next run finishes or undoes the swap
            self._release()
            raise OutputError(
                f"cannot swap the new outputs into {self.out_dir} ({exc.strerror or exc}) nor "
                "restore the previous ones; rerun hsu-geo on this folder to complete the set"
            ) from exc
        raise OutputError(
            f"cannot move the new outputs into {self.out_dir} ({exc.strerror or exc}); the "
            "previous files were kept: check the folder and rerun with --overwrite"
        ) from exc

    def abort(self) -> None:
        """Delete the staging folder of this transaction (idempotent)."""
        self._done = True
        self._close()
        if self._created_dir:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()  # only succeeds when empty

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _close(self) -> None:
        self._release()
        if not self._keep:
            _remove_stage(self.stage)

    def _known(self, name: str) -> None:
        if name not in self.names:
            raise OutputError(f"internal error: {name!r} is not one of this transaction's outputs")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path for ``path``; it replaces ``path`` if the block succeeds."""
    final = Path(path)
    with OutputTransaction(final.parent, [final.name], overwrite=overwrite) as tx:
        yield tx.temp(final.name)
