"""The model catalogue: catalogue entries from the config, each bound to a started backend."""

from __future__ import annotations

from collections.abc import Callable

from core.errors import PlutosError, echo
from server.backends.base import Backend
from server.config import ModelSpec, Settings

BackendFactory = Callable[[ModelSpec], Backend]


def _local(spec: ModelSpec) -> Backend:
    from server.backends.local import LocalLlamaBackend

    return LocalLlamaBackend(spec)


def _openai_compatible(spec: ModelSpec) -> Backend:
    from server.backends.openai_compat import OpenAICompatibleBackend

    return OpenAICompatibleBackend(spec)


BACKENDS: dict[str, BackendFactory] = {"local": _local, "openai-compatible": _openai_compatible}


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
        self._owned = list(shared.values())
        # ``fallbacks = [ids]``: on an upstream failure before any output, try those models in order.
        plain = dict(self.backends)
        for spec in settings.models:
            if fallbacks := spec.options.get("fallbacks"):
                self.backends[spec.id] = _with_fallbacks(spec, fallbacks, plain)

    async def start(self) -> None:
        for backend in self._owned:
            await backend.start()

    async def close(self) -> None:
        for backend in self._owned:
            await backend.close()

    def resolve(self, model_id: str) -> tuple[ModelSpec, Backend]:
        """The entry and backend for ``model_id``; ``invalid_model`` when there is none."""
        spec = self.specs.get(model_id)
        if spec is None:
            raise PlutosError(
                "invalid_model",
                f"Model '{echo(model_id)}' not found. GET /v1/models lists the available models.",
                {"model": model_id, "available": sorted(self.specs)},
            )
        return spec, self.backends[model_id]


def _with_fallbacks(spec: ModelSpec, fallbacks: object, plain: dict[str, Backend]) -> Backend:
    from server.backends.fallback import FallbackBackend

    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise ValueError(f"model {spec.id}: fallbacks must be a list of model ids")
    for fallback in fallbacks:
        if fallback == spec.id or fallback not in plain:
            raise ValueError(f"model {spec.id}: fallback {fallback!r} is not another model of the catalogue")
    return FallbackBackend(spec.id, plain[spec.id], [(f, plain[f]) for f in fallbacks])
