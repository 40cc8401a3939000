"""Fixtures of the virtabs-vbox tests: the VBoxManage simulator on PATH, locally and behind a real sshd.

The simulator (``vboxmanage_sim/VBoxManage``) is test infrastructure: VirtualBox cannot run here. The sshd is
Debian's openssh-server started by ``tests/command_transport/sshd_server.py`` (loaded by path) with its own
host key, client key and port; its sessions get the simulator first on PATH and their own state directory
through ``SetEnv``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from virtabs.testing.plugin import in_ci

SIM_DIR = Path(__file__).resolve().parent / "vboxmanage_sim"
REPO = Path(__file__).resolve().parents[3]
ACPI_DELAY = "0.05"
"""Seconds a simulated guest takes to power off after the ACPI power button (the simulator's default is 0.3):
still later than the call that pressed it, so a shutdown is waited for as the tests do for a real guest."""


def _load_sshd_module() -> ModuleType:
    name = "virtabs_test_sshd"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "command_transport" / "sshd_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


LOCAL_HOST_NAMES = f"localhost,{socket.gethostname()}"
"""What the local simulated host answers to as a teleport target (the driver names it by this machine's name)."""
SSH_HOST_NAMES = "127.0.0.1"
"""What the simulated host behind the test sshd answers to (the ``vbox+ssh://`` URIs' host)."""


@pytest.fixture(scope="session")
def vbox_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated network between the local simulated host and the one behind the test sshd
    (``VBOXSIM_NETWORK``: where a teleporter target listens)."""
    return tmp_path_factory.mktemp("vbox network")


@pytest.fixture(scope="session")
def vbox_home(tmp_path_factory: pytest.TempPathFactory, vbox_network: Path) -> Iterator[Path]:
    """The simulator first on PATH, its state in a fresh VBOX_USER_HOME and its guests' ACPI delay
    (``ACPI_DELAY``), for local ``vbox:///session``; a teleport target here answers to ``LOCAL_HOST_NAMES``."""
    home = tmp_path_factory.mktemp("vbox home")  # a space in every path the driver handles
    names = ("PATH", "VBOX_USER_HOME", "VBOXSIM_ACPI_DELAY", "VBOXSIM_NETWORK", "VBOXSIM_HOST_NAMES")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["PATH"] = f"{SIM_DIR}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    os.environ["VBOX_USER_HOME"] = str(home)
    os.environ["VBOXSIM_ACPI_DELAY"] = ACPI_DELAY
    os.environ["VBOXSIM_NETWORK"] = str(vbox_network)
    os.environ["VBOXSIM_HOST_NAMES"] = LOCAL_HOST_NAMES
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def vbox_sshd(tmp_path_factory: pytest.TempPathFactory, vbox_network: Path) -> Iterator[Any]:
    """A real sshd on 127.0.0.1 whose sessions run the simulator with their own VBOX_USER_HOME (and ``ACPI_DELAY``)."""
    sshd_server = _load_sshd_module()
    missing = sshd_server.sshd_available()
    if missing:
        if in_ci():
            pytest.fail(missing)
        pytest.skip(missing)
    remote_home = tmp_path_factory.mktemp("vbox remote home")
    server = sshd_server.Sshd(
        tmp_path_factory.mktemp("sshd"),
        set_env={
            "PATH": f"{SIM_DIR}:/usr/local/bin:/usr/bin:/bin",
            "VBOX_USER_HOME": str(remote_home),
            "VBOXSIM_ACPI_DELAY": ACPI_DELAY,
            "VBOXSIM_NETWORK": str(vbox_network),
            "VBOXSIM_HOST_NAMES": SSH_HOST_NAMES,
        },
    )
    server.start()
    server.vbox_home = remote_home
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ssh_uri(vbox_sshd: Any) -> str:
    """``vbox+ssh://root@127.0.0.1:PORT/session?keyfile=...&known_hosts=...``."""
    return str(vbox_sshd.uri("vbox", "/session"))


@pytest.fixture(params=["local", "ssh"])
def any_uri(request: pytest.FixtureRequest, vbox_home: Path) -> str:
    """Both transports, one test each."""
    if request.param == "local":
        return "vbox:///session"
    return str(request.getfixturevalue("ssh_uri"))
