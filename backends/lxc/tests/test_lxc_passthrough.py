"""What a caller who may define a domain can hand to liblxc, which runs as root on the host.

``extra["lxc"]["config"]`` is an allow-list of keys whose effect stays inside the container: every key
below reaches the host (a command run at start, a host path mounted, the confinement lifted, host devices
opened, host namespaces shared, a host file written ...) and is refused, with the key quoted, before
anything is written. A template is a name in LXC's template directory (liblxc runs a path as given), and
its arguments cannot override what liblxc tells it (``--rootfs DIR`` built a busybox tree in any directory).
The refusals are checked on the pure renderer input and through the driver on real liblxc; the keys that
pass are checked to be ones liblxc reads back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from virtabs import DomainSpec
from virtabs.spi import quote

from virtabs_lxc._config import (
    PASSTHROUGH_KEYS,
    ConfigError,
    parse_config,
    passthrough_refusal,
    render_config,
    settings_from_extra,
)

MiB = 1 << 20
MARKER = "/tmp/virtabs-lxc-passthrough-marker"

#: Each key with a value that would reach the host through liblxc.
HOST_REACHING: tuple[tuple[str, str], ...] = (
    ("lxc.hook.pre-start", f"/bin/sh -c 'touch {MARKER}'"),
    ("lxc.hook.start-host", f"/bin/sh -c 'touch {MARKER}'"),
    ("lxc.hook.mount", f"/bin/sh -c 'touch {MARKER}'"),
    ("lxc.hook.stop", f"/bin/sh -c 'touch {MARKER}'"),
    ("lxc.hook.post-stop", f"/bin/sh -c 'touch {MARKER}'"),
    ("lxc.hook.version", "1"),
    ("lxc.include", "/etc/shadow"),
    ("lxc.mount.entry", "/ host none bind,create=dir 0 0"),
    ("lxc.mount.fstab", "/etc/fstab"),
    ("lxc.mount.auto", "proc:rw sys:rw cgroup:rw"),
    ("lxc.rootfs.path", "dir:/"),
    ("lxc.rootfs.mount", "/"),
    ("lxc.apparmor.profile", "unconfined"),
    ("lxc.apparmor.allow_nesting", "1"),
    ("lxc.selinux.context", "unconfined_t"),
    ("lxc.seccomp.profile", "/dev/null"),
    ("lxc.seccomp.notify.proxy", "unix:/run/seccomp.sock"),
    ("lxc.cap.drop", ""),
    ("lxc.cap.keep", "sys_admin sys_module"),
    ("lxc.cgroup.devices.allow", "a"),
    ("lxc.cgroup2.devices.allow", "b 8:* rwm"),
    ("lxc.cgroup.dir", "../../system.slice"),
    ("lxc.cgroup.relative", "1"),
    ("lxc.namespace.share.net", "/proc/1/ns/net"),
    ("lxc.namespace.keep", "net mnt pid"),
    ("lxc.idmap", "u 0 0 65536"),
    ("lxc.sysctl.kernel.core_pattern", f"|/bin/sh -c 'touch {MARKER}'"),
    ("lxc.net.0.type", "phys"),
    ("lxc.net.0.script.up", f"/bin/sh -c 'touch {MARKER}'"),
    ("lxc.console.logfile", "/etc/passwd"),
    ("lxc.console.path", "/dev/tty1"),
    ("lxc.log.file", "/etc/passwd"),
    ("lxc.monitor.unshare", "1"),
    ("lxc.ephemeral", "1"),
    ("lxc.uts.name", "another"),
    ("lxc.cgroup2.memory.max", "max"),
    ("lxc.cgroup.cpu.cfs_quota_us", "-1"),
    ("lxc.proc.oom_score_adj", "-1000"),
    ("lxc.unknown.key", "1"),
)

#: Template arguments that override what liblxc tells the template, or take an unsigned image.
TEMPLATE_ARGS: tuple[tuple[str, ...], ...] = (
    ("--rootfs", "DIR"),
    ("--rootfs=DIR",),
    ("--root", "DIR"),
    ("--path", "DIR"),
    ("--pa=DIR",),
    ("--name", "other"),
    ("--mapped-uid", "0"),
    ("-p", "DIR"),
    ("-hpDIR",),
    ("-n", "other"),
    ("--no-validate",),
)

#: Every key of the allow-list (and one of each prefix) with a value liblxc takes, as liblxc reads it back.
ALLOWED: dict[str, tuple[str, str]] = {
    "lxc.signal.halt": ("SIGUSR1", "10"),
    "lxc.signal.reboot": ("SIGTERM", "15"),
    "lxc.signal.stop": ("SIGKILL", "9"),
    "lxc.environment": ("A=1", "A=1"),
    "lxc.init.uid": ("0", "0"),
    "lxc.init.gid": ("0", "0"),
    "lxc.init.cwd": ("/root", "/root"),
    "lxc.tty.max": ("2", "2"),
    "lxc.pty.max": ("16", "16"),
    "lxc.start.auto": ("1", "1"),
    "lxc.start.delay": ("3", "3"),
    "lxc.start.order": ("5", "5"),
    "lxc.group": ("web", "web"),
    "lxc.log.level": ("INFO", "INFO"),
    "lxc.no_new_privs": ("1", "1"),
    "lxc.arch": ("x86_64", "x86_64"),
    "lxc.prlimit.nofile": ("1024", "1024"),
    "lxc.cgroup2.pids.max": ("100", "100"),
    "lxc.cgroup.pids.max": ("100", "100"),
}


def _extra(rootfs: str, config: dict[str, str]) -> dict[str, object]:
    return {"lxc": {"rootfs": rootfs, "config": config}}


@pytest.fixture
def conn(lxcpath: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(f"lxc:///?path={lxcpath}") as c:
        yield c


@pytest.mark.parametrize(("key", "value"), HOST_REACHING, ids=[k for k, _ in HOST_REACHING])
def test_a_host_reaching_key_is_refused_and_named(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        settings_from_extra("web", _extra("/srv/web", {key: value}))
    assert f"key {quote(key)} is refused: " in str(exc.value)
    assert "'web'" in str(exc.value)


@pytest.mark.parametrize(("key", "value"), HOST_REACHING, ids=[k for k, _ in HOST_REACHING])
def test_the_driver_writes_nothing_for_a_host_reaching_key(
    conn: virtabs.Connection, lxcpath: str, rootfs_template: Path, key: str, value: str
) -> None:
    name = "pt-" + key.replace(".", "-")[4:30]
    spec = DomainSpec(
        name=name, memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra=_extra(str(rootfs_template), {key: value})
    )
    with pytest.raises(virtabs.InvalidArgumentError, match=re.escape(f"key {key!r} is refused")):
        conn.define_domain(spec)
    assert not os.path.exists(os.path.join(lxcpath, name))
    assert name not in [d.name for d in conn.list_domains()]


def test_a_hook_among_allowed_keys_is_refused_whatever_its_place() -> None:
    config = {"lxc.signal.halt": "SIGUSR1", "lxc.hook.pre-start": "/bin/true", "lxc.environment": "A=1"}
    with pytest.raises(ConfigError, match=re.escape("'lxc.hook.pre-start' is refused: runs a command on the host")):
        settings_from_extra("web", _extra("/srv/web", config))


def test_every_allowed_key_is_one_liblxc_reads_back(lxcpath: str) -> None:
    import lxc

    assert set(PASSTHROUGH_KEYS) <= set(ALLOWED), "give every allow-listed key a value here"
    settings = settings_from_extra("allowed", _extra("/srv", {k: v for k, (v, _) in ALLOWED.items()}))
    text = render_config(
        name="allowed", rootfs="/srv", settings=settings, memory_bytes=64 * MiB, vcpus=1, nics=[], cgroup_v2=True
    )
    (Path(lxcpath) / "allowed").mkdir()
    (Path(lxcpath) / "allowed" / "config").write_text(text)
    try:
        container = lxc.Container("allowed", lxcpath)
        for key, (_, read_back) in ALLOWED.items():
            got = container.get_config_item(key)
            assert (got if isinstance(got, str) else list(got)) in (read_back, [read_back]), key
    finally:
        (Path(lxcpath) / "allowed" / "config").unlink()
        (Path(lxcpath) / "allowed").rmdir()
    assert all(passthrough_refusal(k) is None for k in ALLOWED)
    assert parse_config(text).get("lxc.signal.halt") == "SIGUSR1"


def test_allowed_keys_are_defined_and_read_back(conn: virtabs.Connection, rootfs_template: Path) -> None:
    config = {"lxc.signal.halt": "SIGUSR1", "lxc.environment": "A=1", "lxc.cgroup2.pids.max": "64"}
    spec = DomainSpec(
        name="pt-allowed", memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra=_extra(str(rootfs_template), config)
    )
    dom = conn.define_domain(spec)
    try:
        assert dom.spec().extra["lxc"]["config"] == config
    finally:
        dom.undefine()
    assert rootfs_template.is_dir()


def test_a_template_given_as_a_path_is_not_run(conn: virtabs.Connection, lxcpath: str, tmp_path: Path) -> None:
    """liblxc runs a template named by a path as it is, as root: here a script that leaves a mark."""
    mark = tmp_path / "template-ran"
    script = tmp_path / "lxc-evil"
    script.write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    script.chmod(0o755)
    spec = DomainSpec(
        name="pt-tmplpath", memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra={"lxc": {"template": str(script)}}
    )
    with pytest.raises(virtabs.InvalidArgumentError, match="must be the name of a template"):
        conn.define_domain(spec)
    assert not mark.exists()
    assert not os.path.exists(os.path.join(lxcpath, "pt-tmplpath"))


@pytest.mark.parametrize("args", TEMPLATE_ARGS, ids=" ".join)
def test_template_arguments_cannot_override_liblxc_s_own(
    conn: virtabs.Connection, lxcpath: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """``--rootfs DIR`` (or an abbreviation) would make the busybox template build its tree in DIR, as root."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = tuple(a.replace("DIR", str(elsewhere)) for a in args)
    spec = DomainSpec(
        name="pt-tmplargs",
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        extra={"lxc": {"template": "busybox", "template_args": list(args)}},
    )
    with pytest.raises(virtabs.InvalidArgumentError, match=r"template argument .* is refused"):
        conn.define_domain(spec)
    assert list(elsewhere.iterdir()) == []
    assert not os.path.exists(os.path.join(lxcpath, "pt-tmplargs"))


def test_ordinary_template_arguments_pass() -> None:
    settings = settings_from_extra(
        "web", {"lxc": {"template": "download", "template_args": ["--dist", "debian", "-r", "bookworm", "-a", "amd64"]}}
    )
    assert settings.template_args == ("--dist", "debian", "-r", "bookworm", "-a", "amd64")
