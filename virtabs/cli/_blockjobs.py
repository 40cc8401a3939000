"""Block-job commands, modelled on virsh: blockpull, blockcopy, blockcommit and blockjob.

While a command waits (``--wait``), ``--verbose`` draws a rich progress bar on
stderr when stderr is a terminal (and stays silent otherwise). A wait that
times out (``--timeout``) or is interrupted (Ctrl-C) aborts the job, as virsh does.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from .._api import BlockJob
from .._errors import OperationTimeoutError, VirtabsError
from .._flags import (
    BlockCommitFlags,
    BlockCopyFlags,
    BlockJobSetSpeedFlags,
    BlockJobType,
    BlockPullFlags,
    BlockRebaseFlags,
)
from .._models import BlockJobInfo
from ._main import CliState, cli, example, json_option, pass_state
from ._output import emit_json, format_size

__all__ = ["JOB_LABELS", "job_progress", "speed_text"]

URI = "virtabs -c test:///default"
MiB = 1 << 20

JOB_LABELS = {
    BlockJobType.UNKNOWN: "Unknown job",
    BlockJobType.PULL: "Block Pull",
    BlockJobType.COPY: "Block Copy",
    BlockJobType.COMMIT: "Block Commit",
    BlockJobType.ACTIVE_COMMIT: "Active Block Commit",
}
"""virsh's names of the job types (human output)."""

ProgressCallback = Callable[[BlockJobInfo], None]

_bandwidth_option = click.option(
    "--bandwidth",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Bandwidth limit in MiB/s (bytes/s with --bytes); 0 = unlimited.",
)
_bytes_option = click.option("--bytes", "in_bytes", is_flag=True, help="--bandwidth is in bytes/s, not MiB/s.")
_wait_option = click.option("--wait", is_flag=True, help="Wait for the job (a copy: until it is ready to pivot).")
_verbose_option = click.option(
    "--verbose", is_flag=True, help="Show a progress bar on stderr while waiting (needs --wait; only on a terminal)."
)
_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Give up waiting after S seconds and abort the job (implies --wait).",
)


def speed_text(bytes_per_second: float | None) -> str:
    """A block job's speed in the progress bar's one unit system: ``"12.5 MiB/s"`` (``"?"`` while unknown)."""
    if bytes_per_second is None:
        return "?"
    return f"{bytes_per_second / (1024 * 1024):.1f} MiB/s"


@contextlib.contextmanager
def job_progress(label: str, enabled: bool) -> Iterator[ProgressCallback | None]:
    """A progress callback drawing a rich bar on stderr, or None when disabled or stderr is not a TTY."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from ._output import make_console

    class _MiBSpeedColumn(ProgressColumn):
        """The speed in MiB/s, the unit of ``DownloadColumn(binary_units=True)`` next to it (rich's own is MB/s)."""

        def render(self, task: Task) -> Text:
            return Text(speed_text(task.finished_speed or task.speed), style="progress.data.speed")

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(binary_units=True),
        _MiBSpeedColumn(),
        TimeRemainingColumn(),
        console=make_console(stderr=True),
    )
    with progress:
        task = progress.add_task(label, total=None)

        def update(info: BlockJobInfo) -> None:
            progress.update(task, total=info.end or None, completed=info.cur)

        yield update


def _abort_quietly(job: BlockJob) -> None:
    try:
        job.abort()
    except VirtabsError as exc:
        click.echo(f"warning: could not abort the block job: {exc.message}", err=True)


def _wait(job: BlockJob, *, until_ready: bool, timeout: float | None, verbose: bool) -> None:
    """Wait for ``job`` with an optional progress bar; on timeout or Ctrl-C abort the job, then re-raise."""
    label = JOB_LABELS.get(job.type, "Block job")
    try:
        with job_progress(label, verbose) as progress:
            if until_ready:
                job.wait_ready(timeout, progress=progress)
            else:
                job.wait(timeout, progress=progress)
    except OperationTimeoutError as exc:
        _abort_quietly(job)
        raise OperationTimeoutError(f"{exc.message}; the job was aborted") from exc
    except KeyboardInterrupt:
        _abort_quietly(job)
        raise KeyboardInterrupt(f"the {label.lower()} job was aborted") from None


def _check_verbose(verbose: bool, wait: bool) -> None:
    if verbose and not wait:
        raise click.UsageError("--verbose requires --wait (or --pivot, --finish, --timeout)")


@cli.command("blockpull", epilog=example(f"{URI} blockpull test vda --wait --verbose"))
@click.argument("domain")
@click.argument("disk")
@click.option("--base", default=None, metavar="IMAGE", help="Pull only the images above IMAGE (default: flatten).")
@_bandwidth_option
@_bytes_option
@_wait_option
@_verbose_option
@_timeout_option
@pass_state
def blockpull(
    state: CliState,
    domain: str,
    disk: str,
    base: str | None,
    bandwidth: int,
    in_bytes: bool,
    wait: bool,
    verbose: bool,
    timeout: float | None,
) -> None:
    """Fill DISK from its backing images (a pull job)."""
    wait = wait or timeout is not None
    _check_verbose(verbose, wait)
    flags = BlockPullFlags.BANDWIDTH_BYTES if in_bytes else BlockPullFlags(0)
    job = state.domain(domain).block_pull(disk, base=base, bandwidth=bandwidth, flags=flags)
    if not wait:
        click.echo("Block Pull started")
        return
    _wait(job, until_ready=False, timeout=timeout, verbose=verbose)
    click.echo("Pull complete")


