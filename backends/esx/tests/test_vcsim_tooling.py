"""The test infrastructure itself: vcsim serves our 2048-bit certificate, counts calls, pages on request."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl
from vcsim_harness import Pki, Vcsim, start_vcsim

PC = vmodl.query.PropertyCollector


def _connect(sim: Vcsim) -> vim.ServiceInstance:
    return SmartConnect(host=sim.host, port=sim.port, user=sim.username, pwd=sim.password, sslContext=sim.ssl_context())


def _vm_spec(content: vim.ServiceInstanceContent) -> PC.FilterSpec:
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    traverse = PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
        propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])],
    )


def test_served_certificate_is_ours_and_verifies(vcsim: Vcsim, pki: Pki) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection((vcsim.host, vcsim.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=vcsim.host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        subject = dict(item[0] for item in tls.getpeercert()["subject"])
    assert der == ssl.PEM_cert_to_DER_cert(pki.cert.read_text())
    assert subject["commonName"] == "127.0.0.1"


def test_untrusted_ca_refused_by_a_verifying_client(vcsim: Vcsim, pki: Pki) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.other_ca))
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection((vcsim.host, vcsim.port), timeout=10) as raw,
    ):
        ctx.wrap_socket(raw, server_hostname=vcsim.host)


def test_call_counter_counts_soap_methods(vcsim: Vcsim) -> None:
    si = _connect(vcsim)
    try:
        vcsim.reset_calls()
        content = si.RetrieveContent()
        content.propertyCollector.RetrievePropertiesEx([_vm_spec(content)], PC.RetrieveOptions())
        calls = vcsim.calls()
    finally:
        Disconnect(si)
    assert calls.get("CreateContainerView") == 1
    assert calls.get("RetrievePropertiesEx") == 1


def test_paging_double_splits_and_continues(vcsim: Vcsim) -> None:
    si = _connect(vcsim)
    try:
        content = si.RetrieveContent()
        pc = content.propertyCollector
        spec = _vm_spec(content)
        everything = [o.obj._moId for o in pc.RetrievePropertiesEx([spec], PC.RetrieveOptions()).objects]
        first = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=3))
        pages, token, paged = [len(first.objects)], first.token, [o.obj._moId for o in first.objects]
        while token:
            page = pc.ContinueRetrievePropertiesEx(token)
            pages.append(len(page.objects))
            paged += [o.obj._moId for o in page.objects]
            token = page.token
        with pytest.raises(vmodl.fault.InvalidArgument):
            pc.ContinueRetrievePropertiesEx(first.token)  # a token is consumed once
    finally:
        Disconnect(si)
    assert len(everything) > 3
    assert paged == everything
    assert all(n <= 3 for n in pages) and len(pages) == -(-len(everything) // 3)


def test_wrong_password_is_refused(vcsim: Vcsim) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host=vcsim.host, port=vcsim.port, user=vcsim.username, pwd="wrong", sslContext=vcsim.ssl_context())


def test_plain_http_mode(vcsim_binary: Path, tmp_path: Path) -> None:
    sim = start_vcsim(vcsim_binary, tmp_path, pki=None, args=("-vm", "1"))
    try:
        si = SmartConnect(protocol="http", host=sim.host, port=sim.port, user=sim.username, pwd=sim.password)
        assert "govmomi simulator" in si.content.about.fullName
        Disconnect(si)
    finally:
        sim.stop()
    assert sim.process.returncode is not None


def test_vcsim_tasks_cannot_be_cancelled(vcsim: Vcsim) -> None:
    """Why ``domain.migrate.abort`` is not declared on vpx (issue 27): vcsim 0.24.2 implements no
    ``CancelTask`` (a SOAP fault, whatever the task), and its RelocateVM_Task has ended when the call
    returns, so no cancelled vMotion could be shown here."""
    si = _connect(vcsim)
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        vm = next(v for v in view.view if v.runtime.powerState == "poweredOn")
        task = vm.RelocateVM_Task(spec=vim.vm.RelocateSpec(host=vm.runtime.host), priority="highPriority")
        assert task.info.state == "success"  # already over: nothing in flight to cancel
        with pytest.raises(vmodl.MethodFault) as fault:
            task.CancelTask()
        assert isinstance(fault.value, vmodl.fault.MethodNotFound), fault.value
        assert fault.value.method == "CancelTask", fault.value
    finally:
        Disconnect(si)
