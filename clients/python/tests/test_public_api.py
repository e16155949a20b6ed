"""The public surface of plutos_ai, pinned: changing it is a deliberate act."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import plutos_ai


def test_public_names() -> None:
    assert sorted(plutos_ai.__all__) == sorted(
        [
            "AccountSuspendedError",
            "ConflictError",
            "Account",
            "AccountUsage",
            "ApiKey",
            "AuditEvent",
            "CreatedKey",
            "DailyUsage",
            "KeyRotation",
            "Page",
            "ProcessHistoryItem",
            "ResultList",
            "WebhookDelivery",
            "WebhookTestResult",
            "ENVIRONMENTS",
            "APIConnectionError",
            "APIError",
            "APITimeoutError",
            "AsyncPlutosAI",
            "AsyncStream",
            "AuthenticationError",
            "BatchItem",
            "BatchItemError",
            "BatchResult",
            "Environment",
            "GatewayTimeoutError",
            "IdempotencyInProgressError",
            "IdempotencyKeyReusedError",
            "InputTooLongError",
            "InsufficientQuotaError",
            "InternalServerError",
            "InvalidModelError",
            "InvalidParametersError",
            "Model",
            "NotFoundError",
            "Options",
            "PermissionDeniedError",
            "PlutosAI",
            "PlutosError",
            "Pricing",
            "ProcessOptions",
            "ProcessRecord",
            "ProcessResult",
            "RateLimitError",
            "RawResponse",
            "ServiceUnavailableError",
            "Stream",
            "StreamChunk",
            "StreamComplete",
            "StreamEvent",
            "UpstreamError",
            "Usage",
            "UsageLimits",
            "UsagePeriod",
            "UsageReport",
            "UsageTotals",
            "Webhook",
            "WebhookDeletion",
            "WebhookVerificationError",
            "__version__",
            "webhooks",
        ]
    )
    for name in plutos_ai.__all__:
        assert hasattr(plutos_ai, name), name


def test_sync_and_async_clients_have_the_same_methods() -> None:
    methods = [
        "process_data",
        "get_process",
        "batch",
        "stream",
        "list_models",
        "get_usage",
        "create_webhook",
        "list_webhooks",
        "delete_webhook",
    ]
    for name in methods:
        assert callable(getattr(plutos_ai.PlutosAI, name))
        assert callable(getattr(plutos_ai.AsyncPlutosAI, name))


def test_importing_plutos_ai_does_not_need_grpc() -> None:
    # The gRPC client is an optional extra: the REST SDK must import without grpcio.
    code = "import sys, plutos_ai; sys.exit('grpc' in sys.modules or 'google.protobuf' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_reference_python_example_fixture_is_verbatim() -> None:
    # tests/data/reference_python_example.txt, run by the live tests, is the reference's own snippet.
    reference = Path(__file__).resolve().parents[4] / "shared" / "api-reference.txt"
    if not reference.exists():
        pytest.skip("shared/api-reference.txt is not beside the repository")
    example = (Path(__file__).parent / "data" / "reference_python_example.txt").read_text("utf-8")
    assert example.strip() in reference.read_text(encoding="utf-8")
