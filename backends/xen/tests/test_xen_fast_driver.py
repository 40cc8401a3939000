"""The real XenDriver, in seconds and without Xen, against an ``xl`` stand-in that replays the lab's recordings.

The nested lab (``test_xen_lab.py``, ``test_xen_driver.py``) stays the proof that the driver works with
Xen; this suite catches the driver's own mistakes on any machine: a command not sent (``xl pause``),
an option dropped (``xl create -p``), a unit misread (xl's MiB), a state flag misread (``--p---``), a
row lost from ``xl list``. Each test runs the public API (``virtabs.open("xen:///?dir=...")``) over the
real driver, its real argv lists and ``sh -c`` scripts, and ``xl_standin.py`` answering as ``xl``
from ``recorded/`` (see its docstring for what is replayed and what is derived).

The seam is test-only: this module monkeypatches the driver module's ``CommandTransport`` with
:class:`StandinTransport`, a local transport that puts the stand-in first on ``PATH`` and points the
dom0 check (``grep control_d /proc/xen/capabilities``) at a file the test writes. That file is not a
recording: it holds the word the driver's check (and ``xenlab.sh``'s) looks for. ``ip`` is the stand-in
too (the dom0's bridges, recorded), and ``/etc/xen/xl.conf`` is read from ``recorded/xl.conf`` (the lab's).
Production code has no switch for any of this (``test_without_the_seam_this_host_is_refused``).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import virtabs
from virtabs import ConnectError, DiskSpec, DomainSpec, DomainState, NetworkKind, NetworkSubnet, NicSpec, NoNetworkError
from virtabs.spi import URI, CommandResult, CommandTransport, DomainRef, HostLinks

import virtabs_xen.driver as xen_driver

MiB = 1 << 20
HERE = Path(__file__).resolve().parent
STANDIN = HERE / "xl_standin.py"
# The lab guest the recordings are of (recorded/list_long_rec1.json, list_v_running.txt).
GUEST_UUID = "6f1c5f0e-1d2b-4c1e-9a55-2f7e8c1b0a11"
CAPABILITIES = "/proc/xen/capabilities"
XL_CONF = "/etc/xen/xl.conf"
RECORDED_XL_CONF = HERE / "recorded" / "xl.conf"

pytestmark = pytest.mark.timeout(60)


def recorded_guest() -> DomainSpec:
    """The spec of the recorded guest ``rec1``, as ``xl list -l rec1`` describes it."""
    return DomainSpec(
        name="rec1",
        memory_bytes=128 * MiB,
        vcpus=1,
        uuid=GUEST_UUID,
        os_type="xen",
        disks=(DiskSpec("xvda", "/root/d1.img"),),
        nics=(NicSpec(network="xenbr0", mac="00:16:3e:12:34:56"),),
        extra={
            "xen": {
                "type": "pv",
                "kernel": "/root/guest/vmlinuz",
                "ramdisk": "/root/guest/initrd.gz",
                "cmdline": "console=hvc0 quiet",
                "maxmem_mib": 160,
                "maxvcpus": 2,
            }
        },
    )


class StandinTransport(CommandTransport):
    """A local command transport whose ``xl`` is the stand-in and whose dom0 check reads ``capabilities``."""

    def __init__(self, uri: URI, *, state_dir: Path, capabilities: Path, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        assert not self.is_remote, "the stand-in runs locally only"
        self._state_dir = state_dir
        self._capabilities = capabilities
        self._bin = state_dir / "bin"
        self._bin.mkdir(exist_ok=True)
        wrapper = self._bin / "xl"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(STANDIN))} "$@"\n')
        wrapper.chmod(0o755)
        ip = self._bin / "ip"
        ip.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(STANDIN))} --as-ip "$@"\n')
        ip.chmod(0o755)
        self.xl_conf = RECORDED_XL_CONF
        """The xl.conf the driver's scripts read in place of the host's (the lab's, recorded)."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` locally with the stand-in first on ``PATH`` (and the capabilities file swapped)."""
        argv = list(argv)
        if argv[:2] == ["sh", "-c"]:
            argv[2] = argv[2].replace(CAPABILITIES, str(self._capabilities)).replace(XL_CONF, str(self.xl_conf))
        env = {
            **(env or {}),
            "PATH": f"{self._bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "XL_STANDIN_STATE": str(self._state_dir),
        }
        return super().run(argv, input=input, timeout=timeout, check=check, env=env)


class Standin:
    """The stand-in's files: its state directory, the capabilities file and the argv log."""

    def __init__(self, root: Path) -> None:
        self.state_dir = root / "xl"
        self.state_dir.mkdir()
        self.capabilities = root / "capabilities"
        self.capabilities.write_text("control_d\n")
        self.definitions = root / "defs"

    @property
    def uri(self) -> str:
        return f"xen:///?dir={self.definitions}"

    def calls(self) -> list[list[str]]:
        """Every ``xl`` argv (without ``xl``) the driver ran so far, in order."""
        log = self.state_dir / "argv.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def clear(self) -> None:
        (self.state_dir / "argv.jsonl").unlink(missing_ok=True)


def install_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Standin:
    """Replace the driver module's transport by :class:`StandinTransport` (undone by ``monkeypatch``)."""
    found = Standin(tmp_path)

    def transport(uri: URI, **kwargs: Any) -> StandinTransport:
        return StandinTransport(uri, state_dir=found.state_dir, capabilities=found.capabilities, **kwargs)

    monkeypatch.setattr(xen_driver, "CommandTransport", transport)
    return found


@pytest.fixture
def conn(standin: Standin) -> Iterator[virtabs.Connection]:
    with virtabs.open(standin.uri) as c:
        yield c


def test_host_info_is_xl_info_in_mib(conn: virtabs.Connection) -> None:
    """``xl info`` counts memory in MiB: total_memory 2047 is 2047 MiB (recorded/info.txt)."""
    host = conn.host_info()
    assert (host.hostname, host.hypervisor, host.hypervisor_version) == ("xenlab-dom0", "xen", "4.17.7")
    assert (host.cpus, host.memory_bytes, host.arch) == (2, 2047 * MiB, "x86_64")


def test_start_runs_xl_create_without_p(conn: virtabs.Connection, standin: Standin) -> None:
    """A plain start is ``xl create CFG``; the running guest's memory is xl list's Mem column in MiB."""
    dom = conn.define_domain(recorded_guest())
    assert dom.info().state == DomainState.SHUTOFF
    standin.clear()
    dom.start()
    cfg = str(standin.definitions / "rec1.cfg")
    assert [c for c in standin.calls() if c[0] == "create"] == [["create", cfg]]
    info = dom.info()
    assert (info.state, info.native_state, info.vcpus) == (DomainState.RUNNING, "r-----", 1)
    assert info.memory_bytes == 128 * MiB
    assert info.max_memory_bytes == 160 * MiB  # maxmem of the definition
    assert info.cpu_time_ns == 800_000_000  # 0.8 s
    assert dom.uuid == GUEST_UUID


def test_start_paused_passes_p_and_reads_paused(conn: virtabs.Connection, standin: Standin) -> None:
    """``start(paused=True)`` is ``xl create -p CFG``; ``--p---`` (recorded/list_v_paused.txt) is PAUSED."""
    dom = conn.define_domain(recorded_guest())
    standin.clear()
    dom.start(paused=True)
    cfg = str(standin.definitions / "rec1.cfg")
    assert [c for c in standin.calls() if c[0] == "create"] == [["create", "-p", cfg]]
    info = dom.info()
    assert (info.state, info.native_state) == (DomainState.PAUSED, "--p---")
    assert info.memory_bytes == 128 * MiB


def test_suspend_is_xl_pause_and_resume_is_xl_unpause(conn: virtabs.Connection, standin: Standin) -> None:
    """suspend sends ``xl pause -- rec1`` and the domain reads back PAUSED; resume undoes it."""
    dom = conn.define_domain(recorded_guest())
    dom.start()
    assert dom.info().state == DomainState.RUNNING
    standin.clear()
    dom.suspend()
    assert ["pause", "--", "rec1"] in standin.calls()
    assert dom.info().state == DomainState.PAUSED
    standin.clear()
    dom.resume()
    assert ["unpause", "--", "rec1"] in standin.calls()
    assert dom.info().state == DomainState.RUNNING


def test_listing_keeps_every_row_of_xl_list(conn: virtabs.Connection) -> None:
    """rec1 is the last row of ``xl list -v``: listed, running as xl says, with its disk and vif from ``xl list -l``."""
    dom = conn.define_domain(recorded_guest())
    dom.start()
    assert [(d.name, d.uuid) for d in conn.list_domains()] == [("rec1", GUEST_UUID)]
    [record] = conn.domain_records()
    assert (record.name, record.state, record.native_state) == ("rec1", DomainState.RUNNING, "r-----")
    assert (record.vcpus, record.memory_bytes) == (1, 128 * MiB)
    assert record.extra["xen"] == {"type": "pv", "domid": 1}
    assert [(d.target, d.path, d.readonly) for d in record.disks] == [("xvda", "/root/d1.img", False)]
    assert [(n.mac, n.network) for n in record.nics] == [("00:16:3e:12:34:56", "xenbr0")]
    assert conn.lookup_domain(GUEST_UUID).name == "rec1"


def test_paused_domain_is_listed_paused(conn: virtabs.Connection) -> None:
    """The bulk listing reads the State flags too: a paused rec1 is PAUSED in the records."""
    dom = conn.define_domain(recorded_guest())
    dom.start(paused=True)
    [record] = conn.domain_records()
    assert (record.state, record.native_state) == (DomainState.PAUSED, "--p---")


def test_destroy_is_xl_destroy_and_leaves_the_definition(conn: virtabs.Connection, standin: Standin) -> None:
    """destroy sends ``xl destroy -- rec1``; the domain is then its definition alone, shut off."""
    dom = conn.define_domain(recorded_guest())
    dom.start()
    standin.clear()
    dom.destroy()
    assert ["destroy", "--", "rec1"] in standin.calls()
    info = dom.info()
    assert (info.state, info.memory_bytes) == (DomainState.SHUTOFF, 128 * MiB)
    [record] = conn.domain_records()
    assert record.state == DomainState.SHUTOFF


def test_unknown_domain_is_xl_invalid_identifier(conn: virtabs.Connection) -> None:
    """A name xl does not know (and that has no definition) is NoDomainError."""
    with pytest.raises(virtabs.NoDomainError):
        conn.lookup_domain("nosuch")


def test_host_that_is_not_a_dom0_is_refused(standin: Standin) -> None:
    """Without control_d in /proc/xen/capabilities (here: the test's file emptied) the driver refuses to connect."""
    standin.capabilities.write_text("")
    with pytest.raises(ConnectError, match="is not a Xen dom0"):
        virtabs.open(standin.uri)


def test_without_the_seam_this_host_is_refused(tmp_path: Path) -> None:
    """No monkeypatch: the real transport and this machine, which is not a Xen dom0, are refused."""
    if Path(CAPABILITIES).is_file() and "control_d" in Path(CAPABILITIES).read_text():
        pytest.skip("this machine is a Xen dom0")
    with pytest.raises(ConnectError):
        virtabs.open(f"xen:///?dir={tmp_path}")


def test_a_call_with_no_recording_fails_loudly(conn: virtabs.Connection, standin: Standin) -> None:
    """The stand-in invents nothing: ``xl vcpu-set`` has no recording, so it fails naming the stand-in."""
    dom = conn.define_domain(recorded_guest())
    dom.start()
    driver = conn._driver
    assert isinstance(driver, xen_driver.XenDriver)
    with pytest.raises(virtabs.OperationFailedError, match="xl stand-in: no recorded output for xl vcpu-set"):
        driver.ex_set_vcpus(DomainRef(dom.name, dom.uuid), 2)
    assert ["vcpu-set", "--", "rec1", "2"] in standin.calls()


class _Events:
    """Collects the lifecycle events of a subscription (the poller's thread) and waits for them."""

    def __init__(self) -> None:
        self.kinds: list[virtabs.LifecycleEventType] = []
        self._cond = threading.Condition()

    def __call__(self, event: virtabs.Event) -> None:
        if isinstance(event, virtabs.LifecycleEvent) and event.domain == "rec1":
            with self._cond:
                self.kinds.append(event.type)
                self._cond.notify_all()

    def wait_for(self, kind: virtabs.LifecycleEventType) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: kind in self.kinds, 30.0), f"no {kind.name} event; got {self.kinds}"


