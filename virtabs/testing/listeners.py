"""Hostile peers for a driver's connection tests: a host that accepts TCP and then never answers.

``SilentListener`` listens on a free port of 127.0.0.1, accepts every connection and holds it open
without sending or reading a byte. A client that opens a connection to it hangs in whatever it waits
for first: an ssh client in the banner exchange, a TLS client in the handshake, an HTTP client for the
response. A driver's ``open`` against it must still end within the connection's ``timeout=``::

    with SilentListener() as silent:
        with pytest.raises((OperationTimeoutError, ConnectError)) as exc:
            virtabs.open(f"esx://{silent.host}:{silent.port}/", credentials=..., timeout=1)
        assert silent.host in str(exc.value)
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["SilentListener"]


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
