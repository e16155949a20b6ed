"""WebhooksService: not built yet (issue 6). Every RPC answers ``not_implemented`` (501)."""

from __future__ import annotations

from typing import Any, NoReturn

from plutos.v1 import webhooks_pb2_grpc

from server.errors import PlutosError


def _not_yet(name: str) -> NoReturn:
    raise PlutosError("not_implemented", f"{name} is not available yet on this server.")


class WebhooksService(webhooks_pb2_grpc.WebhooksServiceServicer):
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    async def CreateWebhook(self, request: Any, context: Any) -> Any:
        _not_yet("CreateWebhook")

    async def ListWebhooks(self, request: Any, context: Any) -> Any:
        _not_yet("ListWebhooks")

    async def DeleteWebhook(self, request: Any, context: Any) -> Any:
        _not_yet("DeleteWebhook")
