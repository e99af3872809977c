"""Acquisition time encoded in a scene or product id (flight line, granule or product name).

Imaging-spectrometer products name their files after the acquisition, which readers do not
always carry in their metadata (an AVIRIS-NG ENVI header has no time field).
:func:`time_from_id` reads these conventions (searched anywhere in the name, so
``ang20140912t192359_corr_v1c_img_2580-2590`` and ``x/EMIT_L2A_RFL_..._001.nc`` work):

=======================  ==========================================  =========================
convention               example                                     gives
=======================  ==========================================  =========================
AVIRIS-NG flight line    ``ang20140912t192359``                      2014-09-12T19:23:59Z
EMIT scene (JPL SDS)     ``emit20250324t221005``                     2025-03-24T22:10:05Z
EMIT granule (LP DAAC)   ``EMIT_L2A_RFL_001_20230123T004529_...``    2023-01-23T00:45:29Z
EnMAP L1B/L1C/L2A        ``ENMAP01-____L2A-DT0000001867_20220724T104526Z_...``
                                                                     2022-07-24T10:45:26Z
AVIRIS-Classic run       ``f130612t01p00r10`` (``fYYMMDDtNNpNNrNN``)  2013-06-12 (date only)
GF-5/GF-5B/ZY1 AHSI      ``GF5B_AHSI_E113.2_N36.3_20221208_006658_...``  2022-12-08 (date only)
=======================  ==========================================  =========================

Times are UTC (the JPL and DLR conventions); AVIRIS-Classic years 87-99 are 1987-1999.
"""

from __future__ import annotations

import datetime as dt
import re

_START = r"(?<![A-Za-z0-9])"
#: (pattern, has a time of day); groups: Y M D [h m s], or yy M D for AVIRIS-Classic
_PATTERNS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(_START + r"(?:ang|emit)(\d{4})(\d{2})(\d{2})t(\d{2})(\d{2})(\d{2})", re.I), True),
    (re.compile(_START + r"EMIT_L\w+?_\d{3}_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})", re.I),
     True),
    (re.compile(_START + r"ENMAP01-\w*?-DT\d+_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z",
                re.I), True),
    (re.compile(_START + r"f(\d{2})(\d{2})(\d{2})t\d{2}p\d{2}r\d{2}", re.I), False),
    (re.compile(_START + r"(?:GF5[AB]?|ZY1[EF])_AHSI_[EW][\d.]+_[NS][\d.]+_(\d{4})(\d{2})(\d{2})_",
                re.I), False),
)


def time_from_id(name: str) -> tuple[str, bool] | None:
    """``(ISO-8601 UTC "YYYY-MM-DDThh:mm:ssZ", has_time)`` from a scene id, product id or
    file name, or None when it follows none of the conventions above (or names an
    impossible date). ``has_time`` is False for date-only conventions (time 00:00:00)."""
    for pattern, has_time in _PATTERNS:
        for m in pattern.finditer(str(name)):
            parts = [int(g) for g in m.groups()]
            if len(parts) == 3 and parts[0] < 100:  # AVIRIS-Classic two-digit year
                parts[0] += 1900 if parts[0] >= 87 else 2000
            try:
                when = dt.datetime(*parts, tzinfo=dt.timezone.utc)
            except ValueError:  # e.g. month 13: not a date, try the next match
                continue
            return when.strftime("%Y-%m-%dT%H:%M:%SZ"), has_time
    return None
