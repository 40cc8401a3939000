"""``--format openmetrics``: parsed back by prometheus-client's own OpenMetrics parser."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import virtabs.inventory as inv
from virtabs.testing.plugin import in_ci

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - scripts/bootstrap installs it
    if in_ci():
        raise
    pytest.skip("prometheus-client is not installed (bash scripts/bootstrap installs it)", allow_module_level=True)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    matches = [v for (n, ls), v in samples.items() if n == name and all((k, labels[k]) in ls for k in labels)]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_counts_sizes_and_failed_hosts(make_node: Callable[..., str], tmp_path: Path) -> None:
    description = {
        "host": {"hostname": 'odd "host" \\ name', "cpus": 8, "memory_bytes": 1 << 34},
        "domains": [
            {
                "name": "a",
                "memory_bytes": 1 << 30,
                "vcpus": 2,
                "state": "running",
                "disks": [{"target": "vda", "path": "/i/a", "capacity_bytes": 10 << 30, "allocation_bytes": 1 << 30}],
            },
            {
                "name": "b",
                "memory_bytes": 2 << 30,
                "vcpus": 4,
                "state": "running",
                "disks": [
                    {
                        "target": "vda",
                        "path": "/i/b",
                        "format": "qcow2",
                        "capacity_bytes": 5 << 30,
                        "allocation_bytes": 3 << 30,
                    }
                ],
            },
            {"name": "c", "memory_bytes": 1 << 29, "vcpus": 1, "state": "shutoff"},
        ],
    }
    uri = make_node("lab", description=description)
    dead = f"test://{tmp_path}/missing.json"
    text = inv.render(inv.collect([uri, dead]), "openmetrics")
    assert text.endswith("# EOF\n")
    samples = _samples(text)
    assert _value(samples, "virtabs_host_up", host_uri=uri, host='odd "host" \\ name') == 1
    assert _value(samples, "virtabs_host_up", host_uri=dead) == 0
    assert _value(samples, "virtabs_host_error_code", host_uri=dead) == 5
    assert _value(samples, "virtabs_domains", host_uri=uri, state="running") == 2
    assert _value(samples, "virtabs_domains", host_uri=uri, state="shutoff") == 1
    assert _value(samples, "virtabs_domains", host_uri=uri, state="paused") == 0
    assert _value(samples, "virtabs_domain_vcpus", host_uri=uri, state="running") == 6
    assert _value(samples, "virtabs_domain_memory_bytes", host_uri=uri, state="running") == 3 << 30
    assert _value(samples, "virtabs_disk_capacity_bytes", host_uri=uri) == 15 << 30
    assert _value(samples, "virtabs_disk_allocation_bytes", host_uri=uri) == 4 << 30
    assert _value(samples, "virtabs_host_cpus", host_uri=uri) == 8
    assert not [k for k in samples if k[0] == "virtabs_domains" and ("host_uri", dead) in k[1]]


def test_cli_writes_a_prom_file_for_the_textfile_collector(tmp_path: Path) -> None:
    out = tmp_path / "virtabs.prom"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "virtabs.cli", "inventory", "test:///default", "--output", str(out), "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    samples = _samples(out.read_text())
    assert _value(samples, "virtabs_domains", host_uri="test:///default", state="running") == 1
