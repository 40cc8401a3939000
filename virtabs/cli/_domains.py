"""Domain commands: listing, lifecycle, save/restore, define/undefine, snapshots and devices."""

from __future__ import annotations

import json
from typing import Any

import click

from .._capabilities import Capability
from .._errors import InvalidArgumentError, NotSupportedError
from .._models import DiskSpec, DomainSpec
from ._main import CliState, cli, example, json_option, pass_state
from ._output import add_row, emit_json, format_size, make_table, parse_size, print_kv, print_table, state_word

__all__: list[str] = []

URI = "virtabs -c test:///default"

# --- reads ---------------------------------------------------------------------------------


@cli.command("list", epilog=example(f"{URI} list", f"{URI} list --inactive --json"))
@click.option("--all", "all_", is_flag=True, help="List every domain, active or not (the default).")
@click.option("--active", "filter_", flag_value="active", help="List only running (or paused) domains.")
@click.option("--inactive", "filter_", flag_value="inactive", help="List only shut-off domains.")
@json_option
@pass_state
def list_domains(state: CliState, all_: bool, filter_: str | None, as_json: bool) -> None:
    """List domains with their UUID and state."""
    # The states come from one bulk call (the driver's inventory hook: a single listing on Docker, ESX,
    # Hyper-V, Xen), not from an info() per domain: Docker's info() waits about a second for a stats
    # sample of each running container. The rows are the domains list_domains() returns, in its order (a
    # bulk record of something that is no domain, such as an unreadable definition, is not listed).
    conn = state.connect()
    listed = conn.list_domains()
    records = {rec.uuid: rec for rec in conn.domain_records()}  # by UUID: VirtualBox allows two VMs one name
    rows = []
    for dom in listed:
        rec = records.get(dom.uuid)
        if rec is None:  # defined between the two calls
            continue
        if filter_ == "active" and not rec.state.is_active:
            continue
        if filter_ == "inactive" and rec.state.is_active:
            continue
        rows.append(rec)
    if as_json:
        emit_json([{"name": r.name, "uuid": r.uuid, "state": r.state, "native_state": r.native_state} for r in rows])
        return
    table = make_table("Name", "UUID", "State")
    for r in rows:
        add_row(table, r.name, r.uuid, state_word(r.state))
    print_table(table)


@cli.command("dominfo", epilog=example(f"{URI} dominfo test", f"{URI} dominfo test --json"))
@click.argument("domain")
@json_option
@pass_state
def dominfo(state: CliState, domain: str, as_json: bool) -> None:
    """Show a domain's state, vCPUs, memory and CPU time."""
    dom = state.domain(domain)
    info = dom.info()
    try:
        os_type: str | None = dom.spec().os_type
    except NotSupportedError:
        os_type = None
    managed_save: bool | None = None
    if dom.connection.supports(Capability.DOMAIN_MANAGED_SAVE):
        managed_save = info.state_reason == "saved" if not info.state.is_active else dom.has_managed_save()
    if as_json:
        data: dict[str, Any] = {
            "name": info.name,
            "uuid": info.uuid,
            "state": info.state,
            "native_state": info.native_state,
            "vcpus": info.vcpus,
            "memory_bytes": info.memory_bytes,
            "max_memory_bytes": info.max_memory_bytes,
            "cpu_time_ns": info.cpu_time_ns,
            "os_type": os_type,
            "state_reason": info.state_reason,
            "managed_save": managed_save,
        }
        emit_json(data)
        return
    state_text = state_word(info.state) + (f" ({info.state_reason})" if info.state_reason else "")
    print_kv(
        [
            ("Name", info.name),
            ("UUID", info.uuid),
            ("OS Type", os_type),
            ("State", state_text),
            ("Native state", info.native_state),
            ("CPU(s)", info.vcpus),
            ("CPU time", f"{info.cpu_time_ns / 1e9:.1f}s"),
            ("Max memory", format_size(info.max_memory_bytes)),
            ("Used memory", format_size(info.memory_bytes)),
            ("Managed save", None if managed_save is None else ("yes" if managed_save else "no")),
        ]
    )


@cli.command("domstate", epilog=example(f"{URI} domstate test", f"{URI} domstate test --json"))
@click.argument("domain")
@json_option
@pass_state
def domstate(state: CliState, domain: str, as_json: bool) -> None:
    """Print a domain's state (running, paused, shut off ...)."""
    info = state.domain(domain).info()
    if as_json:
        emit_json({"name": info.name, "uuid": info.uuid, "state": info.state, "native_state": info.native_state})
    else:
        click.echo(state_word(info.state))


# --- lifecycle -------------------------------------------------------------------------------


@cli.command("start", epilog=example(f"{URI} start test", f"{URI} start test --paused"))
@click.argument("domain")
@click.option("--paused", is_flag=True, help="Leave the vCPUs paused (resume later).")
@pass_state
def start(state: CliState, domain: str, paused: bool) -> None:
    """Start a defined (shut-off) domain."""
    dom = state.domain(domain)
    dom.start(paused=paused)
    click.echo(f"Domain '{dom.name}' started{' (paused)' if paused else ''}")


