"""PlutosAI Python SDK.

    from plutos_ai import PlutosAI

    client = PlutosAI(api_key="...", environment="production")
    result = client.process_data(input="What is the capital of France?", model="gpt-4",
                                 options={"temperature": 0.7, "max_tokens": 100})
    print(result.output)

``AsyncPlutosAI`` is the asyncio twin; ``plutos_ai.webhooks.verify`` checks webhook deliveries;
``plutos_ai.grpc`` (extra ``plutos-ai[grpc]``) is a gRPC client.
"""

from . import webhooks
from ._async_client import AsyncPlutosAI, AsyncStream
from ._base import ENVIRONMENTS, Environment, RawResponse
from ._client import PlutosAI, Stream
from ._exceptions import (
    AccountSuspendedError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    GatewayTimeoutError,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    InputTooLongError,
    InsufficientQuotaError,
    InternalServerError,
    InvalidModelError,
    InvalidParametersError,
    NotFoundError,
    PermissionDeniedError,
    PlutosError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    WebhookVerificationError,
)
from ._management_types import (
    Account,
    AccountUsage,
    ApiKey,
    AuditEvent,
    CreatedKey,
    DailyUsage,
    KeyRotation,
    Page,
    ProcessHistoryItem,
    WebhookDelivery,
    WebhookTestResult,
)
from ._options import Options
from ._types import (
    BatchItem,
    BatchItemError,
    BatchResult,
    Model,
    Pricing,
    ProcessOptions,
    ProcessRecord,
    ProcessResult,
    StreamChunk,
    StreamComplete,
    StreamEvent,
    Usage,
    UsageLimits,
    UsagePeriod,
    UsageReport,
    UsageTotals,
    Webhook,
    WebhookDeletion,
)
from ._version import __version__

__all__ = [
    "ENVIRONMENTS",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "Account",
    "AccountSuspendedError",
    "AccountUsage",
    "ApiKey",
    "AsyncPlutosAI",
    "AsyncStream",
    "AuditEvent",
    "AuthenticationError",
    "BatchItem",
    "BatchItemError",
    "BatchResult",
    "ConflictError",
    "CreatedKey",
    "DailyUsage",
    "Environment",
    "GatewayTimeoutError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReusedError",
    "InputTooLongError",
    "InsufficientQuotaError",
    "InternalServerError",
    "InvalidModelError",
    "InvalidParametersError",
    "KeyRotation",
    "Model",
    "NotFoundError",
    "Options",
    "Page",
    "PermissionDeniedError",
    "PlutosAI",
    "PlutosError",
    "Pricing",
    "ProcessHistoryItem",
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
    "WebhookDelivery",
    "WebhookTestResult",
    "WebhookVerificationError",
    "__version__",
    "webhooks",
]
