"""Contract tests of block jobs: every block-copy rule of the seed commit, pull and commit.

The seed is libvirt's "blockjob: add new API flags" (3648469258): with a chain
base <- snap1 <- snap2 on a running domain, ``block_rebase(disk, dest, flags)``
with COPY copies and then mirrors until the caller pivots or aborts.

Effects are checked through another door than the one that caused them: the
content of images through the target (``image_digest`` / ``layer_digest``),
the disk and the jobs through a second connection and the bulk records.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from ..._api import BlockJob, Domain
from ..._errors import (
    BlockCopyActiveError,
    InvalidArgumentError,
    NotSupportedError,
    OperationInvalidError,
    VirtabsError,
)
from ..._flags import (
    BlockCommitFlags,
    BlockCopyFlags,
    BlockJobAbortFlags,
    BlockJobType,
    BlockPullFlags,
    BlockRebaseFlags,
    DomainState,
)
from ..._models import BlockJobInfo, DiskInfo
from ..contract import SLOW_BYTES_PER_S, Contract, copy_kind_flags, no_driver_calls
from ..markers import requires
from ..recorder import READ_METHODS

__all__ = ["TestBlockCommit", "TestBlockCopyFlags", "TestBlockCopyRules", "TestBlockJobEvents", "TestBlockPull"]

R = BlockRebaseFlags
MiB = 1 << 20
TRANSIENT = BlockCopyFlags.TRANSIENT_JOB
RATE_SLACK_BYTES = 256 * 1024
"""Bytes a throttled job may move beyond ``bandwidth x elapsed`` (hypervisors copy in chunks)."""


def vda(dom: Domain) -> DiskInfo:
    """The ``vda`` disk as the host sees it now."""
    for disk in dom.disks():
        if disk.target == "vda":
            return disk
    raise AssertionError(f"domain {dom.name!r} has no disk vda")


def vda_elsewhere(c: Contract, dom: Domain) -> DiskInfo:
    """The ``vda`` disk as a second connection sees it (another door than the one that acted)."""
    return vda(c.other_door().lookup_domain(dom.uuid))


def throttle(c: Contract, bytes_per_s: int) -> int:
    """``bytes_per_s`` where the connection declares block.bandwidth; else 0 (the gate would refuse a limit)."""
    return bytes_per_s if c.conn.supports("block.bandwidth") else 0


def throttled_copy(c: Contract, dom: Domain, name: str, bandwidth: int) -> BlockJob:
    """A transient copy of ``vda`` at ``bandwidth`` bytes/s where the connection declares block.bandwidth;
    unthrottled where it does not."""
    flags = TRANSIENT | copy_kind_flags(c.conn)
    return dom.block_copy("vda", c.scratch(name), flags=flags, bandwidth=throttle(c, bandwidth))


def slow_copy(c: Contract, dom: Domain, name: str = "slow.qcow2") -> BlockJob:
    """A copy throttled so hard that it is not ready during the test.

    Without block.bandwidth it runs unthrottled: still a copy job on the disk (mirroring once ready, or
    in flight until it switches over by itself), which is all the "during a copy" rules need.
    """
    bandwidth = throttle(c, SLOW_BYTES_PER_S)
    job = dom.block_copy("vda", c.scratch(name), flags=TRANSIENT | copy_kind_flags(c.conn), bandwidth=bandwidth)
    info = job.info()
    if info is None:
        raise c.effect_missing("copy.in_flight", "a copy throttled to 1 KiB/s has already ended when it is first read")
    assert info.type == BlockJobType.COPY
    if bandwidth:
        assert not info.ready, "a copy throttled to 1 KiB/s is already ready: the chain disk has too little data"
    return job


def expect_copy_active(call: object) -> None:
    """``call()`` raises BlockCopyActiveError with code 83."""
    assert callable(call)
    with pytest.raises(BlockCopyActiveError) as exc:
        call()
    assert int(exc.value.code) == 83


class TestBlockCopyRules:
    """The refusals of the seed: flags without COPY, pivot before ready, second jobs, actions during a copy."""

    @requires("block.copy")
    def test_copy_needs_a_destination(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        with no_driver_calls(virtabs_contract, READ_METHODS):
            for dest in (None, ""):
                with pytest.raises(InvalidArgumentError):
                    dom.block_rebase("vda", dest, flags=R.COPY)

    @requires("block.copy")
    @pytest.mark.parametrize("flag", [R.SHALLOW, R.REUSE_EXT, R.COPY_RAW, R.COPY_DEV], ids=lambda f: f.name)
    def test_copy_flags_without_copy_are_invalid(self, virtabs_contract: Contract, flag: BlockRebaseFlags) -> None:
        dom = virtabs_contract.chain_domain()
        dest = virtabs_contract.scratch("x.qcow2")
        with no_driver_calls(virtabs_contract), pytest.raises(InvalidArgumentError) as exc:
            dom.block_rebase("vda", dest, flags=flag)
        assert "copy job" in exc.value.message
        assert dom.block_job_info("vda") is None

    @requires("block.copy", "block.copy.pivot", "block.bandwidth")  # only a throttled copy stays unready
    def test_pivot_before_ready_is_block_copy_active(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        source = vda(dom)
        job = slow_copy(virtabs_contract, dom)
        expect_copy_active(lambda: dom.block_job_abort("vda", BlockJobAbortFlags.PIVOT))
        expect_copy_active(job.pivot)
        assert job.info() is not None, "a refused pivot must leave the job running"
        job.abort()
        virtabs_contract.assert_no_job_anywhere(dom)
        assert vda(dom).path == source.path
        assert vda_elsewhere(virtabs_contract, dom).path == source.path

    @requires("block.copy")
    def test_second_job_on_the_disk_is_block_copy_active(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        job = slow_copy(virtabs_contract, dom)
        kind = copy_kind_flags(virtabs_contract.conn)
        try:
            expect_copy_active(
                lambda: dom.block_copy("vda", virtabs_contract.scratch("2nd.qcow2"), flags=TRANSIENT | kind)
            )
            expect_copy_active(
                lambda: dom.block_rebase("vda", virtabs_contract.scratch("3rd.qcow2"), flags=R.COPY | kind)
            )
        finally:
            job.abort()

    @requires("block.copy", "block.pull")
    def test_pull_during_a_copy_is_block_copy_active(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        job = slow_copy(virtabs_contract, dom)
        try:
            expect_copy_active(lambda: dom.block_pull("vda"))
        finally:
            job.abort()

    @requires("block.copy", "domain.save")
    def test_save_during_a_copy_is_block_copy_active(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        job = slow_copy(virtabs_contract, dom)
        try:
            expect_copy_active(lambda: dom.save(virtabs_contract.save_path()))
            assert dom.state() == DomainState.RUNNING
        finally:
            job.abort()

    @requires("block.copy", "domain.managed_save")
    def test_managed_save_during_a_copy_is_block_copy_active(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        job = slow_copy(virtabs_contract, dom)
        try:
            expect_copy_active(dom.managed_save)
            assert dom.state() == DomainState.RUNNING
            assert not dom.has_managed_save()
        finally:
            job.abort()

    @requires("block.copy", "domain.snapshot")
    def test_snapshot_during_a_copy_is_block_copy_active(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        job = slow_copy(virtabs_contract, dom)
        try:
            expect_copy_active(lambda: dom.create_snapshot("during-copy"))
        finally:
            job.abort()
        assert "during-copy" not in [s.name for s in dom.list_snapshots()]

    @requires("block.copy", "domain.snapshot")
    def test_revert_during_a_copy_is_block_copy_active(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        dom.create_snapshot("before-copy")
        job = slow_copy(virtabs_contract, dom)
        try:
            expect_copy_active(lambda: dom.revert_to_snapshot("before-copy"))
        finally:
            job.abort()

    @requires("block.copy", "domain.disk_hotplug")
    def test_detach_during_a_copy_is_block_copy_active(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        job = slow_copy(virtabs_contract, dom)
        try:
            expect_copy_active(lambda: dom.detach_disk("vda"))
            assert "vda" in [d.target for d in dom.disks()]
        finally:
            job.abort()

    @requires("block.copy")
    def test_abort_stays_on_the_source(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        content = c.image_digest(source.path)
        if c.conn.supports("block.copy.pivot"):  # abort in the mirror phase
            job = dom.block_rebase("vda", c.scratch("aborted.qcow2"), flags=R.COPY | copy_kind_flags(c.conn))
            c.wait_ready(job)
        else:  # a copy that switches over by itself is aborted before it ends
            job = slow_copy(c, dom, "aborted.qcow2")
        job.abort()
        c.assert_no_job_anywhere(dom)
        for after in (vda(dom), vda_elsewhere(c, dom)):
            assert (after.path, after.format, after.backing_chain) == (
                source.path,
                source.format,
                source.backing_chain,
            )
        assert c.image_digest(source.path) == content, "an aborted copy changed the source's content"

    @requires("block.copy", "block.copy.flatten", "block.copy.reuse_ext")
    def test_reuse_ext_without_a_destination_fails_cleanly(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        dest = c.scratch("missing.qcow2")
        with pytest.raises(VirtabsError) as exc:
            job = dom.block_rebase("vda", dest, flags=R.COPY | R.REUSE_EXT)
            c.end_job(dom)
            raise AssertionError(f"REUSE_EXT onto a missing {dest!r} started a job ({job!r})")
        assert not isinstance(exc.value, NotSupportedError), f"block.copy.reuse_ext is declared: {exc.value}"
        assert dest in exc.value.message or "exist" in exc.value.message, exc.value.message
        c.assert_no_job_anywhere(dom)
        assert vda(dom).path == source.path and vda_elsewhere(c, dom).path == source.path
        assert c.image_digest(dest) is None, f"a failed REUSE_EXT copy left an image at {dest!r}"

    @requires("block.copy")
    def test_progress_never_reports_done_before_ready(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        throttled_copy(virtabs_contract, dom, "progress.qcow2", 512 * 1024)
        driver = virtabs_contract.driver
        ref = dom._ref
        seen: list[BlockJobInfo] = []
        deadline = time.monotonic() + min(10.0, virtabs_contract.target.job_timeout)
        try:
            ended = False
            while time.monotonic() < deadline and not ended:
                for info in (dom.block_job_info("vda"), driver.block_job_info(ref, "vda")):
                    if info is None and seen and not virtabs_contract.conn.supports("block.copy.pivot"):
                        ended = True  # a copy that switches over by itself has ended
                        break
                    if info is None and not seen:
                        raise virtabs_contract.effect_missing(
                            "copy.in_flight", "the copy ended before its first progress sample"
                        )
                    assert info is not None, "the copy vanished before it was ready"
                    seen.append(info)
                    assert info.type == BlockJobType.COPY
                    assert 0 <= info.cur <= info.end
                    if not info.ready and info.end > 0:
                        assert info.cur < info.end, f"cur == end == {info.end} reported before the job is ready"
                if ended or seen[-1].ready:
                    break
                time.sleep(0.05)
        finally:
            virtabs_contract.end_job(dom)
        assert seen

    @requires("block.copy")
    def test_bandwidth_overflow_is_invalid(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        dest = virtabs_contract.scratch("bw.qcow2")
        calls: list[Callable[[], object]] = [
            lambda: dom.block_rebase("vda", dest, flags=R.COPY, bandwidth=(1 << 63) // MiB + 1),
            lambda: dom.block_rebase("vda", dest, flags=R.COPY | R.BANDWIDTH_BYTES, bandwidth=1 << 63),
            lambda: dom.block_rebase("vda", dest, flags=R.COPY, bandwidth=-1),
            lambda: dom.block_copy("vda", dest, flags=TRANSIENT, bandwidth=1 << 63),
        ]
        with no_driver_calls(virtabs_contract, READ_METHODS):
            for call in calls:
                with pytest.raises(InvalidArgumentError):
                    call()
        assert dom.block_job_info("vda") is None

    @requires("block.copy", "block.bandwidth")
    def test_bandwidth_shows_in_the_measured_progress_rate(self, virtabs_contract: Contract) -> None:
        """Throttled, the copy moves no faster than its bandwidth; sped up, faster than the old one could."""
        c = virtabs_contract
        dom = c.chain_domain()
        job = slow_copy(c, dom)
        try:
            before = time.monotonic()
            first = job.info()
            time.sleep(0.3)  # the bound below grows with the real elapsed time: a slow machine cannot fail it
            second = job.info()
            elapsed = time.monotonic() - before
            assert first is not None and second is not None
            moved = second.cur - first.cur
            assert moved <= SLOW_BYTES_PER_S * elapsed + RATE_SLACK_BYTES, (
                f"a copy throttled to {SLOW_BYTES_PER_S} bytes/s moved {moved} bytes in {elapsed:.2f}s"
            )
            dom.block_job_set_speed("vda", 4)
            info = job.info()
            assert info is not None and info.bandwidth == 4 * MiB, f"set_speed(4 MiB/s) reads back as {info}"
            start, base = time.monotonic(), info.cur

            def faster_than_before() -> bool:
                now = job.info()
                if now is None and not c.conn.supports("block.copy.pivot"):
                    return True  # it switched over by itself: all its data moved
                assert now is not None, "the copy vanished after set_speed"
                limit = base + SLOW_BYTES_PER_S * (time.monotonic() - start) + RATE_SLACK_BYTES
                return now.ready or now.cur > limit

            c.wait_until(faster_than_before, "the copy to move faster than its old bandwidth after set_speed")
        finally:
            c.end_job(dom)
        c.assert_no_job_anywhere(dom)


def copy_and_pivot(
    c: Contract, dom: Domain, dest: str, flags: BlockRebaseFlags, *, top_layer: str | None = None
) -> DiskInfo | None:
    """Copy with ``flags``; at READY the destination holds the source's content (read by the target),
    and, when ``top_layer`` is given (a shallow copy), its own layer holds exactly that data.

    With ``block.copy.pivot``: pivot, and return ``vda`` afterwards, having checked through a second
    connection that the disk names the copy, that its content is the source's, and that no listing still
    reports the job. Without it: abort, check the disk stayed on the source, and return None.
    """
    source = vda(dom)
    content = c.image_digest(source.path)
    assert content is not None, f"the target reads no image at the disk's path {source.path!r}"
    pivots = c.conn.supports("block.copy.pivot")
    job = dom.block_rebase("vda", dest, flags=R.COPY | flags)
    assert job.type == BlockJobType.COPY and job.two_phase == pivots
    if not pivots:
        return copy_without_pivot(c, dom, job, source, dest, content, top_layer)
    c.wait_ready(job)
    info = job.info()
    assert info is not None and info.ready and info.cur == info.end
    assert c.image_digest(dest) == content, f"at READY the destination {dest!r} does not hold the source's content"
    if top_layer is not None:
        assert c.layer_digest(dest) == top_layer, "a shallow copy must hold the top layer's data only"
    job.pivot()
    c.assert_no_job_anywhere(dom)
    after = vda(dom)
    elsewhere = vda_elsewhere(c, dom)
    assert (elsewhere.path, elsewhere.format, elsewhere.backing_chain) == (
        after.path,
        after.format,
        after.backing_chain,
    ), f"two connections disagree on the disk after the pivot: {after} vs {elsewhere}"
    assert after.path == dest, f"after the pivot the disk is on {after.path!r}, not the copy {dest!r}"
    assert c.image_digest(dest) == content, f"after the pivot the copy {dest!r} does not hold the source's content"
    if top_layer is not None:
        assert c.layer_digest(dest) == top_layer, "after the pivot the shallow copy holds more than the top layer"
    return after


def copy_without_pivot(
    c: Contract, dom: Domain, job: BlockJob, source: DiskInfo, dest: str, content: str, top_layer: str | None
) -> DiskInfo | None:
    """A copy on a connection without ``block.copy.pivot``: it switches over by itself (then the disk names
    the copy, which holds the source's content), or it mirrors at READY until aborted (then the copy held
    the content at READY and the disk stays on the source)."""

    def ended_or_ready() -> bool:
        info = job.info()
        return info is None or info.ready

    c.wait_until(ended_or_ready, f"the copy into {dest!r} to end or become ready")
    if job.info() is not None:
        assert c.image_digest(dest) == content, f"at READY the destination {dest!r} does not hold the source's content"
        if top_layer is not None:
            assert c.layer_digest(dest) == top_layer, "a shallow copy must hold the top layer's data only"
        job.abort()
        c.assert_no_job_anywhere(dom)
        assert vda(dom).path == source.path and vda_elsewhere(c, dom).path == source.path
        return None
    c.assert_no_job_anywhere(dom)
    after = vda_elsewhere(c, dom)
    assert after.path == dest, f"the copy ended by itself but the disk is on {after.path!r}, not the copy {dest!r}"
    assert c.image_digest(dest) == content, f"the copy {dest!r} does not hold the source's content"
    if top_layer is not None:
        assert c.layer_digest(dest) == top_layer, "a shallow copy must hold the top layer's data only"
    return after


class TestBlockCopyFlags:
    """The flag combinations of the seed: the copy holds the source's content, the disk ends on the right image."""

    @requires("block.copy", "block.copy.flatten")
    def test_copy_flattens_into_the_source_format(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        source = vda(dom)
        dest = virtabs_contract.scratch("deep.qcow2")
        after = copy_and_pivot(virtabs_contract, dom, dest, R(0))
        if after is not None:
            assert (after.path, after.format, after.backing_chain) == (dest, source.format, ()), (
                f"a deep copy flattens the chain into one image of the source's format: the disk is "
                f"{after.path!r} ({after.format}) backed by {list(after.backing_chain)}"
            )

    @requires("block.copy", "block.copy.flatten", "block.copy.raw")
    def test_copy_raw_flattens_into_raw(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        dest = virtabs_contract.scratch("deep.raw")
        after = copy_and_pivot(virtabs_contract, dom, dest, R.COPY_RAW)
        if after is not None:
            assert (after.path, after.format, after.backing_chain) == (dest, "raw", ())

    @requires("block.copy", "block.copy.shallow")
    def test_shallow_copy_keeps_the_backing_chain(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        top = c.layer_digest(source.path)
        dest = c.scratch("shallow.qcow2")
        after = copy_and_pivot(c, dom, dest, R.SHALLOW, top_layer=top)
        if after is not None:
            assert (after.path, after.format, after.backing_chain) == (dest, source.format, source.backing_chain)

    @requires("block.copy", "block.copy.move_chain")
    def test_move_chain_keeps_every_layer(self, virtabs_contract: Contract) -> None:
        """MOVE_CHAIN: the disk ends on the destination, the chain as deep as it was, each layer holding what
        the layer it replaces held (read before the copy: a move may delete the source's files), and the
        guest seeing the same content. Where the lower layers land is the host's choice."""
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        layers = [c.layer_digest(p) for p in (source.path, *source.backing_chain)]  # first: needs image.content
        assert source.backing_chain, "the chain domain's vda has no backing chain"
        dest = c.scratch("moved.qcow2")
        after = copy_and_pivot(c, dom, dest, R.MOVE_CHAIN, top_layer=layers[0])
        if after is not None:
            assert (after.path, after.format, len(after.backing_chain)) == (
                dest,
                source.format,
                len(source.backing_chain),
            ), (
                f"a chain move keeps every layer: the disk is {after.path!r} ({after.format}) backed by "
                f"{list(after.backing_chain)}, the source was backed by {list(source.backing_chain)}"
            )
            moved = [c.layer_digest(p) for p in after.backing_chain]
            assert moved == layers[1:], "a moved lower layer does not hold what the source's layer held"

    @requires("block.copy", "block.copy.move_chain")
    def test_move_chain_refuses_other_kinds_and_raw(self, virtabs_contract: Contract) -> None:
        """MOVE_CHAIN with SHALLOW, REUSE_EXT, COPY_DEV or a raw destination is invalid before the host is
        touched (the chain moves as it is, into files the host creates)."""
        dom = virtabs_contract.chain_domain()
        dest = virtabs_contract.scratch("never.qcow2")
        for flags, fmt in (
            (BlockCopyFlags.MOVE_CHAIN | BlockCopyFlags.SHALLOW, None),
            (BlockCopyFlags.MOVE_CHAIN | BlockCopyFlags.REUSE_EXT, None),
            (BlockCopyFlags.MOVE_CHAIN, "raw"),
        ):
            with no_driver_calls(virtabs_contract), pytest.raises(InvalidArgumentError, match="MOVE_CHAIN"):
                dom.block_copy("vda", dest, flags=TRANSIENT | flags, format=fmt)
        with no_driver_calls(virtabs_contract), pytest.raises(InvalidArgumentError, match="MOVE_CHAIN"):
            dom.block_rebase("vda", dest, flags=R.COPY | R.MOVE_CHAIN | R.COPY_DEV)
        virtabs_contract.assert_no_job_anywhere(dom)

    @requires("block.copy", "block.copy.flatten", "block.copy.reuse_ext")
    def test_reuse_ext_copies_the_whole_chain_into_the_existing_file(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        source = vda(dom)
        dest = virtabs_contract.scratch("reuse.qcow2")
        virtabs_contract.create_image(dest, format=source.format)
        after = copy_and_pivot(virtabs_contract, dom, dest, R.REUSE_EXT)
        if after is not None:
            assert (after.path, after.format, after.backing_chain) == (dest, source.format, ())

    @requires("block.copy", "block.copy.reuse_ext", "block.copy.shallow")
    def test_reuse_ext_shallow_copies_the_top_onto_the_existing_file(self, virtabs_contract: Contract) -> None:
        """The destination is pre-created over its own backing (an overlay of the source's backing, as when the
        backing was copied to new storage first); the copy uses it as it is, that backing included."""
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        assert source.backing_chain, "the chain domain's vda has no backing chain"
        top = c.layer_digest(source.path)
        mid = c.scratch("reuse-backing.qcow2")
        c.create_image(mid, format=source.format, backing=source.backing_chain[0])
        dest = c.scratch("reuse-top.qcow2")
        c.create_image(dest, format=source.format, backing=mid)
        after = copy_and_pivot(c, dom, dest, R.REUSE_EXT | R.SHALLOW, top_layer=top)
        if after is not None:
            # the pre-created destination is used as it is: its format and its own backing survive
            assert (after.path, after.format, after.backing_chain) == (
                dest,
                source.format,
                (mid, *source.backing_chain),
            ), f"REUSE_EXT did not keep the destination's own backing {mid!r}: {after.backing_chain}"

    @requires("block.copy", "block.copy.flatten", "block.copy.dev")
    def test_copy_dev_onto_an_existing_device(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        dest = virtabs_contract.block_device("device")
        after = copy_and_pivot(virtabs_contract, dom, dest, R.COPY_DEV)
        if after is not None:
            assert (after.path, after.backing_chain) == (dest, ())

    @requires("block.copy", "block.copy.flatten", "block.copy.dev", "block.copy.raw")
    def test_copy_dev_raw_onto_an_existing_device(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        dest = virtabs_contract.block_device("device")
        after = copy_and_pivot(virtabs_contract, dom, dest, R.COPY_DEV | R.COPY_RAW)
        if after is not None:
            assert (after.path, after.format, after.backing_chain) == (dest, "raw", ())

    @requires("block.copy", "block.copy.flatten", "block.copy.pivot", "block.copy.raw")
    def test_block_copy_api_with_format_raw(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.chain_domain()
        content = c.image_digest(vda(dom).path)
        dest = c.scratch("api.raw")
        job = dom.block_copy("vda", dest, flags=TRANSIENT, format="raw")
        c.wait_ready(job)
        job.pivot()
        c.assert_no_job_anywhere(dom)
        after = vda_elsewhere(c, dom)
        assert (after.path, after.format, after.backing_chain) == (dest, "raw", ())
        assert c.image_digest(dest) == content

    @requires("block.copy", "block.copy.pivot", "block.copy.shallow")
    def test_block_copy_api_shallow(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        top = c.layer_digest(source.path)
        dest = c.scratch("api-shallow.qcow2")
        job = dom.block_copy("vda", dest, flags=TRANSIENT | BlockCopyFlags.SHALLOW)
        c.wait_ready(job)
        job.pivot()
        after = vda_elsewhere(c, dom)
        assert (after.path, after.backing_chain) == (dest, source.backing_chain)
        assert c.layer_digest(dest) == top


class TestBlockPull:
    """block.pull: pulls finish by themselves and shorten the chain; they cannot be pivoted."""

    @requires("block.pull")
    def test_pull_flattens(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        content = c.image_digest(source.path)
        job = dom.block_pull("vda")
        assert job.type == BlockJobType.PULL and not job.two_phase
        with pytest.raises(OperationInvalidError):
            job.wait_ready(1)
        job.wait(c.target.job_timeout)
        c.assert_no_job_anywhere(dom)
        after = vda_elsewhere(c, dom)
        assert (after.path, after.backing_chain) == (source.path, ())
        assert c.image_digest(source.path) == content, "a pull changed what the guest sees"

    @requires("block.pull")
    def test_pull_to_a_base_keeps_the_base(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        source = vda(dom)
        base = source.backing_chain[-1]
        job = dom.block_rebase("vda", base, flags=R(0))
        job.wait(virtabs_contract.target.job_timeout)
        assert vda(dom).backing_chain == (base,)

    @requires("block.pull", "block.bandwidth")  # only a throttled pull is still running when asked
    def test_pivot_of_a_pull_job_is_operation_invalid(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.chain_domain()
        job = dom.block_pull("vda", bandwidth=SLOW_BYTES_PER_S, flags=BlockPullFlags.BANDWIDTH_BYTES)
        try:
            info = job.info()
            assert info is not None and info.type == BlockJobType.PULL
            with pytest.raises(OperationInvalidError) as exc:
                dom.block_job_abort("vda", BlockJobAbortFlags.PIVOT)
            assert int(exc.value.code) == 55
        finally:
            virtabs_contract.end_job(dom)
        assert dom.block_job_info("vda") is None


class TestBlockCommit:
    """block.commit: an active commit is two-phase and pivots onto the base; a lower commit ends by itself."""

    @requires("block.commit")
    def test_active_commit_pivots_onto_the_base(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        content = c.image_digest(source.path)
        job = dom.block_commit("vda", flags=BlockCommitFlags.ACTIVE)
        assert job.type == BlockJobType.ACTIVE_COMMIT and job.two_phase
        c.wait_ready(job)
        job.pivot()
        c.assert_no_job_anywhere(dom)
        after = vda_elsewhere(c, dom)
        assert (after.path, after.backing_chain) == (source.backing_chain[-1], ())
        assert c.image_digest(after.path) == content, "after the commit the base does not hold what the guest saw"

    @requires("block.commit")
    def test_commit_of_a_lower_layer(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.chain_domain()
        source = vda(dom)
        content = c.image_digest(source.path)
        snap1, base = source.backing_chain[0], source.backing_chain[-1]
        job = dom.block_commit("vda", top=snap1, base=base)
        assert job.type == BlockJobType.COMMIT
        job.wait(c.target.job_timeout)
        c.assert_no_job_anywhere(dom)
        assert vda_elsewhere(c, dom).backing_chain == (base,)
        assert c.image_digest(source.path) == content, "a commit changed what the guest sees"


class TestBlockJobEvents:
    """events + block jobs: READY when a copy can pivot, COMPLETED after the pivot, CANCELED after an abort."""

    @requires("events", "block.copy", "block.copy.pivot")
    def test_copy_events(self, virtabs_contract: Contract) -> None:
        from ..._flags import BlockJobStatus
        from ..._models import BlockJobEvent
        from .test_events_storage import EventLog

        dom = virtabs_contract.chain_domain()
        log = EventLog()

        def statuses() -> list[BlockJobStatus]:
            return [e.status for e in list(log.events) if isinstance(e, BlockJobEvent) and e.disk == "vda"]

        with virtabs_contract.conn.subscribe(log, domain=dom):
            kind = copy_kind_flags(virtabs_contract.conn)
            job = dom.block_copy("vda", virtabs_contract.scratch("events.qcow2"), flags=TRANSIENT | kind)
            virtabs_contract.wait_ready(job)
            virtabs_contract.wait_until(lambda: BlockJobStatus.READY in statuses(), "a READY block job event", 10)
            job.pivot()
            virtabs_contract.wait_until(lambda: BlockJobStatus.COMPLETED in statuses(), "a COMPLETED event", 10)
            job = dom.block_copy("vda", virtabs_contract.scratch("events2.qcow2"), flags=TRANSIENT | kind)
            job.abort()
            virtabs_contract.wait_until(lambda: BlockJobStatus.CANCELED in statuses(), "a CANCELED event", 10)
        virtabs_contract.assert_no_job_anywhere(dom)
