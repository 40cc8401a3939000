"""Managed save of the Xen driver (libvirt's libxl driver: ``xl save`` to a file it keeps, ``xl restore`` at start).

The real XenDriver through the public API, against the ``xl`` stand-in of the fast suite (``xl_standin.py``,
whose ``save`` and ``restore`` write and read an image of its own: xl's progress lines were not recorded).
``domain.managed_save`` is declared (the contract kit passed it on the nested lab: README, "Managed save");
``test_undeclared_the_records_say_none`` takes it out of the declaration. What these tests prove is the driver's
part: the argv it sends, where the image is kept and named, the rename of a complete image, ``start`` resuming with
``xl restore`` (``-p`` when asked) and removing the image, the image kept when the restore fails, the state
reason, the records' ``managed_save``, and a domain without a definition reported transient (which the core
refuses).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import virtabs
from test_xen_fast_driver import GUEST_UUID, Standin, recorded_guest
from virtabs import Capability, DomainState, OperationFailedError, OperationInvalidError
from virtabs.spi import DomainRef
from virtabs.testing.target import TargetUnavailable

from virtabs_xen.driver import XenDriver
from virtabs_xen.testing import XenTarget

pytestmark = pytest.mark.timeout(60)
OTHER_UUID = "0c5a3d1e-7b2f-4e8a-9d61-3f0b2a4c5e77"


@pytest.fixture
def conn(standin: Standin) -> Iterator[virtabs.Connection]:
    with virtabs.open(standin.uri) as c:
        assert c.supports(Capability.DOMAIN_MANAGED_SAVE)
        yield c


def image_of(standin: Standin, uuid: str = GUEST_UUID) -> Path:
    """Where the driver keeps the managed save image of the definition with ``uuid``."""
    return standin.definitions / "save" / f"{uuid}.save"


def saved_guest(conn: virtabs.Connection) -> virtabs.Domain:
    """rec1 defined, started and managed-saved."""
    dom = conn.define_domain(recorded_guest())
    dom.start()
    dom.managed_save()
    return dom


def xl_by_hand(standin: Standin, *argv: str) -> None:
    """Run the stand-in ``xl`` as an administrator would, outside the driver."""
    env = {**os.environ, "XL_STANDIN_STATE": str(standin.state_dir)}
    subprocess.run([str(standin.state_dir / "bin" / "xl"), *argv], check=True, env=env)


def test_managed_save_is_xl_save_to_a_part_file_renamed_into_the_save_dir(
    conn: virtabs.Connection, standin: Standin
) -> None:
    dom = conn.define_domain(recorded_guest())
    dom.start()
    assert not dom.has_managed_save()
    standin.clear()
    dom.managed_save()
    image = image_of(standin)
    assert [c for c in standin.calls() if c[0] == "save"] == [["save", "--", "rec1", f"{image}.part"]]
    assert image.is_file() and not Path(f"{image}.part").exists()
    assert os.listdir(standin.definitions / "save") == [image.name]
    assert dom.has_managed_save()
    info = dom.info()
    assert (info.state, info.state_reason) == (DomainState.SHUTOFF, "saved")
    [record] = conn.domain_records()
    assert (record.state, record.managed_save) == (DomainState.SHUTOFF, True)
    with pytest.raises(OperationInvalidError):
        dom.undefine()  # refused while the image exists (the core asks the driver)
    assert (standin.definitions / "rec1.cfg").is_file()


def test_start_with_an_image_is_xl_restore_and_removes_it(conn: virtabs.Connection, standin: Standin) -> None:
    dom = saved_guest(conn)
    image = image_of(standin)
    standin.clear()
    dom.start()
    assert [c for c in standin.calls() if c[0] in ("create", "restore")] == [["restore", "--", str(image)]]
    assert not image.exists()
    assert not dom.has_managed_save()
    info = dom.info()
    assert (info.state, info.state_reason) == (DomainState.RUNNING, None)
    [record] = conn.domain_records()
    assert (record.state, record.managed_save) == (DomainState.RUNNING, False)


def test_start_paused_with_an_image_is_xl_restore_p(conn: virtabs.Connection, standin: Standin) -> None:
    dom = saved_guest(conn)
    image = image_of(standin)
    standin.clear()
    dom.start(paused=True)
    assert [c for c in standin.calls() if c[0] == "restore"] == [["restore", "-p", "--", str(image)]]
    assert dom.state() == DomainState.PAUSED
    assert not image.exists()


def test_remove_makes_the_next_start_xl_create(conn: virtabs.Connection, standin: Standin) -> None:
    dom = saved_guest(conn)
    dom.managed_save_remove()
    assert not image_of(standin).exists() and not dom.has_managed_save()
    assert dom.info().state_reason is None
    [record] = conn.domain_records()
    assert record.managed_save is False
    dom.managed_save_remove()  # none there: nothing to do, as in libvirt
    standin.clear()
    dom.start()
    assert [c[0] for c in standin.calls() if c[0] in ("create", "restore")] == ["create"]


def test_a_failed_restore_keeps_the_image(conn: virtabs.Connection, standin: Standin) -> None:
    dom = saved_guest(conn)
    image = image_of(standin)
    image.write_text("not an image of the stand-in")  # xl restore refuses it (exit 2)
    with pytest.raises(OperationFailedError, match="managed save"):
        dom.start()
    assert image.read_text() == "not an image of the stand-in"
    assert dom.has_managed_save()
    assert dom.state() == DomainState.SHUTOFF


def test_a_later_domain_of_the_same_name_does_not_resume_the_image(conn: virtabs.Connection, standin: Standin) -> None:
    """The image is named by the definition's UUID: a new rec1 (another UUID) boots, the old image stays."""
    old = saved_guest(conn)
    (standin.definitions / "rec1.cfg").unlink()  # the definition removed by hand, the image left behind
    dom = conn.define_domain(attrs.evolve(recorded_guest(), uuid=OTHER_UUID))
    assert dom.uuid != old.uuid and not dom.has_managed_save()
    [record] = conn.domain_records()
    assert record.managed_save is False
    standin.clear()
    dom.start()
    assert [c[0] for c in standin.calls() if c[0] in ("create", "restore")] == ["create"]
    assert image_of(standin).is_file() and not image_of(standin, OTHER_UUID).exists()


