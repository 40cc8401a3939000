"""URIs, config, credentials, errors, capabilities and models."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

import virtabs
from virtabs import Capabilities, Capability, Credentials, DiskSpec, DomainSpec, parse_uri
from virtabs._config import load_config


@pytest.mark.parametrize(
    ("text", "driver", "transport", "user", "host", "port", "path", "params"),
    [
        ("test:///default", "test", None, None, None, None, "/default", {}),
        ("qemu:///session", "qemu", None, None, None, None, "/session", {}),
        ("qemu:///embed?root=/tmp/x", "qemu", None, None, None, None, "/embed", {"root": "/tmp/x"}),
        ("esx://h/?no_verify=1", "esx", None, None, "h", None, "/", {"no_verify": "1"}),
        ("hyperv://h/?transport=http", "hyperv", None, None, "h", None, "/", {"transport": "http"}),
        ("xen+ssh://root@h/", "xen", "ssh", "root", "h", None, "/", {}),
        ("qemu+tcp://h:16509/system", "qemu", "tcp", None, "h", 16509, "/system", {}),
        ("libvirt+test:///default", "libvirt", "test", None, None, None, "/default", {}),
    ],
)
def test_uri_grammar(
    text: str, driver: str, transport: str | None, user: str | None, host: str | None, port: int | None, path: str,
    params: dict[str, str],
) -> None:  # fmt: skip
    uri = parse_uri(text)
    assert (uri.driver, uri.transport, uri.user, uri.host, uri.port, uri.path, dict(uri.params)) == (
        driver, transport, user, host, port, path, params,
    )  # fmt: skip
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize("text", ["", "default", "1abc://x/", "qemu://h:99999/", "test:///x#frag", "qemu:///s?a=1&a=2"])
def test_bad_uris_are_invalid_arguments(text: str) -> None:
    with pytest.raises(virtabs.InvalidArgumentError):
        parse_uri(text)


def test_password_in_uri_is_refused_without_echoing_it() -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="password inside a connection URI") as err:
        virtabs.open("esx://root:s3cret@h/")
    assert "s3cret" not in str(err.value)


def test_credentials_never_show_their_secret() -> None:
    creds = Credentials("root", "s3cret")
    assert "s3cret" not in repr(creds) and "s3cret" not in str(creds)
    assert "root" in repr(creds)


def test_config_aliases_default_uri_and_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'default_uri = "test:///default"\n[aliases]\nlab = "test:///default"\n'
        '[credentials."esx://vc"]\nusername = "u"\npassword = "p"\n'
    )
    monkeypatch.setenv("VIRTABS_CONFIG", str(cfg))
    config = load_config()
    assert config.resolve_alias("lab") == "test:///default"
    found = config.credentials_for(parse_uri("esx://vc/"))
    assert found is not None and found.username == "u" and found.password == "p"
    assert "'p'" not in repr(config)
    with virtabs.open("lab") as conn:
        assert conn.uri == "test:///default"


def test_default_uri_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTABS_CONFIG", str(tmp_path / "missing.toml"))
    monkeypatch.delenv("VIRTABS_DEFAULT_URI", raising=False)
    with virtabs.open() as conn:
        assert conn.uri == "test:///default"
    monkeypatch.setenv("VIRTABS_DEFAULT_URI", "test:///default?x=1")
    with virtabs.open() as conn:
        assert conn.uri == "test:///default?x=1"


def test_malformed_config_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("aliases = [")
    monkeypatch.setenv("VIRTABS_CONFIG", str(cfg))
    with pytest.raises(virtabs.InvalidArgumentError, match="not valid TOML"):
        virtabs.open("test:///default")


@pytest.mark.parametrize(
    ("cls", "code", "builtin"),
    [
        (virtabs.NotSupportedError, 3, NotImplementedError),
        (virtabs.InvalidArgumentError, 8, ValueError),
        (virtabs.OperationFailedError, 9, None),
        (virtabs.NoDomainError, 42, LookupError),
        (virtabs.AuthError, 45, PermissionError),
        (virtabs.NoStoragePoolError, 49, LookupError),
        (virtabs.NoStorageVolumeError, 50, LookupError),
        (virtabs.OperationInvalidError, 55, None),
        (virtabs.OperationTimeoutError, 68, TimeoutError),
        (virtabs.BlockCopyActiveError, 83, None),
        (virtabs.ConnectError, 5, ConnectionError),
        (virtabs.DriverNotFoundError, 1001, LookupError),
        (virtabs.DriverUnavailableError, 1002, ImportError),
    ],
)
def test_error_codes_and_builtins(cls: type[virtabs.VirtabsError], code: int, builtin: type | None) -> None:
    err = cls("domain 'x' is sad")
    assert err.code == code and err.message == "domain 'x' is sad" and str(err) == "domain 'x' is sad"
    assert isinstance(err, virtabs.VirtabsError)
    if builtin is not None:
        assert isinstance(err, builtin)
    assert virtabs._errors.error_class_for_code(code) is cls


def test_every_error_is_importable_from_virtabs_and_drawn_in_the_docstring() -> None:
    doc = virtabs._errors.__doc__ or ""
    for name in virtabs._errors.__all__:
        obj = getattr(virtabs._errors, name)
        if isinstance(obj, type) and issubclass(obj, virtabs.VirtabsError):
            assert getattr(virtabs, name) is obj, f"{name} is not importable from virtabs"
            assert name in doc, f"{name} missing from the error tree drawing"
            assert obj.code.value in [int(w) for w in doc.split() if w.isdigit()], name


def test_capabilities_declaration() -> None:
    caps = Capabilities.of("block.copy", "block.copy.shallow", notes={"block.copy": "qcow2 only"})
    assert "block.copy" in caps and Capability.BLOCK_COPY_SHALLOW in caps and "block.pull" not in caps
    assert caps.note("block.copy") == "qcow2 only"
    with pytest.raises(virtabs.InvalidArgumentError, match="unknown capability"):
        Capabilities.of("block.cpy")
    with pytest.raises(virtabs.InvalidArgumentError, match="without 'block.copy'"):
        Capabilities.of("block.copy.shallow")
    with pytest.raises(virtabs.InvalidArgumentError, match="undeclared"):
        Capabilities.of("block.pull", notes={"block.copy": "x"})
    assert set(Capabilities.all().without("block.copy")) == set(Capability) - {
        c for c in Capability if c.value.startswith("block.copy")
    }


def test_block_copy_is_declared_with_a_kind_of_copy() -> None:
    """issue 27: what a copy copies is part of the declaration (flatten, shallow or move_chain)."""
    with pytest.raises(virtabs.InvalidArgumentError, match="without a kind of copy"):
        Capabilities.of("block.copy")
    with pytest.raises(virtabs.InvalidArgumentError, match="without a kind of copy"):
        Capabilities.of("block.copy", "block.copy.pivot", "block.copy.raw")
    for kind in ("block.copy.flatten", "block.copy.shallow", "block.copy.move_chain"):
        assert kind in Capabilities.of("block.copy", kind)
    with pytest.raises(virtabs.InvalidArgumentError, match="without 'block.copy'"):
        Capabilities.of("block.copy.move_chain")
    # MOVE_CHAIN is virtabs' own bit, clear of libvirt's, and the same in both flag types
    assert virtabs.BlockCopyFlags.MOVE_CHAIN == virtabs.BlockRebaseFlags.MOVE_CHAIN == 1 << 16


def test_required_capability_names_exist() -> None:
    required = [
        "domain.define",
        "domain.start",
        "domain.shutdown",
        "domain.destroy",
        "domain.reboot",
        "domain.suspend",
        "domain.save",
        "domain.snapshot",
        "domain.disk_hotplug",
        "block.pull",
        "block.copy",
        "block.copy.shallow",
        "block.copy.reuse_ext",
        "block.copy.raw",
        "block.copy.pivot",
        "block.commit",
        "storage.pool",
        "storage.volume",
        "events",
    ]
    for name in required:
        assert Capability(name).value == name


def test_flag_values_are_libvirts() -> None:
    F = virtabs.BlockRebaseFlags
    assert (F.SHALLOW, F.REUSE_EXT, F.COPY_RAW, F.COPY, F.RELATIVE, F.COPY_DEV, F.BANDWIDTH_BYTES) == (
        1, 2, 4, 8, 16, 32, 64,
    )  # fmt: skip
    C = virtabs.BlockCopyFlags
    assert (C.SHALLOW, C.REUSE_EXT, C.TRANSIENT_JOB, C.SYNCHRONOUS_WRITES) == (1, 2, 4, 8)
    assert (virtabs.BlockJobAbortFlags.ASYNC, virtabs.BlockJobAbortFlags.PIVOT) == (1, 2)
    T = virtabs.BlockJobType
    assert [T.UNKNOWN, T.PULL, T.COPY, T.COMMIT, T.ACTIVE_COMMIT] == [0, 1, 2, 3, 4]
    S = virtabs.DomainState
    assert list(range(8)) == [
        S.NOSTATE,
        S.RUNNING,
        S.BLOCKED,
        S.PAUSED,
        S.SHUTDOWN,
        S.SHUTOFF,
        S.CRASHED,
        S.PMSUSPENDED,
    ]


def test_models_validate_and_round_trip() -> None:
    spec = DomainSpec(
        name="web-1", memory_bytes=1 << 30, vcpus=2, disks=[{"target": "vda", "path": "/x.qcow2", "format": "qcow2"}]
    )
    assert spec.disks[0] == DiskSpec("vda", "/x.qcow2", "qcow2")
    assert DomainSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(virtabs.InvalidArgumentError, match="memory_bytes"):
        DomainSpec(name="a", memory_bytes=0, vcpus=1)
    with pytest.raises(virtabs.InvalidArgumentError, match="invalid domain name"):
        DomainSpec(name="bad name", memory_bytes=1, vcpus=1)
    with pytest.raises(virtabs.InvalidArgumentError, match="unknown domain field"):
        DomainSpec.from_dict({"name": "a", "memory_bytes": 1, "vcpus": 1, "memroy": 2})
    with pytest.raises(virtabs.InvalidArgumentError, match="used twice"):
        DomainSpec(name="a", memory_bytes=1, vcpus=1, disks=[DiskSpec("vda", "/a"), DiskSpec("vda", "/b")])
    with pytest.raises(virtabs.InvalidArgumentError, match="format"):
        DiskSpec("vda", "/a", format="qcow3")
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


def test_public_names_have_docstrings() -> None:
    for name in virtabs.__all__:
        obj = getattr(virtabs, name)
        if callable(obj) and not isinstance(obj, type(builtins.len)):
            assert (obj.__doc__ or "").strip(), f"virtabs.{name} has no docstring"


def test_a_refusal_of_a_dropped_capability_says_why(open_recording: Any) -> None:
    """A capability the driver declares but the connection dropped (``without(..., reason=)``) is refused with the
    connection's reason, so "does not support network" names what the host lacks; an undeclared one has none."""
    caps = Capabilities.all().without("network", reason="no ip on dom0.example (Debian: apt-get install iproute2)")
    conn, driver = open_recording(caps)
    with pytest.raises(virtabs.NotSupportedError) as err:
        conn.list_networks()
    assert "does not support network on this connection: no ip on dom0.example" in str(err.value)
    assert "list_networks" not in driver.calls
    undeclared, _ = open_recording(Capabilities.all().without("network"))
    with pytest.raises(virtabs.NotSupportedError) as err:
        undeclared.list_networks()
    assert str(err.value).endswith("does not support network")
