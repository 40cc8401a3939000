"""``virtabs inventory``: every domain, disk, NIC and pool of many hosts, in one document.

The command is a standalone click command, :data:`inventory_command`; the
``virtabs`` group adds it (``cli.add_command(inventory_command)``). Inside the
group, the global ``-c URI`` is used when no URI is given on the command line,
and the global ``--timeout`` bounds each single call to a host (this command's
own ``--timeout`` bounds a host's whole collection).

Exit status: 0 every host was inventoried; 3 partial (some hosts failed, the
others are complete in the output); 1 every host failed; 2 usage error; 130
interrupted (nothing is written). With ``--diff``: 0 no differences, 1
differences, 2 usage error or unreadable file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .._errors import InvalidArgumentError
from ..inventory import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_IGNORE,
    DEFAULT_TIMEOUT,
    FORMATS,
    HostBlock,
    HostInventory,
    HostTarget,
    JsonlWriter,
    assemble,
    collect,
    collect_stream,
    dask_executor,
    diff,
    host_key,
    load_hosts_file,
    load_inventory,
    read_blocks,
    render,
    to_jsonl,
    to_table,
    write_atomic,
)
from ..inventory._model import utcnow

__all__ = ["inventory_command"]

EXIT_INTERRUPTED = 130

_SUFFIX_FORMATS = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".txt": "table",
    ".prom": "openmetrics",
}

_EPILOG = """\b
Examples:
  virtabs inventory                                   # the default URI (test:///default on a fresh install)
  virtabs inventory test:///default qemu:///session --format csv --output hosts.csv
  virtabs inventory --config hosts.toml --format json --output inv.json --timeout 30
  virtabs inventory --config hosts.yaml --format ansible > inventory.json
  virtabs inventory --format openmetrics --output /var/lib/node_exporter/virtabs.prom   # textfile collector
  virtabs inventory --config fleet.yaml --format jsonl --output estate.jsonl   # streamed, host by host
  virtabs inventory --config fleet.yaml --resume estate.jsonl.partial --output estate.jsonl
  virtabs inventory --config fleet.yaml --dask tcp://scheduler:8786 --output estate.jsonl
  virtabs inventory --diff yesterday.json today.json

