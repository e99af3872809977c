"""Which dask scheduler runs the graph: threads (default), a LocalCluster, or a cluster.

``--scheduler local[:N]`` starts a ``dask.distributed.LocalCluster`` with N worker processes;
``--scheduler tcp://host:port`` (any dask.distributed address) joins an existing cluster.

Parallelism comes from dask (one chunk per thread or worker), so BLAS runs single-threaded
inside the context, as dask.distributed already does on its workers: no oversubscription,
and results are bit-identical whichever scheduler ran them (a multi-threaded BLAS rounds
``A @ M`` differently).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import dask
from threadpoolctl import threadpool_limits

from hsu_geo.errors import ConfigError

_LOCAL = re.compile(r"^local(?::(\d+))?$")


@contextlib.contextmanager
def scheduler(spec: str | None) -> Iterator[str]:
    """Context in which ``dask.compute`` uses the requested scheduler; yields a description."""
    with threadpool_limits(limits=1, user_api="blas"):
        if not spec:
            with dask.config.set(scheduler="threads"):
                yield "threads"
            return
        yield from _distributed(spec)


def _distributed(spec: str) -> Iterator[str]:
    from distributed import Client, LocalCluster

    m = _LOCAL.match(spec)
    if m:
        n = int(m.group(1) or 2)
        if n < 1:
            raise ConfigError("--scheduler local:N needs N >= 1 workers")
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield f"LocalCluster({n} workers) {client.scheduler.address}"
        return
    if "://" not in spec:
        raise ConfigError(f"--scheduler {spec!r}: use local[:N] or a dask scheduler address "
                          "such as tcp://host:8786")
    try:
        client = Client(spec, timeout="10s")
    except OSError as exc:
        raise ConfigError(f"--scheduler {spec}: cannot reach the dask scheduler ({exc})") \
            from None
    with client:
        yield f"dask.distributed {spec}"
