"""Issue 21.1: no spec text field may hold a control character, checked once in the core.

A newline in a NIC's network name (or an init argument in ``extra``) used to reach the LXC renderer raw
and add ``lxc.hook.pre-start = ...`` to the container's configuration, run as root by ``start()``. The
rule lives in the spec classes themselves, so no spec that holds one can exist, and no driver ever sees
it. Every text field of ``DomainSpec``, ``DiskSpec`` and ``NicSpec`` is walked here, with every C0
control and DEL, through the classes, ``DomainSpec.from_dict`` and ``Connection.define_domain``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import virtabs
from virtabs import DiskSpec, DomainSpec, NicSpec
from virtabs._errors import MAX_MESSAGE
from virtabs.drivers.test import reset_all_nodes

from .conftest import OpenRecording

CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f"]
MiB = 1 << 20

# Every text field of the three spec classes, as (class, field): a new str field added to a spec without
# its own rule makes test_every_text_field_is_listed fail.
TEXT_FIELDS = {
    DomainSpec: ("name", "os_type", "uuid"),
    DiskSpec: ("target", "path", "format", "bus"),
    NicSpec: ("network", "mac", "model"),
}


def _base(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "web",
        "memory_bytes": 64 * MiB,
        "vcpus": 1,
        "disks": [{"target": "vda", "path": "/var/lib/images/web.img"}],
        "nics": [{"network": "br0", "mac": "52:54:00:00:00:01"}],
    }
    spec.update(changes)
    return spec


def _hostile_specs(control: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """One definition per text field (and per place in ``extra``) carrying ``control``."""
    for field in TEXT_FIELDS[DomainSpec]:
        good = {"name": "web", "os_type": "hvm", "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f"}[field]
        yield f"domain.{field}", _base(**{field: good + control})
    for field in TEXT_FIELDS[DiskSpec]:
        disk = {"target": "vda", "path": "/var/lib/images/web.img", "format": "raw", "bus": "virtio"}
        disk[field] += control
        yield f"disk.{field}", _base(disks=[disk])
    for field in TEXT_FIELDS[NicSpec]:
        nic = {"network": "br0", "mac": "52:54:00:00:00:01", "model": "virtio"}
        nic[field] += control
        yield f"nic.{field}", _base(nics=[nic])
    yield "extra value", _base(extra={"lxc": {"init": ["/sbin/init", f"--x{control}lxc.hook.pre-start = /bin/id"]}})
    yield "extra string", _base(extra={"docker": {"image": f"busybox{control}"}})
    yield "extra key", _base(extra={"lxc": {"config": {f"lxc.x{control}": "1"}}})
    yield "extra nested", _base(extra={"qemu": {"args": [{"deep": [f"a{control}b"]}]}})


def test_every_text_field_is_listed() -> None:
    for cls, listed in TEXT_FIELDS.items():
        text = {
            a.name for a in attrs.fields(cls) if "str" in str(a.type) and a.name != "extra"
        }  # extra: its own cases below
        assert text == set(listed), f"{cls.__name__}: a text field without a control-character test"


@pytest.mark.parametrize("control", CONTROLS, ids=[f"0x{ord(c):02x}" for c in CONTROLS])
def test_every_text_field_refuses_every_control_character(control: str) -> None:
    for where, data in _hostile_specs(control):
        with pytest.raises(virtabs.InvalidArgumentError) as info:
            DomainSpec.from_dict(data)
        assert "\n" not in str(info.value), f"{where}: the message itself splits lines"


def test_the_injection_of_the_issue_never_reaches_a_driver(open_recording: OpenRecording) -> None:
    """The exploit from issue 21: a NIC network name that would add a hook line to an LXC config."""
    conn, driver = open_recording()
    hostile = "lxcbr0\nlxc.hook.pre-start = /bin/sh -c 'touch /tmp/pwned'"
    with pytest.raises(virtabs.InvalidArgumentError, match="control character"):
        conn.define_domain(_base(nics=[{"network": hostile}]))
    with pytest.raises(virtabs.InvalidArgumentError, match="control character"):
        conn.define_domain(_base(extra={"lxc": {"init": f"/sbin/init\n{hostile}"}}))
    assert "define_domain" not in driver.calls


def test_plain_text_still_passes() -> None:
    spec = DomainSpec.from_dict(
        _base(
            nics=[{"network": "VM Network", "model": "e1000"}],
            extra={"docker": {"image": "busybox:1.36", "env": {"GREETING": "hello world"}}},
        )
    )
    assert spec.nics[0].network == "VM Network"


def test_huge_values_are_quoted_with_a_bounded_prefix() -> None:
    """Issue 21.5: a 10 MB value gives a short one-line message that says how long it was."""
    huge = "x" * 10_000_000
    for data in (
        _base(name=huge),
        _base(nics=[{"network": huge + "\n"}]),
        _base(disks=[{"target": huge, "path": "/a"}]),
    ):
        with pytest.raises(virtabs.InvalidArgumentError) as info:
            DomainSpec.from_dict(data)
        assert len(str(info.value)) < 1_000
        assert "10000000" in str(info.value) or "10000001" in str(info.value)


def test_no_error_message_is_unbounded() -> None:
    err = virtabs.OperationFailedError("boom: " + "y" * 5_000_000)
    assert len(err.message) < MAX_MESSAGE + 100
    assert "5000006 characters" in err.message
    assert str(err) == err.message


@pytest.fixture(autouse=True)
def _fresh_nodes() -> Iterator[None]:
    reset_all_nodes()
    yield
    reset_all_nodes()
