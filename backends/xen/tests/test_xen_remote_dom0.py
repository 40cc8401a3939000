"""A second machine for real: the virtabs wheel installed in the Xen lab's dom0, reached over ``test+ssh://``.

The dom0 is another operating system instance (a Debian PV dom0 under Xen, nested in QEMU), with its own
``python3`` and file systems, reached only over ssh. The session fixture ``dom0_virtabs`` builds the
virtabs wheel from this checkout, copies it with its dependencies' wheels into the dom0 and installs them
in a venv there (``xen_helpers.install_in_dom0``); ``virtabs-remote`` then runs in the dom0 and serves a
file-backed test node kept in the dom0's file system. Nothing is shared with this machine: the node file
is written and read back through the lab's ssh (a door of the test's own), and its path does not exist here.

The contract kit over the same URI is ``test_xen_remote_dom0_contract.py``.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
import virtabs
from virtabs import DomainState
from virtabs.drivers._test_json import DEFAULT_NODE
from virtabs.inventory import collect
from xen_helpers import DOM0_HELPER, Lab, node_uri


@pytest.fixture
def dom0_node(xenlab: Lab, dom0_virtabs: str) -> str:
    """A fresh test node file in the dom0 (written over ssh), its path there."""
    path = f"/root/virtabs-nodes/node-{uuid.uuid4().hex[:12]}.json"
    assert not os.path.exists(path)  # a path this machine does not have: no shared file system
    xenlab.ssh(f"mkdir -p /root/virtabs-nodes && cat > {path}", input=json.dumps(DEFAULT_NODE))
    return path


def read_node(lab: Lab, path: str) -> dict[str, object]:
    """The node file as the dom0 has it (the test's own ssh door, not the connection under test)."""
    data = json.loads(lab.ssh(f"cat {path}").stdout)
    assert isinstance(data, dict)
    return data


def test_the_helper_is_the_installed_wheel(xenlab: Lab, dom0_virtabs: str) -> None:
    """The dom0 runs virtabs from the wheel: its venv's python imports it from there, not from this checkout."""
    assert dom0_virtabs == DOM0_HELPER
    out = xenlab.ssh(f"{DOM0_HELPER.rsplit('/', 2)[0]}/bin/python3 -c 'import virtabs; print(virtabs.__file__)'")
    assert out.stdout.strip().startswith("/opt/virtabs/lib/python3.11/site-packages/virtabs/")


def test_inventory_of_the_dom0_over_test_ssh(xenlab: Lab, dom0_node: str) -> None:
    """An inventory of two hosts in the dom0: the test node over the helper, and Xen itself over xen+ssh."""
    remote = node_uri(xenlab, dom0_node)
    inventory = collect([remote, xenlab.uri()], timeout=600)
    by_driver = {host.driver: host for host in inventory.hosts}
    node_host, xen_host = by_driver["test"], by_driver["xen"]
    assert node_host.error is None and xen_host.error is None, (node_host.error, xen_host.error)
    node = read_node(xenlab, dom0_node)
    assert node_host.hostname == node["host"]["hostname"]  # type: ignore[index]
    assert sorted(d.name for d in node_host.domains) == sorted(d["name"] for d in node["domains"])  # type: ignore[attr-defined,index]
    assert xen_host.hostname == "xenlab-dom0" and xen_host.hypervisor == "xen"


def test_changes_land_in_the_dom0s_file(xenlab: Lab, dom0_node: str) -> None:
    """A define and a start through the helper are written to the node file in the dom0."""
    name = f"remote-{uuid.uuid4().hex[:8]}"
    with virtabs.open(node_uri(xenlab, dom0_node)) as conn:
        assert conn.driver_name == "test"
        dom = conn.define_domain(virtabs.DomainSpec(name=name, memory_bytes=64 << 20, vcpus=1))
        dom.start()
        assert dom.state() == DomainState.RUNNING
    node = read_node(xenlab, dom0_node)
    [written] = [d for d in node["domains"] if d["name"] == name]  # type: ignore[attr-defined]
    assert written["uuid"] == dom.uuid
