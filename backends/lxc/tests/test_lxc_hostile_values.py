"""Issue 21.1 on LXC: hostile values in every text field, read back by real liblxc and run by it.

An LXC configuration is ``key = value`` a line with no escaping; liblxc trims blanks around a value and
strips one pair of matching outer quotes, and splits ``lxc.init.cmd`` at spaces with no quoting at all.
So the renderer refuses control characters (the core did already), wraps a value those rules would change
in one more pair of double quotes, and refuses an init argument that is empty or holds a space. Here each
definition goes through the driver into a private lxcpath, liblxc reads every key back
(``get_config_item``), the driver reads its own spec back, and one container runs with every hostile
init argument and records the argv it got: exactly the intended one, and no hook ran.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import virtabs
from lxc_helpers import wait_for
from virtabs import DomainSpec, NicSpec
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER

from virtabs_lxc._config import parse_config, render_config, settings_from_extra

MiB = 1 << 20
IDS = [f"{i}:{f[:12]!r}" for i, f in enumerate(HOSTILE_FRAGMENTS)]
EXTRA_VALUES = ("'quoted'", '"double"', " lead", "trail ", "  ", "' mixed \"", "''")


@pytest.fixture
def conn(lxc_uri: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(lxc_uri) as c:
        yield c


def _init(fragment: str) -> list[str]:
    return ["/sbin/init", f"--x{fragment}"] if " " not in fragment else ["/sbin/init"]


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=IDS)
def test_liblxc_reads_back_every_hostile_value(
    conn: virtabs.Connection, lxcpath: str, tmp_path: Path, fragment: str
) -> None:
    import lxc

    name = f"x-+y.z_{HOSTILE_FRAGMENTS.index(fragment)}"
    rootfs = tmp_path / f"root{fragment}fs"
    rootfs.mkdir(parents=True)
    environment = f"A={fragment}"
    spec = DomainSpec(
        name=name,
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        nics=(NicSpec(network=f"br{fragment}", mac="00:16:3e:00:00:01", model=f"veth{fragment}"),),
        extra={"lxc": {"rootfs": str(rootfs), "init": _init(fragment), "config": {"lxc.environment": environment}}},
    )
    if len(f"br{fragment}".encode()) > 15:  # liblxc would cut it to an interface name's 15 bytes
        with pytest.raises(virtabs.InvalidArgumentError, match="at most 15 bytes"):
            conn.define_domain(spec)
        assert name not in [d.name for d in conn.list_domains()]
        spec = attrs.evolve(spec, nics=(NicSpec(network="br0", mac="00:16:3e:00:00:01"),))
    dom = conn.define_domain(spec)
    try:
        container = lxc.Container(name, lxcpath)
        assert container.get_config_item("lxc.net.0.link") == spec.nics[0].network
        assert container.get_config_item("lxc.net.0.hwaddr") == "00:16:3e:00:00:01"
        assert container.get_config_item("lxc.rootfs.path") == str(rootfs)
        assert container.get_config_item("lxc.init.cmd") == " ".join(_init(fragment))
        assert container.get_config_item("lxc.environment") == [environment]
        assert container.get_config_item("lxc.uts.name") == name
        for hook in ("lxc.hook.pre-start", "lxc.hook.start", "lxc.hook.mount", "lxc.hook.pre-mount"):
            assert not container.get_config_item(hook), hook
        back = dom.spec()
        assert back.nics[0].network == spec.nics[0].network
        assert back.extra["lxc"]["rootfs"] == str(rootfs)
        assert back.extra["lxc"]["init"] == _init(fragment)
        assert back.extra["lxc"]["config"] == {"lxc.environment": environment}
    finally:
        dom.undefine()
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("value", EXTRA_VALUES, ids=repr)
def test_values_liblxc_would_trim_or_unquote_reach_it_whole(lxcpath: str, tmp_path: Path, value: str) -> None:
    """liblxc trims blanks and strips one pair of outer quotes: such values are written inside one more pair."""
    import lxc

    name = f"q{EXTRA_VALUES.index(value)}"
    text = render_config(
        name=name,
        rootfs=f"/srv/{value}",
        settings=settings_from_extra(name, {"lxc": {"rootfs": "/srv", "config": {"lxc.init.cwd": value}}}),
        memory_bytes=64 * MiB,
        vcpus=1,
        nics=[(value, None)],
        cgroup_v2=True,
    )
    (Path(lxcpath) / name).mkdir()
    (Path(lxcpath) / name / "config").write_text(text)
    try:
        container = lxc.Container(name, lxcpath)
        assert container.get_config_item("lxc.net.0.link") == value
        assert container.get_config_item("lxc.init.cwd") == value
        assert container.get_config_item("lxc.rootfs.path") == f"/srv/{value}"
        parsed = parse_config(text)  # the driver's reader follows liblxc's rules
        assert parsed.get("lxc.net.0.link") == value and parsed.get("lxc.init.cwd") == value
    finally:
        shutil.rmtree(Path(lxcpath) / name)


def test_init_arguments_reach_the_container_exactly(
    conn: virtabs.Connection, rootfs_template: Path, tmp_path: Path
) -> None:
    """One container runs with every hostile init argument and writes down the argv liblxc gave it."""
    rootfs = tmp_path / "rootfs"
    shutil.copytree(rootfs_template, rootfs, symlinks=True)
    recorder = rootfs / "bin" / "record-args"
    recorder.write_text(
        '#!/bin/sh\nfor a in "$@"; do printf "[%s]\\n" "$a"; done > /args.tmp\nmv /args.tmp /args\nexec /sbin/init\n'
    )
    recorder.chmod(0o755)
    args = [f"a{fragment}" for fragment in HOSTILE_FRAGMENTS if " " not in fragment]
    spec = DomainSpec(
        name="initargs",
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        extra={"lxc": {"rootfs": str(rootfs), "init": ["/bin/record-args", *args]}},
    )
    dom = conn.define_domain(spec)
    try:
        dom.start()
        wait_for(lambda: (rootfs / "args").exists(), 20, "the init argument recorder")
        recorded = (rootfs / "args").read_text().split("\n")[:-1]
        assert recorded == [f"[{a}]" for a in args]
    finally:
        dom.destroy()
        dom.undefine()
    assert not os.path.exists(MARKER)


def test_an_init_argument_with_a_space_is_refused(conn: virtabs.Connection, tmp_path: Path) -> None:
    """liblxc would split it in two (no quoting in lxc.init.cmd): refused, nothing defined."""
    spec = DomainSpec(
        name="spaced",
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        extra={"lxc": {"rootfs": str(tmp_path), "init": ["/bin/sh", "-c", "touch /x"]}},
    )
    with pytest.raises(virtabs.InvalidArgumentError, match="hold a space"):
        conn.define_domain(spec)
    assert "spaced" not in [d.name for d in conn.list_domains()]