def test_a_domain_without_a_definition_is_transient_and_refused(
    conn: virtabs.Connection, standin: Standin, tmp_path: Path
) -> None:
    """rec1 created with xl by hand (no definition of the driver's) is transient: the core refuses a managed save
    of it before the driver runs xl save; a defined rec1 is persistent."""
    cfg = tmp_path / "by-hand.cfg"
    cfg.write_text('name = "rec1"\n')
    xl_by_hand(standin, "create", str(cfg))
    dom = conn.lookup_domain("rec1")
    driver = conn._driver
    assert isinstance(driver, XenDriver)
    assert driver.domain_status(DomainRef(dom.name, dom.uuid)).persistent is False
    standin.clear()
    with pytest.raises(OperationInvalidError, match="transient"):
        dom.managed_save()
    assert not [c for c in standin.calls() if c[0] == "save"]
    xl_by_hand(standin, "destroy", "rec1")
    defined = conn.define_domain(recorded_guest())
    assert driver.domain_status(DomainRef(defined.name, defined.uuid)).persistent is True


def test_undeclared_the_records_say_none(standin: Standin, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the declaration (taken out of the driver's for this test) the records' managed_save is None,
    image or not: the records say nothing of what the driver does not declare."""
    monkeypatch.setattr(XenDriver, "capabilities", XenDriver.capabilities.without(Capability.DOMAIN_MANAGED_SAVE))
    with virtabs.open(standin.uri) as c:
        assert not c.supports(Capability.DOMAIN_MANAGED_SAVE)
        dom = c.define_domain(recorded_guest())
        image_of(standin).parent.mkdir()
        image_of(standin).write_text("{}")
        [record] = c.domain_records()
        assert record.managed_save is None
        assert dom.info().state_reason is None


CONSOLE_LOG = Path(__file__).with_name("recorded") / "console_msrec1.log"
"""A real console log of the lab guest (``recorded/README.md``): booted, saved, restored, destroyed, booted again."""
RECORDED_STARTS = ("1796690371.06", "1796690395.81", "1796690402.42")
"""xenstore's ``/vm/UUID/start_time`` of the log's three instances (``xl create``, ``xl restore``, ``xl create``)."""
XENSTORE_READ_STANDIN = """#!/bin/sh
# xenstore-read as the dom0's answers for /vm/UUID/start_time: the value in ./start_time next to this script,
# or, when there is none (the domain does not run), the real tool's message and exit status
here=$(dirname "$0")
[ -f "$here/start_time" ] && exec cat "$here/start_time"
echo "xenstore-read: couldn't read path $1" >&2
exit 1
"""


def test_the_targets_run_clock_counts_only_the_current_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract target's ``run_clock`` on the real console log of a lab guest, cut where the kit could have
    read it: after a restore the clock goes on from the saved run's count; after a fresh start the previous run's
    last tick (13) does not count until the new instance prints its own. The target runs its real ``bash``
    command through its local transport, with a stand-in for ``xenstore-read`` (the dom0's zone, UTC)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "xenstore-read").write_text(XENSTORE_READ_STANDIN)
    (bin_dir / "xenstore-read").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TZ", "UTC")
    target = XenTarget("xen:///", directory=str(tmp_path / "contract"))
    target.console_dir = str(tmp_path)
    lines = CONSOLE_LOG.read_bytes().splitlines(keepends=True)
    dom = DomainRef("msrec1", GUEST_UUID)
    unused = virtabs.open("test:///default")  # the target reads the dom0, not through a connection

    def clock(instance: int | None, lines_logged: int) -> float | None:
        """run_clock with the domain in its ``instance`` (None: not running) and the log's first lines."""
        (tmp_path / "guest-msrec1.log").write_bytes(b"".join(lines[:lines_logged]))
        if instance is None:
            (bin_dir / "start_time").unlink(missing_ok=True)
        else:
            (bin_dir / "start_time").write_text(RECORDED_STARTS[instance] + "\n")
        return target.run_clock(unused, dom)

    try:
        assert clock(None, 0) is None  # never started
        assert clock(0, 1) is None  # created, its console not yet written
        assert clock(0, 7) is None  # booted, no tick yet
        assert clock(0, 8) == 1.0  # a tick behind the shell's prompt on the same line
        assert clock(0, 16) == 9.0
        assert clock(None, 16) is None  # saved: no instance runs
        assert clock(1, 16) is None  # restored, tick 9 is the saved instance's
        assert clock(1, 17) is None
        assert clock(1, 18) == 10.0  # resumed: the count goes on
        assert clock(1, 21) == 13.0
        assert clock(2, 21) is None  # created again: tick 13 is the previous instance's
        assert clock(2, 22) is None
        assert clock(2, 23) is None  # booted, no tick yet
        assert clock(2, 29) == 1.0
        assert clock(2, len(lines)) == 12.0
        assert target.boots("msrec1") == 2
        (tmp_path / "guest-msrec1.log").write_bytes(b"xenlab-guest: up\r\nxenlab-guest: tick 1\r\n")
        with pytest.raises(TargetUnavailable, match="--timestamp=guest"):  # a log xenconsoled did not stamp
            target.run_clock(unused, dom)
    finally:
        unused.close()
        target._transport.close()
