"""Opening docker+tcp:// against hostile peers on 127.0.0.1: each TLS failure says which check failed, and a
host that accepts TCP and never answers ends the open within the connection's timeout (issue 21.2, 21.3).

Docker's TLS has no certificate pin (``thumbprint=``): that failure mode belongs to ESX and Hyper-V.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from virtabs import ConnectError, OperationTimeoutError
from virtabs.testing.listeners import HttpPeer, SilentListener, TestCertificates, make_test_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_test_certificates(tmp_path_factory.mktemp("docker-pki"))


@pytest.fixture
def peer(request: pytest.FixtureRequest, certs: TestCertificates) -> Iterator[HttpPeer]:
    cert: Path | None = getattr(certs, request.param) if request.param else None
    with HttpPeer(cert, certs.key) as p:
        yield p


def _refusal(uri: str) -> str:
    with pytest.raises(ConnectError) as exc:
        virtabs.open(uri, timeout=10)
    text = str(exc.value)
    assert "\n" not in text and "Max retries" not in text  # the check that failed, not urllib3's wrapping
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
    text = _refusal(f"docker+tcp://{peer.address}/?tls_ca={certs.ca}")
    assert words in text and peer.address in text


@pytest.mark.parametrize("peer", ["good"], indirect=True)
def test_a_good_certificate_passes_tls(peer: HttpPeer, certs: TestCertificates) -> None:
    with pytest.raises(ConnectError) as exc:  # this peer is no engine: /version answers 404
        virtabs.open(f"docker+tcp://{peer.address}/?tls_ca={certs.ca}", timeout=10)
    assert "not found" in str(exc.value) and "TLS" not in str(exc.value)  # the 404 body


@pytest.mark.parametrize("peer", [None], indirect=True)
def test_plain_http_where_tls_is_expected(peer: HttpPeer, certs: TestCertificates) -> None:
    text = _refusal(f"docker+tcp://{peer.address}/?tls_ca={certs.ca}")
    assert "does not speak TLS" in text and peer.address in text


@pytest.mark.timeout(20)  # the bound: well under the SDK's 60 s default
@pytest.mark.parametrize("query", ["no_verify=1", "tls=0"])
def test_a_silent_host_ends_the_open_within_its_timeout(query: str) -> None:
    with SilentListener() as silent:
        with pytest.raises((OperationTimeoutError, ConnectError)) as exc:
            virtabs.open(f"docker+tcp://{silent.address}/?{query}", timeout=1)
        assert silent.accepted
    assert silent.host in str(exc.value)


@pytest.mark.timeout(20)
def test_a_silent_unix_socket_ends_the_open_within_its_timeout(tmp_path: Path) -> None:
    """docker+unix:// to a socket that accepts and never answers (a wedged engine)."""
    path = tmp_path / "silent.sock"
    held: list[socket.socket] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(4)
        accepter = threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True)
        accepter.start()
        with pytest.raises((OperationTimeoutError, ConnectError)) as exc:
            virtabs.open(f"docker+unix://{path}", timeout=1)
        accepter.join(5)
        assert held  # the driver reached the socket: it is the peer that never answered
        for conn in held:
            conn.close()
    assert "engine" in str(exc.value)
