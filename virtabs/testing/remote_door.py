"""Any driver's published contract target, run on the remote host of a ``DRIVER+ssh://`` URI.

:class:`RemoteDoorTarget` is the client half: every target method runs on the remote host as
``python3 -m virtabs.testing.remote_door`` over an OpenSSH door of its own (the URI's ``keyfile=``,
``known_hosts=``, ``no_verify=``), where the driver's own target (``load_target`` of the local URI,
e.g. ``QemuTarget`` for ``qemu:///embed?root=DIR``) works against a connection of its own to that
host's local URI: images are made and read by ``qemu-img`` there, consoles read there. Nothing assumes
the two hosts share a filesystem, and the connection under test is never the door.

The request is one JSON object on stdin (``uri``, ``method``, ``args``, the target's ``state``: its name
prefix, name counter and scratch directory, so names and cleanup stay those of one target across
calls); the answer one JSON object on stdout (``result`` and the new ``state``, or ``error``).
Domains travel as their names, specs as :meth:`DomainSpec.to_dict`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from typing import Any

from .. import Connection, Domain, DomainSpec
from ..spi import URI, CommandTransport
from .target import TargetUnavailable

__all__ = ["RemoteDoorTarget", "main"]

_SSH_PARAMS = ("keyfile", "known_hosts", "no_verify")


class RemoteDoorTarget:
    """The published target of the URI's driver, run on the remote host (see the module doc)."""

    def __init__(self, uri: str, *, door_timeout: float = 600.0) -> None:
        from .._uri import parse_uri
        from ..remote._client import remote_uri

        parsed = parse_uri(uri)
        if parsed.transport != "ssh" or not parsed.host:
            raise TargetUnavailable(f"RemoteDoorTarget serves DRIVER+ssh://host/... URIs, not {uri!r}")
        self.local_uri = remote_uri(parsed)
        ssh = URI(
            driver=parsed.driver,
            transport="ssh",
            user=parsed.user,
            host=parsed.host,
            port=parsed.port,
            params={k: v for k, v in parsed.params.items() if k in _SSH_PARAMS},
        )
        self._door = CommandTransport(ssh, default_timeout=door_timeout)
        self._python = "python3"  # the remote PATH's: the interpreter virtabs is installed for there
        self.prefix = f"vtc-{uuid.uuid4().hex[:6]}"
        self._peers: list[Connection] = []
        self._peer_roots: list[str] = []
        self._state: dict[str, Any] = {"prefix": self.prefix, "counter": 0, "tmpdir": None}
        attributes = self._call("attributes", {})
        self.job_timeout: float = float(attributes["job_timeout"])
        if attributes.get("shutdown_timeout") is not None:
            self.shutdown_timeout = float(attributes["shutdown_timeout"])

    @classmethod
    def from_uri(cls, uri: str) -> RemoteDoorTarget:
        """The target for ``uri``."""
        return cls(uri)

    def _call(self, method: str, args: dict[str, Any]) -> Any:
        request = {"uri": self.local_uri, "method": method, "args": args, "state": self._state}
        result = self._door.run(
            [self._python, "-m", "virtabs.testing.remote_door"], input=json.dumps(request).encode(), check=False
        )
        try:
            answer = json.loads(result.out)
        except json.JSONDecodeError:
            raise TargetUnavailable(
                f"the remote door on {self._door.where} failed ({method}): {result.err.strip()[-500:]}"
            ) from None
        if "error" in answer:
            error = answer["error"]
            text = f"{error.get('class')} on {self._door.where} ({method}): {error.get('message')}"
            if error.get("class") == "TargetUnavailable":
                raise TargetUnavailable(text)
            raise AssertionError(text)
        self._state = answer["state"]
        return answer["result"]

    # --- the target protocol --------------------------------------------------------------------

    def new_name(self, kind: str) -> str:
        """A name from the remote target's sequence."""
        return str(self._call("new_name", {"kind": kind}))

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """The remote target's spec for a new domain ``name``."""
        return DomainSpec.from_dict(self._call("domain_spec", {"name": name}))

    def make_domain(self, conn: Connection, *, running: bool) -> Domain:
        """A disposable domain made on the remote host, looked up through ``conn``."""
        return conn.lookup_domain(self._call("make_domain", {"running": running}))

    def make_chain_domain(self, conn: Connection) -> Domain:
        """The backing-chain domain made on the remote host, looked up through ``conn``."""
        return conn.lookup_domain(self._call("make_chain_domain", {}))

    def scratch_path(self, conn: Connection, name: str) -> str:
        """A new path on the remote host."""
        return str(self._call("scratch_path", {"name": name}))

    def save_path(self, conn: Connection, name: str) -> str:
        """A new save-file path on the remote host."""
        return str(self._call("save_path", {"name": name}))

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """An image made on the remote host."""
        self._call("create_image", {"path": path, "format": format, "backing": backing})

    def create_block_device(self, conn: Connection, name: str) -> str:
        """A block device (or its stand-in) made on the remote host."""
        return str(self._call("create_block_device", {"name": name}))

    def image_digest(self, conn: Connection, path: str) -> str | None:
        """The guest-visible content of ``path``, read on the remote host."""
        value = self._call("image_digest", {"path": path})
        return None if value is None else str(value)

    def layer_digest(self, conn: Connection, path: str) -> str | None:
        """The data of the file ``path`` alone, read on the remote host."""
        value = self._call("layer_digest", {"path": path})
        return None if value is None else str(value)

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """The remote target's boot marker of ``dom``."""
        return self._call("boot_id", {"domain": dom.name})

    def run_clock(self, conn: Connection, dom: Domain) -> float | None:
        """The remote target's reading of the guest's own run clock."""
        value = self._call("run_clock", {"domain": dom.name})
        return None if value is None else float(value)

    def migration_peer(self, conn: Connection) -> Connection:
        """Another state root made on the remote host by the door, opened over the same ssh endpoint as
        ``conn`` (the one helper process the channel serves runs both halves of the migration there)."""
        import virtabs

        root = str(self._call("peer_root", {}))
        self._peer_roots.append(root)
        params = dict(conn.parsed_uri.params)
        params["root"] = root
        query = "&".join(f"{k}={v}" for k, v in params.items())
        uri = conn.parsed_uri
        user = f"{uri.user}@" if uri.user else ""
        port = f":{uri.port}" if uri.port else ""
        peer = virtabs.open(f"{uri.driver}+ssh://{user}{uri.host}{port}{uri.path}?{query}", timeout=conn.timeout)
        self._peers.append(peer)
        return peer

    def cleanup(self, conn: Connection) -> None:
        """The remote target's cleanup, with its own connection; then the migration peers closed and their
        state roots removed on the remote host (their QEMUs killed)."""
        self._call("cleanup", {})
        while self._peers:
            with contextlib.suppress(Exception):
                self._peers.pop().close()
        while self._peer_roots:
            self._call("remove_root", {"root": self._peer_roots.pop()})

    def close(self) -> None:
        """The remote target's close, then stop the door's ssh master."""
        try:
            self._call("close", {})
        finally:
            self._door.close()


