"""All-or-nothing output files: refuse to clobber, write under temporary names, rename at the end.

Every temporary file of one transaction lives in the output directory (so the final
``os.replace`` is an atomic rename on the same file system) and is named
``.<stem>.part-<token><suffix>``: hidden, visibly incomplete, and removed by a single glob on any
failure, including ``KeyboardInterrupt``. Companion files other code creates next to a temporary
(GDAL ``.aux.xml``, intermediate rasters) carry the same token and are cleaned the same way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from hsu_geo.errors import OutputError, OutputExistsError

PART_MARK = ".part-"


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
    probe = out_dir / f".hsu-geo-probe{PART_MARK}{secrets.token_hex(4)}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
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


class OutputTransaction:
    """Write several files in one directory so that either all appear, complete, or none.

    Use as a context manager::

        with OutputTransaction(out_dir, ["a.tif", "a.csv"], overwrite=False) as tx:
            write_tif(tx.temp("a.tif"))
            write_csv(tx.temp("a.csv"))
        # on success every temporary was renamed to its final name, in the order given

    Entering checks the directory and every final name before anything is written. Leaving
    with an exception (any ``BaseException``) deletes every temporary and leaves existing
    finals untouched; a directory the transaction created is removed again if left empty.
    """

    def __init__(self, out_dir: str | os.PathLike[str], names: Sequence[str], *,
                 overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        for name in names:
            if Path(name).name != name or name in ("", ".", ".."):
                raise OutputError(f"output name {name!r} must be a plain file name, not a path")
        if len(set(names)) != len(names):
            raise OutputError(f"output names repeat: {sorted(names)}")
        self.names = list(names)
        self.overwrite = overwrite
        self.token = secrets.token_hex(6)
        self._created_dir = False
        self._done = False

    def final(self, name: str) -> Path:
        """Final path of ``name``."""
        self._known(name)
        return self.out_dir / name

    def temp(self, name: str) -> Path:
        """Temporary path to write ``name`` to; keeps the suffix so drivers pick the format."""
        self._known(name)
        stem, suffix = os.path.splitext(name)
        return self.out_dir / f".{stem}{PART_MARK}{self.token}{suffix}"

    def temporaries(self) -> list[Path]:
        """Every file currently present that belongs to this transaction."""
        return sorted(self.out_dir.glob(f".*{PART_MARK}{self.token}*"))

    def __enter__(self) -> OutputTransaction:
        self._created_dir = ensure_writable_dir(self.out_dir)
        check_targets([self.out_dir / n for n in self.names], overwrite=self.overwrite)
        return self

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
        """Rename every temporary to its final name (all temporaries must exist)."""
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
        for name in self.names:
            try:
                os.replace(self.temp(name), self.out_dir / name)
            except OSError as exc:
                raise OutputError(
                    f"cannot rename {self.temp(name).name} to {name} in {self.out_dir} "
                    f"({exc.strerror or exc}); check the directory and rerun with --overwrite"
                ) from exc
        self._done = True
        self._cleanup()

    def abort(self) -> None:
        """Delete every temporary of this transaction (idempotent)."""
        self._done = True
        self._cleanup()
        if self._created_dir:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()  # only succeeds when empty

    def _cleanup(self) -> None:
        for path in self.temporaries():
            with contextlib.suppress(OSError):
                path.unlink()

    def _known(self, name: str) -> None:
        if name not in self.names:
            raise OutputError(f"internal error: {name!r} is not one of this transaction's outputs")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    final = Path(path)
    with OutputTransaction(final.parent, [final.name], overwrite=overwrite) as tx:
        yield tx.temp(final.name)
