"""Test infrastructure (never a feature): peers for the libvirt driver to talk to.

* :class:`SilentPeer`: a unix socket that accepts connections and never answers a byte, the
  unluckiest peer there is (a wedged daemon, a firewall that swallows replies).
* :class:`SessionLibvirtd`: a real ``libvirtd`` of our own, in session mode, in a temporary directory,
  reached through its socket (``test+unix:///default?socket=...`` serves libvirt's test driver through
  the real RPC protocol). As root it runs as ``nobody`` (a root libvirtd would be the system daemon,
  sharing /run/libvirt with the one the QEMU contract run uses). It can be paused with SIGSTOP:
  a real peer that stops answering after the connect. Optionally it demands SASL authentication
  (SCRAM-SHA-256 against a sasldb of our own).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from virtabs.testing.plugin import in_ci

SYSTEM = "qemu:///system"
"""The system libvirtd (started as .ci/run does), the real peer of the ``qemu:///system`` tests."""


def need(tool: str, package: str) -> str:
    """The path of ``tool``; a skip naming ``package`` outside CI, a failure under CI."""
    path = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        message = f"{tool} is not installed (apt-get install {package})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


class SilentPeer:
    """A unix socket server that accepts and holds connections, never sending anything."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "silent.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(8)
        self._held: list[socket.socket] = []
        self.accepted = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        """Stop listening and drop the held connections (a stuck libvirt call then ends)."""
        self._server.close()
        for conn in self._held:
            conn.close()


class SessionLibvirtd:
    """A session-mode libvirtd of our own; ``uri`` serves libvirt's test driver through its socket."""

    def __init__(self, *, sasl_user: str | None = None, sasl_password: str | None = None) -> None:
        binary = need("libvirtd", "libvirt-daemon")
        self.dir = tempfile.mkdtemp(prefix="vt-libvirtd-")
        root = Path(self.dir)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.dir,
            "XDG_RUNTIME_DIR": str(root / "run"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_CACHE_HOME": str(root / "cache"),
        }
        (root / "config" / "libvirt").mkdir(parents=True)
        conf = root / "config" / "libvirt" / "libvirtd.conf"
        if sasl_user is not None:
            self._sasl(root, env, sasl_user, sasl_password or "")
            conf.write_text('auth_unix_rw = "sasl"\nauth_unix_ro = "sasl"\n')
        else:
            conf.write_text("")
        argv = [binary, "--timeout", "300", "--config", str(conf)]
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for path in [root, *root.rglob("*")]:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            argv = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *argv]
        self.log = root / "libvirtd.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.socket = str(root / "run" / "libvirt" / "libvirt-sock")
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                output = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"libvirtd did not come up: {output}")
            time.sleep(0.05)
        query = urllib.parse.quote(f"test+unix:///default?socket={self.socket}", safe="")
        self.uri = f"libvirt:///?uri={query}"
        """The virtabs URI of libvirt's test driver behind this daemon."""

    @staticmethod
    def _sasl(root: Path, env: dict[str, str], user: str, password: str) -> None:
        saslpasswd2 = need("saslpasswd2", "sasl2-bin")
        sasl_dir = root / "sasl2"
        sasl_dir.mkdir()
        db = sasl_dir / "libvirt.db"
        (sasl_dir / "libvirt.conf").write_text(f"mech_list: scram-sha-256\nsasldb_path: {db}\n")
        subprocess.run(
            [saslpasswd2, "-f", str(db), "-a", "libvirt", "-p", "-c", user],
            input=password.encode(),
            check=True,
            capture_output=True,
        )
        env["SASL_CONF_PATH"] = str(sasl_dir)

    def pause(self) -> None:
        """SIGSTOP: the daemon keeps its socket and answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the daemon (by its pid) and remove its directory."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SessionLibvirtd:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
