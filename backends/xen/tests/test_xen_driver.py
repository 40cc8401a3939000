"""The Xen driver against the real lab dom0, beyond the contract kit: quoting, host keys, extras, local URIs."""

from __future__ import annotations

import json
import time

import pytest
import virtabs
from virtabs import ConnectError, DomainState, InvalidArgumentError, NoDomainError
from virtabs.spi import DomainRef
from xen_helpers import Lab

from virtabs_xen.driver import XenDriver
from virtabs_xen.testing import XenTarget

MiB = 1 << 20
HOSTILE = ["a b; rm -rf /", "x; touch /tmp/virtabs-pwned", "$(touch /tmp/virtabs-pwned)", "`touch /tmp/virtabs-pwned`"]


def test_hostile_names_reach_xl_as_one_argument(xenlab: Lab, conn: virtabs.Connection) -> None:
    """Over ssh every argument is quoted for the remote shell: xl sees the whole name, the shell runs nothing."""
    xenlab.ssh("rm -f /tmp/virtabs-pwned")
    driver = conn._driver
    assert isinstance(driver, XenDriver)
    for name in HOSTILE:
        with pytest.raises(NoDomainError):
            conn.lookup_domain(name)
        with pytest.raises(NoDomainError) as exc:
            driver.suspend(DomainRef(name, "00000000-0000-0000-0000-000000000001"))  # xl pause NAME
        assert f"{name} is an invalid domain identifier" in str(exc.value)
    assert xenlab.ssh("test -e /tmp/virtabs-pwned", check=False).returncode == 1
    assert xenlab.ssh("test -d /etc && test -x /usr/sbin/xl").returncode == 0


@pytest.mark.parametrize("name", ["-h", "--help", "--details", "-o"])
def test_names_like_options_reach_xl_as_names(conn: virtabs.Connection, name: str) -> None:
    """xl parses with GNU getopt_long (it permutes): without "--", ``xl pause -h`` prints help and exits 0."""
    driver = conn._driver
    assert isinstance(driver, XenDriver)
    with pytest.raises(NoDomainError):
        conn.lookup_domain(name)
    with pytest.raises(NoDomainError) as exc:
        driver.suspend(DomainRef(name, "00000000-0000-0000-0000-000000000001"))  # xl pause -- NAME
    assert f"{name} is an invalid domain identifier" in str(exc.value)


def test_unknown_host_key_is_refused(xenlab: Lab, tmp_path: object) -> None:
    """Host keys are checked: a known_hosts file without dom0's key makes the connection fail."""
    empty = f"{tmp_path}/known_hosts"
    open(empty, "w").close()
    uri = f"xen+ssh://root@127.0.0.1:{xenlab.port}/?keyfile={xenlab.key}&known_hosts={empty}"
    with pytest.raises(ConnectError, match=r"(?i)host key"):
        virtabs.open(uri)


def test_local_uri_on_a_host_that_is_not_dom0() -> None:
    """``xen:///`` runs xl here; this CI host is no Xen dom0, and the driver says so at open."""
    with pytest.raises(ConnectError, match=r"xl|dom0"):
        virtabs.open("xen:///")


def test_definition_is_an_xl_cfg_file_the_real_xl_reads(
    xenlab: Lab, conn: virtabs.Connection, target: XenTarget
) -> None:
    spec = target.domain_spec(conn, target.new_name("cfg"))
    dom = conn.define_domain(spec)
    try:
        path = f"/var/lib/virtabs-xen/{spec.name}.cfg"
        assert xenlab.ssh(f"stat -c %a {path}").stdout.strip() == "600"
        dry = json.loads(xenlab.ssh(f"xl -N create {path}").stdout)
        assert dry["c_info"]["name"] == spec.name and dry["c_info"]["uuid"] == dom.uuid
        assert dry["b_info"]["kernel"] == target.kernel
    finally:
        dom.undefine()
    assert xenlab.ssh(f"test -e /var/lib/virtabs-xen/{spec.name}.cfg", check=False).returncode == 1


def test_vcpu_and_memory_extras_on_a_running_guest(conn: virtabs.Connection, target: XenTarget) -> None:
    """xl vcpu-set / mem-set (no SPI operation yet): XenDriver.ex_set_vcpus / ex_set_memory."""
    dom = target.make_domain(conn, running=True)
    driver = conn._driver
    assert isinstance(driver, XenDriver)
    ref = DomainRef(dom.name, dom.uuid)
    try:
        driver.ex_set_memory(ref, 80 * MiB)
        assert _eventually(lambda: dom.info().memory_bytes == 80 * MiB)
        with pytest.raises(InvalidArgumentError, match="memory_static_max"):
            driver.ex_set_memory(ref, 4096 * MiB)  # above maxmem
        driver.ex_set_vcpus(ref, 2)
        assert _eventually(lambda: dom.info().vcpus == 2)  # the guest onlines the hot-added vCPU
        driver.ex_set_vcpus(ref, 1)
        assert _eventually(lambda: dom.info().vcpus == 1)
        assert dom.state() == DomainState.RUNNING
    finally:
        dom.destroy()
        dom.undefine()


def _eventually(check: object, timeout: float = 120.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return True
        time.sleep(1.0)
    return False
