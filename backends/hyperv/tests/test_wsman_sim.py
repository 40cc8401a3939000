"""The simulator speaks WS-Management as pywinrm 0.5.0 expects (pywinrm is the real client here)."""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET

import pytest
import requests
import winrm
from virtabs_hyperv_sim import HyperVHost, Simulator, link_hosts
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError, WSManFaultError
from winrm.protocol import Protocol


def _session(sim: Simulator, **kw: object) -> winrm.Session:
    return winrm.Session(
        sim.url,
        auth=(sim.username, sim.password),
        transport="ssl",
        server_cert_validation="validate",
        ca_trust_path=str(sim.cafile),
        **kw,
    )


def test_run_ps_over_verified_https(sim: Simulator) -> None:
    vm = sim.host.add_vm("wsman-a")
    r = _session(sim).run_ps(
        "Hyper-V\\Get-VM | ForEach-Object { @{N = $_.Name; S = $_.State} } | ConvertTo-Json -Compress"
    )
    assert r.status_code == 0, r.std_err
    assert b'"N":"wsman-a","S":3' in r.std_out
    with sim.host.lock:
        del sim.host.vms[vm.id]


def test_https_refuses_a_client_without_the_ca(sim: Simulator) -> None:
    s = winrm.Session(sim.url, auth=(sim.username, sim.password), transport="ssl", server_cert_validation="validate")
    with pytest.raises(requests.exceptions.SSLError):
        s.run_ps("'x'")


def test_wrong_password_is_401(sim: Simulator) -> None:
    s = winrm.Session(sim.url, auth=(sim.username, "wrong"), transport="ssl", ca_trust_path=str(sim.cafile))
    with pytest.raises(InvalidCredentialsError):
        s.run_ps("'x'")


def test_basic_over_plain_http_is_refused_unless_allowed() -> None:
    with Simulator(tls=False) as strict:
        s = winrm.Session(strict.url, auth=(strict.username, strict.password), transport="basic")
        with pytest.raises(InvalidCredentialsError):
            s.run_ps("'x'")


def test_basic_over_http_when_allowed(sim_http: Simulator) -> None:
    s = winrm.Session(sim_http.url, auth=(sim_http.username, sim_http.password), transport="basic")
    r = s.run_ps("'hello'")
    assert (r.status_code, r.std_out) == (0, b"hello\r\n")


def test_keep_alive_and_nodelay(sim: Simulator) -> None:
    before_conn, before_req = sim.server.connections, sim.server.requests
    s = _session(sim)
    for _ in range(3):
        assert s.run_ps("'x'").status_code == 0
    # run_ps closes its requests session at the end: one connection carries its 5 WS-Man operations
    assert sim.server.requests - before_req == 15
    assert sim.server.connections - before_conn == 3
    assert sim.server.nodelay and all(sim.server.nodelay)


def test_receive_timeout_fault_is_retried_by_pywinrm(sim: Simulator) -> None:
    p = Protocol(
        sim.url,
        transport="ssl",
        username=sim.username,
        password=sim.password,
        ca_trust_path=str(sim.cafile),
        operation_timeout_sec=1,
        read_timeout_sec=5,
    )
    shell = p.open_shell()
    before = sim.server.timeouts
    script = "Start-Sleep -Milliseconds 1600; 'late'"
    cid = p.run_command(shell, "powershell -encodedcommand " + base64.b64encode(script.encode("utf-16-le")).decode())
    out, err, code = p.get_command_output(shell, cid)
    p.cleanup_command(shell, cid)
    p.close_shell(shell)
    assert (out, code) == (b"late\r\n", 0), err
    assert sim.server.timeouts > before


def test_unknown_shell_is_a_wsman_fault(sim: Simulator) -> None:
    p = Protocol(sim.url, transport="ssl", username=sim.username, password=sim.password, ca_trust_path=str(sim.cafile))
    with pytest.raises(WSManFaultError) as info:
        p.run_command(str(uuid.uuid4()).upper(), "powershell -encodedcommand AA==")
    assert info.value.wsman_fault_code == 2150858843


