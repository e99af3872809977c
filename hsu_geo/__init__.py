"""hsu-geo: hyperspectral unmixing of satellite and airborne scenes.

The pipeline is ``ingest -> preprocess -> unmix -> write``; see ``ARCHITECTURE.md``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hsu-geo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
