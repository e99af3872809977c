"""File-name-safe identifiers for scenes (output file and folder names)."""

from __future__ import annotations

import re

_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str, fallback: str = "scene") -> str:
    """``text`` as a plain, visible file name: letters, digits, ``._-`` only.

    Never empty, ``.``, ``..`` or hidden: leading dots, dashes and underscores and trailing
    dots and underscores are dropped (``"_..tif"`` → ``"tif"``, ``".."`` → ``fallback``).
    """
    cleaned = _ID_CHARS.sub("_", str(text)).lstrip("._-").rstrip("._")
    return cleaned or fallback
