"""The host paths a caller hands libvirtd stay inside the connection's roots, on the real ``qemu:///system``.

libvirtd runs as root: a disk it is given is chowned to the QEMU user while the domain runs and read and written
by the guest, a block copy's destination and a save image are created as root, a restored image and a new
volume's backing file are read as root. Each hostile path below (a host file, a host block device, a ``..``
escape, symlinks and a hard link inside a pool's directory, a device node placed there, a newline) is refused
with ``InvalidArgumentError`` for every operation that hands a path to libvirtd, before libvirtd is asked:
nothing is defined, attached, copied, saved or restored, no destination is created, and the files keep their
owner, mode, size and modification time. The same operations on paths inside the pool's directory (and inside
the URI's ``path_root``) still work.

A real libvirtd is needed (``.ci/run`` starts it): skipped without it, failed under CI. Every object is named
with a random prefix and lives in temporary directories of this module, so other runs on the host are left alone.
The hostile operations are never allowed to run a domain on a hostile path: with the check removed, the tests
fail at the define, attach or job start, before any domain starts on one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import virtabs
from virtabs import BlockCopyFlags, DiskSpec, DomainSpec

from .peers import SYSTEM
from .qemu_target import QemuTarget

MiB = 1 << 20
IMAGES = "/var/lib/libvirt/images"


def _fingerprint(path: str) -> tuple[int, int, int, int, int] | None:
    """Owner, group, mode, size and mtime (ns) of ``path`` itself, None when it does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_uid, st.st_gid, st.st_mode, st.st_size, st.st_mtime_ns)


@dataclass
class Rig:
    """A pool directory (a transient dir pool of libvirtd), an outside directory with a victim file, a loop device
    of this module's own, and a running domain on an image in the pool."""

    system: Any
    uri: str
    prefix: str
    pool_dir: str
    pool: str
    outside: str
    victim: str
    loop: str
    target: QemuTarget
    conn: virtabs.Connection
    running: virtabs.Domain

    def name(self, what: str) -> str:
        """A unique name for this run."""
        return f"{self.prefix}-{what}-{uuid.uuid4().hex[:4]}"


