"""The LXC driver on real LXC beyond the contract kit: rootfs safety, templates, cgroup info, URIs."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from lxc_helpers import ready_file, wait_for
from virtabs import DomainSpec, DomainState

from virtabs_lxc.testing import LxcTarget

MiB = 1 << 20


@pytest.fixture
def conn(lxc_uri: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(lxc_uri) as c:
        yield c


def _spec(name: str, rootfs: Path) -> DomainSpec:
    return DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra=LxcTarget.extra(str(rootfs)))


def test_undefine_never_deletes_a_user_supplied_rootfs(
    conn: virtabs.Connection, lxcpath: str, rootfs_template: Path, tmp_path: Path
) -> None:
    rootfs = tmp_path / "user-rootfs"
    shutil.copytree(rootfs_template, rootfs, symlinks=True)
    (rootfs / "root" / "precious.txt").write_text("the user's data\n")
    dom = conn.define_domain(_spec("safe1", rootfs))
    dom.start()
    wait_for(lambda: ready_file(rootfs).exists(), 20, "busybox init")
    dom.destroy()
    dom.undefine()
    assert not (Path(lxcpath) / "safe1").exists(), "the container's own directory should be gone"
    assert (rootfs / "root" / "precious.txt").read_text() == "the user's data\n"
    assert (rootfs / "bin" / "busybox").exists()
    # the same rootfs can be defined again
    again = conn.define_domain(_spec("safe1", rootfs))
    again.undefine()
    assert (rootfs / "root" / "precious.txt").exists()


def test_liblxc_destroy_alone_would_delete_it(lxcpath: str, rootfs_template: Path, tmp_path: Path) -> None:
    """Why the driver takes care: liblxc's destroy removes a rootfs outside the lxcpath."""
    import lxc

    rootfs = tmp_path / "victim"
    shutil.copytree(rootfs_template, rootfs, symlinks=True)
    (Path(lxcpath) / "victim").mkdir()
    (Path(lxcpath) / "victim" / "config").write_text(f"lxc.rootfs.path = dir:{rootfs}\nlxc.net.0.type = empty\n")
    assert lxc.Container("victim", lxcpath).destroy()
    assert not rootfs.exists()


def test_template_container_owns_its_rootfs(conn: virtabs.Connection, lxcpath: str) -> None:
    spec = DomainSpec(
        name="tmpl1",
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        extra={"lxc": {"template": "busybox", "config": {"lxc.signal.halt": "SIGUSR1"}}},
    )
    dom = conn.define_domain(spec)
    rootfs = Path(lxcpath) / "tmpl1" / "rootfs"
    assert (rootfs / "bin" / "busybox").exists()
    assert dom.spec().extra["lxc"]["template"] == "busybox"
    dom.start()
    assert dom.state() == DomainState.RUNNING
    dom.destroy()
    dom.undefine()
    assert not rootfs.exists() and not (Path(lxcpath) / "tmpl1").exists()


def test_info_reads_memory_and_cpu_from_cgroups(
    conn: virtabs.Connection, rootfs_template: Path, tmp_path: Path
) -> None:
    rootfs = tmp_path / "info-rootfs"
    shutil.copytree(rootfs_template, rootfs, symlinks=True)
    dom = conn.define_domain(_spec("info1", rootfs))
    try:
        off = dom.info()
        assert off.state == DomainState.SHUTOFF and off.native_state == "STOPPED"
        assert off.memory_bytes == off.max_memory_bytes == 64 * MiB and off.cpu_time_ns == 0
        dom.start()
        wait_for(lambda: ready_file(rootfs).exists(), 20, "busybox init")
        on = dom.info()
        assert on.state == DomainState.RUNNING and on.native_state == "RUNNING"
        assert on.max_memory_bytes == 64 * MiB
        assert 0 < on.memory_bytes < 64 * MiB, on
        assert on.cpu_time_ns > 0
        assert on.vcpus == 1
        dom.suspend()
        assert dom.info().native_state == "FROZEN"
        dom.resume()
    finally:
        if dom.state().is_active:
            dom.destroy()
        dom.undefine()