def test_events_are_polled_from_xl_list(conn: virtabs.Connection, standin: Standin) -> None:
    """Each change seen by polling ``xl list -v`` and the definitions is one lifecycle event, in order."""
    assert "events" in conn.capabilities
    kinds = virtabs.LifecycleEventType
    seen = _Events()
    with conn.subscribe(seen):
        dom = conn.define_domain(recorded_guest())
        seen.wait_for(kinds.DEFINED)
        dom.start()
        seen.wait_for(kinds.STARTED)
        dom.suspend()
        seen.wait_for(kinds.SUSPENDED)
        dom.resume()
        seen.wait_for(kinds.RESUMED)
        dom.destroy()
        seen.wait_for(kinds.STOPPED)
        dom.undefine()
        seen.wait_for(kinds.UNDEFINED)
    expected = [kinds.DEFINED, kinds.STARTED, kinds.SUSPENDED, kinds.RESUMED, kinds.STOPPED, kinds.UNDEFINED]
    assert seen.kinds == expected
    assert ["list", "-v"] in standin.calls()  # the poller's source: the bulk listing


# --- networks: the dom0's bridges (recorded/ip_*.json), the vifs' attachments -----------------------------


def _attachments(conn: virtabs.Connection) -> dict[str, list[tuple[str, str, str | None]]]:
    return {
        n.name: [(a.domain_uuid, a.domain_name, a.mac) for a in n.last_info.attachments] for n in conn.list_networks()
    }