def _plain(value: Any) -> Any:
    if isinstance(value, Domain):
        return value.name
    if isinstance(value, DomainSpec):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    import virtabs

    from .plugin import load_target

    uri, method, args, state = request["uri"], request["method"], request["args"], request["state"]
    target: Any = load_target(uri)
    target.prefix = state["prefix"]
    if hasattr(target, "_counter"):
        import itertools

        target._counter = itertools.count(int(state["counter"]) + 1)
    if state.get("tmpdir"):
        target._tmpdir = state["tmpdir"]
    counted = {"n": int(state["counter"])}
    original_new_name = target.new_name

    def new_name(kind: str) -> str:
        counted["n"] += 1
        return str(original_new_name(kind))

    target.new_name = new_name
    result: Any = None
    if method == "attributes":
        result = {"job_timeout": target.job_timeout, "shutdown_timeout": getattr(target, "shutdown_timeout", None)}
    elif method == "new_name":
        result = target.new_name(args["kind"])
    elif method == "peer_root":
        import tempfile

        result = tempfile.mkdtemp(prefix="vtqp-", dir="/tmp")  # short: QMP socket paths stay under 108 bytes
    elif method == "remove_root":
        _remove_root(str(args["root"]))
    elif method == "close":
        close = getattr(target, "close", None)
        if callable(close):
            close()
    else:
        with virtabs.open(uri) as conn:
            if method == "boot_id":
                result = target.boot_id(conn, conn.lookup_domain(args["domain"]))
            elif method == "run_clock":
                run_clock = getattr(target, "run_clock", None)
                if not callable(run_clock):
                    raise TargetUnavailable("the target must provide run_clock (the remote target has none)")
                result = run_clock(conn, conn.lookup_domain(args["domain"]))
            elif method == "make_domain":
                result = target.make_domain(conn, running=args["running"])
            elif method == "create_image":
                result = target.create_image(conn, args["path"], format=args["format"], backing=args["backing"])
            elif method in ("domain_spec", "make_chain_domain", "scratch_path", "save_path", "create_block_device",
                            "image_digest", "layer_digest", "cleanup"):  # fmt: skip
                result = getattr(target, method)(conn, *args.values())
            else:
                raise TargetUnavailable(f"the remote door serves no method {method!r}")
    tmpdir = getattr(target, "_tmpdir", None)
    if method == "cleanup":
        tmpdir = None
    return {"result": _plain(result), "state": {"prefix": target.prefix, "counter": counted["n"], "tmpdir": tmpdir}}


def _remove_root(root: str) -> None:
    """Kill the QEMUs a migration peer's state root holds and remove it (only roots the door made)."""
    import glob
    import shutil
    import signal

    if not os.path.basename(root).startswith("vtqp-") or os.path.dirname(root) != "/tmp":
        raise TargetUnavailable(f"the door removes only the peer roots it made, not {root!r}")
    for pidfile in glob.glob(os.path.join(root, "**", "qemu.pid"), recursive=True):
        with contextlib.suppress(OSError, ValueError), open(pidfile) as fh:
            os.kill(int(fh.read().strip()), signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    """Serve one request from stdin (the door's remote half)."""
    request = json.load(sys.stdin)
    try:
        answer = _serve(request)
    except Exception as exc:
        answer = {"error": {"class": type(exc).__name__, "message": str(exc)[:2000]}}
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
