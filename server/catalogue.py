"""The model catalogue: catalogue entries from the config, each bound to a started backend."""

from __future__ import annotations

from collections.abc import Callable

from server.backends.base import Backend
from server.config import ModelSpec, Settings
from server.errors import PlutosError

BackendFactory = Callable[[ModelSpec], Backend]


def _local(spec: ModelSpec) -> Backend:
    from server.backends.local import LocalLlamaBackend

    return LocalLlamaBackend(spec)


BACKENDS: dict[str, BackendFactory] = {"local": _local}


class Catalogue:
    def __init__(self, settings: Settings) -> None:
        self.specs: dict[str, ModelSpec] = {}
        self.backends: dict[str, Backend] = {}
        shared: dict[tuple[str, str], Backend] = {}
        for spec in settings.models:
            if spec.backend not in BACKENDS:
                raise ValueError(f"model {spec.id}: unknown backend {spec.backend!r} (known: {sorted(BACKENDS)})")
            # Entries naming the same local file share one loaded model.
            share_key = (spec.backend, str(spec.options.get("path", "")) if spec.backend == "local" else spec.id)
            if share_key not in shared:
                shared[share_key] = BACKENDS[spec.backend](spec)
            self.specs[spec.id] = spec
            self.backends[spec.id] = shared[share_key]

    async def start(self) -> None:
        for backend in {id(b): b for b in self.backends.values()}.values():
            await backend.start()

    async def close(self) -> None:
        for backend in {id(b): b for b in self.backends.values()}.values():
            await backend.close()

    def resolve(self, model_id: str) -> tuple[ModelSpec, Backend]:
        """The entry and backend for ``model_id``; ``invalid_model`` when there is none."""
        spec = self.specs.get(model_id)
        if spec is None:
            raise PlutosError(
                "invalid_model",
                f"Model '{model_id}' not found. GET /v1/models lists the available models.",
                {"model": model_id, "available": sorted(self.specs)},
            )
        return spec, self.backends[model_id]