@pytest.fixture(scope="module")
def rig(system: Any) -> Iterator[Rig]:
    import libvirt

    prefix = f"vtpa{uuid.uuid4().hex[:6]}"
    parent = IMAGES if os.path.isdir(IMAGES) else None
    pool_dir = tempfile.mkdtemp(prefix=f"{prefix}-pool-", dir=parent)
    outside = tempfile.mkdtemp(prefix=f"{prefix}-outside-", dir=parent)  # same file system: hard links work
    os.chmod(pool_dir, 0o755)
    victim = os.path.join(outside, "victim.img")
    with open(victim, "wb") as fh:
        fh.write(b"not for the guest\n" * 4096)
    os.chmod(victim, 0o600)
    backing = os.path.join(outside, "loop.raw")
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", backing, "64M"], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", backing], check=True, capture_output=True, text=True)
    xml = f"<pool type='dir'><name>{prefix}</name><target><path>{pool_dir}</path></target></pool>"
    system.storagePoolCreateXML(xml, 0)
    target = QemuTarget(pool_dir, SYSTEM, pool=prefix)
    uri = f"libvirt+{SYSTEM}"
    conn = virtabs.open(uri)
    running = conn.define_domain(target.domain_spec(conn, f"{prefix}-run"))
    running.start()
    try:
        yield Rig(system, uri, prefix, pool_dir, prefix, outside, victim, loop.stdout.strip(), target, conn, running)
    finally:
        for dom in system.listAllDomains(0):
            if dom.name().startswith(prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        conn.close()
        target.close()
        with contextlib.suppress(libvirt.libvirtError):
            system.storagePoolLookupByName(prefix).destroy()
        subprocess.run(["losetup", "-d", loop.stdout.strip()], check=False)
        shutil.rmtree(pool_dir, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)


# --- the hostile paths ---------------------------------------------------------------------------------

HOSTILE = [
    "host-file",  # a root-owned 0600 file of this test in /etc (a stand-in for /etc/shadow where libvirtd would write)
    "host-block-device",  # a loop device that is no pool's volume
    "dotdot-escape",  # <pool>/../<outside>/victim.img
    "symlink-out",  # <pool>/link.img -> the victim outside
    "dangling-symlink-out",  # <pool>/new.img -> /etc/<new file>: a destination created through it lands in /etc
    "hard-link",  # <pool>/hard.img: a second name of the victim
    "device-node",  # <pool>/node.img: a block device node made in the pool's directory
    "pool-directory",  # the pool's directory itself
]
READ_ONLY_HOSTILE = ["etc-shadow", *HOSTILE]
"""Operations that only read the path (or only record it) may be tried on ``/etc/shadow`` itself: even without
the check they would not change it. Those that write (copy, save) get the stand-in."""


@dataclass
class Hostile:
    """A hostile path and the files whose state must not change (an absent file must stay absent)."""

    path: str
    watched: tuple[str, ...]


@pytest.fixture
def hostile(rig: Rig, request: pytest.FixtureRequest) -> Iterator[Hostile]:
    kind = request.param
    made: list[str] = []

    def inside(name: str) -> str:
        path = os.path.join(rig.pool_dir, f"{rig.name(name)}.img")
        made.append(path)
        return path

    if kind == "etc-shadow":
        case = Hostile("/etc/shadow", ("/etc/shadow",))
    elif kind == "host-file":
        own = f"/etc/{rig.name('shadow')}"
        with open(own, "w") as fh:
            fh.write("root:*:19000:0:99999:7:::\n")
        os.chmod(own, 0o600)
        made.append(own)
        case = Hostile(own, (own,))
    elif kind == "host-block-device":
        case = Hostile(rig.loop, (rig.loop,))
    elif kind == "dotdot-escape":
        case = Hostile(os.path.join(rig.pool_dir, os.path.relpath(rig.victim, rig.pool_dir)), (rig.victim,))
        assert ".." in case.path and case.path.startswith(rig.pool_dir + "/")
    elif kind == "symlink-out":
        link = inside("link")
        os.symlink(rig.victim, link)
        case = Hostile(link, (rig.victim, link))
    elif kind == "dangling-symlink-out":
        link = inside("dangling")
        gone = f"/etc/{rig.name('created')}.img"
        made.append(gone)  # removed after the test should it have been created (a planted failure)
        os.symlink(gone, link)
        case = Hostile(link, (gone, link))
    elif kind == "hard-link":
        hard = inside("hard")
        os.link(rig.victim, hard)
        case = Hostile(hard, (rig.victim, hard))
    elif kind == "device-node":
        node = inside("node")
        os.mknod(node, stat.S_IFBLK | 0o600, os.stat(rig.loop).st_rdev)
        case = Hostile(node, (node, rig.loop))
    elif kind == "pool-directory":
        case = Hostile(rig.pool_dir, ())
    else:  # pragma: no cover - the parameter list above
        raise AssertionError(kind)
    before = {path: _fingerprint(path) for path in case.watched}
    try:
        yield case
        assert {path: _fingerprint(path) for path in case.watched} == before, "a watched file changed"
    finally:
        for path in made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _refused(call: Any) -> str:
    with pytest.raises(virtabs.InvalidArgumentError) as info:
        call()
    message = str(info.value)
    assert "must lie inside" in message or "lies in" in message or "hard links" in message or "neither" in message
    return message


@pytest.mark.parametrize("hostile", READ_ONLY_HOSTILE, indirect=True)
def test_define_refuses_a_hostile_disk(rig: Rig, hostile: Hostile) -> None:
    name = rig.name("def")
    spec = DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", hostile.path),))
    _refused(lambda: rig.conn.define_domain(spec))
    assert name not in [d.name() for d in rig.system.listAllDomains(0)]


@pytest.mark.parametrize("hostile", READ_ONLY_HOSTILE, indirect=True)
def test_attach_refuses_a_hostile_disk(rig: Rig, hostile: Hostile) -> None:
    spec = rig.target.domain_spec(rig.conn, rig.name("att"))
    dom = rig.conn.define_domain(spec)
    _refused(lambda: dom.attach_disk(DiskSpec("vdb", hostile.path)))
    assert [d.target for d in dom.disks()] == ["vda"]
    assert "vdb" not in rig.system.lookupByUUIDString(dom.uuid).XMLDesc(0)
    dom.undefine()


@pytest.mark.parametrize("hostile", HOSTILE, indirect=True)
def test_block_copy_refuses_a_hostile_destination(rig: Rig, hostile: Hostile) -> None:
    flags = BlockCopyFlags.TRANSIENT_JOB
    if os.path.exists(hostile.path) and not os.path.isdir(hostile.path):
        flags |= BlockCopyFlags.REUSE_EXT  # an existing file: libvirt would reuse (and overwrite) it
    _refused(lambda: rig.running.block_copy("vda", hostile.path, flags=flags, format="raw"))
    assert rig.running.block_job_info("vda") is None


@pytest.mark.parametrize("hostile", HOSTILE, indirect=True)
def test_save_refuses_a_hostile_image(rig: Rig, hostile: Hostile) -> None:
    _refused(lambda: rig.running.save(hostile.path))
    assert rig.running.info().state is virtabs.DomainState.RUNNING


@pytest.mark.parametrize("hostile", READ_ONLY_HOSTILE, indirect=True)
def test_restore_refuses_a_hostile_image(rig: Rig, hostile: Hostile) -> None:
    def ours() -> list[str]:  # other runs share this libvirtd: only this module's domains are compared
        return sorted(d.name() for d in rig.system.listAllDomains(0) if d.name().startswith(rig.prefix))

    names = ours()
    _refused(lambda: rig.conn.restore(hostile.path))
    assert ours() == names


@pytest.mark.parametrize("hostile", READ_ONLY_HOSTILE, indirect=True)
def test_volume_create_refuses_a_hostile_backing_file(rig: Rig, hostile: Hostile) -> None:
    name = f"{rig.name('vol')}.qcow2"
    pool = rig.conn.lookup_storage_pool(rig.pool)
    _refused(lambda: pool.create_volume(name, 64 * MiB, format="qcow2", backing=hostile.path))
    assert not os.path.exists(os.path.join(rig.pool_dir, name))


@pytest.mark.parametrize(
    "call",
    [
        lambda rig, p: rig.conn.define_domain(
            DomainSpec(name=rig.name("nl"), memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", p),))
        ),
        lambda rig, p: rig.running.block_copy("vda", p, flags=BlockCopyFlags.TRANSIENT_JOB),
        lambda rig, p: rig.running.save(p),
        lambda rig, p: rig.conn.restore(p),
    ],
    ids=["define", "block-copy", "save", "restore"],
)
def test_a_path_with_a_newline_is_refused(rig: Rig, call: Any) -> None:
    path = os.path.join(rig.pool_dir, f"{rig.name('nl')}\n.img")
    with pytest.raises(virtabs.InvalidArgumentError, match="control character"):
        call(rig, path)
    assert not os.path.exists(path)
    assert rig.running.info().state is virtabs.DomainState.RUNNING


# --- what stays allowed --------------------------------------------------------------------------------


def test_paths_inside_the_pool_still_work(rig: Rig) -> None:
    """Define and attach disks in the pool's directory, copy into it, save into it and restore from it, and
    create a volume backed by an image in it."""
    spec = rig.target.domain_spec(rig.conn, rig.name("ok"))
    dom = rig.conn.define_domain(spec)
    extra = os.path.join(rig.pool_dir, f"{rig.name('extra')}.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", extra, "16M"], check=True)
    dom.attach_disk(DiskSpec("vdb", extra, format="qcow2"))
    assert [(d.target, d.path) for d in dom.disks()] == [("vda", spec.disks[0].path), ("vdb", extra)]
    dom.start()
    copy = os.path.join(rig.pool_dir, f"{rig.name('copy')}.qcow2")
    job = dom.block_copy("vda", copy, flags=BlockCopyFlags.TRANSIENT_JOB)
    job.wait_ready(60)
    job.abort()
    assert os.path.isfile(copy)
    image = os.path.join(rig.pool_dir, f"{rig.name('save')}.save")
    dom.save(image)
    assert dom.info().state is virtabs.DomainState.SHUTOFF and os.path.isfile(image)
    assert rig.conn.restore(image).uuid == dom.uuid
    assert dom.info().state is virtabs.DomainState.RUNNING
    dom.destroy()
    dom.undefine()
    rig.system.storagePoolLookupByName(rig.pool).refresh(0)
    pool = rig.conn.lookup_storage_pool(rig.pool)
    vol = pool.create_volume(f"{rig.name('over')}.qcow2", 64 * MiB, format="qcow2", backing=extra)
    assert vol.info().backing_chain == (extra,)


def test_the_uri_path_root_allows_a_directory_outside_the_pools(rig: Rig) -> None:
    """``?path_root=DIR``: a save image in DIR is refused without it and written with it."""
    save_dir = tempfile.mkdtemp(prefix=f"{rig.prefix}-root-", dir=rig.outside)
    os.chmod(rig.outside, 0o755)
    image = os.path.join(save_dir, "vm.save")
    _refused(lambda: rig.running.save(image))
    assert not os.path.exists(image)
    with virtabs.open(f"{rig.uri}?path_root={save_dir}") as rooted:
        dom = rooted.lookup_domain(rig.running.uuid)
        dom.save(image)
        assert os.path.isfile(image)
        assert rooted.restore(image).uuid == dom.uuid
    assert rig.running.info().state is virtabs.DomainState.RUNNING


@pytest.mark.parametrize("root", ["/", "/etc", "/dev", "/proc/self", "relative/dir"])
def test_a_uri_path_root_on_host_trees_is_refused(root: str) -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="path_root"):
        virtabs.open(f"libvirt+{SYSTEM}?path_root={root}")


