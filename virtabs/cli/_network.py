"""Network commands (issue 25): net-list and net-info, read-only like virsh's net-list and net-info."""

from __future__ import annotations

import click

from .._models import NetworkInfo, NetworkSubnet
from ._main import CliState, cli, example, json_option, pass_state
from ._output import add_row, emit_json, make_table, print_kv, print_table

__all__: list[str] = []

URI = "virtabs -c test:///default"


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "no")


def _state(value: bool | None) -> str | None:
    return None if value is None else ("active" if value else "inactive")


def _subnet_text(subnet: NetworkSubnet) -> str:
    text = subnet.cidr
    if subnet.gateway:
        text += f" via {subnet.gateway}"
    if subnet.dhcp_ranges:
        text += " dhcp " + ", ".join(f"{first}-{last}" for first, last in subnet.dhcp_ranges)
    return text


@cli.command("net-list", epilog=example(f"{URI} net-list", f"{URI} net-list --json"))
@json_option
@pass_state
def net_list(state: CliState, as_json: bool) -> None:
    """List the host's networks: kind, device, VLANs, subnets and attached NICs."""
    networks = [n.last_info for n in state.connect().list_networks()]
    if as_json:
        emit_json(networks)
        return
    table = make_table("Name", "Kind", "State", "Autostart", "Device", "VLANs", "Subnets", "NICs")
    for n in networks:
        add_row(
            table,
            n.name,
            n.kind.value,
            _state(n.active),
            _yes_no(n.autostart),
            n.device,
            ",".join(str(v) for v in n.vlan_ids) or None,
            " ".join(s.cidr for s in n.subnets) or None,
            len(n.attachments),
        )
    print_table(table)


def _info_rows(info: NetworkInfo) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("Name", info.name),
        ("ID", info.id),
        ("Kind", info.kind.value),
        ("Native kind", info.native_kind),
        ("Device", info.device),
        ("VLANs", ",".join(str(v) for v in info.vlan_ids) or None),
        ("State", _state(info.active)),
        ("Autostart", _yes_no(info.autostart)),
    ]
    rows += [("Subnet", _subnet_text(s)) for s in info.subnets]
    rows += [(f"NIC of {a.domain_name}", f"{a.mac or '-'} ({a.domain_uuid})") for a in info.attachments]
    return rows


@cli.command("net-info", epilog=example(f"{URI} net-info default", f"{URI} net-info default --json"))
@click.argument("network")
@json_option
@pass_state
def net_info(state: CliState, network: str, as_json: bool) -> None:
    """Show a network (by name or id): kind, device, VLANs, subnets with DHCP ranges, attached NICs."""
    info = state.connect().lookup_network(network).last_info
    if as_json:
        emit_json(info)
        return
    print_kv(_info_rows(info))
