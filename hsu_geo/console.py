"""What hsu-geo writes on stderr: log levels for ``-v``/``-q``, Python warnings, progress bars.

The CLI's contract (``setup`` applies it once per command):

* default: hsu-geo's stage lines, warnings and errors. Progress bars (tqdm) only when stderr
  is a terminal; elsewhere (a log file, a pipe) one line per stage and no bar.
* ``-q``: silent unless something is wrong: hsu-geo's own warnings (fit quality, scale,
  ...) and errors only. ``-qq``: errors only.
* ``-v``: also INFO logs, hsu-geo's and third-party libraries' (dask.distributed, rasterio),
  and third-party Python warnings; ``-vv``: DEBUG.

Third-party log records below ERROR and third-party Python warnings (e.g. rasterio's
``NotGeoreferencedWarning``, numpy's ``RuntimeWarning``) are noise to a user: shown only with
``-v``. hsu-geo's warnings seen during a command are also kept for ``--json`` summaries
(:func:`collected_warnings`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

PACKAGE = "hsu_geo"
FORMAT = "%(levelname)s %(message)s"
_PACKAGE_DIR = str(Path(__file__).resolve().parent)
#: categories meant for developers, not users: third-party noise even when hsu-geo issues them
_DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning,
                       ImportWarning, ResourceWarning)
#: loggers that libraries configure with a level of their own (distributed sets INFO)
LIBRARY_LOGGERS = ("distributed", "tornado", "bokeh", "rasterio", "fsspec", "numba", "torch")


@dataclass
class _State:
    verbosity: int = 0
    own_level: int = logging.WARNING
    other_level: int = logging.ERROR
    stderr_broken: bool = False
    configured: bool = False  # setup() ran: a CLI command, not a library call
    warnings: list[str] = field(default_factory=list)


_state = _State()


def levels(verbosity: int) -> tuple[int, int]:
    """(hsu-geo threshold, third-party threshold) for ``verbosity`` (-2 = ``-qq`` .. 2)."""
    own = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.WARNING, 1: logging.INFO}
    other = {1: logging.INFO}
    v = max(-2, min(2, verbosity))
    return own.get(v, logging.DEBUG), other.get(v, logging.DEBUG if v >= 2 else logging.ERROR)


def _is_own(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (click's test runner swaps it per command)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:  # StreamHandler.__init__ assigns it
        pass

    def filter(self, record: logging.LogRecord) -> bool:
        own = _is_own(record.name)
        threshold = _state.own_level if own else _state.other_level
        return record.levelno >= threshold and not _state.stderr_broken

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging API)
        exc = sys.exc_info()[1]
        if _broken_pipe(exc) or isinstance(exc, ValueError):  # closed pipe or closed file
            _state.stderr_broken = True
            return
        super().handleError(record)


class _Collector(logging.Handler):
    """Keeps hsu-geo's warnings of this command (for ``--json``), shown or not."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if _is_own(record.name) and record.levelno < logging.ERROR:
            msg = record.getMessage()
            if msg not in _state.warnings:
                _state.warnings.append(msg)


def _issued_by_hsu_geo() -> bool:
    """Whether the code that called ``warnings.warn`` (or the numpy operation that warned) is
    hsu-geo's: the first frame above the warnings machinery. ``filename`` cannot tell, it
    follows ``stacklevel`` (e.g. into dask, for a warning raised inside a chunk function)."""
    frame = sys._getframe(2)  # above _showwarning
    while frame is not None and frame.f_code.co_filename.endswith(("warnings.py", __file__)):
        frame = frame.f_back
    return frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(
        _PACKAGE_DIR + "/")


def _showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """Python warnings as log records: hsu-geo's at WARNING on ``hsu_geo.warnings``, other
    packages' on ``py.warnings`` (shown only with -v)."""
    module = getattr(category, "__module__", "") or ""
    own = _is_own(module) or (not issubclass(category, _DEVELOPER_WARNINGS)
                              and _issued_by_hsu_geo())
    if own:
        logging.getLogger(f"{PACKAGE}.warnings").warning("%s", message)
    else:
        logging.getLogger("py.warnings").warning("%s: %s (%s:%d)", category.__name__, message,
                                                 Path(filename).name, lineno)


