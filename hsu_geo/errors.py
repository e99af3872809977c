"""Exception hierarchy.

Every error the package raises on purpose derives from :class:`HsuGeoError`, and also from the
matching builtin so callers can catch either. Messages name the bad value and the fix; the CLI
prints them as one line.
"""

from __future__ import annotations


class HsuGeoError(Exception):
    """Root of all hsu-geo errors."""


class SceneNotFoundError(HsuGeoError, FileNotFoundError):
    """A scene path (or a file a product needs) does not exist."""


class InvalidSceneError(HsuGeoError, ValueError):
    """A scene exists but its content or metadata is unusable."""


class UnsupportedFormatError(HsuGeoError, ValueError):
    """No reader can open the input, or the layout/data type is not supported."""


class MissingWavelengthsError(InvalidSceneError):
    """A raster has no band wavelengths anywhere."""


class ConfigError(HsuGeoError, ValueError):
    """An option, preset or model setting is invalid."""


class EndmemberError(HsuGeoError, ValueError):
    """Endmembers given by the user do not fit the scene."""


class OutputExistsError(HsuGeoError, FileExistsError):
    """An output file exists and ``overwrite`` was not requested."""


class OutputError(HsuGeoError, OSError):
    """An output location cannot be written."""


class DeviceError(HsuGeoError, RuntimeError):
    """The requested compute device is not available."""
