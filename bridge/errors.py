"""gRPC status → the reference's error envelope and HTTP status, via the shared error table."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from core.errors import ERRORS, ErrorKind, kind_for_grpc_status


def envelope(code: str, message: str, request_id: str | None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    if request_id:
        body["requestId"] = request_id
    return {"error": body}


def from_rpc_error(err: grpc.aio.AioRpcError) -> tuple[ErrorKind, str, dict[str, Any]]:
    """The error kind, message and details carried by a failed call's rich status."""
    code = err.code()
    message = err.details() or ""
    details: dict[str, Any] = {}
    kind: ErrorKind | None = None
    try:
        # The rich status (``grpc-status-details-bin``). An AioRpcError offers the three methods
        # from_call reads. It refuses a status whose code or message differ from the call's (the
        # message is then the call's own): a server bug, treated as no rich status.
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:
        status = None
    if status is not None:
        for anything in status.details:
            if anything.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                anything.Unpack(info)
                kind = ERRORS.get(info.reason)
            elif anything.Is(struct_pb2.Struct.DESCRIPTOR):
                struct = struct_pb2.Struct()
                anything.Unpack(struct)
                details = _numbers(json_format.MessageToDict(struct))
    if kind is None:
        kind = kind_for_grpc_status(code)
        if code == grpc.StatusCode.UNAVAILABLE:
            message = "Service temporarily unavailable."
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            message = "The request timed out."
        elif kind.code == "internal_error":
            message = "Internal server error."
    return kind, message, details


def _numbers(value: Any) -> Any:
    # Struct keeps numbers as doubles; show integral ones as integers (retryAfter: 60, not 60.0).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value