def test_the_uri_block_device_allows_exactly_that_device(rig: Rig) -> None:
    """``?block_device=DEV``: the named device may back a disk (defined, not started), another is still refused."""
    name = rig.name("dev")
    spec = DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", rig.loop),))
    _refused(lambda: rig.conn.define_domain(spec))
    other = next(f"/dev/loop{n}" for n in range(8) if f"/dev/loop{n}" != rig.loop)
    with virtabs.open(f"{rig.uri}?block_device={rig.loop}") as rooted:
        dom = rooted.define_domain(spec)
        assert [(d.target, d.path) for d in dom.disks()] == [("vda", rig.loop)]
        assert "type='block'" in rig.system.lookupByName(name).XMLDesc(0)
        dom.undefine()
        _refused(
            lambda: rooted.define_domain(
                DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", other),))
            )
        )


@pytest.mark.parametrize(
    "device",
    ["/etc/passwd", "/dev/null", "relative", "/dev/no-such-device", "/dev/loop0::/dev/loop1"],
    ids=["a-file", "a-character-device", "relative", "missing", "an-empty-entry"],
)
def test_a_uri_block_device_that_is_no_block_device_is_refused(device: str) -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="block_device"):
        virtabs.open(f"libvirt+{SYSTEM}?block_device={device}")


