"""Behaviour of the generated result types (_types_gen.py), which hold only what the protos define."""

from __future__ import annotations


class BatchItemMixin:
    @property
    def ok(self) -> bool:
        """Whether this item succeeded (``error`` is None)."""
        return getattr(self, "error", None) is None


class StreamChunkMixin:
    @property
    def is_final(self) -> bool:
        return False


class StreamCompleteMixin:
    @property
    def is_final(self) -> bool:
        return True
