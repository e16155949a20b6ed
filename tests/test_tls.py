"""TLS: HTTPS on the REST port and TLS on the gRPC port from ``tls_cert_file`` / ``tls_key_file``,
client certificates required on gRPC with ``tls_client_ca_file`` (mTLS). Certificates are made here
by trustme (a throw-away CA); the platform has no models (nothing to load), the clients are httpx,
grpcio and the Python SDK's CA-bundle / client-certificate options."""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from plutos.v1 import models_pb2

from gateway.app import RunningPlatform, start_platform
from tests import conftest
from tests.conftest import models_stub
from tests.subprocess_support import run

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    where = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("billing-service@internal")
    files = Pki(*(where / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")))
    ca.cert_pem.write_to_path(str(files.ca))
    pairs = ((server, files.server_cert, files.server_key), (client, files.client_cert, files.client_key))
    for cert, chain, key in pairs:
        for i, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(str(chain), append=i > 0)
        cert.private_key_pem.write_to_path(str(key))
    return files


@pytest.fixture(scope="module")
async def tls_platform(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningPlatform]:
    settings = conftest.test_settings(
        tmp_path_factory.mktemp("tls-store"),
        models=[],
        bridge_transport="local",
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
        tls_client_ca_file=str(pki.ca),
    )
    running = await start_platform(settings)
    yield running
    await running.stop(grace=1)


async def test_rest_is_served_over_https(tls_platform: RunningPlatform, pki: Pki) -> None:
    url = f"https://127.0.0.1:{tls_platform.http_port}"
    async with httpx.AsyncClient(base_url=url, verify=ssl.create_default_context(cafile=str(pki.ca))) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        r = await client.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    async with httpx.AsyncClient(base_url=url) as client:  # the system's roots do not know this CA
        with pytest.raises(httpx.ConnectError):
            await client.get("/health")


def _credentials(pki: Pki, with_client_cert: bool) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes() if with_client_cert else None,
        certificate_chain=pki.client_cert.read_bytes() if with_client_cert else None,
    )


async def test_grpc_with_a_client_certificate_is_served(tls_platform: RunningPlatform, pki: Pki) -> None:
    target = f"127.0.0.1:{tls_platform.grpc_port}"
    async with grpc.aio.secure_channel(target, _credentials(pki, True)) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await models_stub(channel).ListModels(models_pb2.ListModelsRequest())
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # TLS passed; the key did not


async def test_grpc_without_a_client_certificate_is_refused(tls_platform: RunningPlatform, pki: Pki) -> None:
    target = f"127.0.0.1:{tls_platform.grpc_port}"
    async with grpc.aio.secure_channel(target, _credentials(pki, False)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)


async def test_the_python_sdk_takes_a_ca_bundle_and_a_client_certificate(
    tls_platform: RunningPlatform, pki: Pki
) -> None:
    if not os.environ.get("CI"):
        pytest.importorskip("plutos_ai", reason="make sdk-deps installs the Python SDK")
    from plutos_ai import AsyncPlutosAI
    from plutos_ai.grpc import AsyncPlutosGrpcClient

    rest = AsyncPlutosAI(
        api_key="pk_wrong", base_url=f"https://127.0.0.1:{tls_platform.http_port}/v1", ca_file=str(pki.ca)
    )
    try:
        with pytest.raises(Exception) as caught:
            await rest.list_models()
        assert getattr(caught.value, "code", None) == "invalid_api_key"
    finally:
        await rest.close()
    client = AsyncPlutosGrpcClient(
        f"127.0.0.1:{tls_platform.grpc_port}",
        api_key="pk_wrong",
        ca_file=str(pki.ca),
        client_cert_file=str(pki.client_cert),
        client_key_file=str(pki.client_key),
        max_retries=0,
    )
    try:
        with pytest.raises(Exception) as caught:
            await client.list_models()
        assert getattr(caught.value, "code", None) == "invalid_api_key"
    finally:
        await client.close()


def _sdk_tls_env(tls_platform: RunningPlatform, pki: Pki) -> dict[str, str]:
    """What the TypeScript and Go SDKs' TLS tests read (clients/*/.../tls*test*)."""
    return {
        "PLUTOS_TEST_TLS_BASE_URL": f"https://127.0.0.1:{tls_platform.http_port}/v1",
        "PLUTOS_TEST_TLS_GRPC_TARGET": f"127.0.0.1:{tls_platform.grpc_port}",
        "PLUTOS_TEST_TLS_CA_FILE": str(pki.ca),
        "PLUTOS_TEST_TLS_CLIENT_CERT": str(pki.client_cert),
        "PLUTOS_TEST_TLS_CLIENT_KEY": str(pki.client_key),
        "PLUTOS_BASE_URL": "",
        "PLUTOS_API_KEY": "",
    }


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
async def test_the_go_sdk_takes_a_ca_bundle_and_a_client_certificate(tls_platform: RunningPlatform, pki: Pki) -> None:
    """WithCAFile / WithClientCert over HTTPS and grpcclient.TLSCredentials over mTLS gRPC."""
    code, out, err = await run(
        "go",
        "test",
        "-count=1",
        "-v",
        "-run",
        "TLSLive",
        "./...",
        env=_sdk_tls_env(tls_platform, pki),
        cwd=str(ROOT / "clients" / "go"),
        timeout=600,
    )
    assert code == 0, (out + err)[-3000:]
    for name in ("TestTLSLiveRESTTrustsTheCAFile", "TestTLSLiveGRPCWithAClientCertificate"):
        assert f"--- PASS: {name}" in out, out[-3000:]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_the_typescript_sdk_takes_a_ca_bundle_and_a_client_certificate(
    tls_platform: RunningPlatform, pki: Pki
) -> None:
    """The `caFile` / `clientCert` options (REST; the TypeScript SDK has no gRPC client)."""
    package = ROOT / "clients" / "typescript"
    if not (package / "node_modules").exists():
        pytest.fail("clients/typescript/node_modules missing: run `make sdk-deps`")
    code, out, err = await run("npm", "run", "build", cwd=str(package), timeout=600)
    assert code == 0, (out + err)[-3000:]
    code, out, err = await run(
        "node", "--test", "test/tls.test.mjs", env=_sdk_tls_env(tls_platform, pki), cwd=str(package), timeout=600
    )
    assert code == 0, (out + err)[-3000:]
    assert "# pass 2" in out and "# skipped 0" in out, out[-3000:]
