"""Endmember extractor registry and dispatcher.

Every extractor has the signature ``f(Y (N, L), k, *, seed=0) -> (M (k, L), idx (k,))``; pass
the valid pixels (nodata removed), optionally a subsample.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.endmembers.atgp import atgp
from hsu_geo.endmembers.nfindr import nfindr
from hsu_geo.endmembers.vca import vca
from hsu_geo.errors import ConfigError

__all__ = ["EXTRACTORS", "Extractor", "extract_endmembers"]


class Extractor(Protocol):
    def __call__(
        self, Y: ArrayLike, k: int, *, seed: int = 0
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]: ...


#: Name → extractor.
EXTRACTORS: dict[str, Extractor] = {"vca": vca, "nfindr": nfindr, "atgp": atgp}


def extract_endmembers(
    Y: ArrayLike, k: int, method: str = "vca", seed: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Extract ``k`` endmembers ``M (k, L)`` and their pixel indices from ``Y (N, L)``.

    ``method`` is one of :data:`EXTRACTORS` (case-insensitive; unknown → ConfigError);
    deterministic for a given ``seed``.
    """
    key = method.lower() if isinstance(method, str) else method
    if key not in EXTRACTORS:
        raise ConfigError(
            f"unknown endmember extraction method {method!r}; "
            f"valid: {', '.join(sorted(EXTRACTORS))}"
        )
    return EXTRACTORS[key](Y, k, seed=seed)
