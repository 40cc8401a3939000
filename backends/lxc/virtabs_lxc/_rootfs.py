"""Where a container's root file system may lie: inside a root the connection owns.

liblxc runs containers privileged, as root, on the root file system a definition names, with the caller's init
as PID 1: a definition whose ``extra["lxc"]["rootfs"]`` is ``/`` (or ``/etc``, or another container's tree)
hands the host to whoever may define a domain. So a rootfs is confined, checked once in ``define_domain``
before anything is written:

* it is resolved first (every symlink and ``..``; it must exist and be a directory, so no device path);
* it must lie strictly inside one of the connection's roots: its lxcpath, or the directory given in the URI as
  ``rootfs_dir=DIR`` (the connection's owner chooses the URI, the caller of ``define_domain`` does not);
* it is never ``/``, in ``/proc``, ``/sys`` or ``/dev``, the lxcpath itself or a directory holding it;
* in the lxcpath, it is never a directory at its top (``<lxcpath>/X``): the container could write ``/config``,
  which is ``<lxcpath>/X/config``, and liblxc takes a directory with a ``config`` for a container whose
  definition (hooks run as root on the host included) the container wrote;
* it never overlaps another container of the lxcpath: not inside, equal to or holding another container's
  directory or root file system (a running container owns everything in its tree, and could swap a
  directory on the way to a nested rootfs for a symlink to ``/``), nor in a directory of the lxcpath that holds a
  container's ``config``.

The resolved path is what the configuration names, so liblxc mounts exactly the directory that was checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from virtabs.spi import InvalidArgumentError, path_within, quote

__all__ = ["HOST_TREES", "MAX_QUOTED_PATH", "confine_rootfs", "resolve_rootfs_dir"]

#: Trees of kernel and device files a root file system can never be in (nor a ``rootfs_dir``).
HOST_TREES = ("/proc", "/sys", "/dev")
#: How much of a refused path an error message quotes.
MAX_QUOTED_PATH = 120


def _shown(path: str) -> str:
    """``path`` quoted for an error message: its first :data:`MAX_QUOTED_PATH` characters and its length when
    longer."""
    return quote(path, MAX_QUOTED_PATH)


def _resolved(path: str, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgumentError(f"{what} {_shown(str(path))} must be an absolute path")
    try:
        resolved = os.path.realpath(path, strict=True)
    except OSError as exc:
        raise InvalidArgumentError(f"{what} {_shown(path)} cannot be resolved: {exc.strerror or exc}") from None
    if not os.path.isdir(resolved):
        raise InvalidArgumentError(f"{what} {_shown(path)} is not a directory")
    if resolved == "/" or any(path_within(resolved, tree) for tree in HOST_TREES):
        shown = "" if resolved == path else f" (resolved: {_shown(resolved)})"
        raise InvalidArgumentError(f"{what} {_shown(path)}{shown} is the host's root or kernel/device tree")
    return resolved


def resolve_rootfs_dir(path: str, lxcpath: str) -> str:
    """The URI's ``rootfs_dir`` resolved: an existing directory, not ``/`` nor a host kernel/device tree, and not
    inside the lxcpath (whose directories are containers')."""
    resolved = _resolved(path, "lxc: the URI's rootfs_dir")
    if path_within(resolved, lxcpath):
        raise InvalidArgumentError(
            f"lxc: the URI's rootfs_dir {_shown(path)} lies in the lxcpath {_shown(lxcpath)}; root file systems "
            "there are allowed without it"
        )
    return resolved


def confine_rootfs(
    name: str,
    requested: str,
    *,
    lxcpath: str,
    roots: Sequence[str],
    containers: Iterable[tuple[str, str | None]],
) -> str:
    """The resolved root file system ``requested`` for new container ``name``, or InvalidArgumentError.

    ``lxcpath`` and ``roots`` are resolved (``roots`` holds the lxcpath and the URI's ``rootfs_dir``, if any);
    ``containers`` are the lxcpath's existing containers as ``(directory, rootfs or None)``.
    """
    what = f"domain {quote(name)}: the root file system"
    resolved = _resolved(requested, what)
    shown = _shown(requested) + ("" if resolved == requested else f" (resolved: {_shown(resolved)})")
    if not any(resolved != root and path_within(resolved, root) for root in roots):
        places = " or ".join(_shown(root) for root in roots)
        raise InvalidArgumentError(
            f"{what} {shown} must lie inside {places} (the connection's lxcpath, or the URI's rootfs_dir=DIR)"
        )
    if path_within(lxcpath, resolved):
        raise InvalidArgumentError(f"{what} {shown} is or holds the lxcpath {_shown(lxcpath)}")
    parts = resolved[len(lxcpath.rstrip(os.sep)) + 1 :].split(os.sep) if path_within(resolved, lxcpath) else []
    if parts and os.path.exists(os.path.join(lxcpath, parts[0], "config")):
        raise InvalidArgumentError(f"{what} {shown} lies in the directory of container {quote(parts[0])}")
    if len(parts) == 1:
        raise InvalidArgumentError(
            f"{what} {shown} is a directory at the top of the lxcpath: the container's /config would be "
            f"{_shown(os.path.join(resolved, 'config'))}, which liblxc reads as a container's definition (use a "
            "directory one level deeper, such as <lxcpath>/images/<name>)"
        )
    for directory, rootfs in containers:
        for taken, whose in ((directory, "directory"), (rootfs, "root file system")):
            if not taken:
                continue
            taken = os.path.realpath(taken)
            if path_within(resolved, taken) or path_within(taken, resolved):
                container = os.path.basename(directory)
                raise InvalidArgumentError(
                    f"{what} {shown} overlaps the {whose} of container {quote(container)} ({_shown(taken)})"
                )
    return resolved
