"""From a virtabs URI to the docker SDK's connection arguments (pure; no SDK import).

=================================  ========================================================================
URI                                engine
=================================  ========================================================================
``docker:///``                     ``$DOCKER_HOST`` with docker's own TLS variables (``DOCKER_TLS_VERIFY``,
                                   ``DOCKER_CERT_PATH``), else ``unix:///var/run/docker.sock``
``docker+unix:///run/x.sock``      that unix socket (podman: ``podman system service unix:///run/x.sock``)
``docker+tcp://host:2376/``        TCP with TLS, the server verified against a CA: ``?tls_ca=FILE``, else
                                   ``$DOCKER_CERT_PATH/ca.pem``, else ``~/.docker/ca.pem``; a client
                                   certificate from ``?tls_cert=&tls_key=`` or the same directory when present;
                                   ``?no_verify=1`` skips verification (insecure), ``?tls=0`` speaks plain HTTP
                                   (insecure, default port 2375)
=================================  ========================================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_SOCKET", "Endpoint", "UriError", "endpoint_for"]

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class UriError(ValueError):
    """The URI cannot name an engine (the driver raises InvalidArgumentError with this message)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect. ``tls`` None means no TLS; ``from_env`` means docker's environment rules."""

    base_url: str
    tls_verify: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls: bool = False
    from_env: bool = False


def _cert_dir(env: Mapping[str, str]) -> str:
    return env.get("DOCKER_CERT_PATH") or os.path.join(env.get("HOME", os.path.expanduser("~")), ".docker")


def endpoint_for(
    transport: str | None,
    host: str | None,
    port: int | None,
    path: str,
    params: Mapping[str, str],
    env: Mapping[str, str],
) -> Endpoint:
    """The endpoint of ``docker[+transport]://[host][:port]path?params`` in environment ``env``."""
    if transport is None:
        if host or path not in ("", "/"):
            raise UriError("docker:/// takes no host or path; use docker+unix:///path or docker+tcp://host:port/")
        if params:
            raise UriError(f"docker:/// takes no parameters (got {', '.join(sorted(params))})")
        if env.get("DOCKER_HOST"):
            return Endpoint(base_url=env["DOCKER_HOST"], from_env=True)
        return Endpoint(base_url=DEFAULT_SOCKET)
    if transport == "unix":
        if host:
            raise UriError("docker+unix:///path/to/docker.sock takes no host")
        if path in ("", "/"):
            raise UriError("docker+unix:// needs the socket path: docker+unix:///run/docker.sock")
        if params:
            raise UriError(f"docker+unix:// takes no parameters (got {', '.join(sorted(params))})")
        return Endpoint(base_url=f"unix://{path}")
    if transport == "tcp":
        if not host:
            raise UriError("docker+tcp:// needs a host: docker+tcp://host:2376/")
        if path not in ("", "/"):
            raise UriError(f"docker+tcp:// takes no path (got {path!r})")
        known = {"tls", "no_verify", "tls_ca", "tls_cert", "tls_key"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UriError(f"unknown docker+tcp parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        netloc = f"[{host}]" if ":" in host else host
        if params.get("tls", "1").lower() in ("0", "false", "no", "off"):
            return Endpoint(base_url=f"http://{netloc}:{port or 2375}")
        verify = params.get("no_verify", "0").lower() not in ("1", "true", "yes", "on")
        certs = _cert_dir(env)
        ca = params.get("tls_ca") or os.path.join(certs, "ca.pem")
        cert, key = params.get("tls_cert"), params.get("tls_key")
        if (cert is None) != (key is None):
            raise UriError("docker+tcp: give tls_cert and tls_key together")
        if cert is None and os.path.exists(os.path.join(certs, "cert.pem")):
            cert, key = os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem")
        if verify and not os.path.exists(ca):
            raise UriError(
                f"docker+tcp: TLS verification needs a CA certificate: {ca!r} does not exist "
                "(give ?tls_ca=FILE, or ?no_verify=1 to skip verification)"
            )
        return Endpoint(
            base_url=f"https://{netloc}:{port or 2376}",
            tls=True,
            tls_verify=verify,
            tls_ca=ca if verify else None,
            tls_cert=cert,
            tls_key=key,
        )
    raise UriError(f"unknown docker transport {transport!r} (known: unix, tcp)")