def test_a_volume_of_a_pool_of_block_devices_is_allowed_while_the_pool_is_active() -> None:
    """libvirt's test driver simulates a logical pool (its volumes are ``<target>/<name>``, under /dev): its
    volume may back a disk, read again at each call, so once the pool is stopped the same path is refused. (No
    real pool of block devices can be made on this machine: no LVM, and its kernel shows no loop partitions.)"""
    with virtabs.open("libvirt+test:///default") as conn:
        lv = conn._driver._conn  # type: ignore[attr-defined]
        vg = f"vtpa{uuid.uuid4().hex[:6]}"
        xml = f"<pool type='logical'><name>{vg}</name><source><name>{vg}</name></source><target><path>/dev/{vg}</path></target></pool>"
        pool = lv.storagePoolCreateXML(xml, 0)
        volume = pool.createXML("<volume><name>lv1</name><capacity>1048576</capacity></volume>", 0).path()
        assert volume == f"/dev/{vg}/lv1"
        spec = DomainSpec(name=f"{vg}-a", memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", volume),))
        dom = conn.define_domain(spec)
        assert [d.path for d in dom.disks()] == [volume]
        dom.undefine()
        pool.destroy()
        _refused(lambda: conn.define_domain(spec))
        _refused(
            lambda: conn.define_domain(
                DomainSpec(name=f"{vg}-b", memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", f"/dev/{vg}/lv2"),))
            )
        )


# --- backing files an image records ----------------------------------------------------------------------

BACKING = ["victim-outside", "etc-shadow", "two-levels-down", "json-protocol", "relative-escape"]


@pytest.fixture
def hostile_image(rig: Rig, request: pytest.FixtureRequest) -> Iterator[Hostile]:
    """A qcow2 inside the pool whose header (``qemu-img rebase -u``: nothing opened) names a backing file out of the
    roots: directly, two levels down, as a ``json:`` protocol, or relative with ``..``. Raw disks a guest wrote
    could hold the same header."""
    kind = request.param
    made: list[str] = []

    def image(backing: str, backing_format: str = "raw") -> str:
        path = os.path.join(rig.pool_dir, f"{rig.name('hdr')}.qcow2")
        made.append(path)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"], check=True)
        subprocess.run(["qemu-img", "rebase", "-u", "-b", backing, "-F", backing_format, path], check=True)
        return path

    if kind == "victim-outside":
        top = image(rig.victim)
    elif kind == "etc-shadow":
        top = image("/etc/shadow")
    elif kind == "two-levels-down":
        top = image(image(rig.victim), "qcow2")
    elif kind == "json-protocol":
        top = image('json:{"driver": "file", "filename": "/etc/shadow"}')
    elif kind == "relative-escape":
        top = image(os.path.relpath(rig.victim, rig.pool_dir))
    else:  # pragma: no cover - the parameter list above
        raise AssertionError(kind)
    watched = (rig.victim, "/etc/shadow", *made)
    before = {path: _fingerprint(path) for path in watched}
    try:
        yield Hostile(top, watched)
        assert {path: _fingerprint(path) for path in watched} == before, "a watched file changed"
    finally:
        for path in made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _refused_backing(call: Any) -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="backing"):
        call()


@pytest.mark.parametrize("hostile_image", BACKING, indirect=True)
def test_define_and_attach_refuse_an_image_whose_backing_file_is_out(rig: Rig, hostile_image: Hostile) -> None:
    name = rig.name("bdef")
    disk = DiskSpec("vda", hostile_image.path, format="qcow2")
    _refused_backing(
        lambda: rig.conn.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, disks=(disk,)))
    )
    assert name not in [d.name() for d in rig.system.listAllDomains(0)]
    dom = rig.conn.define_domain(rig.target.domain_spec(rig.conn, rig.name("batt")))
    _refused_backing(lambda: dom.attach_disk(DiskSpec("vdb", hostile_image.path, format="qcow2")))
    assert [d.target for d in dom.disks()] == ["vda"]
    dom.undefine()


