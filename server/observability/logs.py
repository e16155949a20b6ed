"""Logging: stdlib ``logging`` with one formatter (JSON or readable text) for every logger (ours,
uvicorn's, grpc's), written from a background thread, and one line per request.

The request line (logger ``plutos.access``) carries: time, request id, account id, key id and
prefix, RPC method, model, gRPC code and error code, tokens, cost, latency, upstream latency and
the cache / idempotency outcome when there is one. Never the key; never the input or output
unless ``log_bodies = true``. A record logged while a call runs (an error's traceback, once) gets
that call's request id.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from core.errors import ERRORS
from server.call_state import CallState, current_call
from server.store.models import COST_UNITS_PER_USD

ACCESS_LOGGER = "plutos.access"
LOG_FORMATS = ("text", "json")

access_log = logging.getLogger(ACCESS_LOGGER)

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the record's extra
    fields, ``request_id`` when logged during a call, ``exc`` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...``; tracebacks on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _RESERVED and not k.startswith("_") and v is not None and v != ""
        )
        line = f"{_iso(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class _RequestIdFilter(logging.Filter):
    """Adds the current call's request id to records logged while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "request_id" not in record.__dict__:
            state = current_call.get(None)
            if state is not None:
                record.request_id = state.request_id
        return True


class _DeferredQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread unformatted (QueueHandler formats on the caller's
    thread); the traceback is rendered now, while it exists."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        return record


_STOP = logging.LogRecord("plutos", logging.INFO, "", 0, "stop", None, None)


class _BatchWriter(threading.Thread):
    """The thread that formats and writes queued records, a batch at a time: it wakes once for what
    arrived since its last write, writes the batch with one ``write`` and ``flush``, then rests
    ``pause`` seconds so the next batch can gather. Under load that is ~1/``pause`` wake-ups and
    writes a second instead of one per record (each of which took the GIL from the event loop);
    a line waits at most ``pause`` longer to reach the stream."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord], handler: logging.StreamHandler[Any]) -> None:
        super().__init__(name="plutos-log-writer", daemon=True)
        self.records = records
        self.handler = handler
        self.pause = 0.01

    def run(self) -> None:
        while True:
            batch = [self.records.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 10_000:
                    batch.append(self.records.get_nowait())
            lines = []
            for record in batch:
                if record is _STOP:
                    continue
                try:
                    lines.append(self.handler.format(record))
                except Exception:
                    self.handler.handleError(record)
            if lines:
                try:
                    self.handler.stream.write("\n".join(lines) + "\n")
                    self.handler.flush()
                except Exception:
                    self.handler.handleError(batch[-1])
            if _STOP in batch:
                return
            time.sleep(self.pause)

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self.records.put(_STOP)
        self.join()


_listener: _BatchWriter | None = None


def configure_logging(log_format: str = "text", level: str = "INFO", stream: Any = None) -> None:
    """Route every logger through one formatter on ``stream`` (stderr), written by a thread so the
    event loop never waits on the terminal or a pipe. Idempotent."""
    global _listener
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    stop_logging()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    front = _DeferredQueueHandler(records)
    front.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(front)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "grpc", "grpc._cython.cygrpc"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Neither format writes where a line was logged from, nor the thread or process: skip collecting
    # them for every record (the logging HOWTO's "Optimization" section; ~3.4 of ~12 µs per request line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _listener = _BatchWriter(records, handler)
    _listener.start()


def stop_logging() -> None:
    """Flush and stop the writer thread (at exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


class RequestLog:
    """Writes the one line per request, if the access logger is on (``access_log``)."""

    __slots__ = ("log_bodies",)

    def __init__(self, log_bodies: bool = False) -> None:
        self.log_bodies = log_bodies

    def write(self, state: CallState, method: str, model: str, code: str, started: float, request: Any = None) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        caller = state.caller
        fields: dict[str, Any] = {
            "request_id": state.request_id,
            "account_id": caller.account_id if caller else None,
            "key_id": caller.key_id if caller else None,
            "key_prefix": getattr(caller, "key_prefix", None) if caller else None,
            "method": method,
            "model": model or None,
            "code": code,
            "error": state.error_code,
            "prompt_tokens": state.prompt_tokens,
            "completion_tokens": state.completion_tokens,
            "cost_usd": state.cost_units / COST_UNITS_PER_USD,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "upstream_ms": round(state.upstream_seconds * 1000, 3) if state.upstream_seconds else None,
            "cache": state.cache_outcome,
        }
        if self.log_bodies and request is not None:
            fields["input"] = getattr(request, "input", None)
            fields["output"] = state.output
        access_log.info("%s %s", method.rsplit("/", 1)[-1], code, extra=fields)


def write_rejected(route: str, http_method: str, status: int, error: str, request_id: str) -> None:
    """The request line of a REST request the bridge answered before any RPC ran (bridge/rejections.py):
    the same fields as :meth:`RequestLog.write` (no caller, model, tokens or latency: none existed),
    plus ``http_method``, ``route`` (a template, ``unmatched`` or ``unparsed``) and ``status``."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    kind = ERRORS.get(error)
    fields: dict[str, Any] = {
        "request_id": request_id,
        "account_id": None,
        "key_id": None,
        "key_prefix": None,
        "method": None,
        "http_method": http_method,
        "route": route,
        "status": status,
        "model": None,
        "code": kind.grpc_status.name if kind else None,
        "error": error or None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
        "latency_ms": None,
        "upstream_ms": None,
        "cache": None,
    }
    access_log.info("%s %s %d", http_method, route, status, extra=fields)
