"""The ``virtabs`` click group, its global options, and the error handling every command shares.

Other modules add subcommands to :data:`cli` (``@cli.command(...)``); see
:mod:`virtabs.cli` for the list. A command gets the connection through
:class:`CliState`::

    @cli.command("hello", epilog=example("virtabs hello test"))
    @click.argument("domain")
    @json_option
    @pass_state
    def hello(state: CliState, domain: str, as_json: bool) -> None:
        '''Say hello to a domain.'''
        dom = state.domain(domain)
        ...

Errors: any :class:`~virtabs.VirtabsError` becomes one line on stderr,
``error: <message> [code <N> <NAME>]``, and exit status 1; usage errors exit 2
(click's default); Ctrl-C exits 130. A traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from .._api import Connection, Domain, StoragePool

__all__ = [
    "LAZY_COMMANDS",
    "CliState",
    "LazyCommand",
    "cli",
    "example",
    "json_option",
    "main",
    "pass_state",
    "register_lazy_command",
]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

_URI_PASSWORD_PATTERN = r"^[^:/?#]+://[^/@:?#]*:([^/@?#]+)@"
# logging, traceback and re are imported where they are used: `virtabs --help` does not need them.


def example(*lines: str) -> str:
    """An epilog showing example command lines (kept verbatim by click's help formatter)."""
    title = "Example:" if len(lines) == 1 else "Examples:"
    return "\b\n" + title + "\n" + "\n".join(f"  {line}" for line in lines)


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print machine-readable JSON to stdout (sizes in bytes, enums as lower-case names).",
)
"""The ``--json`` flag of every read command (the parameter is called ``as_json``)."""


class CliState:
    """What the global options say, and the connection, opened on first use and closed at exit."""

    def __init__(
        self, uri: str | None = None, timeout: float | None = None, readonly: bool = False, debug: bool = False
    ) -> None:
        self.uri = uri
        self.timeout = timeout
        self.readonly = readonly
        self.debug = debug
        self._conn: Connection | None = None

    def connect(self) -> Connection:
        """The connection to ``-c URI`` (or the default URI), opened once."""
        if self._conn is None:
            from .._api import open as open_connection

            self._conn = open_connection(self.uri, readonly=self.readonly, timeout=self.timeout)
            click.get_current_context().find_root().call_on_close(self.close)
        return self._conn

    def domain(self, name_or_uuid: str) -> Domain:
        """Look up a domain by name or UUID (NoDomainError, code 42, when there is none)."""
        return self.connect().lookup_domain(name_or_uuid)

    def pool(self, name: str) -> StoragePool:
        """Look up a storage pool by name."""
        return self.connect().lookup_storage_pool(name)

    def close(self) -> None:
        """Close the connection if one was opened; errors while closing are only logged."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                import logging

                logging.getLogger("virtabs.cli").debug("closing the connection failed", exc_info=True)

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never be printed (a password someone put in ``-c``)."""
        if not self.uri or "@" not in self.uri:
            return ()
        import re

        match = re.match(_URI_PASSWORD_PATTERN, self.uri)
        return (match.group(1),) if match else ()


pass_state = click.make_pass_decorator(CliState, ensure=True)
"""Decorator passing the :class:`CliState` as a command's first argument."""


def _one_line(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())


def _report(ctx: click.Context, exc: BaseException) -> None:
    state = ctx.find_object(CliState)
    debug = bool(state and state.debug)
    secrets = state.secrets() if state else ()
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    from .._errors import VirtabsError  # here: `virtabs --help` does not load the error tree

    if isinstance(exc, VirtabsError):
        line = f"error: {_one_line(exc.message, secrets)} [code {int(exc.code)} {exc.code.name}]"
    elif isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        line = f"error: {_one_line(exc.strerror + where, secrets)}"
    else:
        hint = "" if debug else " (run with --debug for a traceback)"
        line = f"error: internal error: {type(exc).__name__}: {_one_line(str(exc), secrets)}{hint}"
    click.echo(line, err=True)


