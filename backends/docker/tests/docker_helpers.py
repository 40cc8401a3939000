"""Test infrastructure for the Docker backend: a private dockerd and a private podman API service.

Nothing here is used by the driver. Each engine runs from a temporary directory of its own (data,
exec/run roots, unix socket, pidfile), without bridges or iptables, and gets a test image imported
from a busybox-static rootfs tarball built here (no registry is reachable). Under ``CI`` a missing
engine is a failure; elsewhere the engine tests skip with a hint.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from virtabs.testing.plugin import in_ci

INSTALL_HINT = "apt-get install docker.io podman busybox-static && pip install docker (as root)"
DOCKER_IMAGE = "virtabs/busybox:latest"
PODMAN_IMAGE = "localhost/virtabs/busybox:latest"
#: a command that keeps running, exits 0 on SIGTERM (so a graceful stop is quick) and ignores nothing else
SLEEPER = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


def require(ok: bool, reason: str) -> None:
    """Skip (or fail under CI) when ``ok`` is false."""
    if ok:
        return
    message = f"{reason}: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until truthy; raise ``TimeoutError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def busybox_tarball() -> bytes:
    """A rootfs tarball: busybox-static with its applets as symlinks, and the usual empty dirs."""
    busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)
    assert busybox is not None, "busybox-static is missing"
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "data"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p == root or p.startswith(root + "/")), key=len, reverse=True)


def _kill_and_wait(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not _alive(pid), timeout, f"pid {pid} to exit")
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 10, f"pid {pid} to die")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _cleanup_dir(root: str) -> None:
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Engine:
    """A running private engine: its kind, socket and test image."""

    kind: str  # "docker" or "podman"
    socket: str
    image: str
    workdir: str
    pid: int
    env: dict[str, str] = field(default_factory=dict)
    tcp_port: int | None = None
    tls: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The SDK's base URL (``unix:///...``)."""
        return f"unix://{self.socket}"

    @property
    def uri(self) -> str:
        """The virtabs URI of this engine."""
        return f"docker+unix://{self.socket}"

    def client(self):  # type: ignore[no-untyped-def]
        """A docker SDK client of this engine."""
        import docker

        return docker.DockerClient(base_url=self.base_url, version="1.41", timeout=60)

    def remove_all_containers(self) -> None:
        """Force-remove every container (test cleanup)."""
        client = self.client()
        try:
            for c in client.api.containers(all=True):
                with contextlib.suppress(Exception):
                    client.api.remove_container(c["Id"], force=True, v=True)
        finally:
            client.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_tls(directory: str) -> dict[str, str]:
    """A throw-away CA, a server certificate for 127.0.0.1, a client certificate, and a second, unrelated CA."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem",
                "-days", "2", "-subj", f"/CN=virtabs-test-{ca}")  # fmt: skip
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                     ("client", "extendedKeyUsage=clientAuth")):  # fmt: skip
        Path(directory, f"{who}.ext").write_text(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
                "-subj", f"/CN={who}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")  # fmt: skip
    names = ("ca", "other-ca", "server", "server-key", "client", "client-key")
    return {name: str(Path(directory, f"{name}.pem")) for name in names}


def engine_available(kind: str) -> str | None:
    """Why ``kind`` ("docker" or "podman") cannot run here, or None."""
    if os.geteuid() != 0:
        return "the private engines need root"
    binary = "dockerd" if kind == "docker" else "podman"
    if shutil.which(binary) is None:
        return f"{binary} is not installed"
    if not any(os.path.exists(p) for p in ("/bin/busybox", "/usr/bin/busybox")):
        return "busybox-static is not installed"
    try:
        import docker  # noqa: F401
    except ImportError:
        return "the docker SDK is not installed"
    return None


@contextlib.contextmanager
def private_dockerd() -> Iterator[Engine]:
    """dockerd with data/exec roots in a temp dir, no bridge, no iptables, its own socket and pidfile."""
    import docker

    work = tempfile.mkdtemp(prefix="vtdk-")
    sock, pidfile = f"{work}/docker.sock", f"{work}/dockerd.pid"
    os.mkdir(f"{work}/tls")
    tls = make_tls(f"{work}/tls")
    port = free_port()
    log = open(f"{work}/dockerd.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        ["dockerd", "--data-root", f"{work}/root", "--exec-root", f"{work}/exec", "--pidfile", pidfile,
         "-H", f"unix://{sock}", "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", tls["ca"],
         "--tlscert", tls["server"], "--tlskey", tls["server-key"],
         "--iptables=false", "--ip-masq=false", "--bridge=none",
         "--containerd-namespace", "virtabs-test", "--containerd-plugins-namespace", "virtabs-test-plugins"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    engine = Engine("docker", sock, DOCKER_IMAGE, work, proc.pid, tcp_port=port, tls=tls)
    try:
        client = docker.DockerClient(base_url=engine.base_url, version="1.41", timeout=60)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {Path(work, 'dockerd.log').read_text()[-2000:]}")
            try:
                return bool(client.ping())
            except Exception:
                return False

        wait_for(ready, 60, "dockerd to answer on its socket")
        repo, tag = DOCKER_IMAGE.rsplit(":", 1)
        client.api.import_image_from_data(busybox_tarball(), repository=repo, tag=tag, changes=['CMD ["/bin/sh"]'])
        client.close()
        yield engine
    finally:
        with contextlib.suppress(Exception):
            engine.remove_all_containers()
        _kill_and_wait(proc.pid, 30)
        proc.wait()
        log.close()
        _cleanup_dir(work)


@contextlib.contextmanager
def private_podman() -> Iterator[Engine]:
    """``podman system service`` on a private socket, with root/runroot in a temp dir.

    Its network configurations are kept in the temp dir too. The ulimit override in ``containers.conf`` is
    required here: without it every container start fails with ``error setting rlimit type 7: operation not
    permitted`` (test-targets.md §4).
    """
    import docker

    work = tempfile.mkdtemp(prefix="vtpm-")
    conf = Path(work, "containers.conf")
    # The network configs too live in the temp dir (not /etc/cni/net.d, which every podman of the host reads).
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        f'[network]\nnetwork_config_dir = "{work}/networks"\n'
    )
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    base = ["podman", "--root", f"{work}/root", "--runroot", f"{work}/run", "--cgroup-manager=cgroupfs",
            "--events-backend=file", "--tmpdir", f"{work}/tmp"]  # fmt: skip
    sock = f"{work}/podman.sock"
    tarball = Path(work, "busybox-rootfs.tar")
    tarball.write_bytes(busybox_tarball())
    subprocess.run([*base, "import", "-q", "-c", 'CMD ["/bin/sh"]', str(tarball), PODMAN_IMAGE],
                   env=env, check=True, capture_output=True)  # fmt: skip
    log = open(f"{work}/podman.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([*base, "system", "service", "--time=0", f"unix://{sock}"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    engine = Engine("podman", sock, PODMAN_IMAGE, work, proc.pid, env={"CONTAINERS_CONF": str(conf)})
    try:
        client = docker.DockerClient(base_url=engine.base_url, version="1.41", timeout=60)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"podman exited: {Path(work, 'podman.log').read_text()[-2000:]}")
            try:
                return bool(client.ping())
            except Exception:
                return False

        wait_for(ready, 60, "podman system service to answer")
        client.close()
        yield engine
    finally:
        with contextlib.suppress(Exception):
            engine.remove_all_containers()
        _kill_and_wait(proc.pid, 30)
        proc.wait()
        subprocess.run([*base, "rm", "-a", "-f", "-t", "0"], env=env, check=False, capture_output=True)
        # exec sessions through the API leave conmon alive for 300 s: end the ones of this run, by pid
        for pid in _pids_mentioning(work):
            _kill_and_wait(pid, 10)
        log.close()
        _cleanup_dir(work)


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(entry))
        except OSError:
            continue
    return out


@contextlib.contextmanager
def bridge_network(engine: Engine, prefix: str = "vtct") -> Iterator[str]:
    """A bridge network with a unique name (also its bridge device) and a random /24 of 10.0.0.0/8; removed
    at the end with the containers still on it."""
    import random
    import uuid

    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    cidr = f"10.{random.randint(160, 250)}.{random.randint(0, 255)}.0/24"
    client = engine.client()
    try:
        ipam = {"Driver": "default", "Config": [{"Subnet": cidr}]}
        client.api.create_network(name, driver="bridge", ipam=ipam, options={"com.docker.network.bridge.name": name})
        yield name
    finally:
        for c in client.api.containers(all=True):
            if name in ((c.get("NetworkSettings") or {}).get("Networks") or {}):
                with contextlib.suppress(Exception):
                    client.api.remove_container(c["Id"], force=True, v=True)
        with contextlib.suppress(Exception):
            client.api.remove_network(name)
        client.close()


class RequestCounter:
    """Counts the HTTP requests a docker SDK client sends (each one is one engine call)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.paths: list[str] = []
        self._send: Callable[..., Any] = api.send

    def __enter__(self) -> RequestCounter:
        def send(request: Any, **kwargs: Any) -> Any:
            self.paths.append(f"{request.method} {request.path_url}")
            return self._send(request, **kwargs)

        self.api.send = send
        return self

    def __exit__(self, *exc: object) -> None:
        del self.api.send  # back to the class's method