def test_networks_are_the_dom0_bridges_with_the_vifs_on_them(conn: virtabs.Connection) -> None:
    """xenbr0 and vtnet0 from ``ip -json`` (vtnet0 with the lab's 192.168.77.1/24); rec1's vif on xenbr0."""
    assert _attachments(conn) == {"xenbr0": [], "vtnet0": []}
    dom = conn.define_domain(recorded_guest())
    rec1 = [(GUEST_UUID, "rec1", "00:16:3e:12:34:56")]
    assert _attachments(conn) == {"xenbr0": rec1, "vtnet0": []}  # shut off: from its definition (bridge=xenbr0)
    dom.start()
    assert _attachments(conn) == {"xenbr0": rec1, "vtnet0": []}  # running: vif1.0 is a port of xenbr0
    vtnet0 = conn.lookup_network("vtnet0").info()
    assert (vtnet0.kind, vtnet0.native_kind, vtnet0.device, vtnet0.active) == (
        NetworkKind.BRIDGE,
        "linux-bridge",
        "vtnet0",
        True,
    )
    assert vtnet0.subnets == (NetworkSubnet("192.168.77.0/24"),)
    assert vtnet0.extra["ports"] == ("vif1.1",)
    assert [n.network for n in dom.nics()] == ["xenbr0"]
    with pytest.raises(NoNetworkError):
        conn.lookup_network("default")


