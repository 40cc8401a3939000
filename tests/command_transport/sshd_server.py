"""A real OpenSSH server on loopback for tests: its own host key, client key, address, port and config in a directory.

Test infrastructure (not part of virtabs). Debian's ``openssh-server`` provides ``/usr/sbin/sshd``; no
system sshd is used or touched. The server accepts only the generated client key, for the current user,
and logs to ``sshd.log`` in its directory (the tests count logins there)::

    server = Sshd(tmp_path, set_env={"PATH": "/x/bin:/usr/bin:/bin"})
    server.start()
    uri = server.uri("vbox", "/session")   # vbox+ssh://root@127.0.0.1:PORT/session?keyfile=...&known_hosts=...
    server.stop()

``Sshd(root, address="127.0.0.3")`` listens on another loopback address: a second "host" (its own host key,
so a client sees two machines). Backends' tests load this file by path (it is not a package).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def sshd_available() -> str | None:
    """None when sshd and ssh can run here, else what to install."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        return "OpenSSH server missing: apt-get install openssh-server"
    if shutil.which("ssh") is None:
        return "OpenSSH client missing: apt-get install openssh-client"
    return None


def _free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtabs-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


class Sshd:
    """One sshd process listening on ``address``:port (127.0.0.1 unless told), configured from files in ``root``."""

    def __init__(self, root: Path, *, set_env: dict[str, str] | None = None, address: str = "127.0.0.1") -> None:
        self.root = root
        self.address = address
        # SHLVL=1: bash then skips ~/.bashrc for ssh commands (it sources it only at shell level 1), so a
        # developer's heavy .bashrc (pyenv init: ~0.7 s) stays out of every session, as with Debian's default.
        self.set_env = {"SHLVL": "1", **(set_env or {})}
        self.port = 0
        self.user = getpass.getuser()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client_key = root / "client_ed25519"
        self.known_hosts = root / "known_hosts"
        self.log = root / "sshd.log"
        self.host_pub = ""

    def start(self, timeout: float = 20.0) -> None:
        """Generate keys and config, start sshd and wait until it answers with its banner."""
        self.root.mkdir(parents=True, exist_ok=True)
        host_key = self.root / "host_ed25519"
        if not host_key.exists():
            self.host_pub = _keygen(host_key)
            client_pub = _keygen(self.client_key)
            (self.root / "authorized_keys").write_text(client_pub + "\n")
        else:
            self.host_pub = host_key.with_suffix(".pub").read_text().strip()
        self.port = _free_port(self.address)
        key_type, key_data = self.host_pub.split()[:2]
        self.known_hosts.write_text(f"[{self.address}]:{self.port} {key_type} {key_data}\n")
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.address}",
            f"HostKey {host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            "MaxSessions 64",
            "MaxStartups 64",
            "LogLevel VERBOSE",
        ]
        lines.append("SetEnv " + " ".join(f'"{k}={v}"' for k, v in self.set_env.items()))
        config = self.root / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text(errors='replace')}")
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not answer on {self.address}:{self.port} within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the listening sshd (connections still open end when their clients close them)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.proc = None

    def logins(self) -> int:
        """How many authentications sshd accepted so far (each is one new ssh connection)."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count("Accepted publickey")

    def uri(self, driver: str, path: str = "/", **params: str) -> str:
        """A ``driver+ssh://`` URI for this server with keyfile= and known_hosts= set."""
        query = {"keyfile": str(self.client_key), "known_hosts": str(self.known_hosts), **params}
        return f"{driver}+ssh://{self.user}@{self.address}:{self.port}{path}?" + urllib.parse.urlencode(query, safe="/")
