"""Opening hyperv:// (WinRM over HTTPS) against hostile peers on 127.0.0.1: each TLS failure says which check
failed, and a host that accepts TCP and never answers ends the open within the connection's timeout
(issue 21.2, 21.3), and whose user name logs in (21.6, against the WS-Man simulator). The WinRM URI has no
certificate pin: that failure mode belongs to ESX."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import virtabs
from virtabs import AuthError, ConnectError, Credentials, OperationTimeoutError
from virtabs.testing.listeners import HttpPeer, SilentListener, TestCertificates, make_test_certificates

CREDS = Credentials("administrator", "secret")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("hyperv-pki"))


@pytest.fixture
def peer(request: pytest.FixtureRequest, certs: TestCertificates) -> Iterator[HttpPeer]:
    cert: Path | None = getattr(certs, request.param) if request.param else None
    with HttpPeer(cert, certs.key) as p:
        yield p


def _refusal(uri: str) -> str:
    with pytest.raises(ConnectError) as exc:
        virtabs.open(uri, credentials=CREDS, timeout=10)
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    ("peer", "words"),
    [
        ("untrusted", "not trusted: its issuer is an unknown CA"),
        ("wrong_host", "is for another host name"),
        ("expired", "has expired"),
    ],
    indirect=["peer"],
)
def test_each_certificate_check_is_named(peer: HttpPeer, certs: TestCertificates, words: str) -> None:
    text = _refusal(f"hyperv://{peer.address}/?auth=basic&cafile={certs.ca}")
    assert words in text and peer.address in text


@pytest.mark.parametrize("peer", ["good"], indirect=True)
def test_a_good_certificate_passes_tls(peer: HttpPeer, certs: TestCertificates) -> None:
    text = _refusal(f"hyperv://{peer.address}/?auth=basic&cafile={certs.ca}")
    assert "HTTP 404" in text and "TLS" not in text  # this peer is no WinRM endpoint


@pytest.mark.parametrize("peer", [None], indirect=True)
def test_plain_http_where_tls_is_expected(peer: HttpPeer, certs: TestCertificates) -> None:
    text = _refusal(f"hyperv://{peer.address}/?auth=basic&cafile={certs.ca}")
    assert "does not speak TLS" in text and peer.address in text


@pytest.mark.timeout(20)  # the bound: the open waits at most max(5 s, timeout) per WinRM request
@pytest.mark.parametrize("query", ["auth=basic&no_verify=1", "transport=http"])
def test_a_silent_host_ends_the_open_within_its_timeout(query: str) -> None:
    with SilentListener() as silent:
        with pytest.raises((OperationTimeoutError, ConnectError)) as exc:
            virtabs.open(f"hyperv://{silent.address}/?{query}", credentials=CREDS, timeout=1)
        assert silent.accepted
    assert silent.host in str(exc.value)


# --- whose user name: the URI's wins (issue 21.6) --------------------------------------------------


def test_the_uris_user_wins_over_the_credentials_user(sim: Any) -> None:
    """The simulator accepts one user (Basic): the URI names it, the credentials another, the login works."""
    base = f"127.0.0.1:{sim.port}/?auth=basic&cafile={sim.cafile}"
    other = Credentials("not-" + sim.username, sim.password)
    with virtabs.open(f"hyperv://{quote(sim.username, safe='')}@{base}", credentials=other) as c:
        assert c.host_info().hypervisor
    with pytest.raises(AuthError):  # without a user in the URI, the credentials' is used and refused
        virtabs.open(f"hyperv://{base}", credentials=other)
