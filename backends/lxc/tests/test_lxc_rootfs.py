"""Where a root file system may lie (``virtabs_lxc._rootfs``), on real liblxc as root.

liblxc runs the container privileged on the directory a definition names, with the caller's init: each hostile
path below must be refused by ``define_domain`` with nothing written in the lxcpath. A refused definition is
never removed through liblxc (its destroy deletes the rootfs wherever it is): the test removes the container's
directory itself, should the driver ever write one.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import virtabs
from lxc_helpers import ready_file, wait_for
from virtabs import DomainSpec

from virtabs_lxc.testing import LxcTarget

MiB = 1 << 20


@pytest.fixture
def scratch(lxcpath: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory of its own inside the connection's ``rootfs_dir`` (pytest's temporary directory)."""
    path = tmp_path_factory.mktemp("rootfs-scratch")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def conn(lxc_uri: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(lxc_uri) as c:
        yield c


def _spec(name: str, rootfs: str, **lxc: object) -> DomainSpec:
    extra = LxcTarget.extra(rootfs)
    extra["lxc"].update(lxc)
    return DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra=extra)


def _refused(conn: virtabs.Connection, lxcpath: str, spec: DomainSpec) -> str:
    """Define ``spec``; it must be refused with nothing written. The error's text."""
    before = sorted(os.listdir(lxcpath))
    try:
        with pytest.raises(virtabs.InvalidArgumentError) as exc:
            conn.define_domain(spec)
    finally:
        written = Path(lxcpath) / spec.name
        if written.is_dir() and not written.is_symlink():
            shutil.rmtree(written)  # never liblxc's destroy: it would delete the rootfs named
    assert sorted(os.listdir(lxcpath)) == before, "the refused definition wrote into the lxcpath"
    message = str(exc.value)
    assert spec.name in message
    return message


def _name() -> str:
    return f"vtroot-{secrets.token_hex(3)}"


# Each case: (what it is, a function of (lxcpath, scratch dir in rootfs_dir) -> the hostile rootfs path)
HOSTILE: list[tuple[str, Callable[[Path, Path], str]]] = [
    ("the host's root", lambda lp, sc: "/"),
    ("a host directory outside every root", lambda lp, sc: "/etc"),
    ("the lxcpath itself", lambda lp, sc: str(lp)),
    ("the lxcpath's parent through ..", lambda lp, sc: f"{lp}/.."),
    ("out of the rootfs_dir through ..", lambda lp, sc: f"{sc}/../../../../../../.."),
    ("a symlink to / inside the rootfs_dir", lambda lp, sc: _link(sc / "to-root", "/")),
    ("a symlink to /etc inside the lxcpath", lambda lp, sc: _link(lp / f"link-{secrets.token_hex(3)}", "/etc")),
    ("a device", lambda lp, sc: "/dev/null"),
    ("a directory of /dev", lambda lp, sc: "/dev/shm"),
    ("a symlink to /dev inside the rootfs_dir", lambda lp, sc: _link(sc / "to-dev", "/dev")),
    ("init's root through /proc", lambda lp, sc: "/proc/1/root"),
    ("a directory of /sys", lambda lp, sc: "/sys/kernel"),
    ("the rootfs_dir itself", lambda lp, sc: _rootfs_dir(sc)),
    ("a path that does not exist", lambda lp, sc: f"{sc}/missing"),
    ("a directory at the top of the lxcpath", lambda lp, sc: _mkdir(lp / f"top-{secrets.token_hex(3)}")),
]


def _link(link: Path, target: str) -> str:
    link.symlink_to(target)
    return str(link)


def _mkdir(path: Path) -> str:
    path.mkdir()
    return str(path)


def _rootfs_dir(scratch: Path) -> str:
    # the lxc_uri fixture's rootfs_dir: pytest's base temporary directory, the scratch dir's parent
    return str(scratch.parent)


