"""Issue 21.1 on libvirt: hostile values in every text field, read back from libvirt's own XML.

The domain XML is built with ElementTree, which escapes markup in text and attributes; a character XML
cannot hold at all is refused. Each definition goes through the driver into libvirt (its ``test``
driver, the backend's default engine), and the XML libvirt returns (``virDomainGetXMLDesc``) holds
exactly the intended values: no element or attribute was added by a value.
"""

from __future__ import annotations

import os
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import virtabs
from virtabs import DiskSpec, DomainSpec, NicSpec
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER

from virtabs_libvirt import _xml

MiB = 1 << 20
IDS = [f"{i}:{f[:12]!r}" for i, f in enumerate(HOSTILE_FRAGMENTS)]
URI = "libvirt+test:///default"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[virtabs.Connection]:
    """A connection whose file disks may lie in ``tmp_path`` (the URI's ``path_root``) and whose block devices are
    volumes of a logical pool of the test driver (``/dev/<pool>/<volume>``)."""
    with virtabs.open(f"{URI}?path_root={tmp_path}") as c:
        yield c


@pytest.fixture
def block_pool(conn: virtabs.Connection) -> Iterator[Any]:
    """A logical pool of libvirt's test driver (it simulates one: a volume's path is ``<target>/<name>``)."""
    lv = conn._driver._conn  # type: ignore[attr-defined]
    name = f"vg{uuid.uuid4().hex[:8]}"
    xml = f"<pool type='logical'><name>{name}</name><source><name>{name}</name></source><target><path>/dev/{name}</path></target></pool>"
    pool = lv.storagePoolCreateXML(xml, 0)
    yield pool
    for vol in pool.listAllVolumes(0):
        vol.delete(0)
    pool.destroy()


def _libvirt_xml(conn: virtabs.Connection, name: str) -> ET.Element:
    raw = conn._driver._conn.lookupByName(name).XMLDesc(0)
    return ET.fromstring(raw)


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=IDS)
def test_libvirt_reads_back_every_hostile_value(
    conn: virtabs.Connection, block_pool: Any, tmp_path: Path, fragment: str
) -> None:
    name = f"x-+y.z_{HOSTILE_FRAGMENTS.index(fragment)}"
    escaped = ET.Element("name")
    escaped.text = fragment
    device = block_pool.createXML(
        f"<volume>{ET.tostring(escaped, encoding='unicode')}<capacity>1</capacity></volume>", 0
    )
    spec = DomainSpec(
        name=name,
        memory_bytes=64 * MiB,
        vcpus=1,
        disks=(
            DiskSpec("vda", f"{tmp_path}/{fragment}/a.img"),
            DiskSpec("vdb", device.path(), readonly=True),
        ),
        nics=(NicSpec(network=f"net{fragment}", mac="52:54:00:00:00:01"),),
    )
    dom = conn.define_domain(spec)
    try:
        root = _libvirt_xml(conn, name)
        assert root.findtext("name") == name
        assert [d.find("source").attrib for d in root.findall("devices/disk")] == [  # type: ignore[union-attr]
            {"file": f"{tmp_path}/{fragment}/a.img"},
            {"dev": f"/dev/{block_pool.name()}/{fragment}"},
        ]
        assert [d.find("target").get("dev") for d in root.findall("devices/disk")] == ["vda", "vdb"]  # type: ignore[union-attr]
        ifaces = root.findall("devices/interface")
        assert len(ifaces) == 1
        assert ifaces[0].find("source").attrib == {"network": f"net{fragment}"}  # type: ignore[union-attr]
        back = dom.spec()
        assert [d.path for d in back.disks] == [d.path for d in spec.disks]
        assert back.nics[0].network == f"net{fragment}"
    finally:
        dom.undefine()
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=IDS)
def test_a_hostile_emulator_is_written_whole_and_refused_unless_listed(conn: virtabs.Connection, fragment: str) -> None:
    """The emulator's text reaches the XML escaped; the driver then refuses it, as it is no emulator the host's
    capabilities list (``tests/test_passthrough.py``)."""
    spec = DomainSpec(
        name="emu", memory_bytes=64 * MiB, vcpus=1, extra={"libvirt": {"emulator": f"/usr/bin/{fragment}"}}
    )
    assert ET.fromstring(_xml.domain_xml(spec, "test")).findtext("devices/emulator") == f"/usr/bin/{fragment}"
    with pytest.raises(virtabs.InvalidArgumentError, match="emulator"):
        conn.define_domain(spec)
    assert "emu" not in [d.name for d in conn.list_domains()]
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("fragment", [f for f in HOSTILE_FRAGMENTS if not re.fullmatch(r"[\w.+-]*", f, re.A)], ids=repr)
def test_a_machine_or_arch_is_a_name(fragment: str) -> None:
    """libvirt writes these attributes back unescaped (``machine='pc''``): only a name is written."""
    for key in ("machine", "arch", "domain_type"):
        spec = DomainSpec(name="m", memory_bytes=64 * MiB, vcpus=1, extra={"libvirt": {key: f"pc{fragment}"}})
        with pytest.raises(virtabs.InvalidArgumentError, match=key):
            _xml.domain_xml(spec, "test")


@pytest.mark.parametrize("character", ["\ufffe", "\uffff", "\ud800"], ids=repr)
def test_a_character_xml_cannot_hold_is_refused(character: str) -> None:
    """The core lets these through (they are not controls); the renderer refuses them."""
    spec = DomainSpec(name="nx", memory_bytes=64 * MiB, vcpus=1, nics=(NicSpec(network=f"n{character}"),))
    with pytest.raises(virtabs.InvalidArgumentError, match="XML cannot hold"):
        _xml.domain_xml(spec, "test")
    disk = DiskSpec("vda", f"/a{character}")
    with pytest.raises(virtabs.InvalidArgumentError, match="XML cannot hold"):
        _xml.disk_xml(disk)


def test_libvirt_itself_writes_a_machine_back_unescaped() -> None:
    """Why machine and arch must be names: libvirt's own XML of machine "pc'" does not parse again."""
    import libvirt

    lv = libvirt.open("test:///default")
    try:
        xml = "<domain type='test'><name>vt-raw-machine</name><memory>65536</memory>"
        xml += '<os><type machine="pc\'">hvm</type></os></domain>'
        dom = lv.defineXML(xml)
        try:
            with pytest.raises(ET.ParseError):
                ET.fromstring(dom.XMLDesc(0))
        finally:
            dom.undefine()
    finally:
        lv.close()
