"""Radiometric calibration applied per chunk: raw values -> float32, nodata -> NaN.

``value = (raw * gain[band] + offset[band]) / scale_factor``, with nodata masked first. A
:class:`Calibration` is applied inside the window reader, so dask can still push slices down to
the file read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Calibration:
    """Per-band linear calibration of a ``(band, y, x)`` block; picklable for workers.

    Attributes:
        gain, offset: float32 arrays of length bands, or None (identity).
        nodata: raw value marking missing data (becomes NaN), or None.
        zero_is_nodata: pixels that are 0 in every band are nodata (GF-5 L1 fill).
    """

    gain: np.ndarray | None = None
    offset: np.ndarray | None = None
    nodata: float | None = None
    zero_is_nodata: bool = False

    @classmethod
    def build(
        cls,
        n_bands: int,
        *,
        gain: Sequence[float] | np.ndarray | None = None,
        offset: Sequence[float] | np.ndarray | None = None,
        scale_factor: float = 1.0,
        nodata: float | None = None,
        zero_is_nodata: bool = False,
    ) -> Calibration:
        """Fold ``scale_factor`` into gain/offset; arrays are checked against ``n_bands``."""
        g = None if gain is None else np.asarray(gain, "float32").reshape(n_bands)
        o = None if offset is None else np.asarray(offset, "float32").reshape(n_bands)
        if scale_factor != 1.0:
            g = (np.ones(n_bands, "float32") if g is None else g) / np.float32(scale_factor)
            o = None if o is None else o / np.float32(scale_factor)
        return cls(g, o, nodata, zero_is_nodata)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if self.gain is not None:  # cast and scale in one pass
            out = np.multiply(block, self.gain[:, None, None], dtype="float32")
        else:
            out = block.astype("float32", copy=True)
        if self.offset is not None:
            out += self.offset[:, None, None]
        if self.nodata is not None and not np.isnan(self.nodata):  # NaN nodata propagates
            out[block == self.nodata] = np.nan
        if self.zero_is_nodata:
            out[:, np.all(block == 0, axis=0)] = np.nan
        return out

