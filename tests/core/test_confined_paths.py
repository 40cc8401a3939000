"""``virtabs.spi.confine_host_path`` and ``resolve_path_root`` on this host's real file system.

What a driver whose host opens paths with more rights than the caller (the libvirt bridge: libvirtd as root)
relies on: a path is resolved (symlinks, ``..``) before it is judged, lies strictly inside a root, never in
``/``, ``/etc``, ``/proc``, ``/sys`` or ``/dev`` unless it is exactly a device the driver owns, and an existing
one is a regular file or directory with one link. A far host's path is judged lexically.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from virtabs.spi import InvalidArgumentError, confine_host_path, path_within, resolve_path_root


@pytest.fixture
def roots(tmp_path: Path) -> tuple[str, str]:
    """(a root, a directory outside it holding a victim file)."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("secret")
    return os.path.realpath(root), os.path.realpath(outside)


def test_a_path_inside_the_root_is_returned_resolved(roots: tuple[str, str]) -> None:
    root, _ = roots
    os.mkdir(os.path.join(root, "sub"))
    assert confine_host_path(f"{root}/sub/../new.img", [root], "disk") == f"{root}/new.img"
    assert confine_host_path(f"{root}//sub/./a.img", [root], "disk") == f"{root}/sub/a.img"
    with open(f"{root}/there.img", "w"):
        pass
    assert confine_host_path(f"{root}/there.img", [root], "disk") == f"{root}/there.img"


def test_a_symlink_inside_the_root_to_another_file_inside_is_followed(roots: tuple[str, str]) -> None:
    root, _ = roots
    with open(f"{root}/real.img", "w"):
        pass
    os.symlink("real.img", f"{root}/alias.img")
    assert confine_host_path(f"{root}/alias.img", [root], "disk") == f"{root}/real.img"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda root, out: f"{root}/../outside/victim", id="dotdot"),
        pytest.param(lambda root, out: f"{out}/victim", id="outside"),
        pytest.param(lambda root, out: root, id="the-root-itself"),
        pytest.param(lambda root, out: root + "-sibling/x.img", id="a-sibling-sharing-the-prefix"),
        pytest.param(lambda root, out: _link(f"{root}/link.img", f"{out}/victim"), id="symlink-out"),
        pytest.param(lambda root, out: _link(f"{root}/dangling.img", f"{out}/new"), id="dangling-symlink-out"),
        pytest.param(lambda root, out: _link(f"{root}/dir", out) + "/victim", id="symlinked-directory-out"),
    ],
)
def test_an_escape_from_the_root_is_refused(roots: tuple[str, str], make: object) -> None:
    root, outside = roots
    path = make(root, outside)  # type: ignore[operator]
    with pytest.raises(InvalidArgumentError, match="must lie inside one of"):
        confine_host_path(path, [root], "disk 'vda'")


def _link(link: str, target: str) -> str:
    os.symlink(target, link)
    return link


@pytest.mark.parametrize("path", ["/", "/etc/shadow", "/etc", "/proc/self/mem", "/sys/kernel", "/dev/null", "/dev/sda"])
def test_host_trees_are_refused_even_as_roots(path: str) -> None:
    with pytest.raises(InvalidArgumentError, match="the host's root or lies in /etc, /proc, /sys, /dev"):
        confine_host_path(path, ["/"], "disk")
    with pytest.raises(InvalidArgumentError, match="path_root"):
        resolve_path_root(path, "the URI's path_root")


def test_a_symlink_in_the_root_to_a_host_tree_is_refused(roots: tuple[str, str]) -> None:
    root, _ = roots
    link = _link(f"{root}/shadow.img", "/etc/shadow")
    with pytest.raises(InvalidArgumentError, match=r"resolved: '/etc/shadow'"):
        confine_host_path(link, [root], "disk")


def test_a_device_the_driver_owns_is_the_only_way_into_dev(roots: tuple[str, str]) -> None:
    root, _ = roots
    assert confine_host_path("/dev/null", [root], "disk", devices={"/dev/null"}) == "/dev/null"
    with pytest.raises(InvalidArgumentError, match="lies in"):
        confine_host_path("/dev/zero", [root], "disk", devices={"/dev/null"})


def test_a_device_node_or_a_hard_link_placed_in_the_root_is_refused(roots: tuple[str, str]) -> None:
    root, outside = roots
    os.link(f"{outside}/victim", f"{root}/hard.img")
    with pytest.raises(InvalidArgumentError, match="2 hard links"):
        confine_host_path(f"{root}/hard.img", [root], "disk")
    os.mkfifo(f"{root}/fifo.img")
    with pytest.raises(InvalidArgumentError, match="neither a regular file nor a directory"):
        confine_host_path(f"{root}/fifo.img", [root], "disk")


@pytest.mark.parametrize("path", ["relative.img", "./x.img", "", "/a\nb.img", "/a\x00b", "C:\\x.img"])
def test_a_malformed_path_is_refused(roots: tuple[str, str], path: str) -> None:
    root, _ = roots
    with pytest.raises(InvalidArgumentError):
        confine_host_path(path, [root], "disk")


def test_a_long_path_is_quoted_bounded(roots: tuple[str, str]) -> None:
    root, _ = roots
    path = "/elsewhere/" + "x" * 100_000
    with pytest.raises(InvalidArgumentError) as info:
        confine_host_path(path[:1000], [root], "disk")
    assert len(str(info.value)) < 2_100
    with pytest.raises(InvalidArgumentError, match="at most 1024 characters"):
        confine_host_path(path, [root], "disk")


def test_a_far_hosts_path_is_judged_lexically(tmp_path: Path) -> None:
    """Another machine's paths: ``..`` collapsed, nothing of this host looked at (its /etc is not here)."""
    assert confine_host_path("/srv/pool/a/../b.img", ["/srv/pool"], "disk", local=False) == "/srv/pool/b.img"
    with pytest.raises(InvalidArgumentError, match="must lie inside"):
        confine_host_path("/srv/pool/../etc-copy/x", ["/srv/pool"], "disk", local=False)
    with pytest.raises(InvalidArgumentError, match="lies in"):
        confine_host_path("/srv/pool/../../etc/shadow", ["/"], "disk", local=False)
    # a symlink of this host does not count there
    _link(str(tmp_path / "out"), "/etc")
    assert confine_host_path(f"{tmp_path}/out/x", [str(tmp_path)], "disk", local=False) == f"{tmp_path}/out/x"
    assert resolve_path_root("/srv/not-here", "root", local=False) == "/srv/not-here"


def test_a_root_must_exist_here_unless_reported_by_the_host(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="not an existing directory"):
        resolve_path_root(str(tmp_path / "missing"), "the URI's path_root")
    assert resolve_path_root(str(tmp_path / "missing"), "a pool", must_exist=False) == str(tmp_path / "missing")


def test_path_within_compares_whole_components() -> None:
    assert path_within("/a/b", "/a") and path_within("/a", "/a") and path_within("/a/b", "/a/")
    assert not path_within("/ab", "/a")