@cli.command("shutdown", epilog=example(f"{URI} shutdown test", f"{URI} shutdown test --timeout 60"))
@click.argument("domain")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="Wait up to S seconds for the domain to shut off (error code 68 if it does not).",
)
@pass_state
def shutdown(state: CliState, domain: str, timeout: float | None) -> None:
    """Ask the guest to power off gracefully."""
    dom = state.domain(domain)
    dom.shutdown(timeout=timeout)
    if timeout is None:
        click.echo(f"Domain '{dom.name}' is being shutdown")
    else:
        click.echo(f"Domain '{dom.name}' shut off")


def _simple_action(name: str, method: str, summary: str, done: str) -> None:
    @cli.command(name, help=summary, epilog=example(f"{URI} {name} test"))
    @click.argument("domain")
    @pass_state
    def command(state: CliState, domain: str) -> None:
        dom = state.domain(domain)
        getattr(dom, method)()
        click.echo(f"Domain '{dom.name}' {done}")

    command.__doc__ = summary


_simple_action("destroy", "destroy", "Power a domain off at once (like pulling the plug).", "destroyed")
_simple_action("reboot", "reboot", "Reboot a running domain.", "is being rebooted")
_simple_action("suspend", "suspend", "Pause a running domain's vCPUs (memory stays).", "suspended")
_simple_action("resume", "resume", "Resume a paused domain.", "resumed")


@cli.command("save", epilog=example(f"{URI} save test /tmp/test.save", f"{URI} restore /tmp/test.save"))
@click.argument("domain")
@click.argument("file", metavar="FILE")
@pass_state
def save(state: CliState, domain: str, file: str) -> None:
    """Save a running domain's memory to FILE and stop it."""
    dom = state.domain(domain)
    dom.save(file)
    click.echo(f"Domain '{dom.name}' saved to {file}")


@cli.command("managedsave", epilog=example(f"{URI} managedsave test", f"{URI} start test"))
@click.argument("domain")
@pass_state
def managedsave(state: CliState, domain: str) -> None:
    """Save a running domain where the host keeps it and stop it; 'start' resumes it."""
    dom = state.domain(domain)
    dom.managed_save()
    click.echo(f"Domain '{dom.name}' state saved by the hypervisor")


@cli.command("managedsave-remove", epilog=example(f"{URI} managedsave-remove test"))
@click.argument("domain")
@pass_state
def managedsave_remove(state: CliState, domain: str) -> None:
    """Discard a shut-off domain's managed save image (the next start boots)."""
    dom = state.domain(domain)
    if not dom.has_managed_save():
        click.echo(f"Domain '{dom.name}' has no managed save image; removal skipped")
        return
    dom.managed_save_remove()
    click.echo(f"Removed managedsave image for domain '{dom.name}'")


@cli.command("restore", epilog=example(f"{URI} restore /tmp/test.save"))
@click.argument("file", metavar="FILE")
@pass_state
def restore(state: CliState, file: str) -> None:
    """Start a domain from a file written by 'save'."""
    dom = state.connect().restore(file)
    click.echo(f"Domain '{dom.name}' restored from {file}")


def load_spec(text: str, source: str) -> DomainSpec:
    """A DomainSpec from JSON or YAML text; ``memory_bytes`` may be bytes or a size like ``"2G"``."""
    data: Any
    stripped = text.lstrip()
    try:
        if source.endswith(".json") or stripped.startswith("{"):
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"{source} is not valid JSON: {exc}") from None
    except Exception as exc:  # yaml.YAMLError and friends
        detail = " ".join(str(exc).split())
        raise InvalidArgumentError(f"{source} is not valid YAML: {detail}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{source}: a domain definition must be a mapping, got {type(data).__name__}")
    memory = data.get("memory_bytes")
    if isinstance(memory, str):
        try:
            data["memory_bytes"] = parse_size(memory)
        except ValueError as exc:
            raise InvalidArgumentError(f"{source}: memory_bytes: {exc}") from None
    return DomainSpec.from_dict(data)


@cli.command(
    "define",
    epilog=example(
        "echo '{}' > /tmp/lab.json    # an empty test node kept in a file",
        "virtabs -c test:///tmp/lab.json define vm.yaml",
        "virtabs -c test:///tmp/lab.json start vm1   # a new process: the file keeps the state",
        "",
        "with vm.yaml:",
        "  name: vm1",
        "  memory_bytes: 1G        # bytes, or a size such as 512M / 1G",
        "  vcpus: 2",
        "  disks: [{target: vda, path: /guest/vm1.qcow2, format: qcow2}]",
        "  nics: [{network: default}]",
    ),
)
@click.argument("file", type=click.File("r", encoding="utf-8"), metavar="FILE")
@pass_state
def define(state: CliState, file: Any) -> None:
    """Define a domain from a JSON or YAML DomainSpec file ('-' reads stdin)."""
    spec = load_spec(file.read(), file.name)
    dom = state.connect().define_domain(spec)
    click.echo(f"Domain '{dom.name}' defined from {file.name}")


