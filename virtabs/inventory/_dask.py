"""Running the inventory on a Dask cluster: ``--dask SCHEDULER_ADDRESS`` or ``--dask local:N``.

Dask (``pip install 'virtabs[dask]'``) is imported only here, and only when asked for.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import re
from collections.abc import Iterator
from typing import Any

from .._errors import InvalidArgumentError

__all__ = ["dask_executor", "worker_ready"]

_LOCAL_RE = re.compile(r"^local:([0-9]+)$")


def worker_ready() -> str:
    """Run on every worker before the first batch: imports the inventory there; the virtabs version."""
    import virtabs
    import virtabs.inventory

    return str(getattr(virtabs, "__version__", "?"))


@contextlib.contextmanager
def dask_executor(spec: str) -> Iterator[concurrent.futures.Executor]:
    """A :class:`concurrent.futures.Executor` on a Dask cluster, for :func:`virtabs.inventory.collect`.

    ``spec`` is a scheduler address (``tcp://10.0.0.5:8786``) or ``local:N``: a
    ``distributed.LocalCluster`` of N worker processes with one thread each, started
    here and stopped on exit (its dashboard on a free port). Every worker imports
    virtabs before the executor is handed out. The client is closed on exit.
    """
    try:
        distributed: Any = importlib.import_module("distributed")  # untyped: used through Any
    except ImportError:
        raise InvalidArgumentError("--dask needs Dask: pip install 'virtabs[dask]'") from None
    match = _LOCAL_RE.match(spec.strip())
    cluster: Any = None
    if match:
        workers = int(match[1])
        if workers < 1:
            raise InvalidArgumentError(f"--dask local:N needs at least one worker, got {spec!r}")
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = distributed.Client(cluster)
    elif spec.strip().startswith("local"):
        raise InvalidArgumentError(f"--dask expects a scheduler address or local:N, got {spec!r}")
    else:
        try:
            client = distributed.Client(spec.strip(), timeout=30)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot reach the Dask scheduler at {spec}: {exc}") from None
    try:
        client.run(
            worker_ready
        )  # every worker imports virtabs now (and fails here if it cannot), not in the first batch
        yield client.get_executor()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
