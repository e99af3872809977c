"""Run configuration as frozen dataclasses; YAML presets are read with ``yaml.safe_load``.

Unknown keys are errors naming the valid ones. CLI flags override preset values. Preset values
go through the same checks as the flags: :data:`INT_RANGES` is the one table of integer ranges
both use, :func:`parse_k` the one rule for ``-k``, :func:`hsu_geo.scheduler.check_scheduler`
the one rule for ``--scheduler``. YAML anchors and aliases are refused (a few hundred bytes of
nested aliases expand to billions of nodes) and presets are at most
:data:`hsu_geo.safe_io.PRESET_LIMIT`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from hsu_geo.cube import DEFAULT_CHUNK
from hsu_geo.errors import ConfigError
from hsu_geo.safe_io import PRESET_LIMIT, read_small_text

#: (low, high) of every integer option, inclusive (None: no bound); the CLI's click.IntRange
#: types are built from this table, so a preset and a flag accept exactly the same values
INT_RANGES: dict[str, tuple[int, int | None]] = {
    "chunk_size": (16, 8192),
    "sample_size": (100, None),
    "seed": (0, 2**32 - 1),
}
#: (low, high) of float options: a spectral angle in radians
FLOAT_RANGES: dict[str, tuple[float, float]] = {"name_threshold": (0.0, 3.1416)}
K_FIX = "give a whole number of endmembers >= 2, or 'auto' (estimated from the scene)"


def parse_k(value: Any, source: str = "-k") -> str:
    """``"auto"`` or a whole number >= 2 as text; ConfigError naming ``source`` otherwise."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) \
        else None
    if text is not None and text.lower() == "auto":
        return "auto"
    if text is not None and text.isascii() and text.isdigit() and int(text) >= 2:
        return str(int(text))
    raise ConfigError(f"{source} {value!r}: {K_FIX}")