@cli.command("undefine", epilog=example(f"{URI} undefine vm1"))
@click.argument("domain")
@pass_state
def undefine(state: CliState, domain: str) -> None:
    """Remove the definition of a shut-off domain."""
    dom = state.domain(domain)
    dom.undefine()
    click.echo(f"Domain '{dom.name}' has been undefined")


# --- snapshots ---------------------------------------------------------------------------------


@cli.command("snapshot-create", epilog=example(f"{URI} snapshot-create test before-upgrade"))
@click.argument("domain")
@click.argument("name")
@pass_state
def snapshot_create(state: CliState, domain: str, name: str) -> None:
    """Take a snapshot of a domain called NAME."""
    snap = state.domain(domain).create_snapshot(name)
    click.echo(f"Domain snapshot {snap.name} created")


@cli.command("snapshot-list", epilog=example(f"{URI} snapshot-list test", f"{URI} snapshot-list test --json"))
@click.argument("domain")
@json_option
@pass_state
def snapshot_list(state: CliState, domain: str, as_json: bool) -> None:
    """List a domain's snapshots, oldest first."""
    snaps = state.domain(domain).list_snapshots()
    if as_json:
        emit_json(snaps)
        return
    table = make_table("Name", "Creation Time", "State", "Parent", "Kind")
    for s in snaps:
        created = s.created_at.isoformat(sep=" ", timespec="seconds")
        add_row(table, s.name, created, state_word(s.state), s.parent, s.kind)
    print_table(table)


@cli.command("snapshot-revert", epilog=example(f"{URI} snapshot-revert test before-upgrade"))
@click.argument("domain")
@click.argument("name")
@pass_state
def snapshot_revert(state: CliState, domain: str, name: str) -> None:
    """Revert a domain to its snapshot NAME."""
    dom = state.domain(domain)
    dom.revert_to_snapshot(name)
    click.echo(f"Domain '{dom.name}' reverted to snapshot {name}")


@cli.command("snapshot-delete", epilog=example(f"{URI} snapshot-delete test before-upgrade"))
@click.argument("domain")
@click.argument("name")
@pass_state
def snapshot_delete(state: CliState, domain: str, name: str) -> None:
    """Delete a domain's snapshot NAME."""
    state.domain(domain).delete_snapshot(name)
    click.echo(f"Domain snapshot {name} deleted")


# --- devices -------------------------------------------------------------------------------------


@cli.command(
    "attach-disk",
    epilog=example(f"{URI} attach-disk test vdb /default-pool/overlay.qcow2 --format qcow2"),
)
@click.argument("domain")
@click.argument("target")
@click.argument("path")
@click.option("--format", "format_", default="raw", show_default=True, help="Image format (raw, qcow2, vmdk ...).")
@click.option("--bus", default="virtio", show_default=True, help="Disk bus (virtio, scsi, sata, ide ...).")
@click.option("--readonly", is_flag=True, help="Attach the disk read-only.")
@pass_state
def attach_disk(state: CliState, domain: str, target: str, path: str, format_: str, bus: str, readonly: bool) -> None:
    """Attach the image PATH to a domain as disk TARGET (vdb, sdc ...)."""
    spec = DiskSpec(target=target, path=path, format=format_, bus=bus, readonly=readonly)
    state.domain(domain).attach_disk(spec)
    click.echo("Disk attached successfully")


@cli.command("detach-disk", epilog=example(f"{URI} detach-disk test vdb"))
@click.argument("domain")
@click.argument("target")
@pass_state
def detach_disk(state: CliState, domain: str, target: str) -> None:
    """Detach disk TARGET (or the disk with that path) from a domain."""
    state.domain(domain).detach_disk(target)
    click.echo("Disk detached successfully")


@cli.command("domblklist", epilog=example(f"{URI} domblklist test", f"{URI} domblklist test --json"))
@click.argument("domain")
@json_option
@pass_state
def domblklist(state: CliState, domain: str, as_json: bool) -> None:
    """List a domain's disks: target, source image, format and backing chain."""
    disks = state.domain(domain).disks()
    if as_json:
        emit_json(disks)
        return
    table = make_table("Target", "Source", "Format", "Bus", "Capacity", "Backing")
    for d in disks:
        backing = " <- ".join(d.backing_chain) if d.backing_chain else None
        add_row(table, d.target, d.path, d.format, d.bus, format_size(d.capacity_bytes), backing)
    print_table(table)


@cli.command("domiflist", epilog=example(f"{URI} domiflist test", f"{URI} domiflist test --json"))
@click.argument("domain")
@json_option
@pass_state
def domiflist(state: CliState, domain: str, as_json: bool) -> None:
    """List a domain's network interfaces: MAC, network, model and addresses."""
    nics = state.domain(domain).nics()
    if as_json:
        emit_json(nics)
        return
    table = make_table("MAC", "Network", "Model", "Addresses")
    for n in nics:
        add_row(table, n.mac, n.network, n.model, ", ".join(n.ips) or None)
    print_table(table)
