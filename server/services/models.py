"""ModelsService: the catalogue."""

from __future__ import annotations

from typing import Any

from plutos.v1 import models_pb2, models_pb2_grpc

from server.call_state import caller
from server.runtime import Runtime


class ModelsService(models_pb2_grpc.ModelsServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        catalogue = runtime.catalogue
        # The catalogue is fixed for the life of the process: build the answer once.
        self._response = models_pb2.ListModelsResponse(
            models=[
                models_pb2.Model(
                    id=spec.id,
                    name=spec.name,
                    description=spec.description,
                    max_tokens=spec.max_tokens,
                    supports_streaming=spec.supports_streaming and catalogue.backends[spec.id].supports_streaming,
                    pricing=models_pb2.Pricing(
                        input_tokens=float(spec.input_price), output_tokens=float(spec.output_price)
                    ),
                )
                for spec in catalogue.specs.values()
            ]
        )

    async def ListModels(self, request: models_pb2.ListModelsRequest, context: Any) -> models_pb2.ListModelsResponse:
        """The catalogue, or the part of it the caller's key may use (a key's model allow-list)."""
        who = caller()
        if who.models is None:
            return self._response
        return models_pb2.ListModelsResponse(models=[m for m in self._response.models if who.allows_model(m.id)])
