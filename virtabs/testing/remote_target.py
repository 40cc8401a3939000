"""The contract target of ``test+ssh://host/PATH.json``: the test node read on the remote host, over ssh.

Effects are observed through a door of the target's own on that host: it runs ``cat PATH.json`` there
over its own OpenSSH connection (:class:`virtabs.spi.CommandTransport`, with the URI's ``keyfile=``,
``known_hosts=`` and ``no_verify=``), never through the connection under test and never by assuming
the two hosts share a filesystem. A file-backed test node writes every change back to its file (block
jobs' data included, as their timers move it), so the images' capacity, allocation and backing chain
are there to read.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from typing import Any

from .. import Connection, Domain
from ..spi import URI, CommandTransport
from .target import DefaultTarget, TargetUnavailable, _digest

__all__ = ["RemoteTestTarget"]

_EMPTY_IMAGE = """
import fcntl, json, os, sys
node, path = sys.argv[1], sys.argv[2]
with open(node + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(node) as fh:
        data = json.load(fh)
    for image in data.get("images", []):
        if image["path"] == path:
            image["allocation_bytes"] = 0
    tmp = node + ".target-tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\\n")
    os.replace(tmp, node)
"""
"""Run on the remote host by the target's door: empty one image of a test node file (the file's own lock)."""


class RemoteTestTarget(DefaultTarget):
    """:class:`DefaultTarget` for a remote file-backed test node, with its own door on the remote host."""

    def __init__(self, uri: str, **kwargs: Any) -> None:
        from .._uri import parse_uri

        super().__init__(**kwargs)
        parsed = parse_uri(uri)
        if parsed.driver != "test" or parsed.transport != "ssh" or not parsed.path.endswith(".json"):
            raise TargetUnavailable(f"RemoteTestTarget serves test+ssh://host/PATH.json URIs, not {uri!r}")
        self.node_path = parsed.path
        ssh = URI(
            driver="test",
            transport="ssh",
            user=parsed.user,
            host=parsed.host,
            port=parsed.port,
            params={k: v for k, v in parsed.params.items() if k in ("keyfile", "known_hosts", "no_verify")},
        )
        self._door = CommandTransport(ssh, default_timeout=60)
        self._uri = parsed
        self._peer_count = 0
        self._remote_tmp: str | None = None

    @classmethod
    def from_uri(cls, uri: str) -> RemoteTestTarget:
        """The target for ``uri`` (what the kit's plugin calls)."""
        return cls(uri)

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """A volume at ``path`` created through the connection, then emptied in the remote node file (a
        freshly created destination holds no data), as :class:`DefaultTarget` does in a local node."""
        super().create_image(conn, path, format=format, backing=backing)
        self._empty(path)

    def create_block_device(self, conn: Connection, name: str) -> str:
        """A raw volume standing in for a device, emptied in the remote node file."""
        path = self.scratch_path(conn, name)
        super().create_image(conn, path, format="raw", backing=None)
        self._empty(path)
        return path

    def save_path(self, conn: Connection, name: str) -> str:
        """A new file in a directory made on the remote host, where the helper writes it (a directory of
        this machine does not exist there)."""
        if self._remote_tmp is None:
            made = self._door.run(["mktemp", "-d", f"/tmp/{self.prefix}-XXXXXX"]).out.strip()
            if not made.startswith(f"/tmp/{self.prefix}-") or "\n" in made:
                raise TargetUnavailable(f"mktemp -d on {self._door.where} printed {made[:80]!r}")
            self._remote_tmp = made
        return posixpath.join(self._remote_tmp, self.new_name(name) + ".save")

    def cleanup(self, conn: Connection) -> None:
        """What :class:`DefaultTarget` removes, and the directory of saved files on the remote host."""
        super().cleanup(conn)
        if self._remote_tmp is not None:
            with contextlib.suppress(Exception):  # best effort, as every cleanup
                self._door.run(["rm", "-rf", "--", self._remote_tmp])
            self._remote_tmp = None

    def _empty(self, path: str) -> None:
        """Set the image's allocation to 0 in the node file on the remote host, under the node's flock."""
        self._door.run(["python3", "-c", _EMPTY_IMAGE, self.node_path, path])

    def _node(self) -> dict[str, Any]:
        text = self._door.run(["cat", "--", self.node_path]).out
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TargetUnavailable(f"{self.node_path} on {self._door.where} is not a test node")
        return data

    def _images(self) -> dict[str, dict[str, Any]]:
        return {img["path"]: img for img in self._node().get("images", [])}

    def image_digest(self, conn: Connection, path: str) -> str | None:
        """Capacity and the data of the whole chain of ``path``, as the node file on the remote host says."""
        images = self._images()
        if path not in images:
            return None
        top = images[path]
        data, seen = 0, set()
        cur: str | None = path
        while cur is not None and cur in images and cur not in seen:
            seen.add(cur)
            data += images[cur].get("allocation_bytes") or 0
            cur = images[cur].get("backing")
        capacity = top["capacity_bytes"]
        return _digest(f"visible:{capacity}:{min(capacity, data)}")

    def layer_digest(self, conn: Connection, path: str) -> str | None:
        """Capacity and the data of ``path`` alone, from the node file on the remote host."""
        img = self._images().get(path)
        return None if img is None else _digest(f"layer:{img['capacity_bytes']}:{img.get('allocation_bytes') or 0}")

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """The node file keeps no boot clock: a remote test node cannot prove a reboot from outside."""
        raise TargetUnavailable(
            "the target must provide boot_id; a test node file records no boot clock, so a reboot of a remote "
            "test node cannot be observed from outside the helper"
        )

    def migration_peer(self, conn: Connection) -> Connection:
        """A second test node file on the same remote host (written there through the door), opened over the
        same ssh endpoint: both nodes live in the one helper process the channel serves, as two local test
        nodes of one process do."""
        from .._connection import open as open_connection

        self._peer_count += 1
        path = f"{self.node_path}.peer-{self.prefix}-{self._peer_count}.json"
        self._door.write_file(path, b"{}\n", mode=0o600)
        params = "&".join(f"{k}={v}" for k, v in self._uri.params.items())
        user = f"{self._uri.user}@" if self._uri.user else ""
        port = f":{self._uri.port}" if self._uri.port else ""
        peer = open_connection(f"test+ssh://{user}{self._uri.host}{port}{path}" + (f"?{params}" if params else ""))
        self._peers.append(peer)
        return peer

    def close(self) -> None:
        """Stop the door's ssh master."""
        self._door.close()