@pytest.mark.parametrize("hostile_image", BACKING, indirect=True)
def test_a_reused_copy_destination_whose_backing_file_is_out_is_refused(rig: Rig, hostile_image: Hostile) -> None:
    flags = BlockCopyFlags.TRANSIENT_JOB | BlockCopyFlags.REUSE_EXT | BlockCopyFlags.SHALLOW
    for fmt in (None, "qcow2"):
        with pytest.raises(virtabs.InvalidArgumentError, match="backing"):
            rig.running.block_copy("vda", hostile_image.path, flags=flags, format=fmt)
        assert rig.running.block_job_info("vda") is None


@pytest.mark.parametrize("hostile_image", BACKING, indirect=True)
def test_a_volume_over_an_image_whose_backing_file_is_out_is_refused(rig: Rig, hostile_image: Hostile) -> None:
    name = f"{rig.name('bvol')}.qcow2"
    pool = rig.conn.lookup_storage_pool(rig.pool)
    _refused_backing(lambda: pool.create_volume(name, 64 * MiB, format="qcow2", backing=hostile_image.path))
    assert not os.path.exists(os.path.join(rig.pool_dir, name))


def test_a_chain_inside_the_pool_is_accepted(rig: Rig) -> None:
    """base <- mid <- top, all in the pool, one named relatively: defined as qcow2, read back."""
    base, mid, top = (os.path.join(rig.pool_dir, f"{rig.name(n)}.qcow2") for n in ("base", "mid", "top"))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "64M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", mid], check=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", os.path.basename(mid), "-F", "qcow2", top],
        check=True,
        cwd=rig.pool_dir,
    )
    spec = DomainSpec(
        name=rig.name("chain"), memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", top, format="qcow2"),)
    )
    dom = rig.conn.define_domain(spec)
    assert [d.path for d in dom.disks()] == [top]
    dom.undefine()
