"""Parsers of cgroup v1 and v2 memory and CPU files, as pure functions.

liblxc hands back the raw text of one cgroup file (``Container.get_cgroup_item(key)``); these
functions turn that text into numbers. They never touch the file system, so they are tested on
captured files of real hosts (``tests/cgroup_samples/``).

Layouts:

- cgroup v1 (and the v1 controllers of a hybrid host): ``memory.usage_in_bytes``,
  ``memory.limit_in_bytes`` (unlimited is a huge page-aligned number), ``memory.stat``,
  ``cpuacct.usage`` (nanoseconds), ``cpuacct.stat`` (USER_HZ ticks), and a ``cpu.stat`` of
  throttling counters only.
- cgroup v2: ``memory.current``, ``memory.max`` (``max`` when unlimited), ``memory.stat``, and a
  ``cpu.stat`` that starts with ``usage_usec`` (microseconds).

:func:`read_usage` picks whichever layout answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "V1_UNLIMITED_THRESHOLD",
    "CgroupUsage",
    "parse_flat_keyed",
    "parse_int",
    "parse_proc_cgroup",
    "parse_v1_limit",
    "parse_v2_cpu_stat_ns",
    "parse_v2_max",
    "read_usage",
]

#: cgroup v1 reports "no limit" as PAGE_COUNTER_MAX rounded to pages (9223372036854771712 on
#: x86_64 with 4 KiB pages); anything at or above 2**62 is treated as unlimited.
V1_UNLIMITED_THRESHOLD = 1 << 62


def parse_int(text: str) -> int:
    """A file holding one decimal integer (``memory.usage_in_bytes``, ``cpuacct.usage``, ``memory.current``).

    Raises ``ValueError`` on anything else.
    """
    value = text.strip()
    if not value or not value.lstrip("-").isdigit():
        raise ValueError(f"not an integer cgroup value: {text[:40]!r}")
    return int(value)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A flat keyed file (``memory.stat``, ``cpu.stat``, ``cpuacct.stat``): ``key value`` per line.

    Lines whose value is not an integer are skipped (none exist in the kernel's files today).
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_v1_limit(text: str) -> int | None:
    """``memory.limit_in_bytes`` (v1): bytes, or None when unlimited."""
    value = parse_int(text)
    return None if value >= V1_UNLIMITED_THRESHOLD else value


def parse_v2_max(text: str) -> int | None:
    """``memory.max`` (v2): bytes, or None for ``max``."""
    value = text.strip()
    if value == "max":
        return None
    return parse_int(value)


def parse_v2_cpu_stat_ns(text: str) -> int:
    """CPU time in nanoseconds from a v2 ``cpu.stat`` (its ``usage_usec`` line).

    Raises ``ValueError`` for a v1 ``cpu.stat`` (throttling counters only, no ``usage_usec``).
    """
    stats = parse_flat_keyed(text)
    if "usage_usec" not in stats:
        raise ValueError("cpu.stat has no usage_usec (a cgroup v1 cpu.stat?)")
    return stats["usage_usec"] * 1000


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup``: controller -> path. The v2 entry (``0::/path``) is keyed ``""``.

    Named v1 hierarchies keep their name (``name=systemd``); a line listing several controllers
    (``4:cpu,cpuacct:/x``) yields one entry per controller.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
            continue
        for controller in controllers.split(","):
            out[controller] = path
    return out


@dataclass(frozen=True)
class CgroupUsage:
    """Memory and CPU use of one cgroup; None where no layout answered."""

    memory_bytes: int | None
    memory_limit_bytes: int | None
    cpu_time_ns: int | None
    layout: str  # "v1", "v2", "mixed" or "none"


def read_usage(get_item: Callable[[str], str | None]) -> CgroupUsage:
    """Memory and CPU use through ``get_item(key) -> text or None`` (None: no such file).

    v1 keys are tried first because on a hybrid host the v2 ``cpu.stat`` lookup through liblxc
    finds the v1 ``cpu`` controller's file of the same name; a v1 ``cpu.stat`` is recognised by
    its missing ``usage_usec`` and ignored.
    """
    layouts: set[str] = set()
    memory: int | None = None
    limit: int | None = None
    cpu: int | None = None

    text = get_item("memory.usage_in_bytes")
    if text is not None:
        memory = parse_int(text)
        layouts.add("v1")
        limit_text = get_item("memory.limit_in_bytes")
        limit = parse_v1_limit(limit_text) if limit_text is not None else None
    else:
        text = get_item("memory.current")
        if text is not None:
            memory = parse_int(text)
            layouts.add("v2")
            max_text = get_item("memory.max")
            limit = parse_v2_max(max_text) if max_text is not None else None

    text = get_item("cpuacct.usage")
    if text is not None:
        cpu = parse_int(text)
        layouts.add("v1")
    else:
        text = get_item("cpu.stat")
        if text is not None:
            try:
                cpu = parse_v2_cpu_stat_ns(text)
                layouts.add("v2")
            except ValueError:
                cpu = None

    layout = "mixed" if len(layouts) > 1 else (layouts.pop() if layouts else "none")
    return CgroupUsage(memory_bytes=memory, memory_limit_bytes=limit, cpu_time_ns=cpu, layout=layout)
