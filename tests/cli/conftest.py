"""Fixtures of the CLI tests: a clean ``test:///default`` node and an isolated environment."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from virtabs.cli import cli
from virtabs.drivers.test import reset_default_node

URI = "test:///default"


@pytest.fixture(autouse=True)
def _clean_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the pristine default node, without the user's config or env."""
    monkeypatch.setenv("VIRTABS_CONFIG", str(tmp_path / "no-config.toml"))
    for var in ("VIRTABS_DEFAULT_URI", "VIRTABS_USERNAME", "VIRTABS_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    reset_default_node()
    yield
    reset_default_node()


@pytest.fixture
def run() -> Callable[..., Result]:
    """Run ``virtabs -c test:///default ARGS...`` in-process through click's CliRunner."""
    runner = CliRunner()

    def invoke(*args: str, uri: str | None = URI, input: str | None = None) -> Result:
        argv = (["-c", uri] if uri else []) + list(args)
        return runner.invoke(cli, argv, input=input, prog_name="virtabs")

    return invoke


@pytest.fixture
def run_json(run: Callable[..., Result]) -> Callable[..., Any]:
    """Run a read command with ``--json``, assert success, and return the parsed output."""

    def invoke(*args: str) -> Any:
        result = run(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return invoke


@pytest.fixture
def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """The environment for ``python -m virtabs.cli`` subprocesses (no user config, no colours forced)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_") and k not in ("FORCE_COLOR",)}
    env["VIRTABS_CONFIG"] = str(tmp_path / "no-config.toml")
    return env