@cli.command(
    "blockcopy",
    epilog=example(
        f"{URI} blockcopy test vda /tmp/copy.img --wait --pivot --verbose",
        f"{URI} blockcopy test vda /tmp/copy.qcow2 --format qcow2 --bandwidth 100",
    ),
)
@click.argument("domain")
@click.argument("disk")
@click.argument("dest")
@click.option("--shallow", is_flag=True, help="Copy only the top image; the copy keeps the source's backing chain.")
@click.option(
    "--move-chain",
    is_flag=True,
    help="Move the chain as it is, every layer kept (block.copy.move_chain: Hyper-V, ESX); not in virsh.",
)
@click.option("--reuse-external", is_flag=True, help="Copy into an existing DEST instead of creating it.")
@click.option("--raw", is_flag=True, help="The destination is raw (same as --format raw).")
@click.option("--format", "format_", default=None, help="Destination format (default: the source's).")
@_bandwidth_option
@_bytes_option
@_wait_option
@click.option("--pivot", is_flag=True, help="Once ready, switch the disk to the copy (implies --wait).")
@click.option("--finish", is_flag=True, help="Once ready, end the job and stay on the source (implies --wait).")
@_verbose_option
@_timeout_option
@pass_state
def blockcopy(
    state: CliState,
    domain: str,
    disk: str,
    dest: str,
    shallow: bool,
    move_chain: bool,
    reuse_external: bool,
    raw: bool,
    format_: str | None,
    bandwidth: int,
    in_bytes: bool,
    wait: bool,
    pivot: bool,
    finish: bool,
    verbose: bool,
    timeout: float | None,
) -> None:
    """Copy DISK into the file DEST, then mirror it until pivot or abort."""
    if pivot and finish:
        raise click.UsageError("--pivot and --finish are mutually exclusive")
    if raw and format_ not in (None, "raw"):
        raise click.UsageError("--raw and --format are mutually exclusive")
    wait = wait or pivot or finish or timeout is not None
    _check_verbose(verbose, wait)
    dom = state.domain(domain)
    job: BlockJob
    if format_ is not None and format_ != "raw":
        # virsh switches to virDomainBlockCopy when a destination format is given
        copy_flags = BlockCopyFlags(0)
        if shallow:
            copy_flags |= BlockCopyFlags.SHALLOW
        if move_chain:
            copy_flags |= BlockCopyFlags.MOVE_CHAIN
        if reuse_external:
            copy_flags |= BlockCopyFlags.REUSE_EXT
        bw = bandwidth if in_bytes else bandwidth * MiB
        job = dom.block_copy(disk, dest, flags=copy_flags, format=format_, bandwidth=bw)
    else:
        flags = BlockRebaseFlags.COPY
        if shallow:
            flags |= BlockRebaseFlags.SHALLOW
        if move_chain:
            flags |= BlockRebaseFlags.MOVE_CHAIN
        if reuse_external:
            flags |= BlockRebaseFlags.REUSE_EXT
        if raw or format_ == "raw":
            flags |= BlockRebaseFlags.COPY_RAW
        if in_bytes:
            flags |= BlockRebaseFlags.BANDWIDTH_BYTES
        job = dom.block_rebase(disk, dest, bandwidth=bandwidth, flags=flags)
    if not wait:
        click.echo("Block Copy started")
        return
    _wait(job, until_ready=True, timeout=timeout, verbose=verbose)
    if pivot:
        job.pivot()
        click.echo("Successfully pivoted")
    elif finish:
        job.abort()
        click.echo("Successfully copied")
    else:
        click.echo("Now in mirroring phase")


