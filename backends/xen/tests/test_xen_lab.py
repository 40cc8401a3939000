"""The lab itself and the generated xl.cfg files, checked by the real xl 4.17 in the lab dom0 (``xl -N create``)."""

from __future__ import annotations

import json

import pytest
from test_xen_cfg import SPECS, UUID
from xen_helpers import Lab

from virtabs_xen._cfg import render_config, xen_vdev
from virtabs_xen._xl import parse_info, parse_list

MiB = 1 << 20


def test_lab_runs_real_xen(xenlab: Lab) -> None:
    info = parse_info(xenlab.ssh("xl info").stdout)
    assert info["xen_version"].startswith("4.17")
    assert "pv" in info["virt_caps"].split()
    dom0 = parse_list(xenlab.ssh("xl list -v").stdout)[0]
    assert (dom0.name, dom0.domid) == ("Domain-0", 0)


def test_lab_checks_the_host_key(xenlab: Lab) -> None:
    """Clients of the lab check dom0's host key: the known_hosts file holds the key the dom0 presents."""
    known = xenlab.known_hosts.read_text().split()
    assert known[0] == f"[127.0.0.1]:{xenlab.port}" and known[1] == "ssh-ed25519"
    presented = xenlab.ssh("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()
    assert presented[:2] == known[1:3]


@pytest.mark.parametrize("case", sorted(SPECS))
def test_real_xl_dry_run_reads_generated_config(xenlab: Lab, case: str) -> None:
    """``xl -N create`` parses the file and prints the libxl domain config it would build."""
    spec = SPECS[case]
    proc = xenlab.ssh(
        f"f=$(mktemp /tmp/virtabs-{case}-XXXXXX.cfg) && cat > $f && xl -N create $f; rc=$?; rm -f $f; exit $rc",
        input=render_config(spec, UUID),
    )
    config = json.loads(proc.stdout)
    assert config["c_info"]["name"] == spec.name
    assert config["c_info"]["uuid"] == UUID
    assert config["c_info"]["type"] == spec.extra.get("xen", {}).get("type", "pv" if spec.os_type == "xen" else "hvm")
    assert config["b_info"]["target_memkb"] == -(-spec.memory_bytes // MiB) * 1024
    assert len(config["b_info"]["avail_vcpus"]) == spec.vcpus
    disks = config.get("disks", [])
    assert [(d["pdev_path"], d["vdev"], d.get("readwrite", 0) == 1) for d in disks] == [
        (d.path, xen_vdev(d.target), not d.readonly) for d in spec.disks
    ]
    nics = config.get("nics", [])
    assert [n.get("mac") for n in nics] == [n.mac for n in spec.nics]
    assert [n.get("bridge", "default") for n in nics] == [n.network for n in spec.nics]