def setup(verbose: int = 0, quiet: int = 0) -> None:
    """Apply the -v/-q rules above to logging and Python warnings (idempotent)."""
    _state.configured = True
    _state.verbosity = max(-2, min(2, (verbose or 0) - (quiet or 0)))
    _state.own_level, _state.other_level = levels(_state.verbosity)
    _state.stderr_broken = False
    _state.warnings.clear()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, (_StderrHandler, _Collector))]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.addHandler(_Collector())
    root.setLevel(min(_state.own_level, _state.other_level, logging.WARNING))
    tame_libraries()
    warnings.showwarning = _showwarning


def tame_libraries() -> None:
    """Lower the loggers that libraries set up themselves to the third-party threshold (call
    again after importing such a library: ``distributed`` sets its level when imported)."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(_state.other_level)


def configured() -> bool:
    """Whether :func:`setup` ran in this process (the CLI); library callers keep their own
    logging and warnings settings."""
    return _state.configured


def third_party_level() -> int:
    """The log level third-party libraries may print at (for dask worker processes)."""
    return _state.other_level


def verbosity() -> int:
    """-2 (``-qq``) .. 2 (``-vv``); 0 by default."""
    return _state.verbosity


def collected_warnings() -> list[str]:
    """hsu-geo's warnings logged since :func:`setup`, in order, without repeats."""
    return list(_state.warnings)


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def show_stages() -> bool:
    """Whether stage lines (``[hsu-geo] ...``) are printed: not with ``-q``."""
    return _state.verbosity >= 0


def show_bars() -> bool:
    """Whether progress bars are drawn: not with ``-q``, and only on a terminal."""
    return show_stages() and stderr_is_terminal()


def _broken_pipe(exc: BaseException | None) -> bool:
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError)
                                                and exc.errno == errno.EPIPE)


def echo(msg: str) -> None:
    """One ``[hsu-geo] msg`` line on stderr; a closed stderr (``2>&1 | head``) is ignored, not
    a failure of the run."""
    if _state.stderr_broken:
        return
    try:
        sys.stderr.write(f"[hsu-geo] {msg}\n")
        sys.stderr.flush()
    except OSError as exc:
        if not _broken_pipe(exc):
            raise
        _state.stderr_broken = True


def _tqdm(**kwargs: Any) -> Any:
    from tqdm.std import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, mininterval=0.2, **kwargs)


@contextlib.contextmanager
def dask_bar(desc: str = "computing", enabled: bool = True) -> Iterator[None]:
    """A tqdm bar of the dask tasks computed inside the block (local schedulers: threads or
    synchronous; dask.distributed computations report nothing here)."""
    if not enabled or _state.stderr_broken:
        yield
        return
    from tqdm.dask import TqdmCallback
    from tqdm.std import tqdm

    with TqdmCallback(tqdm_class=tqdm, desc=f"[hsu-geo] {desc}", unit="task", file=sys.stderr,
                      dynamic_ncols=True, mininterval=0.2, leave=False):
        yield


class EpochProgress:
    """Training progress of deep models (``TrainEvent`` per epoch): on a terminal a tqdm bar
    per stage with the loss; elsewhere one line per stage when it ends (epochs, last loss,
    seconds)."""

    LABELS: ClassVar[dict[str, str]] = {
        "decoder_pretrain": "pretraining decoder", "synthetic_pretrain": "synthetic pretrain",
        "finetune": "fine-tuning", "train": "training"}

    def __init__(self, bars: bool | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.bars = show_bars() if bars is None else bars
        self.say = say or echo
        self.stage: str | None = None
        self.bar: Any = None
        self.last: Any = None
        self.t0 = 0.0

    def label(self, stage: str) -> str:
        base, _, detail = stage.partition(":")
        return self.LABELS.get(base, base) + (f" {detail}" if detail else "")

    def __call__(self, event: Any) -> None:
        if event.stage != self.stage:
            self.close()
            self.stage, self.t0 = event.stage, time.perf_counter()
            if self.bars:
                self.bar = _tqdm(total=event.epochs, desc=f"[hsu-geo] {self.label(event.stage)}",
                                 unit="epoch", leave=True)
        self.last = event
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {event.loss:.5g}", refresh=False)
            self.bar.update(event.epoch - self.bar.n)
        if event.epoch >= event.epochs:
            self.close()

    def close(self) -> None:
        """End the current stage's bar or line (also after an early stop)."""
        if self.stage is None:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.last is not None:
            e = self.last
            early = "" if e.epoch >= e.epochs else f" (stopped early of {e.epochs})"
            self.say(f"{self.label(e.stage)}: {e.epoch} epochs{early}, loss {e.loss:.5g}, "
                     f"{time.perf_counter() - self.t0:.1f} s")
        self.stage, self.last = None, None