def test_relates_to_echoes_message_id(sim: Simulator) -> None:
    p = Protocol(sim.url, transport="ssl", username=sim.username, password=sim.password, ca_trust_path=str(sim.cafile))
    mid = uuid.uuid4()
    req = p.build_wsman_header(
        resource_uri="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd",
        action="http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
        message_id=mid,
    )
    import xmltodict

    req.setdefault("env:Body", {})["rsp:Shell"] = {"rsp:InputStreams": "stdin", "rsp:OutputStreams": "stdout stderr"}
    root = ET.fromstring(p.send_message(xmltodict.unparse({"env:Envelope": req})))
    relates = next(n.text for n in root.iter() if n.tag.endswith("RelatesTo"))
    assert relates == f"uuid:{mid}"
    shell_id = next(n.text for n in root.iter() if n.get("Name") == "ShellId")
    p.close_shell(shell_id)  # pywinrm asserts RelatesTo on Delete too


def test_clixml_error_and_exit_code(sim: Simulator) -> None:
    r = _session(sim).run_ps("Hyper-V\\Get-VM -Nmae x")
    assert r.status_code == 1
    # pywinrm's own CLIXML cleaner understands the simulator's stderr
    assert b"A parameter cannot be found that matches parameter name 'Nmae'." in r.std_err
    assert b"NamedParameterNotFound" in r.std_err


def test_codepage_437_mangles_what_65001_keeps(sim: Simulator) -> None:
    script = "'Zoë \u2013 ☃'"
    enc = base64.b64encode(script.encode("utf-16-le")).decode()
    p = Protocol(sim.url, transport="ssl", username=sim.username, password=sim.password, ca_trust_path=str(sim.cafile))
    outs = []
    for cp in (437, 65001):
        shell = p.open_shell(codepage=cp)
        cid = p.run_command(shell, f"powershell -encodedcommand {enc}")
        out, _err, _code = p.get_command_output(shell, cid)
        p.cleanup_command(shell, cid)
        p.close_shell(shell)
        outs.append(out)
    assert outs[0] == "Zoë ? ?\r\n".encode("cp437")
    assert outs[1].decode("utf-8") == "Zoë \u2013 ☃\r\n"


def test_command_line_limit_and_non_powershell(sim: Simulator) -> None:
    s = _session(sim)
    r = s.run_cmd("powershell -encodedcommand " + "A" * 9000)
    assert r.status_code == 1 and b"too long" in r.std_err
    with pytest.raises(WSManFaultError) as info:  # past CreateProcess's limit: the service's own fault
        s.run_cmd("powershell -encodedcommand " + "A" * 40000)
    assert info.value.wsman_fault_code == 2147942606 and "too long" in info.value.reason
    r = s.run_cmd("ipconfig", ["/all"])
    assert r.status_code == 1 and b"is not recognized" in r.std_err


def test_injected_http_500_is_a_transport_error(sim: Simulator) -> None:
    sim.server.fault_plan.append("500")
    with pytest.raises(WinRMTransportError):
        _session(sim).run_ps("'x'")


def test_ntlm_with_message_encryption_over_http() -> None:
    with Simulator(tls=False, ntlm=True) as ntlm:
        s = winrm.Session(ntlm.url, auth=(ntlm.username, ntlm.password), transport="ntlm")
        r = s.run_ps("'sealed'")
        assert (r.status_code, r.std_out) == (0, b"sealed\r\n")
        assert ntlm.server.sealed == 5  # every WS-Man operation travelled sealed
        with pytest.raises(InvalidCredentialsError):
            winrm.Session(ntlm.url, auth=(ntlm.username, "wrong"), transport="ntlm").run_ps("'x'")
        # an unsealed, unauthenticated SOAP request is refused
        with pytest.raises(InvalidCredentialsError):
            winrm.Session(ntlm.url, auth=(ntlm.username, ntlm.password), transport="basic").run_ps("'x'")


def _shell_fields(envelope: bytes) -> list[str]:
    root = ET.fromstring(envelope)
    shell = next(n for n in root.iter() if n.tag.endswith("}Shell"))
    return [child.tag.rsplit("}", 1)[-1] for child in shell]