def test_containers_made_by_lxc_tools_are_listed_with_a_stable_uuid(
    conn: virtabs.Connection, lxcpath: str, tmp_path: Path
) -> None:
    conf = tmp_path / "net.conf"
    conf.write_text("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n")
    subprocess.run(
        ["lxc-create", "-P", lxcpath, "-f", str(conf), "-t", "busybox", "-n", "foreign1"],
        check=True,
        capture_output=True,
    )
    dom = conn.lookup_domain("foreign1")
    assert str(uuid.UUID(dom.uuid)) == dom.uuid
    with virtabs.open(f"lxc:///?path={lxcpath}") as other:
        assert other.lookup_domain("foreign1").uuid == dom.uuid
    assert dom.spec().extra["lxc"]["rootfs"] == f"{lxcpath}/foreign1/rootfs"
    dom.undefine()  # its rootfs is inside the container's directory: it goes with it
    assert not (Path(lxcpath) / "foreign1").exists()


def test_define_refusals(conn: virtabs.Connection, rootfs_template: Path) -> None:
    base = _spec("bad1", rootfs_template)
    cases = [
        DomainSpec(name="bad1", memory_bytes=64 * MiB, vcpus=1, os_type="hvm", extra=base.extra),
        DomainSpec(name="bad1", memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra={"lxc": {}}),
        DomainSpec(name="bad1", memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra={"lxc": {"rootfs": "relative"}}),
        DomainSpec(
            name="bad1", memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra={"lxc": {"rootfs": "/nonexistent"}}
        ),
        DomainSpec(
            name="bad1",
            memory_bytes=64 * MiB,
            vcpus=1,
            os_type="exe",
            disks=[{"target": "vda", "path": "/x"}],
            extra=base.extra,
        ),
        DomainSpec(
            name="bad1",
            memory_bytes=64 * MiB,
            vcpus=1,
            os_type="exe",
            extra={"lxc": {"rootfs": str(rootfs_template), "config": {"lxc.x = lxc.y": "1"}}},
        ),
    ]
    for spec in cases:
        with pytest.raises(virtabs.InvalidArgumentError) as exc:
            conn.define_domain(spec)
        assert "bad1" in str(exc.value)
    assert "bad1" not in [d.name for d in conn.list_domains()]


def test_uri_errors(lxcpath: str) -> None:
    with pytest.raises(virtabs.ConnectError):
        virtabs.open("lxc:///?path=/nonexistent/lxcpath")
    with pytest.raises(virtabs.ConnectError):
        virtabs.open("lxc://otherhost/")
    with pytest.raises(virtabs.InvalidArgumentError):
        virtabs.open(f"lxc:///?path={lxcpath}&bogus=1")


def test_host_info(conn: virtabs.Connection) -> None:
    import lxc

    info = conn.host_info()
    assert info.hypervisor == "lxc" and info.hypervisor_version == lxc.version
    assert info.cpus >= 1 and info.memory_bytes > 0


def test_shutdown_and_reboot_of_a_frozen_container(
    conn: virtabs.Connection, lxcpath: str, rootfs_template: Path, tmp_path: Path
) -> None:
    import lxc

    rootfs = tmp_path / "frozen-rootfs"
    shutil.copytree(rootfs_template, rootfs, symlinks=True)
    dom = conn.define_domain(_spec("frozen1", rootfs))
    try:
        dom.start()
        wait_for(lambda: ready_file(rootfs).exists(), 20, "busybox init")
        pid = lxc.Container("frozen1", lxcpath).init_pid
        dom.suspend()
        dom.reboot()
        wait_for(lambda: lxc.Container("frozen1", lxcpath).init_pid not in (-1, pid), 30, "a new init after the reboot")
        wait_for(lambda: dom.state() == DomainState.RUNNING, 30, "the rebooted container to run")
        wait_for(lambda: ready_file(rootfs).exists(), 20, "busybox init after the reboot")
        dom.suspend()
        dom.shutdown(timeout=30)
        assert dom.state() == DomainState.SHUTOFF
    finally:
        if dom.state().is_active:
            dom.destroy()
        dom.undefine()