@cli.command(
    "blockcommit",
    epilog=example(
        f"{URI} blockcommit test vda --active --wait --pivot --verbose",
        f"{URI} blockcommit test vda --top /images/mid.qcow2 --base /images/base.qcow2 --wait",
    ),
)
@click.argument("domain")
@click.argument("disk")
@click.option("--base", default=None, metavar="IMAGE", help="Commit into IMAGE (default: the deepest backing image).")
@click.option("--top", default=None, metavar="IMAGE", help="Commit from IMAGE (default: the active layer).")
@click.option("--active", is_flag=True, help="Commit the active layer (a two-phase job, ended by pivot or abort).")
@click.option("--shallow", is_flag=True, help="Commit into the image directly below top.")
@click.option("--delete", is_flag=True, help="Delete the committed images once the job ends.")
@_bandwidth_option
@_bytes_option
@_wait_option
@click.option("--pivot", is_flag=True, help="With --active: once ready, switch to the base (implies --wait).")
@click.option(
    "--keep-overlay", is_flag=True, help="With --active: once ready, end the job and stay on top (implies --wait)."
)
@_verbose_option
@_timeout_option
@pass_state
def blockcommit(
    state: CliState,
    domain: str,
    disk: str,
    base: str | None,
    top: str | None,
    active: bool,
    shallow: bool,
    delete: bool,
    bandwidth: int,
    in_bytes: bool,
    wait: bool,
    pivot: bool,
    keep_overlay: bool,
    verbose: bool,
    timeout: float | None,
) -> None:
    """Merge the images of DISK down into a backing image (a commit job)."""
    if pivot and keep_overlay:
        raise click.UsageError("--pivot and --keep-overlay are mutually exclusive")
    if (pivot or keep_overlay) and not active:
        raise click.UsageError("--pivot and --keep-overlay require --active")
    wait = wait or pivot or keep_overlay or timeout is not None
    _check_verbose(verbose, wait)
    flags = BlockCommitFlags(0)
    if active:
        flags |= BlockCommitFlags.ACTIVE
    if shallow:
        flags |= BlockCommitFlags.SHALLOW
    if delete:
        flags |= BlockCommitFlags.DELETE
    if in_bytes:
        flags |= BlockCommitFlags.BANDWIDTH_BYTES
    job = state.domain(domain).block_commit(disk, base=base, top=top, bandwidth=bandwidth, flags=flags)
    if not wait:
        click.echo("Active Block Commit started" if job.two_phase else "Block Commit started")
        return
    if not job.two_phase:
        _wait(job, until_ready=False, timeout=timeout, verbose=verbose)
        click.echo("Commit complete")
        return
    _wait(job, until_ready=True, timeout=timeout, verbose=verbose)
    if pivot:
        job.pivot()
        click.echo("Successfully pivoted")
    elif keep_overlay:
        job.abort()
        click.echo("Commit complete, overlay image kept")
    else:
        click.echo("Now in synchronized phase")


def _job_json(disk: str, info: BlockJobInfo | None) -> Any:
    if info is None:
        return None
    return {
        "disk": info.disk or disk,
        "type": info.type,
        "cur": info.cur,
        "end": info.end,
        "bandwidth": info.bandwidth,
        "ready": info.ready,
        "fraction": info.fraction,
    }


@cli.command(
    "blockjob",
    epilog=example(
        f"{URI} blockjob test vda --info --json",
        f"{URI} blockjob test vda --bandwidth 50",
        f"{URI} blockjob test vda --pivot",
    ),
)
@click.argument("domain")
@click.argument("disk")
@click.option("--info", "action", flag_value="info", help="Show the job's progress (the default).")
@click.option("--abort", "action", flag_value="abort", help="Cancel the job (a copy stays on the source).")
@click.option("--pivot", "action", flag_value="pivot", help="Switch a ready copy (or active commit) over.")
@click.option("--async", "async_", is_flag=True, help="With --abort/--pivot: return without waiting for the end.")
@click.option(
    "--bandwidth",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Set the job's bandwidth limit in MiB/s (bytes/s with --bytes); 0 = unlimited.",
)
@_bytes_option
@json_option
@pass_state
def blockjob(
    state: CliState,
    domain: str,
    disk: str,
    action: str | None,
    async_: bool,
    bandwidth: int | None,
    in_bytes: bool,
    as_json: bool,
) -> None:
    """Show, re-limit, abort or pivot the block job on DISK."""
    from .._flags import BlockJobAbortFlags

    if bandwidth is not None and action is not None:
        raise click.UsageError("--bandwidth cannot be combined with --info, --abort or --pivot")
    if as_json and (action not in (None, "info") or bandwidth is not None):
        raise click.UsageError("--json applies to --info only")
    dom = state.domain(domain)
    if bandwidth is not None:
        flags = BlockJobSetSpeedFlags.BANDWIDTH_BYTES if in_bytes else BlockJobSetSpeedFlags(0)
        dom.block_job_set_speed(disk, bandwidth, flags)
        unit = "bytes/s" if in_bytes else "MiB/s"
        click.echo(
            f"Bandwidth of the block job on {disk} set to {bandwidth} {unit}" + (" (unlimited)" * (not bandwidth))
        )
        return
    if action in ("abort", "pivot"):
        abort_flags = BlockJobAbortFlags.ASYNC if async_ else BlockJobAbortFlags(0)
        if action == "pivot":
            abort_flags |= BlockJobAbortFlags.PIVOT
        dom.block_job_abort(disk, abort_flags)
        click.echo("Successfully pivoted" if action == "pivot" else "Block job aborted")
        return
    info = dom.block_job_info(disk)
    if as_json:
        emit_json(_job_json(disk, info))
        return
    if info is None:
        click.echo(f"No current block job for {disk}")
        return
    percent = 100 * info.cur // info.end if info.end > 0 else 100
    line = f"{JOB_LABELS.get(info.type, 'Block job')}: [{percent:3d} %]"
    if info.ready:
        line += " ready"
    if info.bandwidth:
        line += f"    Bandwidth limit: {info.bandwidth} bytes/s ({format_size(info.bandwidth)}/s)"
    click.echo(line)
