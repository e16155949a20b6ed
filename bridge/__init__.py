"""The REST/SSE bridge: a Starlette app whose routes are generated from the protos'
``google.api.http`` annotations, talking to the gRPC server over a real channel."""

from bridge.app import create_app

__all__ = ["create_app"]
