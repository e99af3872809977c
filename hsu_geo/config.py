"""Run configuration as frozen dataclasses; YAML presets are read with ``yaml.safe_load``.

Unknown keys are errors naming the valid ones. CLI flags override preset values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from hsu_geo.cube import DEFAULT_CHUNK
from hsu_geo.errors import ConfigError


@dataclass(frozen=True)
class UnmixOptions:
    """Everything ``hsu-geo unmix`` needs besides the scene path.

    Attributes:
        model: registry name (``hsu-geo models``).
        k: number of endmembers, or "auto" (HySime) when extracting from the scene.
        extractor: endmember extractor (vca, nfindr, atgp).
        endmembers: CSV of endmember spectra; library: "usgs" or "usgs:name,name".
        sample_size: pixels sampled for extraction / training.
        name_threshold: spectral angle (rad) under which an extracted endmember takes the
            name of its best USGS match.
        save_model: write the fitted deep model (checkpoint) to this path.
        load_model: apply the deep model in this checkpoint (no endmember extraction, no fit).
    """

    model: str = "fcls"
    k: str = "auto"
    extractor: str = "vca"
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
    name_threshold: float = 0.1
    settings: dict[str, str] = field(default_factory=dict)
    scheduler: str | None = None
    save_model: str | None = None
    load_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, **changes: Any) -> UnmixOptions:
        """A copy with ``changes`` applied (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def options_from_mapping(data: dict[str, Any], source: str) -> UnmixOptions:
    """Build :class:`UnmixOptions` from a mapping; unknown keys are a ConfigError."""
    valid = {f.name for f in fields(UnmixOptions)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(valid))}")
    clean = dict(data)
    if "k" in clean:
        clean["k"] = str(clean["k"])
    if "settings" in clean:
        clean["settings"] = {str(k): str(v) for k, v in (clean["settings"] or {}).items()}
    try:
        return UnmixOptions(**clean)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_preset(path: str | Path) -> UnmixOptions:
    """Read a YAML preset (a mapping of UnmixOptions keys) with ``yaml.safe_load``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: preset file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a preset must be a mapping of option: value")
    return options_from_mapping(data, str(p))
