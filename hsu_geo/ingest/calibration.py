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
    """Per-band linear calibration of raw pixels; picklable for workers.

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
        """Calibrated float32 copy of a raw ``(band, y, x)`` block (any memory layout)."""
        pixels = block.transpose(1, 2, 0)
        out = np.empty(pixels.shape, dtype="float32")
        self.apply_pixels(pixels, out)
        return out.transpose(2, 0, 1)

    def apply_pixels(self, raw: np.ndarray, out: np.ndarray) -> None:
        """Write calibrated values of raw ``(rows, cols, band)`` into float32 ``out`` of the
        same shape; ``out`` may be ``raw`` itself (in place) when raw is float32.

        Works in slabs of rows, so temporaries stay small whatever the block size.
        """
        for r0 in range(0, raw.shape[0], SLAB_ROWS):
            src, dst = raw[r0:r0 + SLAB_ROWS], out[r0:r0 + SLAB_ROWS]
            nodata = (src == self.nodata if self.nodata is not None
                      and not np.isnan(self.nodata) else None)  # NaN nodata propagates
            empty = ~src.any(axis=-1) if self.zero_is_nodata else None
            if self.gain is not None:  # cast and scale in one pass
                np.multiply(src, self.gain, out=dst, casting="unsafe")
            elif dst is not src:
                dst[...] = src
            if self.offset is not None:
                dst += self.offset
            if nodata is not None:
                dst[nodata] = np.nan
            if empty is not None:
                dst[empty] = np.nan


#: rows of a block calibrated at a time (bounds the nodata masks and casts)
SLAB_ROWS = 32


def exact_in_float32(dtype: np.dtype) -> bool:
    """True when every value of ``dtype`` is exactly a float32 (so GDAL may convert while
    reading and nodata can still be compared after the conversion)."""
    dtype = np.dtype(dtype)
    return dtype == np.float32 or (dtype.kind in "iu" and dtype.itemsize <= 2)
