"""The test infrastructure itself on real LXC: a busybox rootfs container in a private lxcpath.

These tests talk to liblxc directly (no driver): they prove that the fixtures the driver and
contract tests build on really run containers here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lxc_helpers import ready_file, wait_for


def test_busybox_rootfs_container_runs_freezes_and_halts(lxcpath: str, rootfs_template: Path, tmp_path: Path) -> None:
    import lxc

    rootfs = tmp_path / "rootfs"
    shutil.copytree(rootfs_template, rootfs, symlinks=True)
    config = "".join(
        f"{key} = {value}\n"
        for key, value in (
            ("lxc.rootfs.path", f"dir:{rootfs}"),
            ("lxc.uts.name", "engine1"),
            ("lxc.init.cmd", "/sbin/init"),
            ("lxc.net.0.type", "empty"),
            ("lxc.apparmor.profile", "unconfined"),
            ("lxc.autodev", "1"),
            ("lxc.mount.auto", "proc:mixed sys:ro cgroup:mixed"),
            ("lxc.signal.halt", "SIGUSR1"),
            ("lxc.signal.reboot", "SIGTERM"),
        )
    )
    (Path(lxcpath) / "engine1").mkdir()
    (Path(lxcpath) / "engine1" / "config").write_text(config)
    container = lxc.Container("engine1", lxcpath)
    assert container.defined
    assert lxc.list_containers(config_path=lxcpath) == ("engine1",)

    assert container.start()
    assert container.wait("RUNNING", 10)
    wait_for(lambda: ready_file(rootfs).exists(), 10, "busybox init to run its sysinit line")
    assert int(container.get_cgroup_item("memory.usage_in_bytes") or container.get_cgroup_item("memory.current")) > 0

    assert container.freeze()
    assert container.state == "FROZEN"
    assert container.unfreeze()
    assert container.state == "RUNNING"

    assert container.shutdown(10)  # SIGUSR1: busybox init halts
    assert container.state == "STOPPED"
    assert not ready_file(rootfs).exists()
