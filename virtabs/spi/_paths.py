"""Host paths a caller names, confined to roots the connection owns.

A driver whose host side runs with more rights than its caller (libvirtd as root opens, relabels and chowns
what a definition names; liblxc runs containers privileged) must not take a caller's path as it comes:
``/etc/shadow`` as a raw disk, a host block device, a ``..`` or a symlink out of an image directory. The
rule (``docs/architecture.md``: every path inside its root), written once for every driver:

* the path is a caller's value first: absolute, no control characters (:func:`virtabs._rules.require_host_path`);
* it is resolved before it is judged: every symlink and ``..`` on this host (``os.path.realpath``), or, when
  the host that uses it is another machine, lexically (``..`` collapsed; that host's symlinks are not visible
  from here, which the driver's documentation says);
* it must lie strictly inside one of the roots (each resolved the same way), and never be ``/`` nor lie in
  :data:`SYSTEM_TREES`, whatever the roots say; an exact path the driver lists as a device it owns (a
  volume of a storage pool of block devices) is the one exception;
* on this host, an existing path inside a root must be a regular file (or a directory) with one link: a
  device node or a second hard link of another file placed in an image directory is refused too.

The driver then hands the host the resolved path, so the host opens what was checked.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Collection, Iterable

from .._errors import InvalidArgumentError, quote

__all__ = ["MAX_QUOTED_PATH", "SYSTEM_TREES", "confine_host_path", "path_within", "resolve_path_root"]

SYSTEM_TREES = ("/etc", "/proc", "/sys", "/dev")
"""Trees of the host's configuration, kernel and device files: no confined path lies in one, and no root
either (a device a driver owns, such as a pool's volume under ``/dev``, is named exactly instead)."""

MAX_QUOTED_PATH = 120
"""How much of a refused path an error message quotes."""


def _shown(path: str) -> str:
    return quote(path, MAX_QUOTED_PATH)


def path_within(path: str, root: str) -> bool:
    """Whether the resolved ``path`` is ``root`` or lies below it (both resolved; no ``..`` left)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _resolve(path: str, what: str, local: bool) -> str:
    from .._rules import require_host_path  # virtabs._rules imports this package: not at module level

    text = require_host_path(path, what)
    if not text.startswith("/"):
        raise InvalidArgumentError(f"invalid {what} {_shown(text)}: a POSIX path starting with '/' is expected")
    if local:
        return os.path.realpath(text)
    resolved = posixpath.normpath(text)
    return "/" + resolved.lstrip("/")  # normpath keeps a leading '//'


def _in_system_tree(resolved: str) -> bool:
    return resolved == "/" or any(path_within(resolved, tree) for tree in SYSTEM_TREES)


def resolve_path_root(path: str, what: str, *, local: bool = True, must_exist: bool = True) -> str:
    """A root given by the connection's owner (a URI parameter, a storage pool's directory), resolved.

    Never ``/`` nor in :data:`SYSTEM_TREES`; on this host it must be an existing directory unless not
    ``must_exist`` (a directory the host reports, such as a simulated pool's, that may not exist here).
    """
    resolved = _resolve(path, what, local)
    shown = _shown(path) + ("" if resolved == path else f" (resolved: {_shown(resolved)})")
    if _in_system_tree(resolved):
        raise InvalidArgumentError(f"{what} {shown} is the host's root or lies in {', '.join(SYSTEM_TREES)}")
    if local and must_exist and not os.path.isdir(resolved):
        raise InvalidArgumentError(f"{what} {shown} is not an existing directory")
    return resolved


def confine_host_path(
    path: str,
    roots: Iterable[str],
    what: str,
    *,
    devices: Collection[str] = (),
    local: bool = True,
) -> str:
    """``path`` resolved, if it lies strictly inside one of ``roots`` or is one of ``devices``; else
    :class:`InvalidArgumentError` naming it (bounded) and saying where paths may lie.

    ``roots`` are resolved directories (:func:`resolve_path_root`); ``devices`` are exact resolved paths the
    connection owns outside them (block volumes of storage pools). ``local`` is False when the path is used on
    another machine: it is then resolved lexically (see the module).
    """
    resolved = _resolve(path, what, local)
    shown = _shown(path) + ("" if resolved == path else f" (resolved: {_shown(resolved)})")
    if resolved in devices:
        return resolved
    if _in_system_tree(resolved):
        raise InvalidArgumentError(
            f"{what} {shown} is the host's root or lies in {', '.join(SYSTEM_TREES)} (and is no volume of the "
            "connection's storage pools)"
        )
    roots = tuple(roots)
    if not any(resolved != root and path_within(resolved, root) for root in roots):
        places = ", ".join(_shown(root) for root in roots) or "no directory (the connection has none)"
        raise InvalidArgumentError(f"{what} {shown} must lie inside one of: {places}")
    if local:
        try:
            info = os.lstat(resolved)
        except FileNotFoundError:
            return resolved  # a file the host will create, in a checked directory
        except OSError as exc:
            raise InvalidArgumentError(f"{what} {shown} cannot be examined: {exc.strerror or exc}") from None
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise InvalidArgumentError(f"{what} {shown} is neither a regular file nor a directory")
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            raise InvalidArgumentError(
                f"{what} {shown} has {info.st_nlink} hard links: another name of the same file may lie outside "
                "the allowed directories"
            )
    return resolved
