"""The test infrastructure itself: vcsim serves our 2048-bit certificate, counts calls, pages on request, and
its virtual disk double writes, reports and extends VMDK descriptors."""

from __future__ import annotations

import socket
import ssl
import uuid
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


def _outcome(content: vim.ServiceInstanceContent, task: vim.Task) -> tuple[str, object, object]:
    """(state, error, result) of a vcsim task, which has ended when its call returns; read without
    ``info.entity``, which vcsim sets to the VirtualDiskManager where pyVmomi expects a ManagedEntity."""
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=task)],
        propSet=[PC.PropertySpec(type=vim.Task, pathSet=["info.state", "info.error", "info.result"])],
    )
    props = {p.name: p.val for p in content.propertyCollector.RetrieveContents([spec])[0].propSet}
    return props["info.state"], props.get("info.error"), props.get("info.result")


def _succeeded(content: vim.ServiceInstanceContent, task: vim.Task) -> None:
    state, error, _ = _outcome(content, task)
    assert state == "success", error


def _disk_files(sim: Vcsim, name: str) -> dict[str, Path]:
    """The files of disk ``name`` in vcsim's datastore directories (its own file system: the other door)."""
    stem = name.removesuffix(".vmdk")
    return {p.name: p for p in sim.log.parent.rglob(f"{stem}*.vmdk")}


def _disk_info(content: vim.ServiceInstanceContent, name: str) -> vim.host.DatastoreBrowser.VmDiskInfo:
    """What the browser of LocalDS_1 answers for ``name`` to a VmDiskQuery asking for capacityKb and thin."""
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
    ds = next(d for d in view.view if d.name == "LocalDS_1")
    browse = vim.host.DatastoreBrowser
    query = browse.VmDiskQuery(details=browse.VmDiskQuery.Details(capacityKb=True, thin=True, diskType=True))
    spec = browse.SearchSpec(matchPattern=[name.replace(".vmdk", "*.vmdk")], query=[query])
    state, error, result = _outcome(
        content, ds.browser.SearchDatastore_Task(datastorePath="[LocalDS_1]", searchSpec=spec)
    )
    assert state == "success", error
    files = result.file  # type: ignore[attr-defined]
    assert [f.path for f in files] == [name]  # the disk query hides the -flat extent
    return files[0]


def test_disk_double_writes_descriptors_and_extends_them(vcsim: Vcsim) -> None:
    """The session's vcsim runs with ``-disks``: CreateVirtualDisk_Task writes a VMDK text descriptor with
    the requested capacity, the browser reports it as capacityKb, ExtendVirtualDisk_Task grows the extent,
    refuses to shrink (FileFault) and a missing disk (FileNotFound)."""
    name = f"vtd-double-{uuid.uuid4().hex[:8]}.vmdk"
    si = _connect(vcsim)
    try:
        content = si.RetrieveContent()
        vdm, dc = content.virtualDiskManager, content.rootFolder.childEntity[0]
        spec = vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
            diskType="thin", adapterType="lsiLogic", capacityKb=16384
        )
        task = vdm.CreateVirtualDisk_Task(name=f"[LocalDS_1] {name}", datacenter=dc, spec=spec)
        _succeeded(content, task)
        files = _disk_files(vcsim, name)
        flat = name.replace(".vmdk", "-flat.vmdk")
        assert sorted(files) == sorted([name, flat]) and files[flat].stat().st_size == 0  # thin: nothing written
        text = files[name].read_text()
        assert text.startswith("# Disk DescriptorFile\nversion=1\n")
        assert 'createType="vmfsThin"' in text and 'ddb.thinProvisioned = "1"' in text
        assert f'RW 32768 VMFS "{flat}"' in text.splitlines()  # 16 MiB in 512-byte sectors
        info = _disk_info(content, name)
        assert (info.capacityKb, info.thin) == (16384, True)

        task = vdm.ExtendVirtualDisk_Task(name=f"[LocalDS_1] {name}", datacenter=dc, newCapacityKb=32768)
        _succeeded(content, task)
        assert f'RW 65536 VMFS "{flat}"' in files[name].read_text().splitlines()
        assert _disk_info(content, name).capacityKb == 32768

        grown = files[name].read_text()
        task = vdm.ExtendVirtualDisk_Task(name=f"[LocalDS_1] {name}", datacenter=dc, newCapacityKb=8192)
        state, error, _ = _outcome(content, task)
        assert state == "error" and type(error) is vim.fault.FileFault, error
        assert files[name].read_text() == grown  # a refused shrink leaves the disk alone
        task = vdm.ExtendVirtualDisk_Task(name=f"[LocalDS_1] {name}", datacenter=dc, newCapacityKb=32768)
        _succeeded(content, task)  # the same size: nothing to do
        task = vdm.ExtendVirtualDisk_Task(name="[LocalDS_1] vtd-no-such-disk.vmdk", datacenter=dc, newCapacityKb=1)
        state, error, _ = _outcome(content, task)
        assert state == "error" and isinstance(error, vim.fault.FileNotFound), error

        task = vdm.DeleteVirtualDisk_Task(name=f"[LocalDS_1] {name}", datacenter=dc)
        _succeeded(content, task)
        assert _disk_files(vcsim, name) == {}
    finally:
        Disconnect(si)


def test_without_the_disk_double_vcsim_cannot_extend(vcsim_binary: Path, tmp_path: Path) -> None:
    """Why the double exists: govmomi 0.24.2's own simulator has no ExtendVirtualDisk_Task, and its
    CreateVirtualDisk_Task leaves an empty descriptor whatever the capacity."""
    sim = start_vcsim(vcsim_binary, tmp_path, pki=None, args=("-vm", "0"))
    try:
        si = SmartConnect(protocol="http", host=sim.host, port=sim.port, user=sim.username, pwd=sim.password)
        content = si.RetrieveContent()
        vdm, dc = content.virtualDiskManager, content.rootFolder.childEntity[0]
        spec = vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
            diskType="thin", adapterType="lsiLogic", capacityKb=16384
        )
        task = vdm.CreateVirtualDisk_Task(name="[LocalDS_0] plain.vmdk", datacenter=dc, spec=spec)
        _succeeded(content, task)
        assert _disk_files(sim, "plain.vmdk")["plain.vmdk"].stat().st_size == 0
        with pytest.raises(vmodl.fault.MethodNotFound):
            vdm.ExtendVirtualDisk_Task(name="[LocalDS_0] plain.vmdk", datacenter=dc, newCapacityKb=32768)
        Disconnect(si)
    finally:
        sim.stop()
