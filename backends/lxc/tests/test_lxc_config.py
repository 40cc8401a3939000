"""Configuration rendering and parsing (pure), against golden files in ``golden/``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from virtabs_lxc._config import ConfigError, LxcSettings, parse_config, render_config, settings_from_extra, spec_values

GOLDEN = Path(__file__).parent / "golden"
MiB = 1 << 20


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VIRTABS_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs (VIRTABS_UPDATE_GOLDEN=1 rewrites it)"


def _settings() -> LxcSettings:
    return settings_from_extra(
        "web",
        {"lxc": {"rootfs": "/srv/web", "init": "/sbin/init --quiet", "config": {"lxc.signal.halt": "SIGUSR1"}}},
    )


def test_render_cgroup_v1_no_network() -> None:
    text = render_config(
        name="web", rootfs="/srv/web", settings=_settings(), memory_bytes=64 * MiB, vcpus=2, nics=[], cgroup_v2=False
    )
    _golden("v1-empty-net.conf", text)


def test_render_cgroup_v2_two_nics() -> None:
    text = render_config(
        name="web",
        rootfs="/srv/web",
        settings=_settings(),
        memory_bytes=128 * MiB,
        vcpus=1,
        nics=[("br0", "52:54:00:12:34:56"), ("lxcbr0", None)],
        cgroup_v2=True,
    )
    _golden("v2-two-nics.conf", text)


@pytest.mark.parametrize("golden", ["v1-empty-net.conf", "v2-two-nics.conf"])
def test_parse_back(golden: str) -> None:
    config = parse_config((GOLDEN / golden).read_text())
    assert config.rootfs == "/srv/web"
    assert config.get("lxc.init.cmd") == "/sbin/init --quiet"
    memory, vcpus = spec_values(config)
    if golden.startswith("v1"):
        assert (memory, vcpus) == (64 * MiB, 2)
        assert config.nics() == []
    else:
        assert (memory, vcpus) == (128 * MiB, 1)
        assert config.nics() == [("br0", "52:54:00:12:34:56", "veth"), ("lxcbr0", None, "veth")]


def test_parse_a_template_config() -> None:
    # the shape lxc-create -t busybox writes (comments, quoted values, list keys)
    text = (
        "# Template used to create this container: /usr/share/lxc/templates/lxc-busybox\n"
        "lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\n"
        'lxc.rootfs.path = dir:/var/lib/lxc/ct1/rootfs\nlxc.uts.name = "ct1"\n'
        "lxc.mount.entry = /lib lib none ro,bind 0 0\nlxc.mount.entry = /usr/lib usr/lib none ro,bind 0 0\n"
    )
    config = parse_config(text)
    assert config.rootfs == "/var/lib/lxc/ct1/rootfs"
    assert config.all("lxc.mount.entry") == ["/lib lib none ro,bind 0 0", "/usr/lib usr/lib none ro,bind 0 0"]
    assert config.nics() == [("lxcbr0", None, "veth")]
    assert spec_values(config) == (None, None)


@pytest.mark.parametrize(
    "extra",
    [
        {"lxc": []},
        {"lxc": {"rootfs": "/a", "template": "busybox"}},
        {"lxc": {}},
        {"lxc": {"rootfs": "/a", "init": []}},
        {"lxc": {"rootfs": "/a", "bogus": 1}},
        {"lxc": {"rootfs": "/a", "config": {"apparmor": "x"}}},
        {"lxc": {"rootfs": "/a", "config": {"lxc.a": "x\ny"}}},
        {"lxc": {"template": "busybox", "template_args": "--x"}},
    ],
)
def test_bad_extra_is_refused(extra: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="'web'"):
        settings_from_extra("web", extra)


@pytest.mark.parametrize("control", ["\n", "\r", "\x00", "\x0b", "\x1b", "\x7f"], ids=repr)
def test_the_renderer_refuses_a_line_break_in_any_value(control: str) -> None:
    """Issue 21.1, second line of defence: even a value that bypassed the core cannot add a config line."""
    hook = f"lxcbr0{control}lxc.hook.pre-start = /bin/sh -c 'touch /tmp/pwned'"
    with pytest.raises(ConfigError, match="control character"):
        render_config(
            name="web",
            rootfs="/srv/web",
            settings=_settings(),
            memory_bytes=64 * MiB,
            vcpus=1,
            nics=[(hook, None)],
            cgroup_v2=True,
        )
    with pytest.raises(ConfigError, match="control character"):
        render_config(
            name="web",
            rootfs=f"/srv/web{control}x",
            settings=_settings(),
            memory_bytes=64 * MiB,
            vcpus=1,
            nics=[],
            cgroup_v2=True,
        )
    settings = LxcSettings(rootfs="/srv/web", init=("/sbin/init", f"--quiet{control}lxc.hook.mount=/bin/id"))
    with pytest.raises(ConfigError, match="control character"):
        render_config(
            name="web", rootfs="/srv/web", settings=settings, memory_bytes=64 * MiB, vcpus=1, nics=[], cgroup_v2=True
        )
    with pytest.raises(ConfigError, match="control character"):
        settings_from_extra("web", {"lxc": {"rootfs": "/srv/web", "config": {"lxc.environment": f"A=1{control}B"}}})
