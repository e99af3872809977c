"""Outputs never land on inputs: checks on resolved paths before anything is computed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hsu_geo.errors import OutputError


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def overlaps(a: Path, b: Path) -> bool:
    """Whether resolved paths ``a`` and ``b`` are the same or one lies inside the other."""
    return a == b or a in b.parents or b in a.parents


def refuse_inputs_as_outputs(targets: Iterable[tuple[str, str | os.PathLike[str]]],
                             inputs: Iterable[str | os.PathLike[str]]) -> None:
    """:class:`OutputError` if an output path is an input or lies inside an input folder.

    ``targets``: ``(what, path)`` pairs, e.g. ``("--save-model", "model.pt")``; ``inputs``:
    the scene path and every file it is read from (a delivery folder counts as a whole).
    """
    sources = [(_resolved(p), Path(p)) for p in inputs]
    for what, target in targets:
        t = _resolved(target)
        for src, shown in sources:
            if t == src or src in t.parents:
                where = "is" if t == src else "lies inside"
                raise OutputError(f"{what} {target} {where} the input {shown}; writing it would "
                                  "replace the input: choose another path")
