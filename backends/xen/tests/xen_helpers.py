"""Test helpers of virtabs-xen: CI rules and the Xen lab (real Xen 4.17 + dom0 nested in QEMU, tests/xenlab/)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import attrs
import pytest
from virtabs.testing.plugin import in_ci

SCRIPT = Path(__file__).parent / "xenlab" / "xenlab.sh"


def require(condition: bool, what: str) -> None:
    """Skip (outside CI) or fail (under CI) when ``condition`` is false; ``what`` says what to install."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI needs {what}")
    pytest.skip(f"needs {what}")


@attrs.frozen
class Lab:
    """A running lab dom0: where to reach it and how to authenticate."""

    dir: Path
    port: int
    key: Path
    known_hosts: Path

    @classmethod
    def from_env(cls) -> Lab:
        """The lab's paths as xenlab.sh computes them (``xenlab.sh env``)."""
        out = subprocess.run(["bash", str(SCRIPT), "env"], check=True, capture_output=True, text=True).stdout
        env = dict(line.split("=", 1) for line in out.splitlines())
        clean = {k: shlex.split(v)[0] for k, v in env.items()}
        return cls(
            dir=Path(clean["XENLAB_DIR"]),
            port=int(clean["XENLAB_PORT"]),
            key=Path(clean["XENLAB_KEY"]),
            known_hosts=Path(clean["XENLAB_KNOWN_HOSTS"]),
        )

    @property
    def run(self) -> Path:
        """The per-boot directory (ready marker, serial log)."""
        return self.dir / "run"

    def uri(self, path: str = "/") -> str:
        """``xen+ssh://root@127.0.0.1:PORT/?keyfile=...&known_hosts=...``."""
        params = f"keyfile={quote(str(self.key), safe='/')}&known_hosts={quote(str(self.known_hosts), safe='/')}"
        return f"xen+ssh://root@127.0.0.1:{self.port}{path}?{params}"

    def ssh(
        self, command: str, *, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command line in dom0 (test set-up only; the driver uses its own transport)."""
        return subprocess.run(
            ["bash", str(SCRIPT), "ssh", command],
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input if input is not None else "",
        )

    def running(self) -> bool:
        """QEMU is up and dom0 answered ``xl info`` since this boot."""
        status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True)
        return status.returncode == 0 and (self.run / "ready").exists()


def lab_tools_present() -> tuple[bool, str]:
    """Whether this host can build and boot the lab, and what to install if not."""
    missing = [
        pkg
        for pkg, path in (
            ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
            ("debootstrap", "/usr/sbin/debootstrap"),
            ("xen-hypervisor-4.17-amd64", "/boot/xen-4.17-amd64.gz"),
            ("busybox-static", "/bin/busybox"),
        )
        if not os.path.exists(path)
    ]
    if os.geteuid() != 0:
        return False, "root (the Xen lab builds a dom0 image with debootstrap)"
    if missing:
        return False, "apt-get install -y --no-install-recommends " + " ".join(missing)
    return True, ""


def wait_for_lab(lab: Lab, timeout: float) -> None:
    """Wait for a boot started by ci/setup: its ready marker, or its failure marker, or the deadline."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (lab.run / "failed").exists():
            pytest.fail(f"the Xen lab failed to start: {(lab.run / 'failed').read_text().strip()}")
        if lab.running():
            return
        time.sleep(2)
    pytest.fail(f"the Xen lab was not ready after {timeout:.0f} s (see {lab.dir}/setup.log)")
