"""The driver's WinRM layer against the simulator: endpoints, shell reuse, and WinRM failures."""

from __future__ import annotations

import pytest
from virtabs_hyperv_sim import Simulator

from virtabs_hyperv._scripts import command_line
from virtabs_hyperv._winrm import Endpoint, TransportFailure, WinRMClient


def test_endpoint_defaults_and_params() -> None:
    ep = Endpoint.from_uri("hv1", None, {})
    assert (ep.url, ep.auth, ep.verify, ep.pywinrm_transport) == ("https://hv1:5986/wsman", "ntlm", True, "ntlm")
    ep = Endpoint.from_uri("hv1", None, {"transport": "http"})
    assert ep.url == "http://hv1:5985/wsman"
    ep = Endpoint.from_uri("hv1", 443, {"auth": "basic", "no_verify": "1", "cafile": "/x.pem"})
    assert (ep.url, ep.pywinrm_transport, ep.verify, ep.cafile) == ("https://hv1:443/wsman", "ssl", False, "/x.pem")
    ep = Endpoint.from_uri("hv1", None, {"transport": "http", "auth": "basic", "allow_unencrypted": "1"})
    assert ep.pywinrm_transport == "basic"


@pytest.mark.parametrize(
    ("host", "params", "needle"),
    [
        (None, {}, "needs the Hyper-V host"),
        ("h", {"transport": "ftp"}, "transport must be"),
        ("h", {"auth": "digest"}, "auth must be"),
        ("h", {"transport": "http", "auth": "basic"}, "unencrypted"),
        ("h", {"verify": "0"}, "unknown hyperv URI parameter"),
    ],
)
def test_endpoint_refusals(host: str | None, params: dict[str, str], needle: str) -> None:
    with pytest.raises(TransportFailure, match=needle) as info:
        Endpoint.from_uri(host, None, params)
    assert info.value.kind == "usage"


def _client(sim: Simulator, password: str | None = None, timeout: float | None = None) -> WinRMClient:
    ep = Endpoint.from_uri("127.0.0.1", sim.port, {"auth": "basic", "cafile": str(sim.cafile)})
    return WinRMClient(ep, sim.username, password if password is not None else sim.password, timeout)


def test_shells_are_reused(sim: Simulator) -> None:
    c = _client(sim)
    before = sim.server.requests
    for _ in range(3):
        assert c.run(command_line("'x'")) == (b"x\r\n", b"", 0)
    c.close()
    # 1 Create + 3 x (Command, Receive, Signal) + 1 Delete
    assert sim.server.requests - before == 11


def test_shell_dropped_by_the_host_is_reopened(sim: Simulator) -> None:
    c = _client(sim)
    c.run(command_line("'x'"))
    with sim.server.lock:
        sim.server.shells.clear()  # the host's idle timeout
    assert c.run(command_line("'again'"))[0] == b"again\r\n"
    c.close()


def test_bad_password_is_auth(sim: Simulator) -> None:
    with pytest.raises(TransportFailure) as info:
        _client(sim, password="nope").run(command_line("'x'"))
    assert info.value.kind == "auth" and "nope" not in str(info.value)


def test_untrusted_certificate_is_connect(sim: Simulator) -> None:
    ep = Endpoint.from_uri("127.0.0.1", sim.port, {"auth": "basic"})
    with pytest.raises(TransportFailure, match="TLS") as info:
        WinRMClient(ep, sim.username, sim.password, None).run(command_line("'x'"))
    assert info.value.kind == "connect"


def test_no_verify_accepts_it(sim: Simulator) -> None:
    ep = Endpoint.from_uri("127.0.0.1", sim.port, {"auth": "basic", "no_verify": "1"})
    assert WinRMClient(ep, sim.username, sim.password, None).run(command_line("'x'"))[2] == 0


def test_http_500_is_connect(sim: Simulator) -> None:
    c = _client(sim)
    sim.server.fault_plan.append("500")
    with pytest.raises(TransportFailure) as info:
        c.run(command_line("'x'"))
    assert info.value.kind == "connect"


def test_stalled_server_is_timeout(sim: Simulator) -> None:
    c = _client(sim, timeout=5)
    c.run(command_line("'warm'"))
    sim.server.fault_plan.append("stall:7")
    with pytest.raises(TransportFailure) as info:
        c.run(command_line("'x'"))
    assert info.value.kind == "timeout"


def test_nothing_listening_is_connect() -> None:
    ep = Endpoint.from_uri("127.0.0.1", 9, {"transport": "http"})
    with pytest.raises(TransportFailure) as info:
        WinRMClient(ep, "u", "p", None).run(command_line("'x'"))
    assert info.value.kind == "connect"


def test_ntlm_over_http_through_the_client() -> None:
    with Simulator(tls=False, ntlm=True) as ntlm:
        ep = Endpoint.from_uri("127.0.0.1", ntlm.port, {"transport": "http"})
        c = WinRMClient(ep, ntlm.username, ntlm.password, None)
        assert c.run(command_line("'sealed'"))[0] == b"sealed\r\n"
        c.close()
        assert ntlm.server.sealed >= 4
