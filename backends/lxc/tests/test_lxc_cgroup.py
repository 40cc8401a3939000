"""The cgroup parsers on captured real files (v1 hybrid) and the documented v2 layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtabs_lxc._cgroup import (
    CgroupUsage,
    parse_flat_keyed,
    parse_int,
    parse_proc_cgroup,
    parse_v1_limit,
    parse_v2_cpu_stat_ns,
    parse_v2_max,
    read_usage,
)

SAMPLES = Path(__file__).parent / "cgroup_samples"
V1 = SAMPLES / "v1-hybrid"
V2 = SAMPLES / "v2"


def _getter(directory: Path, rename: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """get_cgroup_item over a directory of captured files: None when the file does not exist."""
    rename = rename or {}

    def get(key: str) -> str | None:
        path = directory / rename.get(key, key)
        return path.read_text() if path.exists() else None

    return get


def test_v1_memory_files() -> None:
    assert parse_int((V1 / "memory.usage_in_bytes").read_text()) == 577536
    assert parse_v1_limit((V1 / "memory.limit_in_bytes").read_text()) is None
    stat = parse_flat_keyed((V1 / "memory.stat").read_text())
    assert stat["rss"] == 204800
    assert stat["cache"] == 16384
    assert "hierarchical_memory_limit" in stat


def test_v1_limit_with_a_real_limit() -> None:
    assert parse_v1_limit("67108864\n") == 64 << 20


def test_v1_cpu_files() -> None:
    assert parse_int((V1 / "cpuacct.usage").read_text()) == 9166531
    assert parse_flat_keyed((V1 / "cpuacct.stat").read_text()) == {"user": 0, "system": 0}


def test_v1_cpu_stat_is_not_taken_for_v2() -> None:
    with pytest.raises(ValueError, match="usage_usec"):
        parse_v2_cpu_stat_ns((V1 / "cpu.stat").read_text())


def test_unified_cpu_stat_of_a_hybrid_host() -> None:
    # the same container's CPU time in both hierarchies (v1 in ns, v2 truncated to microseconds)
    ns = parse_v2_cpu_stat_ns((V1 / "unified-cpu.stat").read_text())
    assert ns == 9166000
    assert abs(ns - parse_int((V1 / "cpuacct.usage").read_text())) < 1000


def test_v2_files() -> None:
    assert parse_int((V2 / "memory.current").read_text()) == 1613824
    assert parse_v2_max((V2 / "memory.max").read_text()) is None
    assert parse_v2_max("134217728\n") == 128 << 20
    assert parse_v2_cpu_stat_ns((V2 / "cpu.stat").read_text()) == 41839000
    assert parse_flat_keyed((V2 / "memory.stat").read_text())["anon"] == 303104


def test_proc_cgroup_both_layouts() -> None:
    hybrid = parse_proc_cgroup((V1 / "proc-pid-cgroup").read_text())
    assert hybrid["memory"] == "/lxc.payload.ct1"
    assert hybrid["name=systemd"] == "/lxc.payload.ct1"
    assert hybrid[""] == "/lxc.payload.ct1"
    assert parse_proc_cgroup((V2 / "proc-pid-cgroup").read_text()) == {"": "/lxc.payload.ct1"}
    assert parse_proc_cgroup("4:cpu,cpuacct:/x\n") == {"cpu": "/x", "cpuacct": "/x"}


def test_read_usage_v1_hybrid() -> None:
    # liblxc's lookup of "cpu.stat" on a hybrid host lands on the v1 cpu controller's file
    usage = read_usage(_getter(V1))
    assert usage == CgroupUsage(memory_bytes=577536, memory_limit_bytes=None, cpu_time_ns=9166531, layout="v1")


def test_read_usage_v2() -> None:
    usage = read_usage(_getter(V2))
    assert usage == CgroupUsage(memory_bytes=1613824, memory_limit_bytes=None, cpu_time_ns=41839000, layout="v2")


def test_read_usage_hybrid_without_cpuacct_uses_unified_cpu_stat() -> None:
    files = {"memory.usage_in_bytes": "100\n", "memory.limit_in_bytes": "4096\n"}
    files["cpu.stat"] = (V1 / "unified-cpu.stat").read_text()
    usage = read_usage(files.get)
    assert usage == CgroupUsage(memory_bytes=100, memory_limit_bytes=4096, cpu_time_ns=9166000, layout="mixed")


def test_read_usage_nothing() -> None:
    assert read_usage(lambda _key: None) == CgroupUsage(None, None, None, "none")


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_int("max\n")
    with pytest.raises(ValueError):
        parse_int("")
