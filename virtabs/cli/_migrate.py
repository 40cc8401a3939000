"""``virtabs migrate`` (issue 23), modelled on ``virsh migrate``.

``--verbose`` draws a progress bar on stderr (a terminal only) over the disk and memory bytes to
copy; Ctrl-C aborts the migration (the source keeps running), as with the block-job commands. Where
the source cannot cancel a migration (``domain.migrate.abort`` not declared), Ctrl-C says so and the
command waits for the end, and ``--timeout`` is refused before the migration starts.
"""

from __future__ import annotations

import contextlib

import click

from .._api import MigrationJob
from .._capabilities import Capability
from .._errors import NotSupportedError, VirtabsError
from .._flags import BlockJobType, MigrateFlags
from .._models import BlockJobInfo, MigrationInfo
from ._blockjobs import job_progress
from ._main import CliState, cli, example, pass_state

__all__ = ["migrate"]

URI = "virtabs -c qemu:///embed?root=/srv/a"


@cli.command(
    "migrate",
    epilog=example(
        f"{URI} migrate web 'qemu:///embed?root=/srv/b' --live --copy-storage-all --persistent --verbose",
        "virtabs -c test:///default migrate test test:///tmp/other.json --live --persistent --undefinesource",
    ),
)
@click.argument("domain")
@click.argument("dest_uri")
@click.option("--live", is_flag=True, help="Keep the guest running while its memory is copied.")
@click.option("--offline", is_flag=True, help="Move the definition only (needs --persistent).")
@click.option("--copy-storage-all", is_flag=True, help="Copy every disk whole (non-shared storage).")
@click.option("--copy-storage-inc", is_flag=True, help="Copy each disk's top layer (the destination has the rest).")
@click.option("--persistent", is_flag=True, help="Define the domain persistently on the destination.")
@click.option("--undefinesource", is_flag=True, help="Remove the source's definition once migrated.")
@click.option("--suspend", is_flag=True, help="Leave the domain paused on the destination.")
@click.option("--auto-converge", is_flag=True, help="Slow the guest down when its memory does not converge.")
@click.option("--abort-on-error", is_flag=True, help="Cancel the migration on a disk I/O error.")
@click.option(
    "--bandwidth", type=click.IntRange(min=0), default=0, metavar="MIB", help="Bandwidth limit in MiB/s; 0 = default."
)
@click.option(
    "--max-downtime", type=click.IntRange(min=1), default=None, metavar="MS", help="Longest pause at the switch (ms)."
)
@click.option(
    "--disks", default=None, metavar="LIST", help="Comma-separated disk targets to copy (default: every writable one)."
)
@click.option("--verbose", is_flag=True, help="Show a progress bar on stderr (only on a terminal).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Give up after S seconds and abort the migration.",
)
@pass_state
def migrate(
    state: CliState,
    domain: str,
    dest_uri: str,
    live: bool,
    offline: bool,
    copy_storage_all: bool,
    copy_storage_inc: bool,
    persistent: bool,
    undefinesource: bool,
    suspend: bool,
    auto_converge: bool,
    abort_on_error: bool,
    bandwidth: int,
    max_downtime: int | None,
    disks: str | None,
    verbose: bool,
    timeout: float | None,
) -> None:
    """Migrate DOMAIN to the host DEST_URI (the same driver); the rules are libvirt's."""
    flags = MigrateFlags(0)
    for wanted, flag in (
        (live, MigrateFlags.LIVE),
        (offline, MigrateFlags.OFFLINE),
        (copy_storage_all, MigrateFlags.NON_SHARED_DISK),
        (copy_storage_inc, MigrateFlags.NON_SHARED_INC),
        (persistent, MigrateFlags.PERSIST_DEST),
        (undefinesource, MigrateFlags.UNDEFINE_SOURCE),
        (suspend, MigrateFlags.PAUSED),
        (auto_converge, MigrateFlags.AUTO_CONVERGE),
        (abort_on_error, MigrateFlags.ABORT_ON_ERROR),
    ):
        if wanted:
            flags |= flag
    chosen = [d.strip() for d in disks.split(",") if d.strip()] if disks is not None else None
    source = state.domain(domain)
    if timeout is not None and not source.connection.supports(Capability.DOMAIN_MIGRATE_ABORT):
        raise NotSupportedError(
            f"--timeout: the {source.connection.driver_name} driver cannot cancel a migration when the time runs "
            f"out (it does not support {Capability.DOMAIN_MIGRATE_ABORT.value})"
        )
    job = source.migrate(dest_uri, flags=flags, bandwidth=bandwidth, max_downtime=max_downtime, disks=chosen)
    try:
        with job_progress("Migration", verbose) as bar:

            def progress(info: MigrationInfo) -> None:
                if bar is not None:
                    end = info.disk_total + info.memory_total
                    done = info.disk_processed + info.memory_processed
                    bar(BlockJobInfo(BlockJobType.UNKNOWN, min(done, end), end, 0, info.done))

            try:
                job.wait(timeout, progress=progress)
            except KeyboardInterrupt:
                if not _abort_and_wait(job):
                    click.echo(f"virtabs: {_CANNOT_CANCEL}; waiting for it to end (Ctrl-C again to leave)", err=True)
                    job.wait(progress=progress)
                else:
                    raise KeyboardInterrupt("the migration was aborted; the domain stays on the source") from None
            except VirtabsError as exc:
                if not job.done:  # the wait timed out: abort, as virsh's --timeout-postcopy does not
                    _abort_and_wait(job)
                    raise type(exc)(f"{exc.message}; the migration was aborted") from exc
                raise
        final = job.info()
        downtime = f", downtime {final.downtime_ms} ms" if final.downtime_ms is not None else ""
        click.echo(f"Migration completed{downtime}")
    finally:
        job.close()


_CANNOT_CANCEL = (
    f"this migration cannot be cancelled (the source does not support {Capability.DOMAIN_MIGRATE_ABORT.value})"
)


def _abort_and_wait(job: MigrationJob) -> bool:
    """Abort and wait for the rollback; False (nothing done) where the source cannot cancel."""
    try:
        job.abort()
    except NotSupportedError:
        return False
    with contextlib.suppress(VirtabsError):  # the rollback's outcome: the abort itself
        job.wait()
    return True
