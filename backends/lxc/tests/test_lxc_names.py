"""A container name that looks like an option reaches the real lxc-* tools as a name (issue 21.4).

The driver runs ``lxc-freeze``/``lxc-unfreeze`` (everything else goes through liblxc's binding, no command
line). The name is the value of ``-n``: getopt takes the next argument as the value whatever it looks
like, where a bare ``-h`` would print the usage text and exit 0 (a freeze that "succeeded" without
freezing anything).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import virtabs
from virtabs import OperationFailedError
from virtabs.spi import DomainRef


@pytest.fixture
def conn(lxcpath: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(f"lxc:///?path={lxcpath}", timeout=30) as c:
        yield c


@pytest.mark.parametrize("name", ["-h", "--help", "--usage", "-o"])
def test_lxc_freeze_gets_the_name_as_a_value(conn: virtabs.Connection, lxcpath: str, name: str) -> None:
    driver = conn._driver
    with pytest.raises(OperationFailedError) as exc:  # no such container: lxc-freeze fails naming it
        driver._freeze(DomainRef(name, "00000000-0000-0000-0000-000000000001"))  # type: ignore[attr-defined]
    assert f"{lxcpath}:{name}" in str(exc.value) and "Usage" not in str(exc.value)
