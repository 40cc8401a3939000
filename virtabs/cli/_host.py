"""Host and driver commands: drivers, capabilities, hostinfo and version."""

from __future__ import annotations

import platform
from typing import Any

import click

from .._capabilities import Capabilities, Capability
from ._main import CliState, cli, example, json_option, pass_state
from ._output import add_row, emit_json, format_size, make_table, print_kv, print_table

__all__ = ["describe_drivers", "describe_operations"]

URI = "virtabs -c test:///default"


def _virtabs_version() -> str:
    from .. import __version__

    return str(__version__)


def describe_drivers() -> list[dict[str, Any]]:
    """Every installed driver as plain data, read from its class attributes (never instantiated).

    A driver that fails to load is listed with ``available: False`` and the reason.
    """
    from .._registry import installed_drivers, load_driver_class

    result: list[dict[str, Any]] = []
    for entry in installed_drivers():
        item: dict[str, Any] = {
            "name": entry.name,
            "distribution": entry.distribution,
            "target": entry.target,
            "available": False,
            "error": None,
            "description": None,
            "uri_examples": [],
            "capabilities": None,
        }
        try:
            driver_class = load_driver_class(entry.name)
            caps = getattr(driver_class, "capabilities", None)
            if not isinstance(caps, Capabilities):
                raise TypeError("the driver class declares no Capabilities")
        except Exception as exc:  # anything a broken plugin raises while importing
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            item["error"] = " ".join(str(message).split())
        else:
            item["available"] = True
            item["description"] = str(getattr(driver_class, "description", "") or "")
            item["uri_examples"] = list(getattr(driver_class, "uri_examples", ()) or ())
            item["capabilities"] = caps.as_dict()
        result.append(item)
    return result


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry or not entry["supported"]:
        return "-"
    return "yes*" if entry["note"] else "yes"


def describe_operations() -> list[dict[str, Any]]:
    """The operation table (``virtabs.spi.OPERATIONS``) as plain data: what the gate checks per driver method."""
    from ..spi import OPERATIONS

    return [
        {
            "method": op.method,
            "capability": sorted(c.value for c in op.required_capabilities()),
            "writes": op.writes,
            "state": op.state.value,
            "jobs": op.jobs.value,
            "summary": op.summary,
        }
        for op in OPERATIONS.values()
    ]


@cli.command("drivers", epilog=example("virtabs drivers", "virtabs drivers --json", "virtabs drivers --operations"))
@json_option
@click.option(
    "--operations", is_flag=True, help="Show the operation table instead: each driver method and what the core checks."
)
def drivers(as_json: bool, operations: bool) -> None:
    """List installed drivers and their capability matrix (no driver is connected)."""
    if operations:
        ops = describe_operations()
        if as_json:
            emit_json(ops)
            return
        table = make_table("Method", "Capability", "Writes", "State", "Block jobs", "What")
        for op in ops:
            cap = " or ".join(op["capability"]) or "-"
            add_row(table, op["method"], cap, "yes" if op["writes"] else "-", op["state"], op["jobs"], op["summary"])
        print_table(table)
        return
    items = describe_drivers()
    if as_json:
        emit_json(items)
        return
    table = make_table("Driver", "Distribution", "Description", "Capabilities")
    for d in items:
        if d["available"]:
            count = sum(1 for c in d["capabilities"].values() if c["supported"])
            add_row(table, d["name"], d["distribution"], d["description"] or "-", f"{count}/{len(Capability)}")
        else:
            add_row(table, d["name"], d["distribution"], f"unavailable: {d['error']}", "-")
    print_table(table)
    usable = [d for d in items if d["available"]]
    if not usable:
        return
    click.echo()
    matrix = make_table("Capability", *(d["name"] for d in usable))
    for cap in sorted(Capability, key=lambda c: c.value):
        add_row(matrix, cap.value, *(_cell(d["capabilities"].get(cap.value)) for d in usable))
    print_table(matrix)
    notes = [
        (d["name"], name, c["note"])
        for d in usable
        for name, c in d["capabilities"].items()
        if c["supported"] and c["note"]
    ]
    if notes:
        click.echo("\n* partial support:")
        for driver, cap_name, note in notes:
            click.echo(f"  {driver} {cap_name}: {note}")


@cli.command("capabilities", epilog=example(f"{URI} capabilities", f"{URI} capabilities --json"))
@json_option
@pass_state
def capabilities(state: CliState, as_json: bool) -> None:
    """Show what the current connection's driver can do."""
    conn = state.connect()
    caps = conn.capabilities
    if as_json:
        emit_json({"uri": conn.uri, "driver": conn.driver_name, "capabilities": caps.as_dict()})
        return
    table = make_table("Capability", "Supported", "Note")
    for name, entry in caps.as_dict().items():
        add_row(table, name, "yes" if entry["supported"] else "no", entry["note"])
    print_table(table)


@cli.command("hostinfo", epilog=example(f"{URI} hostinfo", f"{URI} hostinfo --json"))
@json_option
@pass_state
def hostinfo(state: CliState, as_json: bool) -> None:
    """Show facts about the hypervisor host: CPUs, memory, hypervisor version."""
    info = state.connect().host_info()
    if as_json:
        emit_json(info)
        return
    print_kv(
        [
            ("Hostname", info.hostname),
            ("Hypervisor", info.hypervisor),
            ("Hypervisor version", info.hypervisor_version),
            ("CPU model", info.cpu_model),
            ("Architecture", info.arch),
            ("CPU(s)", info.cpus),
            ("Memory size", format_size(info.memory_bytes)),
        ]
    )


@cli.command("version", epilog=example(f"{URI} version", f"{URI} version --json"))
@json_option
@pass_state
def version(state: CliState, as_json: bool) -> None:
    """Show the virtabs version, the driver and the hypervisor's version."""
    conn = state.connect()
    info = conn.host_info()
    data = {
        "virtabs": _virtabs_version(),
        "python": platform.python_version(),
        "uri": conn.uri,
        "driver": conn.driver_name,
        "hypervisor": info.hypervisor,
        "hypervisor_version": info.hypervisor_version,
    }
    if as_json:
        emit_json(data)
        return
    print_kv(
        [
            ("virtabs", data["virtabs"]),
            ("Python", data["python"]),
            ("Driver", f"{conn.driver_name} ({conn.uri})"),
            ("Hypervisor", f"{info.hypervisor} {info.hypervisor_version}"),
        ]
    )