class LazyCommand:
    """A subcommand imported only when it runs (or its own ``--help`` is asked for).

    ``virtabs --help`` lists it with :attr:`short_help` without importing it, so
    heavy command modules do not slow every invocation down. A module that is not
    installed (or not written yet) simply does not show up.
    """

    def __init__(self, module: str, attribute: str | None, short_help: str) -> None:
        self.module = module
        self.attribute = attribute
        self.short_help = short_help

    def available(self) -> bool:
        """Whether the module exists (found without importing it; looked up once per module)."""
        found = _MODULE_FOUND.get(self.module)
        if found is None:
            import importlib.util

            try:
                found = importlib.util.find_spec(self.module) is not None
            except (ImportError, ValueError):
                found = False
            _MODULE_FOUND[self.module] = found
        return found

    def load(self) -> click.Command | None:
        """Import the module and return the command (None when the module does not exist)."""
        import importlib

        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name == self.module:
                return None
            raise
        if self.attribute is None:  # the module registered its commands on the group when imported
            return None
        command = getattr(module, self.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.module}.{self.attribute} is not a click command")
        return command


_MODULE_FOUND: dict[str, bool] = {}
"""Module name -> whether it exists (``virtabs --help`` asks once per topic module, not once per command)."""

LAZY_COMMANDS: dict[str, LazyCommand] = {}
"""Subcommands registered with :func:`register_lazy_command`, by name."""


def register_lazy_command(name: str, module: str, attribute: str | None, short_help: str) -> None:
    """Add ``virtabs NAME``: the click command ``module.attribute``, imported only when used
    (``attribute=None``: importing ``module`` registers the command on the group itself)."""
    LAZY_COMMANDS[name] = LazyCommand(module, attribute, short_help)


_GLOBAL_VALUED = frozenset({"-c", "--connect", "--timeout"})
"""Global options taking a value, accepted before or after the subcommand."""
_GLOBAL_FLAGS = frozenset({"-r", "--readonly", "--debug"})
"""Global flags, accepted before or after the subcommand."""
_SPELLED_LONG = {"-c": "--connect", "-r": "--readonly"}
"""Global short options handed to click under their long names (same meaning): click's parser tries every
single-dash option as a long one first, and that failed attempt imports difflib (to suggest a name) on
every run that uses ``-c``."""


