"""Output formats: json, jsonl, csv, table and ansible."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

from .._errors import quote
from .._flags import DomainState
from ._model import Inventory, sanitize_group

__all__ = ["CSV_COLUMNS", "FORMATS", "render", "to_ansible", "to_csv", "to_json", "to_jsonl", "to_table"]

FORMATS = ("json", "jsonl", "csv", "table", "ansible", "openmetrics")
"""The names ``render`` accepts."""

CSV_COLUMNS: tuple[str, ...] = (
    "host_uri",
    "host_name",
    "host_driver",
    "host_hostname",
    "host_error",
    "name",
    "uuid",
    "state",
    "native_state",
    "vcpus",
    "memory_bytes",
    "os_type",
    "autostart",
    "disk_count",
    "disk_capacity_bytes",
    "disk_allocation_bytes",
    "disk_targets",
    "disk_paths",
    "nic_count",
    "macs",
    "networks",
    "ips",
    "snapshot_count",
    "block_job_count",
    "tags",
    "field_errors",
    "managed_save",
    "network_kinds",
    "vlan_ids",
)
"""The CSV header, in order. Columns are only ever added at the end, never renamed or reordered."""


def to_json(inventory: Inventory | Mapping[str, Any], *, indent: int | None = 2) -> str:
    """The schema v3 document as JSON text (``indent=None``: one line, several times faster to write)."""
    data = inventory.to_dict() if isinstance(inventory, Inventory) else inventory
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


def _doc(inventory: Inventory | Mapping[str, Any]) -> Mapping[str, Any]:
    return inventory.to_dict() if isinstance(inventory, Inventory) else inventory


def _host_fields(host: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in host.items() if k not in ("domains", "pools", "networks")}


def jsonl_objects(inventory: Inventory | Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Per host, one object per domain, ``{"host": {...host fields}, "domain": {...}}``, then the object
    closing the host, ``{"host": ..., "domain": null, "host_end": {"generated_at", "domains", "pools", "networks"}}``
    (a failed host has only that one), so that no host is ever silently missing. The same lines
    ``virtabs inventory --format jsonl`` streams host by host (see docs/inventory.md)."""
    doc = _doc(inventory)
    for host in doc["hosts"]:
        fields = _host_fields(host)
        for dom in host["domains"]:
            yield {"host": fields, "domain": dom}
        end = {
            "generated_at": doc["generated_at"],
            "domains": len(host["domains"]),
            "pools": host["pools"],
            "networks": host.get("networks"),
        }
        yield {"host": fields, "domain": None, "host_end": end}


def to_jsonl(inventory: Inventory | Mapping[str, Any]) -> str:
    """JSON Lines: see :func:`jsonl_objects`."""
    return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in jsonl_objects(inventory))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _joined(values: list[Any] | None) -> str | None:
    if values is None:
        return None
    return " ".join(str(v) for v in values if v is not None)


def _total(disks: list[dict[str, Any]] | None, key: str) -> int | None:
    if disks is None or any(d[key] is None for d in disks):
        return None
    return sum(int(d[key]) for d in disks)


def _networks_by_name(host: Mapping[str, Any]) -> dict[str, Mapping[str, Any]] | None:
    """The host's networks by name; None when unknown (a failed host, a driver without networks, a v1 document)."""
    networks = host.get("networks")
    return None if networks is None else {n["name"]: n for n in networks}


def _nic_network_facts(
    nics: list[dict[str, Any]] | None, networks: Mapping[str, Mapping[str, Any]] | None
) -> tuple[str | None, str | None]:
    """The kinds and the VLAN ids of the networks a domain's NICs are on (each once, in NIC order)."""
    if nics is None or networks is None:
        return None, None
    kinds: list[str] = []
    vlans: list[int] = []
    for nic in nics:
        network = networks.get(nic["network"]) if nic["network"] is not None else None
        if network is None:
            continue
        if network["kind"] not in kinds:
            kinds.append(network["kind"])
        vlans.extend(v for v in network["vlan_ids"] if v not in vlans)
    return " ".join(kinds), " ".join(str(v) for v in vlans)


