"""Storage commands: pool-list, pool-info, vol-list, vol-create and vol-delete."""

from __future__ import annotations

import click

from ._main import CliState, cli, example, json_option, pass_state
from ._output import add_row, emit_json, format_size, make_table, print_kv, print_table, size_callback

__all__: list[str] = []

URI = "virtabs -c test:///default"


@cli.command("pool-list", epilog=example(f"{URI} pool-list", f"{URI} pool-list --json"))
@json_option
@pass_state
def pool_list(state: CliState, as_json: bool) -> None:
    """List storage pools with their capacity and usage."""
    pools = [p.info() for p in state.connect().list_storage_pools()]
    if as_json:
        emit_json(pools)
        return
    table = make_table("Name", "State", "Type", "Capacity", "Allocation", "Available", "Path")
    for p in pools:
        add_row(
            table,
            p.name,
            "active" if p.active else "inactive",
            p.type,
            format_size(p.capacity_bytes),
            format_size(p.allocation_bytes),
            format_size(p.available_bytes),
            p.path,
        )
    print_table(table)


@cli.command("pool-info", epilog=example(f"{URI} pool-info default-pool", f"{URI} pool-info default-pool --json"))
@click.argument("pool")
@json_option
@pass_state
def pool_info(state: CliState, pool: str, as_json: bool) -> None:
    """Show a storage pool's type, path, capacity and usage."""
    info = state.pool(pool).info()
    if as_json:
        emit_json(info)
        return
    print_kv(
        [
            ("Name", info.name),
            ("UUID", info.uuid),
            ("Type", info.type),
            ("State", "active" if info.active else "inactive"),
            ("Path", info.path),
            ("Capacity", format_size(info.capacity_bytes)),
            ("Allocation", format_size(info.allocation_bytes)),
            ("Available", format_size(info.available_bytes)),
        ]
    )


@cli.command("vol-list", epilog=example(f"{URI} vol-list default-pool", f"{URI} vol-list default-pool --json"))
@click.argument("pool")
@json_option
@pass_state
def vol_list(state: CliState, pool: str, as_json: bool) -> None:
    """List the volumes of a storage pool."""
    vols = [v.info() for v in state.pool(pool).list_volumes()]
    if as_json:
        emit_json(vols)
        return
    table = make_table("Name", "Path", "Format", "Capacity", "Allocation", "Backing")
    for v in vols:
        backing = v.backing_chain[0] if v.backing_chain else None
        add_row(
            table, v.name, v.path, v.format, format_size(v.capacity_bytes), format_size(v.allocation_bytes), backing
        )
    print_table(table)


@cli.command(
    "vol-create",
    epilog=example(
        f"{URI} vol-create default-pool data.qcow2 10G",
        f"{URI} vol-create default-pool top.qcow2 4G --backing /default-pool/base.qcow2",
    ),
)
@click.argument("pool")
@click.argument("name")
@click.argument("size", required=False, callback=size_callback)
@click.option(
    "--format",
    "format_",
    default="qcow2",
    show_default=True,
    help="Volume format (qcow2, raw ...; dir: a directory volume, such as a Docker named volume, made without SIZE).",
)
@click.option("--backing", default=None, metavar="PATH", help="Create the volume on top of the image PATH.")
@pass_state
def vol_create(state: CliState, pool: str, name: str, size: int | None, format_: str, backing: str | None) -> None:
    """Create volume NAME of SIZE (10G, 512M or bytes) in POOL; a directory volume (--format dir) takes no SIZE."""
    vol = state.pool(pool).create_volume(name, size, format=format_, backing=backing)
    made = "a directory" if size is None else format_size(size)
    click.echo(f"Vol {vol.name} created in pool {vol.pool} at {vol.path} ({made})")


@cli.command("vol-delete", epilog=example(f"{URI} vol-delete default-pool data.qcow2"))
@click.argument("pool")
@click.argument("name")
@pass_state
def vol_delete(state: CliState, pool: str, name: str) -> None:
    """Delete volume NAME from POOL."""
    state.pool(pool).lookup_volume(name).delete()
    click.echo(f"Vol {name} deleted")
