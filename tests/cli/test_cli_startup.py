"""A CLI that starts fast (issue 17 part 3): lazy ``import virtabs`` and lazily imported subcommands."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click

import virtabs
from virtabs.cli import COMMANDS, cli
from virtabs.cli._main import LAZY_COMMANDS

HEAVY = ("click", "rich", "stevedore", "yaml", "attrs", "virtabs_")
TOPIC_MODULES = sorted({module for _, module, _ in COMMANDS} | {"virtabs.cli._inventory"})


def _imported(code: str) -> set[str]:
    """Modules imported by ``python -X importtime -c CODE`` (read from its import-time log)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert names, proc.stderr
    return names


def _modules_after(code: str) -> set[str]:
    """``sys.modules`` after running CODE in a fresh interpreter (also sees importlib-driven imports,
    which ``-X importtime`` does not log)."""
    script = code + "\nimport sys as _s\nprint('\\n'.join(_s.modules))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_import_virtabs_imports_no_cli_library_nor_backend() -> None:
    names = _imported("import virtabs")
    heavy = sorted(n for n in names if n.split(".")[0] in ("click", "rich", "stevedore") or n.startswith("virtabs_"))
    assert heavy == []
    assert "virtabs._api" not in names  # lazy (PEP 562): nothing but the package itself


def test_a_public_name_imports_its_module_on_first_use() -> None:
    names = _modules_after("import virtabs; virtabs.DomainState")
    assert "virtabs._flags" in names and "virtabs._api" not in names
    assert set(virtabs.__all__) <= set(dir(virtabs))
    for name in virtabs.__all__:
        assert getattr(virtabs, name) is not None
    from virtabs import BlockJobType, open  # from-imports go through __getattr__ too

    assert callable(open) and BlockJobType.COPY.name == "COPY"


def test_help_imports_no_subcommand_module() -> None:
    names = _modules_after(
        "import sys; sys.argv = ['virtabs', '--help']\nfrom virtabs.cli import main\ntry: main()\nexcept SystemExit: pass"
    )
    assert sorted(set(TOPIC_MODULES) & names) == []
    assert not any(n.split(".")[0] in ("rich", "stevedore", "yaml") for n in names)


def test_a_command_imports_only_its_own_module() -> None:
    names = _modules_after(
        "import sys; sys.argv = ['virtabs', 'list', '--help']\nfrom virtabs.cli import main\ntry: main()\nexcept SystemExit: pass"
    )
    assert "virtabs.cli._domains" in names
    assert sorted(set(TOPIC_MODULES) & names) == ["virtabs.cli._domains"]


def test_the_lazy_table_matches_the_commands() -> None:
    """COMMANDS lists every command of the topic modules, with the short help the command itself gives."""
    for module in TOPIC_MODULES:
        importlib.import_module(module)
    ctx = click.Context(cli)
    cli.get_command(ctx, "inventory")  # a single-command module: added to the group when loaded
    defined = {name: cmd.get_short_help_str(200) for name, cmd in cli.commands.items()}
    table = {name: help_text for name, _, help_text in COMMANDS}
    table["inventory"] = LAZY_COMMANDS["inventory"].short_help
    assert table == defined
    for name, module, _ in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.callback is not None
        assert command.callback.__module__ == module, name


def test_global_short_options_mean_the_same_when_spelled_long_for_click() -> None:
    """-c and -r reach click as --connect and --readonly (no difflib): same meaning, before or after the command;
    a -c without its value is still reported as typed."""
    from click.testing import CliRunner

    runner = CliRunner()
    refused = runner.invoke(cli, ["-r", "-c", "test:///default", "suspend", "test"], prog_name="virtabs")
    assert refused.exit_code == 1 and "read-only" in refused.output and "OPERATION_DENIED" in refused.output
    refused = runner.invoke(cli, ["suspend", "test", "-c", "test:///default", "-r"], prog_name="virtabs")
    assert refused.exit_code == 1 and "read-only" in refused.output
    listed = runner.invoke(cli, ["-c", "test:///default", "list", "--json"], prog_name="virtabs")
    assert listed.exit_code == 0 and '"name": "test"' in listed.output
    missing = runner.invoke(cli, ["-c"], prog_name="virtabs")
    assert missing.exit_code == 2 and "Option '-c' requires an argument" in missing.output
