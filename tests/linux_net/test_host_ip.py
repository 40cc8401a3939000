"""``virtabs.spi.HostIp`` and ``HostLink``: iproute2 on a Linux host, run locally or through a command transport.

The parsing is checked on the capture of ``captured/`` (real iproute2 6.1 output, ``SOURCES.md``); the runner on
this machine's real ``ip`` and shell, locally and through a real local :class:`CommandTransport`, the way the Xen
driver reaches its dom0 (an ssh transport runs the same argv through ``ssh``: ``tests/remote``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from virtabs import OperationFailedError
from virtabs.spi import (
    IP_ADDR_ARGV,
    IP_LINK_ARGV,
    IP_MISSING,
    CommandTransport,
    HostIp,
    HostLink,
    HostLinks,
    host_links_from_ip_json,
    parse_uri,
)
from virtabs.testing.plugin import in_ci

CAPTURED = Path(__file__).parent / "captured"


def _captured() -> tuple[str, str]:
    return (
        (CAPTURED / "ip-json-details-link-show.json").read_text(),
        (CAPTURED / "ip-json-addr-show.json").read_text(),
    )


def test_captured_links_say_bridge_tap_or_other_with_their_bridge() -> None:
    links = host_links_from_ip_json(_captured()[0])
    assert links == {
        "lo": HostLink("other", None, up=True),
        "virbr7": HostLink("bridge", None, up=True),
        "vnet7-guest": HostLink("other"),
        "vnet7": HostLink("other", "virbr7"),  # a veth: a port, not a tap
        "vnet8": HostLink("tap", "virbr7"),
        "lxcbr1": HostLink("bridge"),
        "tap-loose": HostLink("tap"),
        "mv-guest": HostLink("other"),
    }
    assert [name for name, link in links.items() if link.is_bridge] == ["virbr7", "lxcbr1"]


def test_one_reading_holds_links_and_bridges() -> None:
    host = HostLinks.from_ip_json(*_captured())
    assert [b.name for b in host.bridges] == ["virbr7", "lxcbr1"]
    assert host.get("vnet8") == HostLink("tap", "virbr7") and host.get("nope") is None


def _need_ip() -> None:
    if shutil.which("ip") is None:
        if in_ci():
            pytest.fail("iproute2's ip is not installed")
        pytest.skip("iproute2's ip is not installed")


def _loopback(host: HostLinks) -> HostLink | None:
    return host.get("lo")


def test_reads_this_host_locally_and_through_a_command_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_ip()
    calls: list[tuple[str, ...]] = []
    real_run = HostIp.run

    def counted(self: HostIp, argv: tuple[str, ...]) -> str:
        calls.append(tuple(argv))
        return real_run(self, argv)

    monkeypatch.setattr(HostIp, "run", counted)
    local = HostIp("test networks", 30).read()
    with CommandTransport(parse_uri("xen:///")) as transport:
        through = HostIp("test networks", 30, transport).read()
    after = HostIp("test networks", 30).read()
    assert calls == [IP_LINK_ARGV, IP_ADDR_ARGV] * 3
    assert _loopback(local) == _loopback(through) == HostLink("other", None, up=True)
    # other suites running beside this one (containers, taps, namespaces) add and remove links between two
    # reads: the transport's read holds every link both local reads saw, and none that neither saw
    assert set(local.links) & set(after.links) <= set(through.links) <= set(local.links) | set(after.links)


def test_a_missing_ip_is_named_locally_and_on_the_far_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``ip`` on PATH: locally a FileNotFoundError, through a transport the shell's exit 127; both say so."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OperationFailedError) as local:
        HostIp("test networks", 30).run(IP_LINK_ARGV)
    assert local.value.message == f"test networks: {IP_MISSING}"
    assert not HostIp("test networks", 30).available()
    sh = shutil.which("sh", path="/bin:/usr/bin")
    assert sh is not None
    (tmp_path / "sh").symlink_to(sh)
    with CommandTransport(parse_uri("xen:///")) as transport, pytest.raises(OperationFailedError) as remote:
        HostIp("test networks", 30, transport).run(["sh", "-c", "exec ip -json link show"])
    assert remote.value.message == f"test networks: {IP_MISSING}"


def test_a_failing_ip_quotes_its_stderr() -> None:
    _need_ip()
    with pytest.raises(OperationFailedError) as caught:
        HostIp("test networks", 30).run(("ip", "-json", "link", "show", "dev", "virtabs-no-such-link"))
    assert caught.value.message.startswith("test networks: 'ip -json link show dev virtabs-no-such-link' failed")
    assert "virtabs-no-such-link" in caught.value.message.split("failed", 1)[1]