def test_create_response_has_the_fields_of_a_real_winrm_service(sim: Simulator) -> None:
    """The shell a real WinRM service creates (masterzen/winrm's fixture, tests/real_outputs/) and the
    simulator's list the same fields in the same order: Owner, ClientIP, IdleTimeOut, ShellRunTime, ..."""
    from pathlib import Path

    real = (Path(__file__).resolve().parent / "real_outputs" / "masterzen-winrm-createShellResponse.xml").read_bytes()
    p = Protocol(sim.url, transport="ssl", username=sim.username, password=sim.password, ca_trust_path=str(sim.cafile))
    req = p.build_wsman_header(
        resource_uri="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd",
        action="http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
    )
    import xmltodict

    req.setdefault("env:Body", {})["rsp:Shell"] = {"rsp:InputStreams": "stdin", "rsp:OutputStreams": "stdout stderr"}
    response = p.send_message(xmltodict.unparse({"env:Envelope": req}))
    assert (
        _shell_fields(response)
        == _shell_fields(real)
        == [
            "ShellId",
            "ResourceUri",
            "Owner",
            "ClientIP",
            "IdleTimeOut",
            "InputStreams",
            "OutputStreams",
            "ShellRunTime",
            "ShellInactivity",
        ]
    )
    owner = next(n.text for n in ET.fromstring(response).iter() if n.tag.endswith("}Owner"))
    assert owner == sim.username
    p.close_shell(next(n.text for n in ET.fromstring(response).iter() if n.get("Name") == "ShellId"))


def test_a_real_wsman_fault_is_read_as_pywinrm_reads_the_simulators() -> None:
    """A real fault (masterzen/winrm's fixture: cmd.exe's command line too long) and the simulator's fault
    body give pywinrm the same fields: code, subcode, reason and the WSManFault code."""
    from pathlib import Path

    from virtabs_hyperv_sim._server import fault_body

    real = Path(__file__).resolve().parent / "real_outputs" / "masterzen-winrm-executeCommandResponseWithError.xml"

    def fields(envelope: bytes) -> tuple[str, str, str, str]:
        root = ET.fromstring(envelope)
        values = [n.text or "" for n in root.iter() if n.tag.endswith("}Value")]
        reason = next(n.text or "" for n in root.iter() if n.tag.endswith("}Text"))
        code = next(n.get("Code", "") for n in root.iter() if n.tag.endswith("}WSManFault"))
        return values[0], values[1], reason, code

    real_fields = fields(real.read_bytes())
    assert real_fields == ("s:Receiver", "w:InternalError", "The filename or extension is too long. ", "2147942606")
    sim_fields = fields(fault_body("Receiver", "InternalError", real_fields[2], int(real_fields[3])))
    assert sim_fields == real_fields


def test_move_vm_binds_its_documented_parameters(sim: Simulator) -> None:
    """Move-VM (simulated): -DestinationStoragePath only with -IncludeStorage, -IncludeStorage only with a
    path; a host it cannot reach is a connection error; then the VM moves and leaves the source."""
    peer = HyperVHost(computer_name="HV-SIM-MV")
    link_hosts(sim.host, peer, shared_storage=False)
    vm = sim.host.add_vm("mv-a")
    try:
        s = _session(sim)
        for script, error in (
            ("-DestinationHost HV-SIM-MV -DestinationStoragePath D:\\x", b"Parameter set cannot be resolved"),
            ("-DestinationHost HV-SIM-MV -IncludeStorage", b"-IncludeStorage needs -DestinationStoragePath"),
            ("-DestinationHost NOWHERE", b"No such host is known"),
        ):
            r = s.run_ps(f"Hyper-V\\Move-VM -Name mv-a {script}")
            assert r.status_code == 1 and error in r.std_err.replace(b"_x000D__x000A_", b""), (script, r.std_err)
            assert vm.id in sim.host.vms and vm.id not in peer.vms
        r = s.run_ps("Hyper-V\\Move-VM -Name mv-a -DestinationHost hv-sim-mv")
        assert r.status_code == 0, r.std_err
        assert vm.id in peer.vms and vm.id not in sim.host.vms and vm.host is peer
    finally:
        with sim.host.lock:
            sim.host.peers.pop("hv-sim-mv", None)
            sim.host.vms.pop(vm.id, None)
