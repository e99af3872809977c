"""Named registries of plugins (readers, models, extractors) with entry-point discovery.

Built-in plugins are registered in code; third-party packages add theirs through the
entry-point groups ``hsu_geo.readers`` and ``hsu_geo.models``. A plugin that fails to load
warns instead of breaking the CLI (the xarray backends pattern).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from hsu_geo.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> plugin mapping filled by code and, lazily, by an entry-point group.

    Args:
        kind: what the plugins are, for messages (``"reader"``, ``"model"``).
        group: entry-point group name, or ``None`` for code-only registries.
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._loaders: dict[str, Callable[[], T]] = {}
        self._entry_points_loaded = group is None

    def register(self, name: str, item: T | None = None):
        """Register ``item`` under ``name``; usable as a decorator when ``item`` is omitted."""

        def _add(obj: T) -> T:
            self._items[name] = obj
            return obj

        return _add(item) if item is not None else _add

    def register_lazy(self, name: str, loader: Callable[[], T]) -> None:
        """Register a plugin imported only when first used."""
        self._loaders[name] = loader

    def _load_entry_points(self, eps: list[EntryPoint] | None = None) -> None:
        if self._entry_points_loaded and eps is None:
            return
        self._entry_points_loaded = True
        found = eps if eps is not None else list(entry_points(group=self.group))
        for ep in found:
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not crash the CLI
                warnings.warn(
                    f"could not load {self.kind} plugin {ep.name!r} ({ep.value}): {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            existing = self._items.get(ep.name)
            if existing is None and ep.name in self._loaders:
                existing = self._resolve(ep.name)
            if existing is not None and existing is not obj:
                warnings.warn(
                    f"{self.kind} {ep.name!r} from entry point {ep.value} ignored: "
                    "the name is already taken",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            self._items[ep.name] = obj

    def load_entry_points(self, eps: list[EntryPoint]) -> None:
        """Add plugins from explicit entry points (used by tests and by discovery)."""
        self._load_entry_points(eps)

    def _resolve(self, name: str) -> T:
        if name not in self._items and name in self._loaders:
            self._items[name] = self._loaders.pop(name)()
        return self._items[name]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load_entry_points()
        return sorted(set(self._items) | set(self._loaders))

    def get(self, name: str) -> T:
        """The plugin called ``name``; an unknown name lists the valid ones."""
        self._load_entry_points()
        if name not in self._items and name not in self._loaders:
            valid = ", ".join(self.names()) or "(none installed)"
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {valid}")
        return self._resolve(name)

    def items(self) -> Iterator[tuple[str, T]]:
        """``(name, plugin)`` pairs, sorted by name; plugins that fail to import are skipped
        with a warning."""
        for name in self.names():
            try:
                obj = self._resolve(name)
            except ImportError as exc:
                warnings.warn(f"{self.kind} {name!r} unavailable: {exc}", RuntimeWarning,
                              stacklevel=2)
                self._loaders.pop(name, None)
                continue
            yield name, obj

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()
