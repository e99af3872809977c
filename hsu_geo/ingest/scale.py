"""Reflectance scale: the user's ``--scale`` factor and a check for implausible value ranges.

Products often store reflectance as integers x10000 (or percent) and say so in a header field
the readers honour (ENVI ``reflectance scale factor``, GeoTIFF ``reflectance_scale_factor``:
values are *divided* by it; the cube's ``scale_factor`` attr). A file that lacks the field is
read as 0-1 reflectance and fits a 0-1 library badly. ``--scale FACTOR`` fixes that:
reflectance = stored value x FACTOR (``--scale 0.0001`` for x10000 data, ``0.01`` for percent).
It *replaces* the header's factor (so it also corrects a wrong one); other product calibration
(data gain/offset, GDAL scale/offset, EnMAP gains) still applies first.

:func:`range_warning` flags a reflectance sample whose level cannot be 0-1 reflectance. The
level is robust: the 95th percentile over pixels of each pixel's median over bands (a few
spiky bands or saturated pixels do not move it). The bounds are physical, chosen a priori,
not tuned on any scene: 0-1 reflectance of natural surfaces stays below about 1 (fresh snow
and specular glints reach 1.0-1.2), so a level above :data:`MAX_LEVEL` = 1.5 is scaled data;
levels up to 150 are taken as percent, above as x10000. A level below :data:`MIN_LEVEL` =
0.001 (0.1 % reflectance for 95 % of the pixels) means the values were divided twice.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import xarray as xr

from hsu_geo.errors import ConfigError

log = logging.getLogger(__name__)

#: a reflectance level (see module doc) above this is not 0-1 reflectance
MAX_LEVEL = 1.5
#: a level above MAX_LEVEL and up to this is percent reflectance, above it x10000
PERCENT_MAX_LEVEL = 150.0
#: a level below this is implausibly dark for 0-1 reflectance (scaled twice?)
MIN_LEVEL = 1e-3
#: largest and smallest --scale accepted
SCALE_RANGE = (1e-9, 1e9)


def check_scale(value: object, source: str = "--scale") -> float:
    """``value`` as a positive finite factor in :data:`SCALE_RANGE`, else a ConfigError."""
    try:
        factor = float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        factor = math.nan
    lo, hi = SCALE_RANGE
    if not lo <= factor <= hi:
        raise ConfigError(f"{source} {value!r}: give the positive number the stored values are "
                          f"multiplied by to get reflectance, e.g. 0.0001 for x10000 data "
                          f"(from {lo:g} to {hi:g})")
    return factor


def apply_scale(cube: xr.DataArray, factor: float | None) -> xr.DataArray:
    """``cube`` with reflectance = stored x ``factor`` (replacing its ``scale_factor``).

    The multiplication is folded into the file read where the pixels come straight from a
    raster (band selection still reaches the file); attrs ``scale_factor`` becomes
    ``1 / factor`` (the divisor convention of the readers), ``calibration`` says so and
    ``user_scale`` records the factor. ``None`` returns the cube unchanged.
    """
    if factor is None:
        return cube
    from hsu_geo.ingest.rasterio_array import scale_values

    factor = check_scale(factor)
    header = float(cube.attrs.get("scale_factor") or 1.0)
    multiplier = header * factor  # undo the header's division, then apply the user's factor
    out = cube.copy(data=scale_values(cube.data, multiplier)) if multiplier != 1.0 else cube
    out.attrs = dict(cube.attrs)
    old = str(cube.attrs.get("calibration") or "none")
    note = f"multiplied by --scale {factor:g}"
    if header != 1.0:
        note += f" (replaces the file's reflectance scale factor {header:g})"
        log.info("%s: --scale %g replaces the file's reflectance scale factor %g",
                 cube.attrs.get("product_id", "scene"), factor, header)
        old = old.replace(f"divided by reflectance scale factor {header:g}", "").strip("; ")
    out.attrs["calibration"] = note if old in ("", "none") else f"{old}; {note}"
    out.attrs["scale_factor"] = 1.0 / factor
    out.attrs["user_scale"] = factor
    return out


def reflectance_level(sample: np.ndarray) -> float:
    """Robust level of a pixel sample ``(N, L)``: 95th percentile over pixels of the per-pixel
    median over bands (NaN ignored); NaN for an empty sample."""
    sample = np.asarray(sample, dtype="float64")
    if sample.ndim != 2 or sample.size == 0:
        return math.nan
    finite = np.isfinite(sample).any(axis=1)
    if not finite.any():
        return math.nan
    med = np.nanmedian(sample[finite], axis=1)
    return float(np.percentile(med, 95))


def suggested_scale(level: float) -> float | None:
    """The ``--scale`` that brings ``level`` to 0-1 reflectance, or None when it is plausible
    (or too dark to tell)."""
    if not math.isfinite(level) or level <= MAX_LEVEL:
        return None
    return 0.01 if level <= PERCENT_MAX_LEVEL else 1e-4


def range_record(sample: np.ndarray, cube: xr.DataArray) -> dict:
    """``{"level", "plausible", "suggested_scale", "warning"}`` for a reflectance cube's pixel
    sample ``(N, L)``; ``plausible`` None (and no warning) for other quantities."""
    level = reflectance_level(sample)
    rec: dict = {"level": None if math.isnan(level) else level, "plausible": None,
                 "suggested_scale": None, "warning": None}
    if cube.attrs.get("quantity") != "reflectance" or math.isnan(level):
        return rec
    name = cube.attrs.get("product_id", "scene")
    given = cube.attrs.get("user_scale")
    factor = suggested_scale(level)
    rec["plausible"] = MIN_LEVEL <= level <= MAX_LEVEL
    if factor is not None:
        label = "percent" if factor == 0.01 else "x10000"
        fix = (f"pass --scale {factor:g} (reflectance = stored x factor)" if given is None
               else f"--scale {given:g} looks wrong: try --scale {given * factor:g}")
        rec["suggested_scale"] = factor if given is None else given * factor
        rec["warning"] = (
            f"{name}: values are too large for 0-1 reflectance (95 % of pixels have a median "
            f"over bands up to {level:.4g}; 0-1 reflectance stays below {MAX_LEVEL:g}), so it "
            f"looks like {label} reflectance stored without its scale factor; {fix}, or set "
            "the file's reflectance scale factor")
    elif level < MIN_LEVEL:
        where = f"--scale {given:g}" if given is not None else \
            f"the file's scale factor {float(cube.attrs.get('scale_factor') or 1.0):g}"
        rec["warning"] = (
            f"{name}: values are too small for 0-1 reflectance (95 % of pixels have a median "
            f"over bands of at most {level:.3g}, below {MIN_LEVEL:g}); check {where}: the "
            "values may be scaled twice")
    return rec


def range_warning(sample: np.ndarray, cube: xr.DataArray) -> str | None:
    """The warning of :func:`range_record`, or None."""
    return range_record(sample, cube)["warning"]