def csv_rows(inventory: Inventory | Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """The CSV rows as dicts keyed by :data:`CSV_COLUMNS` (one per domain; one per failed host)."""
    for host in _doc(inventory)["hosts"]:
        error = host.get("error")
        base: dict[str, Any] = {
            "host_uri": host["uri"],
            "host_name": host.get("name"),
            "host_driver": host.get("driver"),
            "host_hostname": host.get("hostname"),
            "host_error": None if error is None else f"{error['code_name']} ({error['code']}): {error['message']}",
        }
        if error is not None:
            yield {col: _cell(base.get(col)) for col in CSV_COLUMNS}
        networks = _networks_by_name(host)
        for dom in host["domains"]:
            disks = dom["disks"]
            nics = dom["nics"]
            row = dict(base)
            row.update(
                {k: dom[k] for k in ("name", "uuid", "state", "native_state", "vcpus", "memory_bytes", "os_type")}
            )
            row["autostart"] = dom["autostart"]
            row["disk_count"] = None if disks is None else len(disks)
            row["disk_capacity_bytes"] = _total(disks, "capacity_bytes")
            row["disk_allocation_bytes"] = _total(disks, "allocation_bytes")
            row["disk_targets"] = _joined(None if disks is None else [d["target"] for d in disks])
            row["disk_paths"] = _joined(None if disks is None else [d["path"] for d in disks])
            row["nic_count"] = None if nics is None else len(nics)
            row["macs"] = _joined(None if nics is None else [n["mac"] for n in nics])
            row["networks"] = _joined(None if nics is None else [n["network"] for n in nics])
            row["ips"] = _joined(None if nics is None else [ip for n in nics for ip in n["ips"]])
            row["snapshot_count"] = dom["snapshot_count"]
            row["block_job_count"] = None if dom["block_jobs"] is None else len(dom["block_jobs"])
            row["tags"] = _joined(dom["tags"])
            row["field_errors"] = json.dumps(dom["field_errors"], sort_keys=True) if dom["field_errors"] else ""
            row["managed_save"] = dom.get("managed_save")  # absent from documents written before it existed
            row["network_kinds"], row["vlan_ids"] = _nic_network_facts(nics, networks)
            yield {col: _cell(row.get(col)) for col in CSV_COLUMNS}


def to_csv(inventory: Inventory | Mapping[str, Any]) -> str:
    """CSV (RFC 4180, header row first) with the columns of :data:`CSV_COLUMNS`.

    Lists are space-separated; an empty cell is an unknown value (see
    ``field_errors``, a JSON object) or an empty list.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(csv_rows(inventory))
    return buf.getvalue()


def _ansible_names(doc: Mapping[str, Any]) -> dict[tuple[int, int], str]:
    """Inventory host names: the domain name, or ``name@host`` when it is not unique."""
    counts: dict[str, int] = {}
    for host in doc["hosts"]:
        for dom in host["domains"]:
            counts[dom["name"]] = counts.get(dom["name"], 0) + 1
    names: dict[tuple[int, int], str] = {}
    taken: set[str] = set()
    for hi, host in enumerate(doc["hosts"]):
        label = host.get("name") or host.get("hostname") or host["uri"]
        for di, dom in enumerate(host["domains"]):
            name = dom["name"] if counts[dom["name"]] == 1 else f"{dom['name']}@{label}"
            base, n = name, 2
            while name in taken:
                name, n = f"{base}#{n}", n + 1
            taken.add(name)
            names[(hi, di)] = name
    return names


def host_group(host: Mapping[str, Any]) -> str:
    """The Ansible group of a hypervisor host's domains: ``host_<name or hostname or uri>``."""
    return sanitize_group("host_" + str(host.get("name") or host.get("hostname") or host["uri"]))


def _network_groups(host: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{domain uuid: [network_<name>, vlan_<id> ...]}`` from the host's networks' attachments (each group once)."""
    groups: dict[str, list[str]] = {}
    for network in host.get("networks") or ():
        names = [sanitize_group(f"network_{network['name']}")] + [f"vlan_{v}" for v in network["vlan_ids"]]
        for attachment in network["attachments"]:
            mine = groups.setdefault(attachment["domain_uuid"], [])
            mine.extend(g for g in names if g not in mine)
    return groups


def to_ansible_dict(inventory: Inventory | Mapping[str, Any]) -> dict[str, Any]:
    """An Ansible dynamic inventory (``ansible-inventory --list`` shape).

    Every domain is an inventory host; groups ``host_<host>``, ``driver_<driver>``,
    ``state_<state>``, ``network_<network>`` (each network a NIC of the domain is attached to, by
    the host's networks' attachments) and ``vlan_<id>`` (the VLANs of those networks) hold them
    (names made of ``[A-Za-z0-9_]``; a network of one name on several hosts is one group), ``all`` has
    them as children. Host variables are prefixed ``virtabs_``; ``ansible_host``
    is the domain's first IP address when it has one.
    """
    doc = _doc(inventory)
    names = _ansible_names(doc)
    hostvars: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {}
    for hi, host in enumerate(doc["hosts"]):
        host_grp = host_group(host)
        driver_grp = sanitize_group(f"driver_{host.get('driver') or 'unknown'}")
        network_groups = _network_groups(host)
        for di, dom in enumerate(host["domains"]):
            name = names[(hi, di)]
            state_grp = sanitize_group(f"state_{dom['state'] or 'unknown'}")
            for grp in (host_grp, driver_grp, state_grp, *network_groups.get(dom["uuid"], ())):
                groups.setdefault(grp, []).append(name)
            ips = [ip for n in (dom["nics"] or []) for ip in n["ips"]]
            variables: dict[str, Any] = {f"virtabs_{k}": v for k, v in dom.items() if k != "field_errors"}
            variables["virtabs_field_errors"] = dom["field_errors"]
            variables["virtabs_host_uri"] = host["uri"]
            variables["virtabs_host_name"] = host.get("name")
            variables["virtabs_hypervisor_hostname"] = host.get("hostname")
            variables["virtabs_driver"] = host.get("driver")
            if ips:
                variables["ansible_host"] = ips[0]
            hostvars[name] = variables
    result: dict[str, Any] = {"_meta": {"hostvars": hostvars}}
    result["all"] = {"children": ["ungrouped", *sorted(groups)]}
    result["ungrouped"] = {"hosts": []}
    for grp in sorted(groups):
        result[grp] = {"hosts": groups[grp]}
    return result


def to_ansible(inventory: Inventory | Mapping[str, Any], *, indent: int | None = 2) -> str:
    """:func:`to_ansible_dict` as JSON text (``indent=None``: compact, much faster to write)."""
    return json.dumps(to_ansible_dict(inventory), indent=indent, ensure_ascii=False) + "\n"


def _human_bytes(value: int | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - unreachable


def to_table(inventory: Inventory | Mapping[str, Any], *, width: int | None = None, color: bool = False) -> str:
    """A human-readable table (rich), one row per domain; failed hosts follow in a second table.

    ``width`` is a terminal's width (cells wrap to fit); ``None`` (files, pipes) never wraps: every
    row stays on one line however long, and lines carry no trailing blanks.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    doc = _doc(inventory)
    summary = doc["summary"]
    table = Table(
        title=f"virtabs inventory — {doc['generated_at']}",
        caption=(
            f"{summary['hosts_ok']}/{summary['hosts']} hosts ok, {summary['hosts_failed']} failed, "
            f"{summary['domains']} domains"
        ),
    )
    table.add_column("Host", overflow="fold")
    table.add_column("Domain", overflow="fold")
    table.add_column("State")
    table.add_column("vCPUs", justify="right")
    table.add_column("Memory", justify="right", no_wrap=True)
    table.add_column("Disks", justify="right", no_wrap=True)
    table.add_column("IPs", overflow="fold")
    nets = Table(title="Networks")
    for title in ("Host", "Network", "Kind", "VLANs", "Subnets"):
        nets.add_column(title, overflow="fold")
    nets.add_column("Domains", justify="right")
    failed = Table(title="Failed hosts", title_style="bold red")
    failed.add_column("Host", overflow="fold")
    failed.add_column("Error", no_wrap=True)
    failed.add_column("Message", overflow="fold")
    for host in doc["hosts"]:
        label = escape(str(host.get("name") or host.get("hostname") or host["uri"]))
        error = host.get("error")
        if error is not None:
            failed.add_row(escape(host["uri"]), f"{error['code_name']} ({error['code']})", escape(error["message"]))
        for network in host.get("networks") or ():
            nets.add_row(
                label,
                escape(str(network["name"])),
                str(network["kind"]),
                ",".join(str(v) for v in network["vlan_ids"]),
                " ".join(s["cidr"] for s in network["subnets"]),
                str(len({a["domain_uuid"] for a in network["attachments"]})),
            )
        for dom in host["domains"]:
            disks = dom["disks"]
            size = _total(disks, "capacity_bytes")
            disk_text = "?" if disks is None else f"{len(disks)} ({_human_bytes(size)})" if disks else "0"
            ips = "?" if dom["nics"] is None else " ".join(ip for n in dom["nics"] for ip in n["ips"])
            table.add_row(
                label,
                dom["name"],
                dom["state"] or "?",
                "?" if dom["vcpus"] is None else str(dom["vcpus"]),
                _human_bytes(dom["memory_bytes"]),
                disk_text,
                ips,
            )
    buf = io.StringIO()
    unwrapped = width is None
    if unwrapped:
        for column in (*table.columns, *nets.columns, *failed.columns):
            column.no_wrap = True
            column.overflow = "ignore"
    console = Console(
        file=buf,
        width=_NO_WRAP_WIDTH if unwrapped else width,
        force_terminal=color,
        no_color=not color,
        highlight=False,
    )
    console.print(table)
    if nets.row_count:
        console.print(nets)
    if failed.row_count:
        console.print(failed)
    text = buf.getvalue()
    if unwrapped:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text


_NO_WRAP_WIDTH = 100_000
"""The console width of an unwrapped table (rich needs a number; tables take only what their content needs)."""


# --- OpenMetrics ------------------------------------------------------------------------------

_OM_STATES = tuple(state.name.lower() for state in DomainState)
"""Every portable domain state (lower case): each up host reports a count for each, zeros included."""

_OM_FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    ("virtabs_host_up", "gauge", "", "1 when the host answered the inventory, 0 when it failed (see error_code)."),
    ("virtabs_host_error_code", "gauge", "", "virtabs error code of a failed host (0 when it answered)."),
    ("virtabs_host_cpus", "gauge", "", "Physical CPUs of the host."),
    ("virtabs_host_memory_bytes", "gauge", "bytes", "Physical memory of the host."),
    ("virtabs_domains", "gauge", "", "Domains of the host, by state."),
    ("virtabs_domain_vcpus", "gauge", "", "vCPUs of the host's domains, by state."),
    ("virtabs_domain_memory_bytes", "gauge", "bytes", "Memory of the host's domains, by state."),
    ("virtabs_disk_capacity_bytes", "gauge", "bytes", "Virtual size of the host's domain disks."),
    ("virtabs_disk_allocation_bytes", "gauge", "bytes", "Space the host's domain disks occupy."),
    ("virtabs_inventory_timestamp_seconds", "gauge", "seconds", "When the host was read (Unix time)."),
    ("virtabs_network_domains", "gauge", "", "Domains with a NIC on the network, by network and kind."),
)


def _om_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _om_labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_om_escape(v)}"' for k, v in labels.items()) + "}"