class VirtabsGroup(click.Group):
    """A click group that lists commands in the order they were added, loads lazy commands on use,
    and turns errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Commands in registration order (grouped by topic), not alphabetically; then lazy ones."""
        names = [n for n, lazy in LAZY_COMMANDS.items() if n in self.commands or lazy.available()]
        names += [n for n in self.commands if n not in LAZY_COMMANDS]
        return names

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command called ``cmd_name``, importing its module on first use.

        A topic module registers all its commands on import (``@cli.command``); a module holding
        one command object (``attribute``) gets it added here.
        """
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            command = LAZY_COMMANDS[cmd_name].load()
            registered = self.commands.get(cmd_name)
            if registered is not None:
                command = registered
            elif command is not None:
                self.add_command(command, cmd_name)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the global options, also where they follow the subcommand (``virtabs list --debug``)."""
        return super().parse_args(ctx, self._hoist_globals(ctx, list(args)))

    def _hoist_globals(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Move global options given after the subcommand in front of it.

        An option the subcommand defines itself stays its own (``blockcopy ... --timeout 60`` is the copy's
        wait timeout, not the per-call timeout); everything after ``--`` is left alone.
        """
        lead: list[str] = []  # the global options before the subcommand, short ones spelled long
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                return lead + args[i:]
            if arg in _GLOBAL_VALUED and i + 1 < len(args):
                lead += [_SPELLED_LONG.get(arg, arg), args[i + 1]]
                i += 2
            elif arg.startswith("-"):
                lead.append(arg if arg == "-c" else _SPELLED_LONG.get(arg, arg))  # a -c without value: as typed
                i += 1
            else:
                break
        if i >= len(args):
            return lead
        args = lead + args[i:]
        i = len(lead)
        command = self.get_command(ctx, args[i])
        if command is None or isinstance(command, click.Group):
            return args
        own: dict[str, bool] = {}  # option string -> takes a value
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in (*param.opts, *param.secondary_opts):
                    own[opt] = not (param.is_flag or param.count)
        head, rest = args[: i + 1], args[i + 1 :]
        hoisted: list[str] = []
        kept: list[str] = []
        j = 0
        while j < len(rest):
            arg = rest[j]
            name = arg.split("=", 1)[0] if arg.startswith("--") else arg
            if arg == "--":
                kept += rest[j:]
                break
            if name in own:
                takes_value = own[name] and "=" not in arg
                kept += rest[j : j + (2 if takes_value else 1)]
                j += 2 if takes_value else 1
            elif name in _GLOBAL_VALUED and "=" not in arg and j + 1 < len(rest):
                hoisted += [_SPELLED_LONG.get(name, name), rest[j + 1]]
                j += 2
            elif name in _GLOBAL_VALUED or name in _GLOBAL_FLAGS:
                hoisted.append(arg if name in _GLOBAL_VALUED else _SPELLED_LONG.get(arg, arg))
                j += 1
            else:
                kept.append(arg)
                j += 1
        return hoisted + head + kept

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``virtabs --help``; lazy commands show their short help unimported."""
        entries: list[tuple[str, click.Command | str]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                entries.append((name, LAZY_COMMANDS[name].short_help))
            elif not command.hidden:
                entries.append((name, command))
        if not entries:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in entries)
        rows = [(name, c if isinstance(c, str) else c.get_short_help_str(limit)) for name, c in entries]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; VirtabsError and unexpected errors exit 1 with one line, Ctrl-C exits 130.

        SIGTERM is treated as Ctrl-C while a command runs, so a waiting block copy is aborted (or the
        CLI says what it leaves running) instead of the process vanishing mid-way.
        """
        try:
            with _sigterm_as_interrupt():
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:
            _interrupted(exc)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            _quiet_broken_pipe()
            ctx.exit(EXIT_ERROR)
        except Exception as exc:
            _report(ctx, exc)
            ctx.exit(EXIT_ERROR)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Raise KeyboardInterrupt on SIGTERM while the block runs (main thread only; restored after)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(exc: KeyboardInterrupt | None = None) -> None:
    detail = f"; {exc}" if exc is not None and str(exc) else ""
    lead = "\n" if sys.stderr.isatty() else ""  # end the line the terminal's ^C echo started
    click.echo(f"{lead}virtabs: interrupted{detail}", err=True)


def _quiet_broken_pipe() -> None:
    # stdout went away (``virtabs list | head``): stop writing to it, and avoid a second error at exit
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _one_line_warnings(ctx: click.Context) -> None:
    """Print a driver's warning (QEMU falling back to TCG, say) as one ``warning: ...`` line on stderr,
    like errors; ``--debug`` keeps Python's own form, with where it was raised."""
    import warnings

    previous = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *_args: object, **_kwargs: object) -> None:
        text = " ".join(str(message).split()) or category.__name__
        click.echo(f"warning: {text[:2000]}", err=True)

    warnings.showwarning = show

    def undo() -> None:
        warnings.showwarning = previous

    ctx.call_on_close(undo)


def _setup_logging(ctx: click.Context) -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("virtabs")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    ctx.call_on_close(undo)


@click.group(
    cls=VirtabsGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=example(
        "virtabs -c test:///default list",
        "virtabs -c test:///default blockcopy test vda /tmp/copy.img --wait --pivot --verbose",
        "virtabs drivers",
    ),
)
@click.option(
    "-c",
    "--connect",
    "uri",
    metavar="URI",
    default=None,
    help="Hypervisor URI or alias (default: $VIRTABS_DEFAULT_URI, the config file's default_uri, then test:///default).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Seconds any single call to the hypervisor may take.",
)
@click.option("-r", "--readonly", is_flag=True, help="Open a read-only connection (write commands are refused).")
@click.option("--debug", is_flag=True, help="Log to stderr at DEBUG level and print tracebacks of errors.")
@click.version_option(package_name="virtabs", prog_name="virtabs", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, uri: str | None, timeout: float | None, readonly: bool, debug: bool) -> None:
    """virtabs: manage virtual machines on any hypervisor through one portable API.

    Every command talks to the hypervisor named by -c URI (libvirt's URI
    grammar: qemu:///session, esx://host/, test:///default). Read commands
    accept --json for machine-readable output.
    """
    ctx.obj = CliState(uri, timeout, readonly, debug)
    if debug:
        _setup_logging(ctx)
    else:
        _one_line_warnings(ctx)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: ``virtabs [OPTIONS] COMMAND [ARGS]``."""
    try:
        cli.main(args=argv, prog_name="virtabs")
    except KeyboardInterrupt:  # pragma: no cover - outside a command (while parsing arguments)
        _interrupted()
        sys.exit(EXIT_INTERRUPTED)
