"""vcsim for the virtabs-esx tests: build, certificates, start, stop (TEST INFRASTRUCTURE).

vcsim is govmomi's vCenter/ESX simulator. Debian 12 ships its Go package (golang-github-vmware-govmomi-dev
0.24.2) but no ``vcsim`` command, so ``vcsim/main.go`` next to this file is the project's own small main; it is
built offline in GOPATH mode, once per content of ``main.go`` and Go version, into ``tests/.build/`` (git-ignored).

The simulator's built-in certificate is 1024-bit RSA, which OpenSSL 3 refuses at Debian's default security
level, so every run generates a throw-away CA and a 2048-bit server certificate for 127.0.0.1 with the
``openssl`` CLI and starts vcsim with them: the tests verify TLS like a production client.

Only the standard library is used, so ``python3 vcsim_harness.py build`` can run before any virtualenv
exists (``ci/setup``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIN_GO = HERE / "vcsim" / "main.go"
BUILD_DIR = HERE / ".build"
GOCODE = Path("/usr/share/gocode")
GOVMOMI = GOCODE / "src/github.com/vmware/govmomi/simulator"

__all__ = ["BUILD_DIR", "Pki", "Vcsim", "build_vcsim", "make_pki", "missing_tools", "start_vcsim"]


def missing_tools() -> str | None:
    """What is missing to build and run vcsim here, as an install hint; None when everything is there."""
    missing = []
    if shutil.which("go") is None:
        missing.append("golang-go")
    if not GOVMOMI.is_dir():
        missing.append("golang-github-vmware-govmomi-dev")
    if shutil.which("openssl") is None:
        missing.append("openssl")
    if missing:
        return "vcsim needs: apt-get install " + " ".join(missing)
    return None


def _go_version() -> str:
    return subprocess.run(["go", "version"], check=True, capture_output=True, text=True).stdout.strip()


def build_vcsim(cache_dir: Path = BUILD_DIR) -> Path:
    """The vcsim binary for the current ``main.go``; built (about 20 s cold) only when it is not cached."""
    source = MAIN_GO.read_bytes()
    key = hashlib.sha256(source + _go_version().encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    binary = cache_dir / f"vcsim-{key}"
    if binary.exists():
        return binary
    with open(cache_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build (ci/setup, another run) finishes first
        if binary.exists():
            return binary
        pkg = cache_dir / "gopath" / "src" / "virtabs-vcsim"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "main.go").write_bytes(source)
        env = dict(
            os.environ,
            GO111MODULE="off",
            GOPATH=f"{cache_dir / 'gopath'}:{GOCODE}",
            GOFLAGS="-buildvcs=false",
            GOCACHE=str(cache_dir / "gocache"),
        )
        partial = cache_dir / f".vcsim-{key}.partial"
        proc = subprocess.run(
            ["go", "build", "-o", str(partial), "virtabs-vcsim"], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"building vcsim failed:\n{proc.stderr.strip()}")
        partial.rename(binary)
        for old in cache_dir.glob("vcsim-*"):  # binaries of earlier main.go versions
            if old != binary:
                old.unlink(missing_ok=True)
    return binary


@dataclass(frozen=True)
class Pki:
    """A throw-away CA, a 2048-bit server certificate it signed for 127.0.0.1, and an unrelated CA."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path
    thumbprint: str  # SHA-256 of the server certificate (DER), colon-separated upper-case hex


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _make_ca(directory: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
        "-keyout", f"{name}.key", "-out", f"{name}.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def make_pki(directory: Path) -> Pki:
    """Generate the certificates into ``directory`` with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    _make_ca(directory, "ca", "/CN=virtabs-esx test CA")
    _make_ca(directory, "other-ca", "/CN=virtabs-esx untrusted CA")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=directory)  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=directory)  # fmt: skip
    der = ssl.PEM_cert_to_DER_cert((directory / "server.pem").read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return Pki(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        other_ca=directory / "other-ca.pem",
        thumbprint=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
    )


@dataclass
class Vcsim:
    """A running simulator: where it listens, how to log in, its SOAP call counter."""

    process: subprocess.Popen[bytes]
    scheme: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    pki: Pki | None
    log: Path

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT`` (no credentials)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying context trusting the run's CA (None for plain HTTP)."""
        if self.pki is None:
            return None
        return ssl.create_default_context(cafile=str(self.pki.ca))

    def calls(self) -> dict[str, int]:
        """SOAP calls per method since the start or the last :meth:`reset_calls` (counted by vcsim)."""
        with urllib.request.urlopen(f"{self.base_url}/vcsim/calls", context=self.ssl_context(), timeout=30) as r:
            counts: dict[str, int] = json.load(r) or {}
        return counts

    def reset_calls(self) -> None:
        """Zero the server-side call counter."""
        req = urllib.request.Request(f"{self.base_url}/vcsim/calls/reset", method="POST")
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=30):
            pass

    def stop(self) -> None:
        """SIGTERM (vcsim removes its temporary datastore directories), SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


_URL_LINE = re.compile(rb"GOVC_URL=(https?)://([0-9.]+):(\d+)/sdk")


def start_vcsim(
    binary: Path,
    workdir: Path,
    *,
    pki: Pki | None,
    username: str = "virtabs",
    password: str | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 60.0,
) -> Vcsim:
    """Start vcsim on 127.0.0.1 with a kernel-chosen free port; wait until it printed its URL.

    ``pki`` None serves plain HTTP. ``args`` are extra vcsim flags (``-vm 500``, ``-delay 5``, ``-paging``).
    The password is random unless given.
    """
    password = password if password is not None else secrets.token_urlsafe(12)
    cmd = [str(binary), "-l", "127.0.0.1:0", "-username", username, "-password", password, *args]
    cmd += ["-cert", str(pki.cert), "-key", str(pki.key)] if pki is not None else ["-tls=false"]
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "vcsim.log"
    with open(log, "wb") as err:
        # TMPDIR: vcsim's datastore directories live in the run's work dir
        env = dict(os.environ, TMPDIR=str(workdir))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while b"\n" not in line:
        left = deadline - time.monotonic()
        if proc.poll() is not None or left <= 0:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"vcsim did not start: {log.read_text(errors='replace')[-2000:]}")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            line += chunk
    match = _URL_LINE.search(line)
    if match is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"vcsim printed no URL: {line!r}")
    return Vcsim(
        process=proc,
        scheme=match.group(1).decode(),
        host=match.group(2).decode(),
        port=int(match.group(3)),
        username=username,
        password=password,
        pki=pki,
        log=log,
    )


@contextlib.contextmanager
def running_vcsim(**kwargs: object):  # type: ignore[no-untyped-def]
    """Build, generate certificates, start; stop and clean up on exit (for scripts such as the bench)."""
    workdir = Path(tempfile.mkdtemp(prefix="vtesx-"))
    try:
        binary = build_vcsim()
        pki = make_pki(workdir / "pki")
        sim = start_vcsim(binary, workdir / "run", pki=pki, **kwargs)  # type: ignore[arg-type]
        try:
            yield sim
        finally:
            sim.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: vcsim_harness.py build")
    hint = missing_tools()
    if hint:
        sys.exit(hint)
    print(build_vcsim())
