"""Test helpers of virtabs-xen: CI rules and the Xen lab (real Xen 4.17 + dom0 nested in QEMU, tests/xenlab/)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
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


REPO = Path(__file__).resolve().parents[3]
DOM0_VENV = "/opt/virtabs"
"""Where the virtabs wheel is installed in the lab's dom0 (a venv of the dom0's own python3)."""
DOM0_HELPER = f"{DOM0_VENV}/bin/virtabs-remote"

# The dom0 has Debian's python3 (3.11, as here) but no pip and no network: the venv is made without pip
# and the wheels' files go into its site-packages, which is what installing a wheel is (PEP 427: a wheel is a
# zip laid out for site-packages; its .dist-info, entry points included, lands there too); the console
# script is written as pip writes it, from the wheel's entry_points.txt. The wheels are unpacked and
# byte-compiled HERE (install_in_dom0), as pip would compile them there: compiling under TCG took most of
# the install's 77 s. The .pyc files are valid in the dom0 when its python has this one's major.minor (the
# same magic number) and the sources keep their mtimes (tar keeps them); the compileall run there then only
# checks them, and compiles whatever is not valid (another python, pygments left out as before).
_DOM0_INSTALL = f"""
set -e
rm -rf {DOM0_VENV}
python3 -m venv --without-pip {DOM0_VENV}
site=$({DOM0_VENV}/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tar -x -C "$site"
printf '#!{DOM0_VENV}/bin/python3\\nimport sys\\nfrom virtabs.remote import main\\nsys.exit(main())\\n' > {DOM0_HELPER}
chmod 755 {DOM0_HELPER}
grep -qx 'virtabs-remote = virtabs.remote:main' "$site"/virtabs-*.dist-info/entry_points.txt
# byte-compile what is not compiled yet (pygments left to compile on first use: the helper never imports most
# of it); without it the helper's first start compiles every module under TCG, past the client's 40 s handshake
{DOM0_VENV}/bin/python3 -m compileall -q -x '/pygments/' "$site" >/dev/null
"""
DOM0_SITE = f"{DOM0_VENV}/lib/python3.11/site-packages"
"""Where the dom0's venv keeps its packages (Debian 12's python3.11): the prefix compiled into the .pyc files."""


def build_wheels(into: Path) -> list[Path]:
    """The virtabs wheel, built from this checkout, and the wheels of its dependencies (``pip wheel``).

    Built from a copy of the core's files (``pyproject.toml``, ``README.md``, ``virtabs/``), so the
    checkout gets no ``build/`` directory.
    """
    src = into / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "virtabs", src / "virtabs", ignore=shutil.ignore_patterns("__pycache__"))
    out = into / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip wheel of virtabs failed: {proc.stderr[-2000:]}")
    return sorted(out.glob("*.whl"))


def install_in_dom0(lab: Lab, wheels: list[Path]) -> str:
    """Unpack and byte-compile ``wheels`` here, copy the tree into the dom0 (tar over the lab's ssh) and install
    it there (``_DOM0_INSTALL``); the helper's path."""
    with tempfile.TemporaryDirectory() as staging:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(staging)
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-x", "/pygments/", "-s", staging, "-p", DOM0_SITE, staging],
            check=True,
            capture_output=True,
            timeout=600,
        )
        with tempfile.TemporaryFile() as archive:
            with tarfile.open(fileobj=archive, mode="w") as tar:
                for entry in sorted(os.listdir(staging)):
                    tar.add(os.path.join(staging, entry), arcname=entry)
            archive.seek(0)
            command = f"sh -c {shlex.quote(_DOM0_INSTALL)} install"
            proc = subprocess.run(
                ["bash", str(SCRIPT), "ssh", command], stdin=archive, capture_output=True, text=True, timeout=900
            )
    if proc.returncode != 0:
        pytest.fail(f"installing the virtabs wheel in the dom0 failed: {proc.stderr[-2000:]}")
    return DOM0_HELPER


def node_uri(lab: Lab, node_path: str) -> str:
    """``test+ssh://root@127.0.0.1:PORT/NODE.json`` into the dom0, with the lab's key and the installed helper."""
    params = (
        f"keyfile={quote(str(lab.key), safe='/')}&known_hosts={quote(str(lab.known_hosts), safe='/')}"
        f"&helper={quote(DOM0_HELPER, safe='/')}"
    )
    return f"test+ssh://root@127.0.0.1:{lab.port}{node_path}?{params}"