@pytest.mark.parametrize(("what", "path_of"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_rootfs_is_refused_before_anything_is_written(
    conn: virtabs.Connection, lxcpath: str, scratch: Path, what: str, path_of: Callable[[Path, Path], str]
) -> None:
    path = path_of(Path(lxcpath), scratch)
    try:
        message = _refused(conn, lxcpath, _spec(_name(), path))
    finally:
        for link in Path(lxcpath).glob("link-*"):
            link.unlink()
        for top in Path(lxcpath).glob("top-*"):
            top.rmdir()
    assert "root file system" in message, message


def _container_on(conn: virtabs.Connection, rootfs: Path) -> virtabs.Domain:
    rootfs.mkdir(parents=True, exist_ok=True)
    return conn.define_domain(_spec(_name(), str(rootfs)))


def test_another_containers_tree_is_refused(conn: virtabs.Connection, lxcpath: str, scratch: Path) -> None:
    """Inside, equal to or holding another container's directory or root file system: that container, running
    privileged, owns its tree and could put a symlink to / on the way."""
    other = _container_on(conn, scratch / "other-rootfs")
    try:
        (scratch / "other-rootfs" / "nested").mkdir()
        for path in (
            scratch / "other-rootfs",  # the same tree
            scratch / "other-rootfs" / "nested",  # inside it
            scratch,  # holding it
            Path(lxcpath) / other.name,  # its directory
            Path(lxcpath) / other.name / "sub-of-dir",
        ):
            path.mkdir(exist_ok=True)
            message = _refused(conn, lxcpath, _spec(_name(), str(path)))
            assert other.name in message and ("overlaps" in message or "directory of container" in message), message
    finally:
        other.undefine()
    assert (scratch / "other-rootfs" / "nested").is_dir(), "undefine removed a user-supplied rootfs"


def test_a_rootfs_key_in_the_passthrough_cannot_name_another_root(
    conn: virtabs.Connection, lxcpath: str, scratch: Path
) -> None:
    """liblxc takes a key's last value: a ``lxc.rootfs.path`` after virtabs' own would name any directory (for a
    template, the tree the template fills as root)."""
    rootfs = scratch / "fine"
    rootfs.mkdir()
    victim = scratch / "victim"
    victim.mkdir()
    spec = _spec(_name(), str(rootfs), config={"lxc.rootfs.path": f"dir:{victim}"})
    _refused(conn, lxcpath, spec)
    template = DomainSpec(
        name=_name(),
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        extra={"lxc": {"template": "busybox", "config": {"lxc.rootfs.path": f"dir:{victim}"}}},
    )
    _refused(conn, lxcpath, template)
    assert list(victim.iterdir()) == [], "the template wrote into the directory the passthrough named"


def test_the_error_quotes_a_bounded_prefix(conn: virtabs.Connection, lxcpath: str, scratch: Path) -> None:
    deep = "/" + "/".join(["x" * 200] * 15)  # 3,015 characters, outside every root
    message = _refused(conn, lxcpath, _spec(_name(), deep))
    assert repr(deep[:120]) + f"… ({len(deep)} characters)" in message and deep[:121] not in message, message
    assert len(message) < 400, message


def test_rootfs_in_the_lxcpath_or_the_rootfs_dir_is_written_resolved_and_runs(
    conn: virtabs.Connection, lxcpath: str, scratch: Path, rootfs_template: Path
) -> None:
    """The allowed places: a directory of the lxcpath that is no container, and the URI's ``rootfs_dir``; given
    through a symlink and ``..``, the configuration names the resolved directory."""
    in_lxcpath = Path(lxcpath) / f"images-{secrets.token_hex(3)}" / "busybox"
    shutil.copytree(rootfs_template, in_lxcpath, symlinks=True)
    in_dir = scratch / "real"
    shutil.copytree(rootfs_template, in_dir, symlinks=True)
    (scratch / "alias").symlink_to(in_dir)
    try:
        for given, resolved in ((str(in_lxcpath), in_lxcpath), (f"{scratch}/alias/../alias", in_dir)):
            dom = conn.define_domain(_spec(_name(), given))
            try:
                assert dom.spec().extra["lxc"]["rootfs"] == str(resolved)
                dom.start()
                wait_for(lambda r=resolved: ready_file(r).exists(), 20, "busybox init")  # type: ignore[misc]
                dom.destroy()
            finally:
                dom.undefine()
            assert (resolved / "bin" / "busybox").exists()
    finally:
        shutil.rmtree(in_lxcpath.parent, ignore_errors=True)


def test_the_uri_rootfs_dir_is_checked(lxcpath: str, scratch: Path) -> None:
    for bad in ("/", "/dev", "relative", f"{scratch}/missing", lxcpath, f"{lxcpath}/sub"):
        if bad.endswith("/sub"):
            os.makedirs(bad, exist_ok=True)
        try:
            with pytest.raises(virtabs.InvalidArgumentError) as exc:
                virtabs.open(f"lxc:///?path={lxcpath}&rootfs_dir={bad}")
            assert "rootfs_dir" in str(exc.value)
        finally:
            if bad.endswith("/sub"):
                os.rmdir(bad)


def test_without_rootfs_dir_only_the_lxcpath_is_a_root(lxcpath: str, scratch: Path) -> None:
    inside_tmp = scratch / "ok-with-rootfs-dir"
    inside_tmp.mkdir()
    with virtabs.open(f"lxc:///?path={lxcpath}") as conn:
        message = _refused(conn, lxcpath, _spec(_name(), str(inside_tmp)))
    assert "must lie inside" in message and lxcpath in message, message


def test_liblxc_takes_a_config_at_the_top_of_the_lxcpath_for_a_container(lxcpath: str) -> None:
    """Why a root file system may not be ``<lxcpath>/X``: its container could write ``/config``, and liblxc
    lists ``X`` as a container defined by that file (whose hooks it would run as root on the host)."""
    import lxc

    top = Path(lxcpath) / f"top-{secrets.token_hex(3)}"
    top.mkdir()
    try:
        assert top.name not in lxc.list_containers(config_path=lxcpath)
        (top / "config").write_text("lxc.uts.name = written-by-a-container\n")  # what its /config would be
        assert top.name in lxc.list_containers(config_path=lxcpath)
        assert lxc.Container(top.name, lxcpath).get_config_item("lxc.uts.name") == "written-by-a-container"
    finally:
        shutil.rmtree(top)