\b
Exit status: 0 all hosts ok, 3 partial (some hosts failed; the others are
complete), 1 all hosts failed, 2 usage error, 130 interrupted (nothing written;
with --format jsonl --output FILE, the hosts done are in FILE.partial).
With --diff: 0 no differences, 1 differences, 2 usage error.
"""


def _pick_format(fmt: str | None, output: str | None, for_diff: bool) -> str:
    if fmt is not None:
        return fmt
    if output not in (None, "-"):
        guessed = _SUFFIX_FORMATS.get(Path(str(output)).suffix.lower())
        if guessed is not None and (not for_diff or guessed in ("json", "jsonl", "table")):
            return guessed
        return "json"
    return "table" if sys.stdout.isatty() else "json"


def _emit(text: str, output: str | None) -> None:
    if output in (None, "-"):
        click.echo(text, nl=False)
    else:
        try:
            write_atomic(str(output), text)
        except OSError as exc:
            raise click.FileError(str(output), hint=exc.strerror or str(exc)) from None


class _Progress:
    """Hosts done / failed and domains found, on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.domains = 0
        self._progress: Any = None
        self._task: Any = None
        self._enabled = enabled

    def _describe(self) -> str:
        return f"hosts {self.done}/{self.total}  failed {self.failed}  domains {self.domains}"

    @contextlib.contextmanager
    def running(self) -> Iterator[_Progress]:
        """Show the display while the block runs (a no-op when disabled)."""
        if not self._enabled:
            yield self
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("inventory"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        with self._progress:
            self._task = self._progress.add_task(self._describe(), total=self.total)
            yield self

    def host_done(self, host: HostInventory) -> None:
        """Count one finished host."""
        self.count(host.ok, len(host.domains))

    def count(self, ok: bool, domains: int) -> None:
        """Count one host that is done (collected now, or taken from --resume)."""
        self.done += 1
        self.domains += domains
        if not ok:
            self.failed += 1
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, description=self._describe())


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the block runs (so that nothing half-done is left behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _warn_failures(failures: list[tuple[str, dict[str, Any]]], hosts: int, domains: int) -> None:
    for uri, err in failures:
        click.echo(f"warning: host {uri}: {err['message']} [code {err['code']} {err['code_name']}]", err=True)
    if failures and len(failures) == hosts:
        click.echo(f"virtabs inventory: all {hosts} hosts failed", err=True)
    elif failures:
        click.echo(
            f"virtabs inventory: {len(failures)} of {hosts} hosts failed; "
            f"{domains} domains from the other {hosts - len(failures)}",
            err=True,
        )


def _exit_status(hosts: int, failed: int) -> int:
    if failed == 0:
        return 0
    return 1 if failed == hosts else 3


def _read_block(path: str, block: HostBlock) -> str:
    with open(path, "rb") as fh:
        fh.seek(block.start)
        return fh.read(block.end - block.start).decode("utf-8")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _stream_jsonl(
    targets: list[HostTarget],
    reused: list[tuple[HostTarget, HostBlock]],
    resume: str | None,
    output: str | None,
    progress: _Progress,
    options: dict[str, Any],
) -> tuple[int, int, int, list[tuple[str, dict[str, Any]]]]:
    """Stream every host to ``output`` (stdout, or FILE.partial renamed to FILE once complete).

    The hosts taken from ``resume`` are written first. When ``resume`` is FILE.partial itself, they go to
    a new file that replaces it atomically before anything is collected, so an interruption at any moment
    leaves every host done in FILE.partial.
    """
    to_file = output not in (None, "-")
    spool = f"{output}.partial"
    failures: list[tuple[str, dict[str, Any]]] = []
    in_place = to_file and resume is not None and _same_file(resume, spool)
    out: Any = open(f"{spool}.new" if in_place else spool, "w", encoding="utf-8") if to_file else sys.stdout  # noqa: SIM115
    try:
        writer = JsonlWriter(out, utcnow())
        for _target, block in reused:
            assert resume is not None
            writer.copy_block(_read_block(resume, block), block.ok, block.domains)
            progress.count(block.ok, block.domains)
        if in_place:
            os.fsync(out.fileno())
            out.close()
            os.replace(f"{spool}.new", spool)  # FILE.partial: now exactly the hosts kept, in the order given
            out = writer.out = open(spool, "a", encoding="utf-8")  # noqa: SIM115
        for _index, host in collect_stream(targets, **options) if targets else ():  # [] would mean the default URI
            writer.write_host(host)
            progress.host_done(host)
            if host.error is not None:
                failures.append((host.uri, host.error.to_dict()))
        if to_file:
            out.flush()
            os.fsync(out.fileno())
            out.close()
            with contextlib.suppress(OSError):
                os.chmod(spool, os.stat(str(output)).st_mode & 0o7777)  # a replaced file keeps its bits
            os.replace(spool, str(output))
    finally:
        if to_file and not out.closed:
            out.close()
    return writer.hosts, writer.failed, writer.domains, failures


def _run_diff(paths: tuple[str, str], fmt: str | None, output: str | None, ignore: tuple[str, ...]) -> int:
    chosen = _pick_format(fmt, output, for_diff=True)
    if chosen not in ("json", "jsonl", "table"):
        raise click.UsageError(f"--diff writes json, jsonl or table, not {chosen}")
    try:
        old, new = load_inventory(paths[0]), load_inventory(paths[1])
    except InvalidArgumentError as exc:
        raise click.UsageError(exc.message) from None
    result = diff(old, new, ignore=(*DEFAULT_IGNORE, *ignore))
    if chosen == "json":
        text = result.to_json()
    elif chosen == "jsonl":
        text = result.to_jsonl()
    else:
        text = result.to_text()
    _emit(text, output)
    return 1 if result.has_changes else 0


@click.command(
    "inventory",
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument("uris", nargs=-1, metavar="[URI]...")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Host list, TOML or YAML (uri, optional name and timeout per host). No credentials in it: "
    "they come from the virtabs config file or VIRTABS_USERNAME/VIRTABS_PASSWORD.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format (default: from --output's suffix, else table on a terminal, json otherwise).",
)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Write to FILE (atomically: the old file stays intact until the new one is complete); '-' = stdout.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help=f"Hosts collected at the same time (default {DEFAULT_CONCURRENCY}).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help=f"Seconds one host's whole collection may take; past it the host fails with code 68 "
    f"(default {DEFAULT_TIMEOUT:g}).",
)
@click.option("--no-pools", is_flag=True, help="Skip storage pools and volumes.")
@click.option(
    "--resume",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PREVIOUS.jsonl",
    help="Take the hosts inventoried in PREVIOUS.jsonl (an earlier --format jsonl run, complete or "
    "interrupted) from it and collect only the missing and failed ones; the output is the merged estate.",
)
@click.option(
    "--dask",
    default=None,
    metavar="ADDRESS",
    help="Run the collection on a Dask cluster: a scheduler address (tcp://host:8786) or local:N "
    "(N local worker processes). Needs pip install 'virtabs[dask]'.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help=f"With --dask: hosts per task (default {DEFAULT_BATCH_SIZE}).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress display and no warnings on stderr.")
@click.option(
    "--diff",
    "diff_files",
    nargs=2,
    type=click.Path(dir_okay=False),
    default=None,
    metavar="OLD NEW",
    help="Compare two inventories (--format json) instead of collecting: appeared, vanished, changed.",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="FIELD",
    help="With --diff: also ignore this domain field (glob over dotted paths, e.g. 'disks.*.allocation_bytes').",
)
@click.pass_context
def inventory_command(
    ctx: click.Context,
    uris: tuple[str, ...],
    config_file: str | None,
    fmt: str | None,
    output: str | None,
    concurrency: int | None,
    timeout: float | None,
    no_pools: bool,
    resume: str | None,
    dask: str | None,
    batch_size: int | None,
    quiet: bool,
    diff_files: tuple[str, str] | None,
    ignore: tuple[str, ...],
) -> None:
    """Inventory every domain, disk, NIC, pool and network of the given hosts (schema v3).

    Hosts are read in parallel, each within its own --timeout; a host that fails
    is reported in the output with its error code and message, and every other
    host is still complete. Without a URI: the global -c URI, else the default
    URI. On a terminal a progress display runs on stderr.
    """
    if output not in (None, "-") and not Path(str(output)).resolve().parent.is_dir():
        raise click.BadParameter(f"the directory of {output} does not exist", param_hint="--output")
    if diff_files is not None:
        if uris or config_file:
            raise click.UsageError("--diff compares two files; give no URI and no --config with it")
        ctx.exit(_run_diff(diff_files, fmt, output, ignore))
    if ignore:
        raise click.UsageError("--ignore only applies to --diff")
    targets: list[HostTarget] = [HostTarget(uri=u) for u in uris]
    settings: dict[str, Any] = {}
    if config_file is not None:
        try:
            from_file, settings = load_hosts_file(config_file)
        except InvalidArgumentError as exc:
            raise click.UsageError(exc.message) from None
        targets.extend(from_file)
    if not targets:
        global_uri = getattr(ctx.find_root().obj, "uri", None)  # the global -c URI
        targets = [HostTarget(uri=global_uri if isinstance(global_uri, str) else None)]
    chosen = _pick_format(fmt, output, for_diff=False)
    state = ctx.find_root().obj
    call_timeout = getattr(state, "timeout", None)  # the global --timeout: each single call to a host
    if batch_size is not None and dask is None:
        raise click.UsageError("--batch-size only applies to --dask")
    reused: list[tuple[HostTarget, HostBlock]] = []
    if resume is not None:
        try:
            blocks, _complete = read_blocks(resume)
        except InvalidArgumentError as exc:
            raise click.UsageError(exc.message) from None
        todo = []
        for target in targets:
            block = blocks.get(host_key(target))
            if block is not None and block.ok:
                reused.append((target, block))
            else:
                todo.append(target)
        del blocks
    else:
        todo = targets
    progress = _Progress(len(targets), enabled=not quiet and sys.stderr.isatty())
    options: dict[str, Any] = {
        "concurrency": concurrency or settings.get("concurrency") or DEFAULT_CONCURRENCY,
        "timeout": timeout or settings.get("timeout") or DEFAULT_TIMEOUT,
        "call_timeout": call_timeout if isinstance(call_timeout, int | float) else None,
        "pools": not no_pools,
        "batch_size": batch_size or DEFAULT_BATCH_SIZE,
    }
    phase = "collecting"
    to_file = output not in (None, "-")
    try:
        with _sigterm_as_interrupt(), _executor(dask) as executor:
            options["executor"] = executor
            if chosen == "jsonl":
                with progress.running():
                    hosts, failed, domains, failures = (
                        _stream_jsonl(todo, reused, resume, output, progress, options)
                        if todo or reused
                        else (0, 0, 0, [])
                    )
                if not quiet:
                    _warn_failures(failures, hosts, domains)
                ctx.exit(_exit_status(hosts, failed))
            with progress.running():
                result = collect(todo, on_host_done=progress.host_done, **options) if todo else None
            if reused:  # the merged estate: the saved hosts and the new ones, in the order given
                assert resume is not None
                lines = [_read_block(resume, block) for _target, block in reused]
                if result is not None:
                    lines.append(to_jsonl(result))
                document: Any = assemble("".join(lines).splitlines(keepends=True), targets)
            else:
                document = result
        with _sigterm_as_interrupt():
            if chosen == "table" and output in (None, "-"):
                tty = sys.stdout.isatty()
                text = to_table(document, width=shutil.get_terminal_size().columns if tty else None, color=tty)
            else:  # json: indented for a terminal, compact (several times faster) for files and pipes
                text = render(document, chosen, pretty=output in (None, "-") and sys.stdout.isatty())
            phase = "writing"
            _emit(text, output)
    except KeyboardInterrupt:
        if chosen == "jsonl" and to_file:
            kept = (
                f"the output file was not changed; the hosts done are in {output}.partial "
                f"(--resume {output}.partial collects the rest)"
            )
        else:
            kept = "the output file was not changed" if to_file else "nothing more was written"
        click.echo(f"\nvirtabs inventory: interrupted while {phase}; {kept}", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    except InvalidArgumentError as exc:
        raise click.UsageError(exc.message) from None
    doc = document if isinstance(document, dict) else document.to_dict()
    if not quiet:
        failures = [(h["uri"], h["error"]) for h in doc["hosts"] if h["error"] is not None]
        _warn_failures(failures, doc["summary"]["hosts"], doc["summary"]["domains"])
    ctx.exit(_exit_status(doc["summary"]["hosts"], doc["summary"]["hosts_failed"]))


@contextlib.contextmanager
def _executor(dask: str | None) -> Iterator[concurrent.futures.Executor | None]:
    """The Dask executor of ``--dask`` (started and stopped here), or None: this machine's threads."""
    if dask is None:
        yield None
        return
    with dask_executor(dask) as executor:
        yield executor
