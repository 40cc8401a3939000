"""Block jobs against real QEMU: the seed's rebase COPY combinations, pull, commit, abort, pivot, refusals.

Every test runs a domain whose disk is the chain base <- snap1 <- snap2 (distinct pattern per layer)
and checks the result only after the domain is stopped (a running QEMU's qcow2 reads stale from outside).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import virtabs
from qemu_helpers import LAYERS, SIZE, chain_spec, check_all_layers, has_pattern, image_info, qemu_img
from virtabs import BlockCommitFlags, BlockCopyActiveError, BlockRebaseFlags, OperationInvalidError
from virtabs.spi import BlockJobStatus, BlockJobType

R = BlockRebaseFlags


def _open(root: Path) -> virtabs.Connection:
    return virtabs.open(f"qemu:///embed?root={root}")


@pytest.fixture
def running(root: Path, chain: dict[str, Path]) -> Any:
    conn = _open(root)
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    dom.start()
    yield conn, dom, chain
    if dom.state().is_active:
        dom.destroy()
    conn.close()


def _prepare_reuse(kind: str, dest: Path, chain: dict[str, Path]) -> None:
    if kind == "empty-qcow2":
        qemu_img("create", "-q", "-f", "qcow2", str(dest), str(SIZE))
    elif kind == "qcow2-over-snap1":
        qemu_img("create", "-q", "-f", "qcow2", "-b", str(chain["snap1"]), "-F", "qcow2", str(dest), str(SIZE))
    elif kind == "raw-like-snap1":
        qemu_img("convert", "-f", "qcow2", "-O", "raw", str(chain["snap1"]), str(dest))
    elif kind == "empty-raw":
        qemu_img("create", "-q", "-f", "raw", str(dest), str(SIZE))


# (id, rebase flags, pre-created destination, expected format, expected backing (chain key) or None)
SEED = [
    ("copy", R.COPY, None, "qcow2", None),
    ("copy-raw", R.COPY | R.COPY_RAW, None, "raw", None),
    ("copy-shallow", R.COPY | R.SHALLOW, None, "qcow2", "snap1"),
    ("copy-reuse", R.COPY | R.REUSE_EXT, "empty-qcow2", "qcow2", None),
    ("copy-reuse-shallow", R.COPY | R.REUSE_EXT | R.SHALLOW, "qcow2-over-snap1", "qcow2", "snap1"),
    ("copy-reuse-shallow-raw", R.COPY | R.REUSE_EXT | R.SHALLOW | R.COPY_RAW, "raw-like-snap1", "raw", None),
    ("copy-reuse-raw", R.COPY | R.REUSE_EXT | R.COPY_RAW, "empty-raw", "raw", None),
]


@pytest.mark.parametrize(("flags", "reuse", "fmt", "backing"), [s[1:] for s in SEED], ids=[s[0] for s in SEED])
def test_seed_combination(running: Any, flags: R, reuse: str | None, fmt: str, backing: str | None) -> None:
    conn, dom, chain = running
    dest = chain["base"].parent / "copy.img"
    if reuse:
        _prepare_reuse(reuse, dest, chain)
    events: list[Any] = []
    sub = conn.subscribe(events.append)
    job = dom.block_rebase("vda", str(dest), flags=flags)
    info = job.wait_ready(timeout=60)
    assert info.ready and info.cur == info.end
    job.pivot()
    assert dom.block_job_info("vda") is None
    assert dom.spec().disks[0].path == str(dest)
    assert dom.spec().disks[0].format == fmt
    sub.close()
    statuses = [e.status for e in events if isinstance(e, virtabs.BlockJobEvent)]
    assert BlockJobStatus.READY in statuses and BlockJobStatus.COMPLETED in statuses
    dom.destroy()
    info_json = image_info(dest)
    assert info_json["format"] == fmt
    if backing is None:
        assert "backing-filename" not in info_json
    else:
        assert os.path.realpath(str(info_json["backing-filename"])) == str(chain[backing])
        assert info_json["backing-filename-format"] == "qcow2"
    check_all_layers(dest, fmt)
    if backing == "snap1":
        # shallow: only snap2's data lives in the copy itself
        top_only = qemu_img("map", "--output=json", "-f", fmt, str(dest))
        assert '"depth": 0' in top_only
    # the domain restarts from the copy (the definition names it)
    dom.start(paused=True)
    assert dom.disks()[0].path == str(dest)


def test_shallow_copy_into_new_raw_is_refused(running: Any) -> None:
    _conn, dom, chain = running
    with pytest.raises((OperationInvalidError, virtabs.InvalidArgumentError), match="raw"):
        dom.block_rebase("vda", str(chain["base"].parent / "x.raw"), flags=R.COPY | R.SHALLOW | R.COPY_RAW)
    assert dom.block_job_info("vda") is None


def test_block_copy_api_with_explicit_format_and_abort(running: Any) -> None:
    _conn, dom, chain = running
    dest = chain["base"].parent / "c.qcow2"
    job = dom.block_copy("vda", str(dest), format="qcow2")
    job.wait_ready(timeout=60)
    job.abort()
    assert dom.block_job_info("vda") is None
    assert dom.spec().disks[0].path == str(chain["snap2"])  # cancel: stays on the source
    dom.destroy()
    check_all_layers(chain["snap2"], "qcow2")


def test_pivot_before_ready_and_second_job_refused(running: Any) -> None:
    _conn, dom, chain = running
    dest = chain["base"].parent / "slow.qcow2"
    # 1 MiB/s: the 48 MiB of data take far longer than this test
    job = dom.block_rebase("vda", str(dest), bandwidth=1, flags=R.COPY)
    info = job.info()
    assert info is not None and info.type == BlockJobType.COPY and not info.ready
    assert info.cur < info.end
    with pytest.raises(BlockCopyActiveError):
        job.pivot()
    with pytest.raises(virtabs.VirtabsError):
        dom.block_pull("vda")
    with pytest.raises(virtabs.VirtabsError):
        dom.save(str(chain["base"].parent / "s.save"))
    with pytest.raises(virtabs.VirtabsError):
        dom.create_snapshot("s1")
    with pytest.raises(virtabs.VirtabsError):
        dom.detach_disk("vda")
    dom.block_job_set_speed("vda", 0)
    job.wait_ready(timeout=60)
    job.pivot()
    dom.destroy()
    check_all_layers(dest, "qcow2")


def test_pull_full_and_with_base(root: Path, chain: dict[str, Path]) -> None:
    conn = _open(root)
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    dom.start()
    job = dom.block_pull("vda", base=str(chain["base"]))
    job.wait(timeout=60)
    assert dom.block_job_info("vda") is None
    assert dom.disks()[0].backing_chain == (str(chain["base"]),)
    job = dom.block_pull("vda")
    job.wait(timeout=60)
    assert dom.disks()[0].backing_chain == ()
    dom.destroy()
    info = image_info(chain["snap2"])
    assert "backing-filename" not in info
    check_all_layers(chain["snap2"], "qcow2")


def test_commit_intermediate(root: Path, chain: dict[str, Path]) -> None:
    conn = _open(root)
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    dom.start()
    job = dom.block_commit("vda", top=str(chain["snap1"]), base=str(chain["base"]), flags=BlockCommitFlags.DELETE)
    job.wait(timeout=60)
    assert dom.disks()[0].backing_chain == (str(chain["base"]),)
    assert not chain["snap1"].exists()  # DELETE removed the committed image
    dom.destroy()
    _name, pattern, offset, length = LAYERS[1]
    assert has_pattern(chain["base"], "qcow2", pattern, offset, length), "snap1 data not committed into base"
    check_all_layers(chain["snap2"], "qcow2")


@pytest.mark.parametrize("pivot", [True, False], ids=["pivot", "abort"])
def test_active_commit(root: Path, chain: dict[str, Path], pivot: bool) -> None:
    conn = _open(root)
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    dom.start()
    job = dom.block_commit("vda", flags=BlockCommitFlags.ACTIVE)
    info = job.wait_ready(timeout=60)
    assert info.type == BlockJobType.ACTIVE_COMMIT
    if pivot:
        job.pivot()
        assert dom.spec().disks[0].path == str(chain["base"])
    else:
        job.abort()
        assert dom.spec().disks[0].path == str(chain["snap2"])
    assert dom.block_job_info("vda") is None
    dom.destroy()
    check_all_layers(chain["base"], "qcow2")
    check_all_layers(chain["snap2"], "qcow2")


def test_info_never_reports_cur_eq_end_before_ready(root: Path, chain: dict[str, Path]) -> None:
    from qemu_helpers import make_driver

    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    from virtabs.spi import BlockCopyRequest

    drv.block_copy(ref, "vda", BlockCopyRequest(dest=str(chain["base"].parent / "o.raw"), format="raw"))
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = drv.block_job_info(ref, "vda")
        assert info is not None
        seen.append(info)
        if not info.ready:
            assert info.cur < info.end
        else:
            break
        time.sleep(0.005)
    assert seen[-1].ready
    drv.block_job_abort(ref, "vda", pivot=True)  # returns once QEMU has job-complete
    deadline = time.monotonic() + 60
    while drv.block_job_info(ref, "vda") is not None:
        assert time.monotonic() < deadline, "the pivot never concluded"
        time.sleep(0.05)
    assert drv.domain_spec(ref).disks[0].format == "raw"
    drv.destroy(ref)
    check_all_layers(chain["base"].parent / "o.raw", "raw")


def test_pull_abort_keeps_the_chain(root: Path, chain: dict[str, Path]) -> None:
    conn = _open(root)
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    dom.start()
    events: list[Any] = []
    sub = conn.subscribe(events.append)
    job = dom.block_pull("vda", bandwidth=1)
    info = job.info()
    assert info is not None and info.type == BlockJobType.PULL and info.cur < info.end
    with pytest.raises(virtabs.VirtabsError):
        job.pivot()
    job.abort()
    assert dom.block_job_info("vda") is None
    sub.close()
    assert BlockJobStatus.CANCELED in [e.status for e in events if isinstance(e, virtabs.BlockJobEvent)]
    assert dom.disks()[0].backing_chain == (str(chain["snap1"]), str(chain["base"]))
    dom.destroy()
    check_all_layers(chain["snap2"], "qcow2")


def test_copy_raw_never_probes_and_reuse_probes_only_the_destination(
    running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtabs_qemu import _img

    _conn, dom, chain = running
    probed: list[str] = []
    real_probe = _img.probe_format

    def spy(path: str, timeout: float | None = None) -> str:
        probed.append(path)
        return real_probe(path, timeout)

    monkeypatch.setattr(_img, "probe_format", spy)
    raw = chain["base"].parent / "r.raw"
    qemu_img("create", "-q", "-f", "raw", str(raw), str(SIZE))
    job = dom.block_rebase("vda", str(raw), flags=R.COPY | R.REUSE_EXT | R.COPY_RAW)
    job.wait_ready(timeout=60)
    job.abort()
    assert probed == []  # COPY_RAW: format="raw", nothing probed
    q = chain["base"].parent / "q.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(q), str(SIZE))
    job = dom.block_rebase("vda", str(q), flags=R.COPY | R.REUSE_EXT)
    job.wait_ready(timeout=60)
    job.pivot()
    assert probed == [str(q)]  # REUSE_EXT without a format: the destination's metadata only
    assert dom.spec().disks[0].format == "qcow2"