def _om_time(text: str | None) -> float | None:
    if not text:
        return None
    import datetime as _dt

    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def to_openmetrics(inventory: Inventory | Mapping[str, Any]) -> str:
    """The inventory as OpenMetrics text (ends with ``# EOF``), for a Prometheus textfile collector.

    Per host (labels ``host_uri``, ``host`` = the host's name or hostname): whether it answered,
    its error code, CPUs and memory; domain counts, vCPUs and memory by ``state`` (every state, zeros
    included, so a count that drops to nothing is seen); disk capacity and allocation; per network (labels ``network``, ``kind``) the domains on it. Values a driver
    did not report are left out, never written as 0. Written by hand (no dependency); the tests parse
    it with prometheus-client's OpenMetrics parser.
    """
    doc = _doc(inventory)
    samples: dict[str, list[str]] = {name: [] for name, *_ in _OM_FAMILIES}

    def add(name: str, labels: Mapping[str, str], value: float | int) -> None:
        samples[name].append(f"{name}{_om_labels(labels)} {value}")

    for host in doc["hosts"]:
        base = {"host_uri": str(host["uri"]), "host": str(host.get("name") or host.get("hostname") or host["uri"])}
        error = host.get("error")
        add("virtabs_host_up", base, 0 if error else 1)
        add("virtabs_host_error_code", base, int(error["code"]) if error else 0)
        collected = _om_time(host.get("collected_at"))
        if collected is not None:
            add("virtabs_inventory_timestamp_seconds", base, round(collected, 3))
        if host.get("cpus") is not None:
            add("virtabs_host_cpus", base, int(host["cpus"]))
        if host.get("memory_bytes") is not None:
            add("virtabs_host_memory_bytes", base, int(host["memory_bytes"]))
        if error:
            continue
        counts = dict.fromkeys(_OM_STATES, 0)
        vcpus = dict.fromkeys(_OM_STATES, 0)
        memory = dict.fromkeys(_OM_STATES, 0)
        capacity = allocation = 0
        capacity_known = allocation_known = False
        for dom in host["domains"]:
            state = str(dom.get("state") or "nostate")
            counts[state] = counts.get(state, 0) + 1
            vcpus[state] = vcpus.get(state, 0) + int(dom.get("vcpus") or 0)
            memory[state] = memory.get(state, 0) + int(dom.get("memory_bytes") or 0)
            for disk in dom.get("disks") or ():
                if disk.get("capacity_bytes") is not None:
                    capacity += int(disk["capacity_bytes"])
                    capacity_known = True
                if disk.get("allocation_bytes") is not None:
                    allocation += int(disk["allocation_bytes"])
                    allocation_known = True
        for state in counts:
            labels = {**base, "state": state}
            add("virtabs_domains", labels, counts[state])
            add("virtabs_domain_vcpus", labels, vcpus[state])
            add("virtabs_domain_memory_bytes", labels, memory[state])
        if capacity_known:
            add("virtabs_disk_capacity_bytes", base, capacity)
        if allocation_known:
            add("virtabs_disk_allocation_bytes", base, allocation)
        for network in host.get("networks") or ():
            labels = {**base, "network": str(network["name"]), "kind": str(network["kind"])}
            add("virtabs_network_domains", labels, len({a["domain_uuid"] for a in network["attachments"]}))
    lines: list[str] = []
    for name, kind, unit, help_text in _OM_FAMILIES:
        lines.append(f"# TYPE {name} {kind}")
        if unit:
            lines.append(f"# UNIT {name} {unit}")
        lines.append(f"# HELP {name} {help_text}")
        lines.extend(samples[name])
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def render(inventory: Inventory | Mapping[str, Any], format: str = "json", *, pretty: bool = True) -> str:
    """The inventory in one of :data:`FORMATS`; ``pretty=False`` writes json and ansible compactly."""
    indent = 2 if pretty else None
    if format == "json":
        return to_json(inventory, indent=indent)
    if format == "jsonl":
        return to_jsonl(inventory)
    if format == "csv":
        return to_csv(inventory)
    if format == "table":
        return to_table(inventory)
    if format == "ansible":
        return to_ansible(inventory, indent=indent)
    if format == "openmetrics":
        return to_openmetrics(inventory)
    from .._errors import InvalidArgumentError

    raise InvalidArgumentError(f"unknown inventory format {quote(format)} (known: {', '.join(FORMATS)})")
