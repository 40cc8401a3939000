"""Parsers of xl output, on output recorded from the real xl 4.17 (tests/recorded/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtabs_xen._xl import (
    XlParseError,
    config_disks,
    domain_config,
    parse_block_list,
    parse_info,
    parse_list,
    parse_list_long,
    parse_state_flags,
    vdev_name,
    vdev_number,
)

REC = Path(__file__).parent / "recorded"


def rec(name: str) -> str:
    return (REC / name).read_text()


def test_state_flags_every_position() -> None:
    assert parse_state_flags("r-----") == {"running"}
    assert parse_state_flags("-b----") == {"blocked"}
    assert parse_state_flags("--p---") == {"paused"}
    assert parse_state_flags("--ps--") == {"paused", "shutdown"}
    assert parse_state_flags("----c-") == {"crashed"}
    assert parse_state_flags("-----d") == {"dying"}
    assert parse_state_flags("rb----") == {"running", "blocked"}
    assert parse_state_flags("------") == frozenset()


@pytest.mark.parametrize("bad", ["r----", "b-----", "r-----x", "rbpscx"])
def test_state_flags_reject_misplaced_letters(bad: str) -> None:
    with pytest.raises(XlParseError):
        parse_state_flags(bad)


def test_list_running() -> None:
    dom0, rec1 = parse_list(rec("list_running.txt"))
    assert (dom0.name, dom0.domid, dom0.memory_mib, dom0.vcpus, dom0.state) == ("Domain-0", 0, 768, 2, "r-----")
    assert (rec1.name, rec1.domid, rec1.memory_mib, rec1.vcpus) == ("rec1", 1, 128, 1)
    assert rec1.flags == {"running"}
    assert rec1.cpu_time_s == pytest.approx(0.5)
    assert rec1.uuid is None


def test_list_verbose_has_uuids() -> None:
    dom0, rec1 = parse_list(rec("list_v_running.txt"))
    assert dom0.uuid == "00000000-0000-0000-0000-000000000000"
    assert rec1.uuid == "6f1c5f0e-1d2b-4c1e-9a55-2f7e8c1b0a11"
    assert rec1.cpu_time_s == pytest.approx(0.8)


def test_list_paused_vcpu_and_mem_set() -> None:
    (paused,) = parse_list(rec("list_v_paused.txt"))
    assert paused.flags == {"paused"}
    (vcpus,) = parse_list(rec("list_vcpu_set.txt"))
    assert vcpus.vcpus == 2
    (mem,) = parse_list(rec("list_mem_set.txt"))
    assert mem.memory_mib == 150


def test_list_hvm_sample_and_dom0_only() -> None:
    assert parse_list(rec("list_hvm_doc.txt"))[1].flags == {"running", "blocked"}
    assert [e.name for e in parse_list(rec("list_dom0_only.txt"))] == ["Domain-0"]
    assert parse_list("") == []


def test_list_name_with_spaces_is_read_from_the_right() -> None:
    text = rec("list_v_running.txt").replace("rec1    ", "a b c   ")
    assert parse_list(text)[1].name == "a b c"


def test_list_rejects_garbage() -> None:
    with pytest.raises(XlParseError):
        parse_list("hello world\n")
    with pytest.raises(XlParseError):
        parse_list(rec("list_running.txt") + "broken row\n")


def test_list_long_rec1() -> None:
    (entry,) = parse_list_long(rec("list_long_rec1.json"))
    assert entry["domid"] == 1
    config = domain_config(entry)
    assert config["c_info"]["uuid"] == "6f1c5f0e-1d2b-4c1e-9a55-2f7e8c1b0a11"
    assert config["c_info"]["domid"] == 4294967295  # not the real ID
    assert config["b_info"]["max_memkb"] == 163840
    assert config["b_info"]["kernel"] == "/root/guest/vmlinuz"
    (disk,) = config_disks(config)
    assert (disk["pdev_path"], disk["vdev"], disk["readwrite"]) == ("/root/d1.img", "xvda", 1)
    assert config["nics"][0]["mac"] == "00:16:3e:12:34:56"


def test_list_long_readonly_disk_has_no_readwrite_key() -> None:
    (entry,) = parse_list_long(rec("list_long_two_disks.json"))
    disks = config_disks(domain_config(entry))
    assert [d["vdev"] for d in disks] == ["xvda", "xvdb"]
    assert "readwrite" not in disks[1]


def test_list_long_after_detach_and_dom0() -> None:
    (entry,) = parse_list_long(rec("list_long_after_detach.json"))
    assert [d["vdev"] for d in config_disks(domain_config(entry))] == ["xvda"]
    (dom0,) = parse_list_long(rec("list_long_dom0.json"))
    assert dom0["domid"] == 0
    assert config_disks(domain_config(dom0)) == []
    assert "uuid" not in domain_config(dom0)["c_info"]


def test_list_long_rejects_non_json_and_wrong_shape() -> None:
    with pytest.raises(XlParseError):
        parse_list_long(rec("list_long_after_detach.stderr"))
    with pytest.raises(XlParseError):
        parse_list_long('{"domid": 1}')


def test_info() -> None:
    info = parse_info(rec("info.txt"))
    assert info["host"] == "xenlab-dom0"
    assert info["xen_version"] == "4.17.7"
    assert info["nr_cpus"] == "2"
    assert info["total_memory"] == "2047"
    assert info["hw_caps"].count(":") == 7
    assert info["xen_changeset"] == ""
    assert info["virt_caps"].split() == ["pv", "hvm", "hap", "gnttab-v1", "gnttab-v2"]


def test_info_rejects_truncated_output() -> None:
    with pytest.raises(XlParseError):
        parse_info("host : x\n")


def test_block_list() -> None:
    assert parse_block_list(rec("block_list_initialising.txt"))[0].state == 1
    xvda, xvdb = parse_block_list(rec("block_list_two.txt"))
    assert (xvda.vdev, xvda.vdev_number, xvda.state) == ("xvda", 51712, 4)
    assert (xvdb.vdev, xvdb.state, xvdb.backend_path) == ("xvdb", 4, "/local/domain/0/backend/vbd/1/51728")
    header_only = rec("block_list_two.txt").splitlines()[0] + "\n"
    assert parse_block_list(header_only) == []


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("xvda", 51712),
        ("xvdb", 51728),
        ("xvdb1", 51729),
        ("xvdp", 51952),
        ("xvdq", (1 << 28) | (16 << 8)),
        ("xvdaa", (1 << 28) | (26 << 8)),
        ("sda", 2048),
        ("sdb2", 2066),
        ("hda", 768),
        ("hdb", 832),
        ("hdc", 5632),
        ("hdd1", 5697),
    ],
)
def test_vdev_numbers_both_ways(name: str, number: int) -> None:
    assert vdev_number(name) == number
    assert vdev_name(number) == name


@pytest.mark.parametrize("bad", ["vda", "xvd", "nvme0n1", "hde"])
def test_vdev_number_rejects_non_xen_names(bad: str) -> None:
    with pytest.raises(XlParseError):
        vdev_number(bad)
