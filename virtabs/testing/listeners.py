"""Hostile peers for a driver's connection tests: a silent host, and TLS servers with bad certificates.

``SilentListener`` listens on a free port of 127.0.0.1, accepts every connection and holds it open
without sending or reading a byte. A client that opens a connection to it hangs in whatever it waits
for first: an ssh client in the banner exchange, a TLS client in the handshake, an HTTP client for the
response. A driver's ``open`` against it must still end within the connection's ``timeout=``::

    with SilentListener() as silent:
        with pytest.raises((OperationTimeoutError, ConnectError)) as exc:
            virtabs.open(f"esx://{silent.host}:{silent.port}/", credentials=..., timeout=1)
        assert silent.host in str(exc.value)

``make_test_certificates`` writes a throw-away CA, an unrelated CA and server certificates that fail each
check a TLS client makes (unknown issuer, wrong host name, expired); ``HttpPeer`` serves HTTP on
127.0.0.1 with one of them (TLS) or without TLS at all (plain HTTP where TLS is expected), answering
every request with ``404``. Certificates are made with ``cryptography`` (imported when called).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType

import attrs

__all__ = ["HttpPeer", "SilentListener", "TestCertificates", "make_test_certificates"]


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers them (a context manager)."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((self.host, 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        """The connections accepted so far (held open until :meth:`close`)."""
        self._thread = threading.Thread(target=self._accept, name=f"silent-{self.port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _peer = self._sock.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)

    @property
    def address(self) -> str:
        """``host:port`` for a URI."""
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        """Stop listening and drop every held connection."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@attrs.frozen
class TestCertificates:
    """PEM files of a throw-away PKI (see :func:`make_test_certificates`)."""

    ca: Path
    """The CA a client is told to trust (``cafile=``)."""
    other_ca: Path
    """A CA nobody trusts."""
    key: Path
    """The one private key of every server certificate."""
    good: Path
    """Issued by ``ca`` for 127.0.0.1 and localhost, valid now."""
    untrusted: Path
    """Issued by ``other_ca`` for 127.0.0.1 and localhost, valid now."""
    wrong_host: Path
    """Issued by ``ca`` for ``elsewhere.invalid`` only."""
    expired: Path
    """Issued by ``ca`` for 127.0.0.1 and localhost, expired yesterday."""

    def thumbprint(self, cert: Path) -> str:
        """SHA-256 of ``cert`` (DER) as colon-separated upper-case hex, the form ``thumbprint=`` takes."""
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def make_test_certificates(directory: Path) -> TestCertificates:
    """Write a CA, an unrelated CA and four server certificates (good, untrusted, wrong host, expired)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def write(path: Path, cert: x509.Certificate) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(label: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(label))
            .issuer_name(name(label))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - day)
            .not_valid_after(now + 2 * day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = make_ca("virtabs test CA")
    other_key, other_cert = make_ca("virtabs untrusted CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    (directory / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    loopback: list[x509.GeneralName] = [
        x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]

    def server(
        issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
        names: list[x509.GeneralName],
        start: datetime.datetime,
        end: datetime.datetime,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(name("virtabs test server"))
            .issuer_name(issuer[1].subject)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[0].public_key()), critical=False)
            .sign(issuer[0], hashes.SHA256())
        )

    ca = (ca_key, ca_cert)
    return TestCertificates(
        ca=write(directory / "ca.pem", ca_cert),
        other_ca=write(directory / "other-ca.pem", other_cert),
        key=directory / "server.key",
        good=write(directory / "good.pem", server(ca, loopback, now - day, now + day)),
        untrusted=write(directory / "untrusted.pem", server((other_key, other_cert), loopback, now - day, now + day)),
        wrong_host=write(
            directory / "wrong-host.pem", server(ca, [x509.DNSName("elsewhere.invalid")], now - day, now + day)
        ),
        expired=write(directory / "expired.pem", server(ca, loopback, now - 3 * day, now - day)),
    )


def _linger(stream: socket.socket) -> None:
    """Close as nginx's lingering close does: end our side, then read what the client still sends until it
    closes. Closing with unread bytes would send a reset, and the client could see its connection end before
    it reads the answer (a TLS client then reports an unexpected EOF instead of a plain-HTTP reply)."""
    with contextlib.suppress(OSError):
        stream.shutdown(socket.SHUT_WR)
        while stream.recv(65536):
            pass


class HttpPeer:
    """An HTTP server on 127.0.0.1 answering ``404`` to everything: over TLS with ``cert``/``key``, or plain.

    Bytes that cannot start an HTTP request (a TLS ClientHello sent to the plain server) get ``400`` at
    once, as nginx answers them. Enough for a client to finish (or fail) its TLS handshake and read a response; a context manager.
    ``handshake_errors`` counts the connections whose handshake failed on the server's side.
    """

    host = "127.0.0.1"

    def __init__(self, cert: Path | None = None, key: Path | None = None) -> None:
        self._context: ssl.SSLContext | None = None
        if cert is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(str(cert), str(key) if key is not None else None)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((self.host, 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self.handshake_errors = 0
        self._thread = threading.Thread(target=self._serve, name=f"http-peer-{self.port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``host:port`` for a URI."""
        return f"{self.host}:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _peer = self._sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        stream: socket.socket = conn
        try:
            if self._context is not None:
                try:
                    stream = self._context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    self.handshake_errors += 1
                    return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = stream.recv(65536)
                if not chunk:
                    return
                data += chunk
                method = data.split(b" ", 1)[0]
                # not an HTTP method (letters only: a TLS ClientHello's bytes up to its first 0x20 can hold
                # capitals and no small letters, which isupper() alone took for a method): 400 at once, as nginx
                if not (method.isalpha() and method.isupper()):
                    stream.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    _linger(stream)
                    return
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                field, _, value = line.partition(b":")
                if field.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            while len(body) < length:  # read the whole request: answering early would reset the sender
                chunk = stream.recv(65536)
                if not chunk:
                    return
                body += chunk
            stream.sendall(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
                b"Connection: close\r\n\r\nnot found\n"
            )
        except OSError:
            return
        finally:
            stream.close()

    def close(self) -> None:
        """Stop listening."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpPeer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
