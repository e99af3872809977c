"""The reader interface every sensor plugin implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import xarray as xr


class SceneReader(ABC):
    """Open one product format as a cube (see :mod:`hsu_geo.cube`).

    Subclasses declare ``name``, ``description`` and ``sensors``, say cheaply whether a path
    looks like theirs (``guess_can_open``, no pixel reads) and build the cube lazily (``open``).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    sensors: ClassVar[tuple[str, ...]] = ()
    #: readers tried first by ``sensor="auto"`` (specific formats before generic ones)
    priority: ClassVar[int] = 50

    @classmethod
    @abstractmethod
    def guess_can_open(cls, path: Path) -> bool:
        """True if ``path`` looks like this reader's format (file names/headers only)."""

    @abstractmethod
    def open(self, path: Path, *, chunk_size: int, wavelengths: Path | None = None) -> xr.DataArray:
        """Open ``path`` as a lazy cube; ``wavelengths`` is an optional CSV/.hdr override."""
