"""The protocol and the helper, spoken to directly (no ssh): framing, versions, bad frames, the gate.

The helper runs as ``python -m virtabs.remote`` with pipes, exactly the program ssh starts; these tests
play a client that does not follow the rules, which the real client never does.
"""

from __future__ import annotations

import datetime as dt
import struct
import subprocess
import sys
from typing import Any

import pytest

import virtabs
from virtabs import BlockJobType, DomainState, LifecycleEventType
from virtabs.remote._protocol import (
    MAX_FRAME,
    ProtocolError,
    decode_value,
    encode_frame,
    encode_value,
    method_schema,
    read_frame,
    table_methods,
)
from virtabs.spi import OPERATIONS, BlockCopyRequest, BlockJobInfo, DiskInfo, DomainRecord, Event, LifecycleEvent


class HelperProcess:
    """The helper in a child process, and a raw frame-level client for it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "virtabs.remote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(encode_frame(message))
        self.proc.stdin.flush()

    def raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        return read_frame(self.proc.stdout)  # type: ignore[arg-type]

    def hello(self) -> dict[str, Any]:
        self.send({"type": "hello", "versions": [1], "client": "test"})
        welcome = self.read()
        assert welcome is not None
        return welcome

    def call(self, request_id: int, method: str, args: dict[str, Any], session: int | None = 1) -> dict[str, Any]:
        self.send({"type": "call", "id": request_id, "session": session, "method": method, "args": args})
        reply = self.read()
        assert reply is not None and reply["type"] == "reply" and reply["id"] == request_id, reply
        return reply

    def open(self, uri: str = "test:///default", readonly: bool = False) -> dict[str, Any]:
        reply = self.call(0, "open", {"uri": uri, "readonly": readonly, "timeout": None}, session=None)
        assert "result" in reply, reply
        return dict(reply["result"])

    def finish(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(30)


@pytest.fixture
def helper() -> Any:
    process = HelperProcess()
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def test_welcome_lists_the_operation_table_and_the_client_calls(helper: HelperProcess) -> None:
    welcome = helper.hello()
    assert welcome["type"] == "welcome" and welcome["version"] == 1
    assert welcome["methods"] == [*OPERATIONS, "open", "close", "events.start", "events.stop"]
    assert helper.finish() == 0


def test_a_version_mismatch_is_one_error_naming_both_versions_and_the_helper_exits(helper: HelperProcess) -> None:
    helper.send({"type": "hello", "versions": [7], "client": "9.9"})
    answer = helper.read()
    assert answer is not None and answer["type"] == "error"
    error = answer["error"]
    assert error["class"] == "ProtocolError" and error["code"] == 5
    assert "version 7" in error["message"] and "version 1" in error["message"]
    assert helper.proc.wait(30) == 2


def test_an_oversized_frame_is_refused_without_reading_it(helper: HelperProcess) -> None:
    helper.hello()
    helper.raw(struct.pack(">I", MAX_FRAME + 1))
    answer = helper.read()
    assert answer is not None and answer["type"] == "error"
    assert answer["error"]["class"] == "ProtocolError" and str(MAX_FRAME) in answer["error"]["message"]
    assert helper.proc.wait(30) == 2


def test_malformed_frames_and_unknown_methods_get_typed_errors_and_the_helper_keeps_serving(
    helper: HelperProcess,
) -> None:
    helper.hello()
    session = helper.open()["session"]
    helper.raw(struct.pack(">I", 5) + b"{nope")
    answer = helper.read()
    assert answer is not None and answer["type"] == "error" and answer["error"]["class"] == "ProtocolError"
    reply = helper.call(1, "__init__", {}, session)
    assert reply["error"]["class"] == "NotSupportedError" and "unknown method" in reply["error"]["message"]
    reply = helper.call(2, "emit", {"event": {}}, session)
    assert reply["error"]["class"] == "NotSupportedError"
    reply = helper.call(3, "list_domains", {"extra": 1}, session)
    assert reply["error"]["class"] == "ProtocolError"
    reply = helper.call(4, "domain_info", {"dom": {"name": "test", "uuid": "x", "evil": 1}}, session)
    assert reply["error"]["class"] == "ProtocolError" and "evil" in reply["error"]["message"]
    reply = helper.call(5, "list_domains", {}, session)
    assert [d["name"] for d in reply["result"]] == ["test"]
    assert helper.finish() == 0


def test_a_slow_call_does_not_hold_up_a_quick_one_sent_after_it(helper: HelperProcess) -> None:
    # the thread that reads a call serves it; one still running after a moment hands reading on
    helper.hello()
    slow = helper.open("test:///default?latency_ms=800")["session"]  # every host call sleeps 0.8 s there
    quick = helper.open("test:///default")["session"]
    helper.send({"type": "call", "id": 10, "session": slow, "method": "list_domains", "args": {}})
    helper.send({"type": "call", "id": 11, "session": quick, "method": "list_domains", "args": {}})
    first, second = helper.read(), helper.read()
    assert first is not None and second is not None
    assert (first["id"], second["id"]) == (11, 10), "the quick call waited for the slow one"
    assert [d["name"] for d in first["result"]] == [d["name"] for d in second["result"]] == ["test"]
    assert helper.finish() == 0


def test_a_read_only_session_is_read_only_on_the_helper(helper: HelperProcess) -> None:
    helper.hello()
    session = helper.open(readonly=True)["session"]
    dom = helper.call(1, "lookup_domain", {"name_or_uuid": "test"}, session)["result"]
    reply = helper.call(2, "destroy", {"dom": dom}, session)
    assert reply["error"]["class"] == "OperationDeniedError" and reply["error"]["code"] == 29
    reply = helper.call(3, "domain_info", {"dom": dom}, session)
    assert reply["result"]["state"] == "RUNNING"  # nothing was destroyed
    assert helper.finish() == 0


def test_the_helpers_gate_repeats_the_rules_a_direct_client_would_skip(helper: HelperProcess) -> None:
    helper.hello()
    session = helper.open()["session"]
    dom = helper.call(1, "lookup_domain", {"name_or_uuid": "test"}, session)["result"]
    request = encode_value(BlockCopyRequest(dest="relative.img"), BlockCopyRequest)
    reply = helper.call(2, "block_copy", {"dom": dom, "disk": "vda", "request": request}, session)
    assert reply["error"]["class"] == "InvalidArgumentError" and "absolute" in reply["error"]["message"]
    reply = helper.call(3, "start", {"dom": dom, "paused": False}, session)  # already running
    assert reply["error"]["class"] == "OperationInvalidError"
    reply = helper.call(4, "save", {"dom": dom, "path": "x.save"}, session)
    assert reply["error"]["class"] == "InvalidArgumentError"
    reply = helper.call(5, "domain_info", {"dom": dom}, session)
    assert reply["result"]["state"] == "RUNNING"
    assert helper.finish() == 0


def test_only_local_uris_are_opened_on_the_helper(helper: HelperProcess) -> None:
    helper.hello()
    reply = helper.call(1, "open", {"uri": "test+ssh://elsewhere/x.json", "readonly": False, "timeout": None}, None)
    assert reply["error"]["class"] == "InvalidArgumentError" and "local URIs only" in reply["error"]["message"]
    assert helper.finish() == 0


# --- the schema ------------------------------------------------------------------------------


def test_records_round_trip_through_the_schema() -> None:
    record = DomainRecord(
        name="a",
        uuid="6695eb01-f6a4-8304-79aa-97f2502e193f",
        state=DomainState.PAUSED,
        native_state="paused",
        vcpus=2,
        memory_bytes=1 << 30,
        os_type="hvm",
        autostart=None,
        disks=(DiskInfo("vda", "/x.qcow2", "qcow2", backing_chain=("/b.qcow2",)),),
        block_jobs=(BlockJobInfo(BlockJobType.COPY, 5, 10, 0, False, "vda"),),
        extra={"qemu": {"machine": "q35", "list": [1, 2]}},
        field_errors={"nics": "gone"},
    )
    hint = method_schema("inventory").result
    assert decode_value(encode_value([record], hint), hint) == [record]
    event = LifecycleEvent(
        "a", record.uuid, LifecycleEventType.STARTED, "booted", dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    )
    data = encode_value(event, Event)
    assert data["kind"] == "lifecycle" and decode_value(data, Event) == event


def test_unknown_fields_types_and_enum_names_are_protocol_errors() -> None:
    hint = method_schema("domain_info").result
    good = {
        "name": "a",
        "uuid": "u",
        "state": "RUNNING",
        "native_state": "running",
        "vcpus": 1,
        "memory_bytes": 1,
        "max_memory_bytes": 1,
        "cpu_time_ns": 0,
    }
    assert decode_value(good, hint).state is DomainState.RUNNING
    for bad in ({**good, "x": 1}, {**good, "state": "EXPLODED"}, {**good, "vcpus": "1"}, {**good, "vcpus": True}):
        with pytest.raises(ProtocolError):
            decode_value(bad, hint)
    with pytest.raises(ProtocolError):
        decode_value({"kind": "unheard-of"}, Event)
    with pytest.raises(ProtocolError):
        encode_value(object(), Any)


def test_the_method_list_is_the_operation_table_read_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import virtabs.spi._operations as operations

    assert table_methods() == tuple(OPERATIONS)
    grown = dict(operations.OPERATIONS)
    assert "networks_of_the_future" not in grown
    grown["networks_of_the_future"] = operations.Operation("networks_of_the_future", "a row a later change adds")
    monkeypatch.setattr("virtabs.remote._protocol.OPERATIONS", grown)
    assert table_methods()[-1] == "networks_of_the_future"


# --- which URIs go to the helper ---------------------------------------------------------------


def test_driver_plus_ssh_goes_to_the_helper_unless_the_driver_has_its_own_ssh() -> None:
    from virtabs._connection import driver_class_for
    from virtabs._uri import parse_uri
    from virtabs.remote import NATIVE_SSH
    from virtabs.remote._client import RemoteDriver, remote_uri

    for driver in ("qemu", "lxc", "test", "someones-driver"):
        cls = driver_class_for(parse_uri(f"{driver}+ssh://root@h/system"))
        assert issubclass(cls, RemoteDriver) and cls.name == driver
    assert {"xen", "vbox", "docker"} == NATIVE_SSH
    for driver in sorted(NATIVE_SSH):
        try:
            cls = driver_class_for(parse_uri(f"{driver}+ssh://root@h/"))
        except virtabs.DriverNotFoundError:
            continue  # not installed here: still never the remote driver
        assert not issubclass(cls, RemoteDriver)
    uri = parse_uri("qemu+ssh://root@h:2222/embed?root=/srv/x&keyfile=/k&known_hosts=/kh&no_verify=1&helper=/h")
    assert remote_uri(uri) == "qemu:///embed?root=/srv/x"
    assert remote_uri(parse_uri("test+ssh://h/srv/lab.json")) == "test:///srv/lab.json"


def test_remote_driver_methods_are_the_table_with_the_spi_signatures() -> None:
    import inspect

    from virtabs.remote._client import RemoteDriver
    from virtabs.spi import Driver, missing_methods

    assert missing_methods(RemoteDriver, RemoteDriver.capabilities) == {}
    for method in OPERATIONS:
        mine, base = getattr(RemoteDriver, method), getattr(Driver, method)
        assert mine is not base and inspect.signature(mine) == inspect.signature(base), method


def test_flag_combinations_round_trip_as_lists_of_names() -> None:
    """A combination of flags has no member name of its own (``LIVE|PERSIST_DEST``): it travels as the list
    of its flags' names. Migration's requests failed over the remote channel before this."""
    from virtabs import MigrateFlags

    combo = MigrateFlags.LIVE | MigrateFlags.PERSIST_DEST | MigrateFlags.NON_SHARED_DISK
    wire = encode_value(combo, MigrateFlags, "flags")
    assert sorted(wire) == ["LIVE", "NON_SHARED_DISK", "PERSIST_DEST"]
    assert decode_value(wire, MigrateFlags, "flags") == combo
    assert decode_value([], MigrateFlags, "flags") == MigrateFlags(0)
    for bad in (["LIVE", "NOPE"], "LIVE", [1]):
        with pytest.raises(ProtocolError):
            decode_value(bad, MigrateFlags, "flags")
    with pytest.raises(ProtocolError, match="no name"):
        encode_value(MigrateFlags(1 << 40), MigrateFlags, "flags")


def test_a_perform_whose_session_ends_is_aborted_and_the_guest_resumes(helper: HelperProcess, tmp_path: Any) -> None:
    """The client that asked for a migration's perform goes away while it runs (here: its session is
    closed; a dead client's channel ends every session the same way): no finish can follow, so the
    helper aborts the perform, which rolls back, and the source's guest runs again."""
    from virtabs import MigrateFlags
    from virtabs.spi import DomainSpec, MigrationRequest

    dest = tmp_path / "dest.json"
    dest.write_text("{}")
    helper.hello()
    client = helper.open("test:///default")["session"]
    target = helper.open(f"test://{dest}")["session"]
    observer = helper.open("test:///default")["session"]
    dom = helper.call(1, "lookup_domain", {"name_or_uuid": "test"}, client)["result"]
    memory = helper.call(2, "domain_info", {"dom": dom}, observer)["result"]["memory_bytes"]
    # not LIVE: the source is paused while memory is copied (so the observer sees the perform under way);
    # the bandwidth makes the copy take 10 s
    request = MigrationRequest(flags=MigrateFlags.PERSIST_DEST, bandwidth_bytes=max(1, memory // 10))
    spec = DomainSpec(name="test", memory_bytes=memory, vcpus=1, uuid=dom["uuid"])
    prepared = helper.call(
        3, "migrate_prepare", method_schema("migrate_prepare").encode_args((spec, request, [])), target
    )
    assert "result" in prepared, prepared
    perform = {"dom": dom, "request": encode_value(request, MigrationRequest), "ticket": prepared["result"]}
    helper.send({"type": "call", "id": 4, "session": client, "method": "migrate_perform", "args": perform})
    state = None
    for request_id in range(100, 1100):  # until the perform has paused the source
        state = helper.call(request_id, "domain_info", {"dom": dom}, observer)["result"]["state"]
        if state == "PAUSED":
            break
    assert state == "PAUSED", state
    helper.send({"type": "call", "id": 5, "session": client, "method": "close", "args": {}})
    replies = {}
    for _ in range(2):
        reply = helper.read()
        assert reply is not None
        replies[reply["id"]] = reply
    assert replies[4]["error"]["class"] == "OperationFailedError" and "aborted" in replies[4]["error"]["message"]
    assert helper.call(6, "domain_info", {"dom": dom}, observer)["result"]["state"] == "RUNNING"
    assert helper.finish() == 0


def test_a_directory_volume_and_its_create_call_round_trip_without_a_capacity() -> None:
    """A directory volume (format 'dir', no capacity) crosses the wire as None, never as 0 or a refusal."""
    from virtabs.spi import VolumeInfo

    volume = VolumeInfo("data", "volumes", "/var/lib/docker/volumes/data/_data", "dir", None)
    listing = method_schema("list_volumes").result
    assert decode_value(encode_value([volume], listing), listing) == [volume]
    params = method_schema("create_volume").params
    assert encode_value(None, params["capacity_bytes"]) is None
    assert decode_value(None, params["capacity_bytes"]) is None
    assert decode_value(1 << 20, params["capacity_bytes"]) == 1 << 20
