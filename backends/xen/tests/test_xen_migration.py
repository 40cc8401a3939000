"""Migration of the Xen driver on the real lab (issue 23): ``xl migrate`` between two connections of one dom0.

The lab has one dom0, so the destination is a second ``xen+ssh://`` connection to it with a definitions
directory of its own (``dir=``): the one case ``xl migrate`` can be driven to here (``_migration``). What
changed is read through the lab's own ssh, not through the driver: the domain's domid (a migrated domain is a
new domain of the same UUID), the definition files of both directories, and the guest's console log (a reboot
would print its boot line again).
"""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Iterator

import attrs
import pytest
import virtabs
from virtabs import DomainState, MigrateFlags, NotSupportedError
from xen_helpers import Lab

from virtabs_xen.testing import XenTarget

MOVE = MigrateFlags.LIVE | MigrateFlags.PERSIST_DEST | MigrateFlags.UNDEFINE_SOURCE
DIR_A = "/var/lib/virtabs-xen"  # the driver's default directory


@pytest.fixture(scope="module")
def dir_b(xenlab: Lab) -> Iterator[str]:
    path = f"/var/lib/virtabs-xen-mig-{secrets.token_hex(3)}"
    yield path
    xenlab.ssh(f"rm -rf {path}", check=False)


@pytest.fixture(scope="module")
def dest(xenlab: Lab, dir_b: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(xenlab.uri() + f"&dir={dir_b}") as c:
        yield c


def _domid(xenlab: Lab, name: str) -> int:
    return int(xenlab.ssh(f"xl domid {name}").stdout.strip())


def _exists(xenlab: Lab, path: str) -> bool:
    return xenlab.ssh(f"test -e {path}", check=False).returncode == 0


def _guest(target: XenTarget, conn: virtabs.Connection, gtype: str, *, booted: bool = True) -> virtabs.Domain:
    """A guest of ``gtype`` without disks (nothing for xl to re-attach): booted, or built and left paused."""
    name = target.new_name(f"mig{gtype}")
    base = target.domain_spec(conn, name)
    xen = {**base.extra["xen"], "type": gtype}
    xen.pop("disk_backend", None)
    dom = conn.define_domain(attrs.evolve(base, disks=(), extra={"xen": xen}))
    dom.start(paused=not booted)
    if booted:
        target.wait_booted(conn, name, 1)
    return dom


def _cleanup(xenlab: Lab, name: str, dir_b: str) -> None:
    xenlab.ssh(f"xl destroy {name}; rm -f {DIR_A}/{name}.cfg {dir_b}/{name}.cfg", check=False)


def test_a_pv_guest_is_refused_before_xl_migrate_runs(
    xenlab: Lab, conn: virtabs.Connection, dest: virtabs.Connection, target: XenTarget, dir_b: str
) -> None:
    """Debian's Xen has no shadow paging (``virt_caps``), which a PV guest's log-dirty needs: refused with
    NotSupportedError; the domain stays as it was and the destination keeps no definition. (Built paused: the
    refusal comes from the guest type, and a boot would cost a minute of the loaded lab.)"""
    dom = _guest(target, conn, "pv", booted=False)
    try:
        domid = _domid(xenlab, dom.name)
        assert "shadow" not in xenlab.ssh("xl info | grep ^virt_caps").stdout
        with pytest.raises(NotSupportedError, match="shadow paging"):
            dom.migrate(dest, flags=MOVE).wait(timeout=300)
        assert _domid(xenlab, dom.name) == domid and dom.state() == DomainState.PAUSED
        assert _exists(xenlab, f"{DIR_A}/{dom.name}.cfg")
        assert not _exists(xenlab, f"{dir_b}/{dom.name}.cfg")  # prepare's definition removed by finish
    finally:
        _cleanup(xenlab, dom.name, dir_b)


def test_a_pvh_guest_moves_live_without_a_reboot(
    xenlab: Lab, conn: virtabs.Connection, dest: virtabs.Connection, target: XenTarget, dir_b: str
) -> None:
    """``xl migrate``: a new domain of the same UUID runs, the guest did not boot again, the definition moved
    from the source's directory to the destination's (PERSIST_DEST, UNDEFINE_SOURCE)."""
    dom = _guest(target, conn, "pvh")
    try:
        domid = _domid(xenlab, dom.name)
        job = dom.migrate(dest, flags=MOVE)
        moved = job.wait(timeout=900)
        assert job.info().phase == "completed"
        assert (moved.name, moved.uuid) == (dom.name, dom.uuid)
        assert moved.state() == DomainState.RUNNING
        assert _domid(xenlab, dom.name) != domid  # a new domain: memory moved, not the same domain renamed
        assert target.boots(dom.name) == 1  # no second boot line on its console
        assert not _exists(xenlab, posixpath.join(DIR_A, f"{dom.name}.cfg"))
        assert _exists(xenlab, posixpath.join(dir_b, f"{dom.name}.cfg"))
        assert dest.lookup_domain(dom.uuid).info().state == DomainState.RUNNING
    finally:
        _cleanup(xenlab, dom.name, dir_b)
