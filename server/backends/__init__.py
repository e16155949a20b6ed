"""Model backends: the interface and its implementations (local llama.cpp, ...)."""

from server.backends.base import Backend, GenerationParams, GenerationState, PreparedPrompt

__all__ = ["Backend", "GenerationParams", "GenerationState", "PreparedPrompt"]