@dataclass(frozen=True)
class UnmixOptions:
    """Everything ``hsu-geo unmix`` needs besides the scene path.

    Attributes:
        model: registry name (``hsu-geo models``).
        k: number of endmembers, or "auto" (estimated from the scene: endmembers.count).
        extractor: endmember extractor: refined (multi-start + pure-pixel refinement,
            class means), vca, nfindr, atgp (pixels), vca+refine, nfindr+refine, atgp+refine.
        endmembers: CSV of endmember spectra; library: "usgs" or "usgs:name,name".
        sample_size: pixels sampled for extraction / training.
        naming: how extracted endmembers are named from the bundled USGS library:
            ``features`` (diagnostic absorption features after continuum removal, the
            default) or ``sam`` (full-spectrum spectral angle).
        name_threshold: with ``naming="sam"``, the spectral angle (rad) under which an
            extracted endmember takes the name of its best USGS match.
        save_model: write the fitted deep model (checkpoint) to this path.
        load_model: apply the deep model in this checkpoint (no endmember extraction, no fit).
        scale: reflectance = stored value x scale (``--scale``, e.g. 0.0001 for x10000 data),
            replacing the file's reflectance scale factor; None keeps the file's.
        window: ``COL,ROW,WIDTH,HEIGHT`` pixels of the scene to unmix (``--window``);
            bounds: ``LEFT,BOTTOM,RIGHT,TOP`` in the scene's CRS (``--bounds``); one or none.
        creation_options: ``KEY=VALUE`` GDAL COG creation options for the rasters (``--co``).
    """

    model: str = "fcls"
    k: str = "auto"
    extractor: str = "refined"
    endmembers: str | None = None
    library: str | None = None
    sensor: str = "auto"
    wavelengths: str | None = None
    chunk_size: int = DEFAULT_CHUNK
    drop_bands: str | None = None
    keep_bands: str | None = None
    device: str = "auto"
    seed: int = 0
    sample_size: int = 100_000
    naming: str = "features"
    name_threshold: float = 0.1
    settings: dict[str, str] = field(default_factory=dict)
    scheduler: str | None = None
    save_model: str | None = None
    load_model: str | None = None
    scale: float | None = None
    window: str | None = None
    bounds: str | None = None
    creation_options: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, **changes: Any) -> UnmixOptions:
        """A copy with ``changes`` applied (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _int_option(key: str, value: Any, source: str) -> int:
    low, high = INT_RANGES[key]
    span = f"from {low} to {high}" if high is not None else f">= {low}"
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if number is None or number < low or (high is not None and number > high):
        raise ConfigError(f"{source}: {key}: {value!r} is not valid; give a whole number "
                          f"{span} (as --{key.replace('_', '-')} takes)")
    return number


def _float_option(key: str, value: Any, source: str) -> float:
    low, high = FLOAT_RANGES[key]
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else float("nan")
    if not low <= number <= high:
        raise ConfigError(f"{source}: {key}: {value!r} is not valid; give a number from {low:g} "
                          f"to {high:g}")
    return number


def _text_option(key: str, value: Any, default: Any, source: str) -> str | None:
    if value is None and default is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # e.g. drop_bands: 200
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: {key}: {value!r} is not valid; give a text value"
                          + (" (or leave the key out)" if default is None else ""))
    return value


def _settings_option(value: Any, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: settings: give a mapping of setting: value (see "
                          f"`hsu-geo models`), not a {type(value).__name__}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
            raise ConfigError(f"{source}: settings: {k!r}: {v!r} is not valid; give one "
                              "name: value pair per setting, the value a single number or word")
        out[k] = str(v)
    return out


def options_from_mapping(data: dict[str, Any], source: str) -> UnmixOptions:
    """Build :class:`UnmixOptions` from a mapping, checking every value's type and range
    exactly as the command-line flags are checked; any problem is a one-line ConfigError
    naming ``source``, the key, the value and what to give instead."""
    valid = {f.name: f for f in fields(UnmixOptions)}
    unknown = sorted(str(k) for k in set(data) - set(valid))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(valid))}")
    defaults = UnmixOptions()
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if key == "k":
            clean[key] = parse_k(value, f"{source}: k:")
        elif key == "settings":
            clean[key] = _settings_option(value, source)
        elif key in INT_RANGES:
            clean[key] = _int_option(key, value, source)
        elif key in FLOAT_RANGES:
            clean[key] = _float_option(key, value, source)
        elif key == "scale":
            from hsu_geo.ingest.scale import check_scale

            clean[key] = None if value is None else check_scale(value, f"{source}: scale:")
        elif key == "naming":
            clean[key] = str(value).strip().lower()
            if clean[key] not in ("features", "sam"):
                raise ConfigError(f"{source}: naming: {value!r}; choose features or sam")
        elif key == "creation_options":
            from hsu_geo.write.creation import check_creation_options

            try:
                co = check_creation_options(value if isinstance(value, (list, dict)) else
                                            [value] if value else None)
            except ConfigError as exc:
                raise ConfigError(f"{source}: creation_options: {exc}") from None
            clean[key] = tuple(f"{k}={v}" for k, v in co.items())
        else:  # every other option is text (None where its default is None)
            clean[key] = _text_option(key, value, getattr(defaults, key), source)
    if clean.get("scheduler") is not None:
        from hsu_geo.scheduler import check_scheduler

        try:
            check_scheduler(clean["scheduler"])
        except ConfigError as exc:
            raise ConfigError(f"{source}: scheduler: {exc}") from None
    if clean.get("sensor") not in (None, "auto"):  # a reader name or a list of them
        from hsu_geo.ingest import reader_candidates

        try:
            reader_candidates(clean["sensor"])
        except ConfigError as exc:
            raise ConfigError(f"{source}: sensor: {exc}") from None
    return UnmixOptions(**clean)


def check_input_files(opts: UnmixOptions) -> None:
    """Refuse, before any scene is read, a ``--wavelengths`` or ``--endmembers`` file that is
    not a regular file or exceeds its cap (:mod:`hsu_geo.safe_io`); they are read later."""
    from hsu_geo.errors import EndmemberError, InvalidSceneError
    from hsu_geo.safe_io import (
        ENDMEMBER_LIMIT,
        HEADER_LIMIT,
        TABLE_LIMIT,
        check_regular_file,
    )

    if opts.wavelengths:
        limit = HEADER_LIMIT if opts.wavelengths.lower().endswith(".hdr") else TABLE_LIMIT
        check_regular_file(opts.wavelengths, limit, "wavelength file (--wavelengths)",
                           InvalidSceneError)
    if opts.endmembers:
        from hsu_geo.endmembers.library_io import library_path

        check_regular_file(library_path(opts.endmembers), ENDMEMBER_LIMIT,
                           "endmember file (--endmembers)", EndmemberError)


class _PresetLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases (no "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML anchors and aliases "
                              "(&name, *name) are not allowed in presets; write each value out")
        return super().compose_node(parent, index)


def load_preset(path: str | Path) -> UnmixOptions:
    """Read a YAML preset (a mapping of UnmixOptions keys): a regular file of at most
    PRESET_LIMIT bytes, safe YAML without anchors or aliases, values checked as flags are."""
    p = Path(path)
    text = read_small_text(p, PRESET_LIMIT, "preset (--pipeline)", ConfigError)
    try:
        data = yaml.load(text, Loader=_PresetLoader) or {}  # _PresetLoader is a SafeLoader
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{p}: not valid YAML ({reason})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a preset must be a mapping of option: value")
    return options_from_mapping(data, str(p))
