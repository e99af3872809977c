"""Find the scenes of a batch archive: a folder tree, or a ``.tar``/``.tar.gz``/``.zip`` of one.

Discovery asks the readers' ``guess_can_open`` (in reader priority order) from the top down.
A folder a reader claims is one scene unless a scene was found below it (then it is only a
container). In a container every claimed file is a scene, except that an ENVI data file joins
its header, and the files a folder-product reader (GF-5, EnMAP) claims form one scene per
folder. An unclaimed file named like a scene file plus an extension (``x.tif.aux.xml``,
``x.rpb``) joins that scene as a sidecar; anything else is listed as skipped, with the reason.

Archives are never unpacked as a whole. Listing one writes a *shadow tree* of its members into
a scratch folder, each file holding at most the member's first ``HEAD_BYTES`` (all of a small
text member such as a header or XML), which is all ``guess_can_open`` looks at. A scene's
members are unpacked just before it is processed and deleted after
(:meth:`ArchiveSource.materialize`, :meth:`ArchiveSource.release`). ``.tar`` and ``.zip`` are
read at random; a ``.tar.gz`` has no random access, so it is streamed in member order: the
members of every planned scene are written out as the stream passes them, and the stream only
restarts if a scene is asked for after its members went by.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from hsu_geo.errors import ConfigError, InvalidSceneError, SceneNotFoundError
from hsu_geo.ingest import READERS, reader_candidates
from hsu_geo.ingest.base import SceneReader
from hsu_geo.ingest.gf5_archive import archive_kind, check_archive_content, strip_archive_suffix
from hsu_geo.ingest.gf5_files import image_product
from hsu_geo.naming import safe_id
from hsu_geo.safe_io import sidecar_limit, too_large

HEAD_BYTES = 64 * 1024
#: most members a batch archive may hold: the listing writes up to HEAD_BYTES per member to
#: scratch, so this bounds it to ~1.3 GB (a GF-5 delivery has ~12 files: 1,600 deliveries)
MAX_MEMBERS = 20_000
COPY_BYTES = 1024 * 1024
FOLDER_PRODUCT_READERS = ("gf5", "enmap")
_IGNORED = ("__MACOSX", "Thumbs.db", "desktop.ini")
_ENVI_WAVELENGTH = re.compile(rb"^\s*wavelength\s*=", re.I | re.M)
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error)
LINK_OUT_REASON = "symbolic link out of the input folder (not followed)"
LINK_DIR_REASON = ("symbolic link to a folder inside the input folder (not followed: its "
                   "files are listed where they are)")
LINK_BROKEN_REASON = "broken symbolic link, or a loop of links (not followed)"

Readers = Sequence[tuple[str, type[SceneReader]]]




@dataclass(frozen=True)
class SceneSource:
    """One discovered scene: id, path (posix, relative to the archive root), reader, files."""

    scene_id: str
    rel: str
    reader: str
    members: tuple[str, ...]
    fingerprint: str


@dataclass(frozen=True)
class Skipped:
    """A file or folder that is not a scene, and why."""

    rel: str
    reason: str


@dataclass
class _Found:
    rel: str
    reader: str
    members: list[str] = field(default_factory=list)
    is_dir: bool = False


def readers_for(sensor: str) -> list[tuple[str, type[SceneReader]]]:
    """Readers to ask, in priority order: all for ``auto``, else those ``sensor`` names
    (one reader, or a comma-separated list: :func:`hsu_geo.ingest.reader_candidates`)."""
    return reader_candidates(sensor)


def _claim(path: Path, readers: Readers) -> str | None:
    for name, reader in readers:
        try:
            if reader.guess_can_open(path):
                return name
        except Exception:  # a reader that cannot even guess does not claim the path
            continue
    return None


def _link_skip(root: Path, child: Path) -> Skipped | None:
    """Why the symbolic link ``child`` is not followed, or None to follow it (a link to a
    regular file inside the input tree). Links to folders are never followed: one out of the
    tree would expose files elsewhere, one inside it would list its files twice (or loop)."""
    try:
        target = child.resolve(strict=True)
    except (OSError, RuntimeError):
        return Skipped(_rel(root, child), LINK_BROKEN_REASON)
    if not target.is_relative_to(root.resolve()):
        return Skipped(_rel(root, child), LINK_OUT_REASON)
    if target.is_dir():
        return Skipped(_rel(root, child), LINK_DIR_REASON)
    return None


def _entries(root: Path, folder: Path, exclude: Path | None
             ) -> tuple[list[Path], list[Path], list[Skipped]]:
    """Sub-folders, files and the symbolic links not followed, of ``folder``."""
    dirs: list[Path] = []
    files: list[Path] = []
    links: list[Skipped] = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if child.name.startswith(".") or child.name in _IGNORED:
            continue
        if child.is_symlink():
            skip = _link_skip(root, child)
            if skip is not None:
                links.append(skip)
                continue
        if exclude is not None and child.resolve() == exclude:
            continue
        if child.is_dir():
            dirs.append(child)
        elif child.is_file():
            files.append(child)
    return dirs, files, links


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else "."


def _all_files(root: Path, folder: Path, exclude: Path | None
               ) -> tuple[list[str], list[Skipped]]:
    """Every file under ``folder`` (posix, relative to ``root``) and the links not followed."""
    dirs, files, links = _entries(root, folder, exclude)
    out = [_rel(root, f) for f in files]
    for sub in dirs:
        more, more_links = _all_files(root, sub, exclude)
        out.extend(more)
        links.extend(more_links)
    return out, links


def _walk(root: Path, folder: Path, readers: Readers, exclude: Path | None
          ) -> tuple[list[_Found], list[Skipped]]:
    dirs, files, links = _entries(root, folder, exclude)
    found: list[_Found] = []
    skipped: list[Skipped] = list(links)
    for sub in dirs:
        f, s = _walk(root, sub, readers, exclude)
        found += f
        skipped += s
    if not found:
        reader = _claim(folder, readers)
        if reader is not None:
            members, not_followed = _all_files(root, folder, exclude)
            return [_Found(_rel(root, folder), reader, members, is_dir=True)], not_followed
    f, s = _group_files(root, files, readers)
    return found + f, skipped + s


def _group_key(path: Path, reader: str) -> tuple[str, ...]:
    if archive_kind(path) is None:
        if reader == "envi":
            from hsu_geo.ingest.envi import find_header

            header = find_header(path)
            return ("envi", header.name if header is not None else path.name)
        if reader in FOLDER_PRODUCT_READERS:
            return (reader,)
    return ("file", path.name)


def _group_files(root: Path, files: list[Path], readers: Readers
                 ) -> tuple[list[_Found], list[Skipped]]:
    groups: dict[tuple[str, ...], _Found] = {}
    unclaimed: list[Path] = []
    for path in files:
        reader = _claim(path, readers)
        if reader is None:
            unclaimed.append(path)
            continue
        group = groups.setdefault(_group_key(path, reader), _Found(_rel(root, path), reader))
        group.members.append(_rel(root, path))
        if path.suffix.lower() == ".hdr":
            group.rel = _rel(root, path)  # ENVI scenes are opened by their header
    skipped: list[Skipped] = []
    # the RadCal/XML files of a GF-5 (or EnMAP) product laid out flat belong to it
    folder_product = next((g for g in groups.values() if g.reader in FOLDER_PRODUCT_READERS
                           and archive_kind(Path(g.rel)) is None), None)
    for path in unclaimed:
        owner = _sidecar_owner(path.name, groups.values()) or folder_product
        if owner is not None:
            owner.members.append(_rel(root, path))
        else:
            skipped.append(Skipped(_rel(root, path), _unclaimed_reason(path)))
    return list(groups.values()), skipped


def _sidecar_owner(name: str, groups: Iterable[_Found]) -> _Found | None:
    for group in groups:
        for member in group.members:
            base = PurePosixPath(member).name
            stem = base.split(".")[0]
            if name.startswith(base + ".") or (stem and name.startswith(stem + ".")):
                return group
    return None


def _unclaimed_reason(path: Path) -> str:
    if archive_kind(path) is not None:
        return ("archive is not a recognised product (nested batch archives are not opened; "
                "unpack it or pass it to hsu-geo batch on its own)")
    return "no reader recognises this file (see `hsu-geo readers`)"


def _scene_id(found: _Found, source_name: str) -> str:
    name = PurePosixPath(found.rel).name if found.rel != "." else source_name
    if found.is_dir or found.rel == ".":
        return safe_id(strip_archive_suffix(name))
    if archive_kind(Path(name)) is not None:
        return safe_id(strip_archive_suffix(name))
    product = image_product(name) if found.reader == "gf5" else None
    if product is not None:
        return safe_id(product[0])
    if found.reader == "enmap":
        return safe_id(re.split(r"-(?:SPECTRAL_IMAGE|METADATA)", name, flags=re.I)[0])
    if name.lower().endswith(".hdr"):
        return safe_id(name[:-4])
    return safe_id(PurePosixPath(name).stem or name)


def _envi_without_wavelengths(root: Path, found: _Found) -> bool:
    header = next((m for m in found.members if m.lower().endswith(".hdr")), None)
    if found.reader != "envi" or header is None:
        return False
    with contextlib.suppress(OSError):
        return _ENVI_WAVELENGTH.search((root / header).read_bytes()[:HEAD_BYTES]) is None
    return False


def _geotiff_without_wavelengths(gdal_path: str | None) -> bool:
    """True if the GeoTIFF opens and none of its bands carries a wavelength (a class, label
    or mask raster); False when it cannot be told (unreadable: the scene then fails with a
    message instead of vanishing into the skipped list). Reads tags only."""
    if gdal_path is None:
        return False
    import warnings

    import rasterio

    from hsu_geo.ingest.geotiff import band_info_from_tags

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning and the like
            with rasterio.open(gdal_path) as src:
                return band_info_from_tags(src) is None
    except Exception:  # unreadable or inconsistent tags: decided when the scene is opened
        return False


def check_patterns(patterns: Sequence[str], option: str) -> tuple[str, ...]:
    """``--include``/``--exclude`` globs as given; ConfigError for an empty or absolute one."""
    for pattern in patterns:
        if not pattern.strip() or PurePosixPath(pattern).is_absolute():
            raise ConfigError(f"{option} {pattern!r}: give a glob relative to the input folder "
                              "or archive, e.g. '*.tif', 'labels/*' or 'labels'")
    return tuple(patterns)


def _matches(rel: str, pattern: str) -> bool:
    """``rel`` or one of its folders matches ``pattern`` (from the right, as
    :meth:`pathlib.PurePath.match`: ``*.tif``, ``labels/*``, ``labels``)."""
    path = PurePosixPath(rel)
    return any(p.match(pattern) for p in (path, *path.parents) if p.parts)


def _selection_reason(rel: str, include: Sequence[str], exclude: Sequence[str]) -> str | None:
    """Why ``rel`` is left out by ``--include``/``--exclude``, or None."""
    if include and not any(_matches(rel, p) for p in include):
        return f"not selected by --include {' '.join(include)}"
    hit = next((p for p in exclude if _matches(rel, p)), None)
    return f"excluded by --exclude {hit}" if hit is not None else None


def discover(source: FolderSource | ArchiveSource, readers: Readers,
             need_wavelengths: bool = True, include: Sequence[str] = (),
             exclude: Sequence[str] = ()) -> tuple[list[SceneSource], list[Skipped]]:
    """Scenes and skipped entries of ``source``, in path order.

    ``include``/``exclude``: globs (see :func:`_matches`) that select scenes by path; the
    others are listed as skipped. ``need_wavelengths``: an ENVI file whose header has no
    wavelength list (AVIRIS-NG GLT, IGM, OBS ancillaries) or a GeoTIFF none of whose bands
    has a wavelength (class or label rasters) is skipped rather than reported as a failed
    scene; this happens before scene ids are compared, so a ``labels/x.tif`` beside ``x.tif``
    does not stop the batch.
    """
    found, skipped = _walk(source.root, source.root, readers, source.exclude)
    if len(readers) < len(list(READERS.items())):  # --sensor NAME[,NAME]: say so
        name = ",".join(n for n, _ in readers)
        what = f"a {name} product" if len(readers) == 1 else \
            f"recognised by the {' or '.join(n for n, _ in readers)} reader"
        skipped = [Skipped(s.rel, f"not {what} (the sensor is set to {name})")
                   if s.reason.startswith("no reader") else s for s in skipped]
    scenes: list[SceneSource] = []
    for item in sorted(found, key=lambda f: f.rel):
        left_out = _selection_reason(item.rel, include, exclude)
        if left_out is not None:
            skipped.append(Skipped(item.rel, left_out))
            continue
        if need_wavelengths and _envi_without_wavelengths(source.root, item):
            skipped.append(Skipped(item.rel, "ENVI header has no band wavelengths (an ancillary "
                                             "file such as _obs, _glt or _igm?)"))
            continue
        if need_wavelengths and item.reader == "geotiff" and not item.is_dir \
                and _geotiff_without_wavelengths(source.gdal_path(item.rel)):
            skipped.append(Skipped(item.rel, "GeoTIFF bands have no wavelengths (a class, label "
                                             "or mask raster?); pass --wavelengths FILE if it "
                                             "is a scene"))
            continue
        members = tuple(sorted(set(item.members)))
        scenes.append(SceneSource(_scene_id(item, source.path.name), item.rel, item.reader,
                                  members, source.fingerprint(members)))
    return scenes, sorted(skipped, key=lambda s: s.rel)


class FolderSource:
    """A folder tree of scenes, read in place."""

    kind = "folder"

    def __init__(self, path: Path, exclude: Path | None = None) -> None:
        self.path = path
        self.root = path
        self.exclude = exclude.resolve() if exclude is not None else None
        self.truncated: str | None = None
        self.error: str | None = None

    def count_files(self) -> int:
        return len(_all_files(self.root, self.root, self.exclude)[0])

    def fingerprint(self, members: Sequence[str]) -> str:
        rows = []
        for m in members:
            st = (self.root / m).stat()
            rows.append(f"{m}\t{st.st_size}\t{st.st_mtime_ns}")
        return _digest(rows)

    def ordered(self, scenes: Sequence[SceneSource]) -> list[SceneSource]:
        """Processing order: path order."""
        return list(scenes)

    def plan(self, scenes: Sequence[SceneSource]) -> None:
        """Nothing to prepare: scenes are read in place."""

    def materialize(self, scene: SceneSource) -> Path:
        return self.root / scene.rel

    def gdal_path(self, rel: str) -> str | None:
        """Where GDAL reads the whole file ``rel``."""
        return str(self.root / rel)

    def release(self, scene: SceneSource) -> None:
        """Nothing to delete."""

    def close(self) -> None:
        """Nothing to close."""


class ArchiveSource:
    """A ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` of scenes, unpacked one scene at a time.

    ``truncated`` names the member the file ends inside (its scene cannot be read), and
    ``error`` says how the archive ended early, when it did.
    """

    def __init__(self, path: Path, scratch: Path) -> None:
        kind = check_archive_content(path)  # a gzip named .tar is refused, not misread
        self.path = path
        self.kind = kind
        self.exclude: Path | None = None
        self.root = scratch / "index"
        self._scenes = scratch / "scenes"
        self.truncated: str | None = None
        self.error: str | None = None
        self._info: dict[str, tuple[int, float]] = {}
        self._tarinfo: dict[str, tarfile.TarInfo] = {}
        self._wanted: dict[str, Path] = {}
        self._written: set[str] = set()
        self._passed: set[str] = set()
        self._stream: tarfile.TarFile | None = None
        self._iter: Iterator[tarfile.TarInfo] | None = None
        self.root.mkdir(parents=True)
        self._scenes.mkdir(parents=True)
        if kind == "zip":
            self._list_zip()
        else:
            self._list_tar()

    def count_files(self) -> int:
        return len(self._info)

    def fingerprint(self, members: Sequence[str]) -> str:
        return _digest([f"{m}\t{self._info[m][0]}\t{self._info[m][1]}" for m in members])

    # -- listing --------------------------------------------------------------------------
    def _shadow(self, name: str, head: bytes) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(head)

    def _check_count(self, count: int) -> None:
        if count > MAX_MEMBERS:
            raise InvalidSceneError(
                f"{self.path}: holds more than {MAX_MEMBERS} members, more than a batch archive "
                "may (each is indexed on disk); split it into several archives, or unpack it "
                "and pass the folder")

    def _list_zip(self) -> None:
        try:
            with zipfile.ZipFile(self.path) as zf:
                for count, info in enumerate(zf.infolist(), start=1):
                    self._check_count(count)
                    if info.is_dir() or not _safe_member(info.filename):
                        continue
                    name = info.filename
                    self._info[name] = (info.file_size, float(_zip_mtime(info)))
                    try:
                        with zf.open(info) as fh:
                            head = fh.read(HEAD_BYTES)
                    except _ARCHIVE_ERRORS:
                        head = b""
                    self._shadow(name, head)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidSceneError(
                f"{self.path}: not a readable zip archive ({exc}); it may be truncated: "
                "download or pack it again") from None

    def _list_tar(self) -> None:
        last: str | None = None
        mode = "r:" if self.kind == "tar" else "r|gz"
        try:
            with tarfile.open(self.path, mode) as tf:
                for count, info in enumerate(tf, start=1):
                    self._check_count(count)
                    name = info.name.removeprefix("./")
                    if not info.isfile() or not _safe_member(name):
                        continue
                    last = name
                    self._info[name] = (info.size, float(info.mtime))
                    self._tarinfo[name] = info
                    self._shadow(name, b"")  # listed even if its data turns out cut short
                    fh = tf.extractfile(info)
                    self._shadow(name, fh.read(HEAD_BYTES) if fh is not None else b"")
                end = tf.offset
        except _ARCHIVE_ERRORS as exc:
            if not self._info:
                raise InvalidSceneError(
                    f"{self.path}: not a readable {self.kind} archive ({exc}); download or "
                    "pack it again") from None
            # a .tar.gz cannot tell where the cut is: distrust the last member listed
            self.truncated = self._cut_member() if self.kind == "tar" else last
            self.error = f"the archive ends early ({exc}) after {last}; members may be missing"
            return
        if self.kind == "tar":
            self.truncated = self._cut_member()
            if self.truncated is not None:
                self.error = f"the archive ends inside {self.truncated}"
            elif self.path.stat().st_size < end + 2 * tarfile.BLOCKSIZE:
                self.error = (f"the archive has no end-of-archive marker: members after {last} "
                              "may be missing")

    def _cut_member(self) -> str | None:
        """The member of a plain ``.tar`` whose data runs past the end of the file."""
        size = self.path.stat().st_size
        return next((n for n, i in self._tarinfo.items() if i.offset_data + i.size > size), None)

    def gdal_path(self, rel: str) -> str | None:
        """Where GDAL reads the whole member ``rel`` without unpacking it (``/vsizip/``,
        ``/vsitar/``), or None for a large member of a ``.tar.gz`` (no random access)."""
        if self._info.get(rel, (HEAD_BYTES + 1, 0))[0] <= HEAD_BYTES:
            return str(self.root / rel)  # the shadow holds all of it
        if self.kind == "zip":
            return f"/vsizip/{self.path.resolve()}/{rel}"
        if self.kind == "tar" and rel != self.truncated:
            return f"/vsitar/{self.path.resolve()}/{rel}"
        return None

    # -- unpacking one scene --------------------------------------------------------------
    def _dest(self, scene: SceneSource) -> Path:
        return self._scenes / scene.scene_id

    def ordered(self, scenes: Sequence[SceneSource]) -> list[SceneSource]:
        """Processing order: where each scene starts in the archive (one pass of a stream)."""
        position = {name: i for i, name in enumerate(self._info)}
        return sorted(scenes, key=lambda s: min(position[m] for m in s.members))

    def plan(self, scenes: Sequence[SceneSource]) -> None:
        """The scenes that will be materialized, so a streamed ``.tar.gz`` needs one pass."""
        self._wanted = {m: self._dest(s) for s in scenes for m in s.members}

    def materialize(self, scene: SceneSource) -> Path:
        """Unpack ``scene``'s members into scratch; the path to open."""
        dest = self._dest(scene)
        if self.truncated in scene.members:
            raise InvalidSceneError(
                f"{self.path}: the archive is truncated inside {self.truncated}; download or "
                "pack it again")
        for m in scene.members:  # text sidecars over their cap are refused before unpacking
            limit = sidecar_limit(m)
            if limit is not None and self._info[m][0] > limit:
                raise too_large(f"{self.path}/{m}", "sidecar file", self._info[m][0], limit)
        try:
            if self.kind == "tar.gz":
                self._stream_to(scene, dest)
            elif self.kind == "zip":
                with zipfile.ZipFile(self.path) as zf:
                    for m in scene.members:
                        with zf.open(m) as fh:
                            _copy(fh, dest / m)
            else:
                with tarfile.open(self.path, "r:") as tf:
                    for m in scene.members:
                        _copy(tf.extractfile(self._tarinfo[m]), dest / m)
        except _ARCHIVE_ERRORS as exc:
            raise InvalidSceneError(
                f"{self.path}: cannot unpack {scene.rel} ({exc}); the archive may be corrupt: "
                "download or pack it again") from None
        return dest / scene.rel

    def _stream_to(self, scene: SceneSource, dest: Path) -> None:
        needed = set(scene.members) - self._written
        if needed & self._passed:
            self._close_stream()
        if self._stream is None:
            # kept open between calls on purpose: the next scene continues the same stream
            self._stream = tarfile.open(self.path, "r|gz")  # noqa: SIM115
            self._iter = iter(self._stream)
            self._passed.clear()
        while needed:
            info = next(self._iter, None) if self._iter is not None else None
            if info is None:
                raise InvalidSceneError(f"{self.path}: {sorted(needed)[0]} is missing from "
                                        "the archive; download or pack it again")
            name = info.name.removeprefix("./")
            self._passed.add(name)
            target = dest if name in needed else self._wanted.get(name)
            if target is None or not info.isfile() or name in self._written:
                continue
            _copy(self._stream.extractfile(info), target / name)
            self._written.add(name)
            needed.discard(name)

    def release(self, scene: SceneSource) -> None:
        """Delete ``scene``'s unpacked members."""
        shutil.rmtree(self._dest(scene), ignore_errors=True)
        self._written.difference_update(scene.members)

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = None
        self._iter = None

    def close(self) -> None:
        self._close_stream()


def open_source(path: Path, scratch: Path, exclude: Path | None = None
                ) -> FolderSource | ArchiveSource:
    """A :class:`FolderSource` or :class:`ArchiveSource` for ``path``; refuses empty ones."""
    if not path.exists():
        raise SceneNotFoundError(f"{path}: no such folder or archive; check the path")
    source: FolderSource | ArchiveSource
    if path.is_dir():
        source = FolderSource(path, exclude)
    elif archive_kind(path) is not None:
        source = ArchiveSource(path, scratch)
    else:
        raise InvalidSceneError(f"{path}: not a folder, .tar, .tar.gz, .tgz or .zip; for one "
                                "scene use hsu-geo unmix")
    if source.count_files() == 0:
        raise InvalidSceneError(f"{path}: holds no files; point hsu-geo batch at a folder or "
                                "archive of scenes")
    return source


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name.removeprefix("./"))
    return bool(p.parts) and not p.is_absolute() and ".." not in p.parts \
        and not any(part.startswith(".") or part in _IGNORED for part in p.parts)


def _zip_mtime(info: zipfile.ZipInfo) -> int:
    y, mo, d, h, mi, s = info.date_time
    return ((((y * 100 + mo) * 100 + d) * 100 + h) * 100 + mi) * 100 + s


def _copy(fh: IO[bytes] | None, target: Path) -> None:
    if fh is None:
        raise InvalidSceneError(f"{target.name}: not a regular file in the archive")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(fh, out, COPY_BYTES)


def _digest(rows: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
