"""Inventory polish of issue 15: NO_CONNECT for failed opens, URIs as given, distinct failed hosts, no wrap."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import virtabs.inventory as inv
from virtabs import ErrorCode
from virtabs.drivers.test import TestDriver
from virtabs.spi import URI, ConnectOptions, OperationFailedError


def test_an_operation_failed_while_opening_is_no_connect(
    make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TestDriver.__init__

    def refuse(self: TestDriver, uri: URI, options: ConnectOptions) -> None:
        if "refused" in str(uri):
            # what libvirt says when its daemon refuses the connection: VIR_ERR_OPERATION_FAILED (9)
            raise OperationFailedError("Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused")
        original(self, uri, options)

    monkeypatch.setattr(TestDriver, "__init__", refuse)
    ok, refused = make_node("ok"), make_node("refused")
    result = inv.collect([ok, refused])
    by_uri = {h.uri: h for h in result.hosts}
    assert by_uri[ok].error is None
    error = by_uri[refused].error
    assert error is not None and (error.code, error.code_name) == (int(ErrorCode.NO_CONNECT), "NO_CONNECT")
    assert "Connection refused" in error.message


def test_uris_are_echoed_as_given_and_redacted() -> None:
    assert inv.redact_uri(" qemu:///embed?root=/tmp/a%20b ") == "qemu:///embed?root=/tmp/a%20b"
    assert inv.redact_uri("test:///default?without=block.copy.pivot") == "test:///default?without=block.copy.pivot"
    shown = inv.redact_uri("esx://admin:s3cret@vc/?no_verify=1&api_token=t0k&password=p4ss")
    assert shown == "esx://admin:***@vc/?no_verify=1&api_token=***&password=***"


def test_an_ok_host_keeps_the_uri_text_the_user_gave(make_node: Callable[..., str]) -> None:
    uri = make_node("ok") + "?without=block.copy.pivot"  # the parser would re-encode the ',' and '.' free text
    result = inv.collect([uri])
    assert [h.uri for h in result.hosts] == [uri]


def test_hosts_unknown_counts_distinct_hosts(make_node: Callable[..., str]) -> None:
    base = inv.collect([make_node("a"), make_node("b"), make_node("c")]).to_dict()
    failed = copy.deepcopy(base)
    for host in failed["hosts"][:2]:
        host["domains"] = []
        host["error"] = {"code": 5, "code_name": "NO_CONNECT", "message": "down"}
    both = inv.diff(failed, failed)
    assert both.to_dict()["summary"]["hosts_unknown"] == 2
    assert {u["run"] for u in both.hosts_unknown} == {"both"}
    assert "failed in both runs" in both.to_text()
    one = inv.diff(base, failed)
    assert one.to_dict()["summary"]["hosts_unknown"] == 2
    assert {u["run"] for u in one.hosts_unknown} == {"new"}


def _long_inventory(make_node: Callable[..., str]) -> dict[str, Any]:
    doc = inv.collect([make_node("h")]).to_dict()
    doc["hosts"][0]["domains"][0]["name"] = "a-very-long-domain-name-" + "x" * 150
    doc["hosts"].append(
        {
            **doc["hosts"][0],
            "uri": "test:///down.json",
            "domains": [],
            "pools": None,
            "error": {"code": 5, "code_name": "NO_CONNECT", "message": "cannot connect: " + "y" * 200},
        }
    )
    return doc


def test_a_table_for_a_file_never_wraps(make_node: Callable[..., str]) -> None:
    doc = _long_inventory(make_node)
    text = inv.render(doc, "table")
    lines = text.splitlines()
    assert any(("x" * 150) in line for line in lines), "the long name was wrapped or cut"
    assert any(("y" * 200) in line for line in lines), "the long error was wrapped or cut"
    assert all(line == line.rstrip() for line in lines)
    narrow = inv.to_table(doc, width=80)
    assert all(len(line) <= 80 for line in narrow.splitlines())  # a terminal's width still wraps


def test_cli_table_piped_to_a_file_never_wraps(make_node: Callable[..., str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_")}
    long_name = "dom-" + "z" * 60  # with the host column, far beyond 80 columns
    uri = make_node("h", description={"domains": [{"name": long_name, "memory_bytes": 1 << 20, "vcpus": 1}]})
    out = tmp_path / "table.txt"
    with out.open("w") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "virtabs.cli", "inventory", uri, "--format", "table", "-q"],
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "COLUMNS": "80"},
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert any(long_name in line for line in out.read_text().splitlines())
