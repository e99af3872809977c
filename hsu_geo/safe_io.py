"""Bounded reads of the small files a user or a product hands us (sidecars, presets, tables).

Every such file is read through :func:`read_small_file` (or :func:`read_capped` for an open
archive member): it must be a regular file (not a directory, FIFO or device such as
``/dev/zero``) no larger than a cap chosen for its kind, so a hostile or mistaken input costs
at most the cap in memory and time. The caps are far above any real file of the kind:

* ``XML_LIMIT`` 32 MiB: product XML (GF-5 ``<product>.xml`` is ~5 KB, EnMAP ``METADATA.XML``
  with per-band statistics ~1-3 MB).
* ``HEADER_LIMIT`` 16 MiB: ENVI headers (AVIRIS-NG, 425 bands with wavelength, fwhm and bbl
  lists, ~20 KB).
* ``TABLE_LIMIT`` 16 MiB: RadCal, Spectralresponse, ``.rpb``, ``.gain`` and ``--wavelengths``
  tables (one short line per band: ~2-20 KB).
* ``ENDMEMBER_LIMIT`` 64 MiB: ``--endmembers`` CSV (a whole splib07 chapter at 1 nm, 2151 rows
  x a few hundred columns, is ~10 MB).
* ``PRESET_LIMIT`` 1 MiB: ``--pipeline`` YAML presets (the bundled ones are < 2 KB).
* ``CHECKPOINT_LIMIT`` 2 GiB: ``--load-model`` checkpoints (a CResDAE for 425 bands is ~10 MB).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from hsu_geo.errors import HsuGeoError, InvalidSceneError

MIB = 1024 * 1024
XML_LIMIT = 32 * MIB
HEADER_LIMIT = 16 * MIB
TABLE_LIMIT = 16 * MIB
ENDMEMBER_LIMIT = 64 * MIB
PRESET_LIMIT = 1 * MIB
CHECKPOINT_LIMIT = 2048 * MIB

#: cap by (lower-case) file-name ending, for sidecars found inside products and archives
#: (not ``.raw``: a GF-5 RadCal table but also a common ENVI data-file suffix)
SIDECAR_LIMITS: tuple[tuple[str, int], ...] = (
    (".xml", XML_LIMIT), (".hdr", HEADER_LIMIT), (".rpb", TABLE_LIMIT), (".gain", TABLE_LIMIT),
)


def link_leaves(path: Path, root: Path) -> bool:
    """True when ``path`` is a symbolic link whose target (fully resolved) lies outside
    ``root`` (or is broken or loops): such links are not followed into the input."""
    if not path.is_symlink():
        return False
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # broken link or a loop of links
        return True
    return not target.is_relative_to(root.resolve())


def _size_text(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


def sidecar_limit(name: str) -> int | None:
    """The read cap for a text sidecar named ``name`` (by its ending), or None (no cap)."""
    lower = name.lower()
    return next((limit for suffix, limit in SIDECAR_LIMITS if lower.endswith(suffix)), None)


def too_large(label: str, what: str, size: int | None, limit: int,
              error: type[HsuGeoError] = InvalidSceneError) -> HsuGeoError:
    """The one-line error for a ``what`` file over its ``limit``."""
    actual = f"{_size_text(size)}, " if size is not None else ""
    return error(f"{label}: {what} is too large ({actual}more than the {_size_text(limit)} "
                 f"such a file can be); check that this is the right file")


def check_regular_file(path: str | os.PathLike[str], limit: int, what: str,
                       error: type[HsuGeoError] = InvalidSceneError) -> int:
    """Size of ``path`` after checking it is an existing regular file of at most ``limit``
    bytes; otherwise ``error`` naming the path, what it should be and the fix."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise error(f"{p}: {what} not found; check the path") from None
    except OSError as exc:
        raise error(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: is a folder, but the {what} must be a file; give the file's path")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{p}: not a regular file (a device, FIFO or socket); give the {what} "
                    "as an ordinary file")
    if st.st_size > limit:
        raise too_large(str(p), what, st.st_size, limit, error)
    return st.st_size


def read_capped(fh: IO[bytes], limit: int, label: str, what: str,
                error: type[HsuGeoError] = InvalidSceneError) -> bytes:
    """At most ``limit`` bytes of an open stream; ``error`` if there is more (the declared
    size of an archive member or a file may lie, so the cap holds whatever it says)."""
    data = fh.read(limit + 1)
    if len(data) > limit:
        raise too_large(label, what, None, limit, error)
    return data


def read_small_file(path: str | os.PathLike[str], limit: int, what: str,
                    error: type[HsuGeoError] = InvalidSceneError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`check_regular_file`)."""
    check_regular_file(path, limit, what, error)
    try:
        with open(path, "rb") as fh:
            return read_capped(fh, limit, str(path), what, error)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def read_small_text(path: str | os.PathLike[str], limit: int, what: str,
                    error: type[HsuGeoError] = InvalidSceneError) -> str:
    """:func:`read_small_file` decoded as UTF-8 (a byte-order mark is dropped)."""
    raw = read_small_file(path, limit, what, error)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{path}: the {what} is not UTF-8 text; give a text file") from None
