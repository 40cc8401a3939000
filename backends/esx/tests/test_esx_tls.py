"""Opening esx:// against hostile peers on 127.0.0.1: every TLS failure is a typed error saying which check
failed, and a host that accepts TCP and never answers ends the open within its timeout (issue 21.2, 21.3);
and whose user name logs in (21.6, against vcsim)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import virtabs
from virtabs import AuthError, ConnectError, Credentials, OperationTimeoutError
from virtabs.testing.listeners import HttpPeer, SilentListener, TestCertificates, make_test_certificates

CREDS = Credentials("administrator@vsphere.local", "secret")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("esx-pki"))


@pytest.fixture
def peer(request: pytest.FixtureRequest, certs: TestCertificates) -> Iterator[HttpPeer]:
    cert: Path | None = getattr(certs, request.param) if request.param else None
    with HttpPeer(cert, certs.key) as p:
        yield p


def _refusal(uri: str) -> str:
    with pytest.raises(ConnectError) as exc:
        virtabs.open(uri, credentials=CREDS, timeout=10)
    text = str(exc.value)
    assert "\n" not in text and "object has no attribute" not in text
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
    text = _refusal(f"esx://{peer.address}/?cafile={certs.ca}")
    assert words in text and peer.address in text


@pytest.mark.parametrize("peer", ["good"], indirect=True)
def test_a_wrong_thumbprint_pin_is_reported_not_crashed_on(peer: HttpPeer, certs: TestCertificates) -> None:
    text = _refusal(f"esx://{peer.address}/?thumbprint={certs.thumbprint(certs.untrusted)}")
    assert "thumbprint" in text and peer.address in text
    # the right pin passes TLS: what is left is that this peer is no vSphere endpoint
    text = _refusal(f"esx://{peer.address}/?thumbprint={certs.thumbprint(certs.good)}")
    assert "is not a vSphere endpoint" in text and "HTTP 404" in text


@pytest.mark.parametrize("peer", [None], indirect=True)
def test_plain_http_where_tls_is_expected(peer: HttpPeer, certs: TestCertificates) -> None:
    text = _refusal(f"esx://{peer.address}/?cafile={certs.ca}")
    assert "does not speak TLS" in text and peer.address in text


@pytest.mark.timeout(20)  # the bound: pyVmomi's own probe would wait for ever
@pytest.mark.parametrize("query", ["no_verify=1", "transport=http"])
def test_a_silent_host_ends_the_open_within_its_timeout(query: str) -> None:
    with SilentListener() as silent:
        with pytest.raises((OperationTimeoutError, ConnectError)) as exc:
            virtabs.open(f"esx://{silent.address}/?{query}", credentials=CREDS, timeout=1)
        assert silent.accepted
    assert silent.address in str(exc.value)


# --- whose user name: the URI's wins (issue 21.6) --------------------------------------------------


def test_the_uris_user_wins_over_the_credentials_user(vcsim: Any, pki: Any) -> None:
    """vcsim accepts one user: the URI names it, the credentials name another, the login succeeds."""
    uri = f"esx://{quote(vcsim.username, safe='')}@{vcsim.host}:{vcsim.port}/?cafile={pki.ca}"
    with virtabs.open(uri, credentials=Credentials("not-" + vcsim.username, vcsim.password)) as c:
        assert c.list_domains()
    with pytest.raises(AuthError, match="not-"):  # without a user in the URI, the credentials' is used
        virtabs.open(
            f"esx://{vcsim.host}:{vcsim.port}/?cafile={pki.ca}",
            credentials=Credentials("not-" + vcsim.username, vcsim.password),
        )
