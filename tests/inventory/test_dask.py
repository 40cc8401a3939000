"""The executor seam on a real Dask cluster: a ``distributed.LocalCluster`` of 2 worker processes
(1 thread each). Its document equals the local run's (timestamps aside); a worker killed mid-run costs
only its hosts; credentials never travel in a task."""

from __future__ import annotations

import concurrent.futures
import json
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import virtabs.inventory as inv
from virtabs.cli._inventory import inventory_command
from virtabs.testing.fleet import make_fleet
from virtabs.testing.plugin import in_ci

try:
    import distributed
except ImportError:  # pragma: no cover - the dask extra is part of the dev install
    if in_ci():
        raise
    pytest.skip("needs dask.distributed: pip install 'virtabs[dask]'", allow_module_level=True)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def _without_times(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    doc.pop("generated_at")
    for host in doc["hosts"]:
        host.pop("collected_at")
    return doc


def test_document_on_the_cluster_equals_the_local_one(client: Any, tmp_path: Path) -> None:
    uris = make_fleet(tmp_path, hosts=9, domains=3, dead=2)
    local = inv.collect(uris)
    seen: list[str] = []
    remote = inv.collect(uris, executor=client.get_executor(), batch_size=2, on_host_done=lambda h: seen.append(h.uri))
    assert len(seen) == 11  # each host handed over as its batch came back
    assert remote.summary() == {"hosts": 11, "hosts_ok": 9, "hosts_failed": 2, "domains": 27}
    assert _without_times(remote.to_dict()) == _without_times(local.to_dict())
    ran_on = client.run(os.getpid)
    assert len(ran_on) == 2 and os.getpid() not in ran_on.values()  # two worker processes, not this one


def test_cli_dask_local_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIRTABS_CONFIG", str(tmp_path / "no-config.toml"))
    uris = make_fleet(tmp_path / "fleet", hosts=4, domains=2)
    runner = CliRunner()
    out = tmp_path / "estate.jsonl"
    args = [*uris, "--dask", "local:2", "--batch-size", "1", "--output", str(out)]
    result = runner.invoke(inventory_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    local = runner.invoke(inventory_command, [*uris, "--format", "json"], catch_exceptions=False)
    assert _without_times(inv.assemble(out, inv.plan(uris))) == _without_times(json.loads(local.stdout))
    assert runner.invoke(inventory_command, [*uris, "--dask", "local:x"]).exit_code == 2


def test_a_worker_killed_mid_run_costs_only_its_hosts(client: Any, tmp_path: Path) -> None:
    uris = make_fleet(tmp_path, hosts=8, domains=2, latency_ms=150)  # about 0.75 s per host
    pids = list(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_one_worker(_host: inv.HostInventory) -> None:
        if not killed:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    result = inv.collect(uris, executor=client.get_executor(), batch_size=1, on_host_done=kill_one_worker)
    assert killed
    assert [h.uri for h in result.hosts] == [inv.host_key(inv.HostTarget(u))[0] for u in uris]
    for host in result.hosts:  # retried elsewhere by the scheduler, or reported failed: never missing
        assert host.ok or (host.error is not None and "executor lost the batch" in host.error.message)
    assert len(result.ok_hosts) >= len(uris) - 1  # one worker thread: at most its one running batch lost
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next test


class _RecordingExecutor(concurrent.futures.Executor):
    """Runs tasks on threads, keeping each task's pickled call (what would travel to a worker)."""

    def __init__(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(2)
        self.shipped: list[bytes] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.shipped.append(pickle.dumps((fn, args, kwargs)))
        return self.pool.submit(fn, *args, **kwargs)


def test_no_credential_travels_in_a_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    uris = make_fleet(tmp_path / "fleet", hosts=2, domains=1)
    config = tmp_path / "config.toml"
    config.write_text(
        '[credentials."test://"]\nusername = "admin"\npassword = "s3cret-Pa55"\n[aliases]\nlab = "' + uris[0] + '"\n'
    )
    monkeypatch.setenv("VIRTABS_CONFIG", str(config))
    monkeypatch.setenv("VIRTABS_PASSWORD", "env-s3cret-Pa55")
    executor = _RecordingExecutor()
    result = inv.collect(["lab", uris[1]], executor=executor, batch_size=1)
    executor.pool.shutdown()
    assert result.summary()["hosts_ok"] == 2 and result.hosts[0].name == "lab"
    assert len(executor.shipped) == 2
    for task in executor.shipped:
        assert b"s3cret-Pa55" not in task and b"admin" not in task
        assert b"collect_batch" in task  # a module-level function, shipped by reference


class _FailingBatchExecutor(concurrent.futures.Executor):
    """Runs batches on threads, except that a batch holding ``poisoned`` fails as a lost worker's would."""

    def __init__(self, poisoned: str) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(2)
        self.poisoned = poisoned

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if any(t.uri == self.poisoned for t in args[0]):
            failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
            failed.set_exception(RuntimeError("worker tcp://10.0.0.9:4242 was lost"))
            return failed
        return self.pool.submit(fn, *args, **kwargs)


def test_a_batch_that_fails_reports_only_its_hosts(tmp_path: Path) -> None:
    uris = make_fleet(tmp_path, hosts=6, domains=1)
    executor = _FailingBatchExecutor(poisoned=uris[2])
    result = inv.collect(uris, executor=executor, batch_size=2)
    executor.pool.shutdown()
    assert [h.ok for h in result.hosts] == [True, True, False, False, True, True]  # the batch of hosts 2 and 3
    for host in result.failed_hosts:
        assert host.error is not None and host.error.code_name == "NO_CONNECT"
        assert "was lost" in host.error.message


def test_dask_is_imported_only_when_asked_for(tmp_path: Path) -> None:
    code = (
        "import sys, virtabs.inventory, virtabs.cli._inventory\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert proc.stdout.strip() == "[]"
