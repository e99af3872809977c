"""Endmember extractor registry and dispatcher.

Every extractor has the signature ``f(Y (N, L), k, *, seed=0) -> (M (k, L), idx (k,))``; pass
the valid pixels (nodata removed), optionally a subsample. :data:`EXTRACTORS` return pixels of
Y (the vertices of the data cloud); :data:`REFINED_EXTRACTORS` return class means refined
from pure pixels (:mod:`hsu_geo.endmembers.refine`), with ``idx`` a representative pixel each.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hsu_geo.endmembers.atgp import atgp
from hsu_geo.endmembers.nfindr import nfindr
from hsu_geo.endmembers.refine import refine_extractor, refined
from hsu_geo.endmembers.vca import vca
from hsu_geo.errors import ConfigError

__all__ = ["DEFAULT_EXTRACTOR", "EXTRACTORS", "REFINED_EXTRACTORS", "Extractor",
           "extract_endmembers"]


class Extractor(Protocol):
    def __call__(
        self, Y: ArrayLike, k: int, *, seed: int = 0
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]: ...


#: Name → pixel extractor (endmembers are pixels of Y).
EXTRACTORS: dict[str, Extractor] = {"vca": vca, "nfindr": nfindr, "atgp": atgp}
#: Name → refined extractor (class means): the multi-start default and each pixel extractor
#: followed by pure-pixel refinement.
REFINED_EXTRACTORS: dict[str, Extractor] = {
    "refined": refined,
    **{f"{name}+refine": refine_extractor(f, name) for name, f in EXTRACTORS.items()},
}
#: the extractor of ``hsu-geo unmix`` unless ``--extractor`` says otherwise
DEFAULT_EXTRACTOR = "refined"


def extract_endmembers(
    Y: ArrayLike, k: int, method: str = DEFAULT_EXTRACTOR, seed: int = 0,
    evidence: dict[str, Any] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Extract ``k`` endmembers ``M (k, L)`` and their pixel indices from ``Y (N, L)``.

    ``method`` is one of :data:`EXTRACTORS` or :data:`REFINED_EXTRACTORS` (case-insensitive;
    unknown → ConfigError); deterministic for a given ``seed``. ``evidence``: filled by the
    ``refined`` extractor with how it chose the set (see :func:`refined`); others leave it.
    """
    key = method.lower() if isinstance(method, str) else method
    found = EXTRACTORS.get(key) or REFINED_EXTRACTORS.get(key)
    if found is None:
        raise ConfigError(
            f"unknown endmember extraction method {method!r}; "
            f"valid: {', '.join(sorted(EXTRACTORS))} (pixels), "
            f"{', '.join(REFINED_EXTRACTORS)} (refined class means)"
        )
    if found is refined and evidence is not None:
        return refined(Y, k, seed=seed, evidence=evidence)
    return found(Y, k, seed=seed)