def test_listing_networks_is_one_round_trip(conn: virtabs.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """One host call whether no guest runs or one does (xl list -v/-l, the definitions, ip -json twice, xl.conf)."""
    runs: list[list[str]] = []
    real_run = StandinTransport.run

    def counted(self: StandinTransport, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        runs.append(list(argv))
        return real_run(self, argv, **kwargs)

    monkeypatch.setattr(StandinTransport, "run", counted)
    conn.list_networks()
    idle = len(runs)
    dom = conn.define_domain(recorded_guest())
    dom.start()
    runs.clear()
    networks = conn.list_networks()
    assert sum(len(n.last_info.attachments) for n in networks) == 1
    assert len(runs) == idle == 1


def _with_xl_conf(standin_conn: virtabs.Connection, text: str, tmp_path: Path) -> None:
    conf = tmp_path / "xl.conf"
    conf.write_text(text)
    driver = standin_conn._driver  # type: ignore[attr-defined]
    driver._t.xl_conf = conf


def test_a_vif_without_bridge_is_on_xl_default_bridge(conn: virtabs.Connection, tmp_path: Path) -> None:
    """``default`` (no ``bridge=``) is xenbr0 under the lab's xl.conf (its line is commented out), else xl.conf's
    last ``vif.default.bridge``; a bridge the dom0 lacks is on no network (None), never an invented one."""
    dom = conn.define_domain(
        DomainSpec(name="rec1", memory_bytes=128 * MiB, vcpus=1, nics=(NicSpec(network="default"), NicSpec("vtnet0")))
    )
    assert [n.network for n in dom.nics()] == ["xenbr0", "vtnet0"]
    lab = RECORDED_XL_CONF.read_text()
    assert '#vif.default.bridge="xenbr0"' in lab
    _with_xl_conf(conn, lab + 'vif.default.bridge="xenbr0"\nvif.default.bridge="vtnet0"\n', tmp_path)
    assert [n.network for n in dom.nics()] == ["vtnet0", "vtnet0"]
    _with_xl_conf(conn, lab + 'vif.default.bridge="xenbr9"\n', tmp_path)
    assert [n.network for n in dom.nics()] == [None, "vtnet0"]


def test_a_running_vif_is_on_the_bridge_its_port_is_on() -> None:
    """The lab's ``net1`` (recorded/list_long_net1.json): vif 0 without ``bridge=`` (``xl list -l`` leaves it out)
    and vif 1 on vtnet0. Each is where the kernel put ``vif1.0`` / ``vif1.1`` (recorded/ip_link_net1.json),
    whatever xl.conf says since; with the ports gone the configuration decides."""
    recorded = HERE / "recorded"
    config = json.loads((recorded / "list_long_net1.json").read_text())[0]["config"]
    assert [n.get("bridge") for n in config["nics"]] == [None, "vtnet0"]
    links = HostLinks.from_ip_json(
        (recorded / "ip_link_net1.json").read_text(), (recorded / "ip_addr_net1.json").read_text()
    )
    idle = HostLinks.from_ip_json(
        (recorded / "ip_link_idle.json").read_text(), (recorded / "ip_addr_idle.json").read_text()
    )
    for default in ("xenbr0", "vtnet0"):
        net = xen_driver._HostNet(links, default)
        assert [net.network_of_vif(1, n["devid"], n.get("bridge")) for n in config["nics"]] == ["xenbr0", "vtnet0"]
        before_plug = xen_driver._HostNet(idle, default)
        assert [before_plug.network_of_vif(1, n["devid"], n.get("bridge")) for n in config["nics"]] == [
            default,
            "vtnet0",
        ]
    assert xen_driver._HostNet(links, "xenbr0").network_of_vif(1, 0, "eth0") == "xenbr0"  # the port, not the word
    assert xen_driver._HostNet(idle, "xenbr0").network_of_vif(1, 0, "eth0") is None  # eth0 is no bridge


def test_xl_conf_default_bridge_is_the_last_uncommented_setting() -> None:
    lab = RECORDED_XL_CONF.read_text()
    assert xen_driver.default_bridge(lab) == "xenbr0"  # the lab's line is a comment
    assert xen_driver.default_bridge(None) == "xenbr0"  # no xl.conf
    assert xen_driver.default_bridge(lab + 'vif.default.bridge = "br1"\n vif.default.bridge="br2"\n') == "br2"
    assert xen_driver.default_bridge('# vif.default.bridge="br1"\n') == "xenbr0"


# --- migration: the refusals before xl migrate runs (the lab runs xl migrate: test_xen_migration.py) -------------


def test_migration_without_live_is_refused_and_the_destination_keeps_nothing(
    conn: virtabs.Connection, standin: Standin
) -> None:
    """xl migrate is always live: without LIVE perform refuses before any xl call, and finish removes the
    definition prepare wrote into the destination's directory; rec1 runs on, untouched."""
    dom = conn.define_domain(recorded_guest())
    dom.start()
    other = standin.definitions.parent / "defs-b"
    with virtabs.open(f"xen:///?dir={other}") as dest:
        standin.clear()
        with pytest.raises(virtabs.NotSupportedError, match="always migrates a running domain live"):
            dom.migrate(dest, flags=virtabs.MigrateFlags.PERSIST_DEST | virtabs.MigrateFlags.UNDEFINE_SOURCE).wait(
                timeout=60
            )
    assert not (other / "rec1.cfg").exists()
    assert (standin.definitions / "rec1.cfg").exists()
    assert [c for c in standin.calls() if c[0] not in ("list",)] == []  # no xl migrate, nothing but reads
    assert dom.info().state == DomainState.RUNNING


def test_migration_into_the_same_directory_is_refused_by_prepare(conn: virtabs.Connection, standin: Standin) -> None:
    """Two connections of one dom0 share a directory's definitions: the destination needs a dir= of its own
    (here the same directory spelt with a trailing slash, which the core does not take for the same URI)."""
    dom = conn.define_domain(recorded_guest())
    dom.start()
    with virtabs.open(standin.uri + "/") as dest:
        flags = virtabs.MigrateFlags.LIVE | virtabs.MigrateFlags.PERSIST_DEST | virtabs.MigrateFlags.UNDEFINE_SOURCE
        with pytest.raises(virtabs.OperationInvalidError, match="needs a dir= of its own"):
            dom.migrate(dest, flags=flags).wait(timeout=60)
    assert (standin.definitions / "rec1.cfg").exists() and dom.info().state == DomainState.RUNNING


def test_without_ip_a_listing_fails_and_nics_are_on_no_known_network() -> None:
    """A dom0 without iproute2 (the shell's exit 127 in the link section): listing networks names the missing
    tool; a domain's NICs and the inventory (not strict) still read, their networks unknown (None)."""
    sections = {
        "link": xen_driver._Section(127, ""),
        "addr": xen_driver._Section(127, ""),
        "xlconf": xen_driver._Section(0, RECORDED_XL_CONF.read_text()),
    }
    with pytest.raises(virtabs.OperationFailedError, match="iproute2's 'ip' is not on this host's PATH"):
        xen_driver._HostNet.from_sections(sections, "dom0")
    lenient = xen_driver._HostNet.from_sections(sections, "dom0", strict=False)
    assert lenient.links is None and lenient.network_of("xenbr0") is None and lenient.network_of_vif(1, 0, None) is None
