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
import logging
import os
import re
from collections.abc import Iterator

import dask
from threadpoolctl import threadpool_limits

from hsu_geo.errors import ConfigError

_LOCAL = re.compile(r"^local(?::(.*))?$")
#: most LocalCluster worker processes: four per CPU core. Each worker is a Python process
#: (~100-200 MB before any data), so more only adds start-up time and memory, never speed.
MAX_LOCAL_WORKERS = 4 * (os.cpu_count() or 1)


def check_scheduler(spec: str | None) -> str | None:
    """``spec`` if it is ``local``, ``local:N`` (1 <= N <= MAX_LOCAL_WORKERS) or a dask address
    (``scheme://...``); a one-line :class:`ConfigError` naming the value and the fix otherwise.
    Starts nothing."""
    if spec is None:
        return None
    m = _LOCAL.match(spec)
    if m:
        n = m.group(1)
        if n is not None and not (n.isascii() and n.isdigit() and 1 <= int(n) <= MAX_LOCAL_WORKERS):
            raise ConfigError(f"--scheduler {spec!r}: N in local:N must be a whole number of "
                              f"worker processes from 1 to {MAX_LOCAL_WORKERS} (4 per CPU core "
                              f"here); e.g. local:{min(2, MAX_LOCAL_WORKERS)}")
        return spec
    if "://" not in spec:
        raise ConfigError(f"--scheduler {spec!r}: use local[:N] or a dask scheduler address "
                          "such as tcp://host:8786")
    return spec


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

    from hsu_geo import console
    from hsu_geo.worker_console import ConsoleSetup

    cli = console.configured()  # the CLI's -v/-q rules, not a library caller's logging
    if cli:
        console.tame_libraries()  # distributed logs INFO lines of its own (-v shows them)
    check_scheduler(spec)
    m = _LOCAL.match(spec)
    if m:
        n = int(m.group(1) or 2)
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None,
                          silence_logs=console.third_party_level() if cli else logging.WARNING
                          ) as cluster, Client(cluster) as client:
            if cli:  # the workers share our stderr: same -v/-q there
                register = getattr(client, "register_plugin", None) \
                    or client.register_worker_plugin
                register(ConsoleSetup(console.verbosity()))
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
