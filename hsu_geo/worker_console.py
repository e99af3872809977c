"""The -v/-q rules of :mod:`hsu_geo.console` inside the dask worker processes hsu-geo starts
(``--scheduler local:N``): their stderr is the command's, so rasterio's
``NotGeoreferencedWarning`` or dask INFO lines from a worker would otherwise reach the user."""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin


class ConsoleSetup(WorkerPlugin):
    """Applies :func:`hsu_geo.console.setup` with the command's verbosity on each worker."""

    name = "hsu-geo-console"

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    def setup(self, worker: Any) -> None:
        from hsu_geo import console

        console.setup(max(self.verbosity, 0), max(-self.verbosity, 0))
