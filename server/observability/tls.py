"""TLS from the ``tls_*`` settings: HTTPS on the REST port (uvicorn's ``ssl`` options) and TLS on
the gRPC port (``grpc.ssl_server_credentials``), with client certificates required on gRPC when
``tls_client_ca_file`` is set (mTLS). Files are PEM; the certificate file may hold the chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from server.config import Settings


def tls_enabled(settings: Settings) -> bool:
    """True when a certificate and key are configured; raises ``ValueError`` when only one is, or
    when a client CA is given without them."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if bool(cert) != bool(key):
        raise ValueError("tls_cert_file and tls_key_file must be set together")
    if settings.tls_client_ca_file and not cert:
        raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
    for path in (cert, key, settings.tls_client_ca_file):
        if path and not Path(path).is_file():
            raise ValueError(f"TLS file not found: {path}")
    return bool(cert)


def grpc_server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """The gRPC port's credentials; requires client certificates when a client CA is set."""
    chain = Path(settings.tls_cert_file).read_bytes()
    key = Path(settings.tls_key_file).read_bytes()
    ca = Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)


def uvicorn_ssl_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments for HTTPS on the REST port (none without TLS)."""
    if not settings.tls_cert_file:
        return {}
    return {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
