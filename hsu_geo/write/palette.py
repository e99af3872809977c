"""Endmember colours shared by the quicklook PNG and the QGIS class style.

The first 10 colours are matplotlib's ``tab10``, the next 10 the light halves of ``tab20``
(so colours 1-20 are tab20 ordered dark-first); beyond 20 hues follow the golden-ratio
sequence around the HLS circle at three lightness levels, which keeps every colour distinct
(checked) for any count, though colours past ~30 are necessarily harder to tell apart by eye.
No matplotlib here: the QGIS style writer uses it too.
"""

from __future__ import annotations

import colorsys

import numpy as np

#: matplotlib tab20, dark members first (= tab10), then the light members
TAB20_DARK_FIRST = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
_GOLDEN = 0.618033988749895
_LIGHTNESS = (0.42, 0.62, 0.30)
#: grey for "no data" where a legend needs one
NODATA_COLOR = "#d9d9d9"


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02x}" for c in rgb)


def endmember_colors(k: int) -> list[str]:
    """``k`` distinct ``#rrggbb`` colours, endmember i (0-based) gets colour i."""
    if k < 0:
        raise ValueError(f"colour count {k} is negative")
    colors = list(TAB20_DARK_FIRST[:k])
    seen = set(colors)
    i = 0
    while len(colors) < k:
        hue = (0.05 + i * _GOLDEN) % 1.0
        light = _LIGHTNESS[i % len(_LIGHTNESS)]
        color = _hex(colorsys.hls_to_rgb(hue, light, 0.75))
        i += 1
        if color not in seen:
            seen.add(color)
            colors.append(color)
    return colors


def rgba(hex_color: str, alpha: int = 255) -> tuple[int, int, int, int]:
    """``#rrggbb`` as an (r, g, b, a) tuple of 0-255 integers."""
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), alpha


def display_range(values: np.ndarray, lower: float = 2.0, upper: float = 98.0
                  ) -> tuple[float, float]:
    """(vmin, vmax) for a colour ramp: the ``lower``/``upper`` percentiles of the finite
    ``values``, widened by 5 % when (nearly) constant (not below 0 for non-negative values);
    (0, 1) when nothing is finite."""
    finite = np.asarray(values, dtype="float64")
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [lower, upper]))
    scale = max(abs(lo), abs(hi))
    if not hi - lo > 1e-3 * scale or hi == lo:  # (nearly) constant: a ramp around it
        pad = max(scale * 0.05, 1e-6)
        lo, hi = (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad
    return lo, hi
