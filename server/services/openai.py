"""OpenAIService: the OpenAI-compatible API (``/openai/v1``) on the processing service's generation path.

Each call is a :class:`~server.services.generation.Generation` like a /v1/process call: the same
limits and quota reservation (``server.limits.policy``), ledger entry, stored record (kind ``chat`` or
``completion``, visible in GET /v1/process/{id}: ``chatcmpl-<hex>`` is ``proc_<hex>``) and webhooks.
The response cache answers when the key's ``cacheDefault`` asks for it (``use`` / ``refresh``; these
requests have no ``options.cache``), keyed on every parameter that changes the output
(``server.response_cache.cache_key``): a hit bills nothing and is stored ``cached``, as on /v1/process.
What this module adds is OpenAI's request and answer shapes and their validation; the error body,
JSON names and SSE framing are the bridge's, from the service's ``(plutos.v1.http_surface)`` option.

Errors (all ``invalid_parameters`` 400 naming ``param`` unless said)::

    n other than 1, logprobs, echo                  not supported
    messages empty, a role not in ROLES, content
      not a string or an array of text parts        invalid
    stop not a string or up to 4 strings            invalid
    tools, tool messages, json_schema on a model
      that is not an openai-compatible upstream     not supported by the model
    model unknown                                   model_not_found 404 (param "model"), as OpenAI
                                                    answers it (/v1/process answers invalid_model 400)
    model not allowed for the key                   permission_denied 403
    GET /models/{id} of an unknown model, or of
      one the key may not use                       model_not_found 404
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from google.protobuf import json_format, struct_pb2
from plutos.v1 import openai_pb2, openai_pb2_grpc, processing_pb2

from core.errors import PlutosError, echo, invalid_parameter
from server.backends.base import Backend, GenerationParams
from server.call_state import Caller, call_state, caller
from server.config import ModelSpec
from server.options import DEFAULT_MAX_TOKENS, OPENAI_COMPLETION_MAX_TOKENS, params_from_options
from server.runtime import Runtime
from server.services.generation import Generation, resolve_model
from server.services.processing import call_deadline

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
OWNED_BY = "plutos"


def _names(max_tokens_field: str) -> dict[str, tuple[str, str]]:
    """Option → (param, name in messages), in OpenAI's names."""
    names = {f: (f, f) for f in ("temperature", "top_p", "frequency_penalty", "presence_penalty", "stop")}
    names["max_tokens"] = (max_tokens_field, max_tokens_field)
    return names


_NAMES = {field: _names(field) for field in ("max_tokens", "max_completion_tokens")}


def _text(value: struct_pb2.Value, field: str) -> str | None:
    """A ``content``: a string, or an array of text parts (joined by newlines); None if null."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "list_value":
        parts = []
        for i, part in enumerate(value.list_value.values):
            fields = part.struct_value.fields if part.WhichOneof("kind") == "struct_value" else None
            if (
                fields is None
                or "type" not in fields
                or fields["type"].string_value != "text"
                or "text" not in fields
                or fields["text"].WhichOneof("kind") != "string_value"
            ):
                raise invalid_parameter(
                    f"{field}[{i}]", f'\'{field}[{i}]\' must be a text part ({{"type": "text", "text": ...}}).'
                )
            parts.append(fields["text"].string_value)
        return "\n".join(parts)
    raise invalid_parameter(field, f"'{field}' must be a string or an array of text parts.")


def _stop(value: struct_pb2.Value) -> list[str]:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return []
    if kind == "string_value":
        return [value.string_value]
    if kind == "list_value" and all(v.WhichOneof("kind") == "string_value" for v in value.list_value.values):
        return [v.string_value for v in value.list_value.values]
    raise invalid_parameter("stop", "'stop' must be a string or an array of up to 4 strings.")


def model_not_found(model_id: str) -> PlutosError:
    """OpenAI's answer for a model it does not serve: 404 ``model_not_found``, ``param`` ``model``."""
    return PlutosError(
        "model_not_found",
        f"The model `{echo(model_id)}` does not exist or you do not have access to it.",
        {"field": "model", "model": model_id},
    )


def _unsupported(param: str, what: str) -> PlutosError:
    return invalid_parameter(param, f"{what} is not supported.")


def _finish_reason(gen: Generation) -> str:
    reason = gen.state.finish_reason
    return reason if reason in ("length", "tool_calls") else "stop"


def _usage(gen: Generation) -> openai_pb2.CompletionUsage:
    s = gen.state
    return openai_pb2.CompletionUsage(
        prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens, total_tokens=s.total_tokens
    )


def _suffix(gen: Generation) -> str:
    """The record id's hex digits: ``chatcmpl-<hex>`` / ``cmpl-<hex>`` is ``proc_<hex>``."""
    return gen.id.removeprefix("proc_")


class OpenAIService(openai_pb2_grpc.OpenAIServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._created = int(time.time())

    # -- shared ---------------------------------------------------------------------------------

    def _resolve(self, who: Caller, model_id: str) -> tuple[ModelSpec, Backend]:
        """The model's entry and backend; ``model_not_found`` (404) for a model not in the catalogue,
        ``permission_denied`` (403) for one the key may not use, both naming ``param`` ``model``."""
        if model_id and model_id not in self.runtime.catalogue.specs:
            raise model_not_found(model_id)
        try:
            return resolve_model(self.runtime, who, model_id)
        except PlutosError as err:
            err.details.setdefault("field", "model")
            raise

    def _params(
        self,
        request: Any,
        spec: ModelSpec,
        context: Any,
        max_tokens_field: str,
        default_max_tokens: int,
        extra: tuple[tuple[str, Any], ...] = (),
        after: PlutosError | None = None,
        **fields: Any,
    ) -> GenerationParams:
        """The request's GenerationParams, built once: the sampling options common to both kinds of
        request, validated as /v1/process's are, plus ``fields``; ``extra`` (upstream fields) after
        ``user``. ``after``: the error of a check that comes after these options', raised once they pass."""
        if request.HasField("n") and request.n != 1:
            raise _unsupported("n", "'n' other than 1")
        options = processing_pb2.ProcessOptions(stop=_stop(request.stop))
        for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
            if request.HasField(name):
                setattr(options, name, getattr(request, name))
        if request.HasField(max_tokens_field):
            options.max_tokens = getattr(request, max_tokens_field)
        params = params_from_options(
            options,
            spec,
            call_deadline(context),
            _NAMES[max_tokens_field],
            default_max_tokens,
            call_state().request_id,
            seed=request.seed if request.HasField("seed") else None,
            upstream_extra=(("user", request.user), *extra) if request.HasField("user") else extra,
            **fields,
        )
        if after is not None:
            raise after
        return params

    # -- chat -----------------------------------------------------------------------------------

    def _chat(self, request: openai_pb2.CreateChatCompletionRequest, context: Any) -> Generation:
        who = caller()
        spec, backend = self._resolve(who, request.model)
        upstream = backend.takes_openai_fields
        if request.HasField("logprobs") and request.logprobs:
            raise _unsupported("logprobs", "'logprobs'")
        if not request.messages:
            raise invalid_parameter("messages", "'messages' must hold at least one message.")
        messages: list[dict[str, Any]] = []
        last_user = ""
        for i, m in enumerate(request.messages):
            if m.role not in ROLES:
                raise invalid_parameter(
                    f"messages[{i}].role", f"'messages[{i}].role' must be one of {', '.join(sorted(ROLES))}."
                )
            content = _text(m.content, f"messages[{i}].content")
            if content is None and not (m.role == "assistant" and m.tool_calls):
                raise invalid_parameter(f"messages[{i}].content", f"'messages[{i}].content' is required.")
            message: dict[str, Any] = {"role": m.role, "content": content}
            if m.HasField("name"):
                message["name"] = m.name
            if m.tool_calls or m.role == "tool":
                if not upstream:
                    raise invalid_parameter(
                        f"messages[{i}]", f"Model '{spec.id}' does not support tools (tool calls and tool messages)."
                    )
                if m.tool_calls:
                    message["tool_calls"] = [json_format.MessageToDict(c) for c in m.tool_calls]
                if m.HasField("tool_call_id"):
                    message["tool_call_id"] = m.tool_call_id
            if m.role == "user" and content is not None:
                last_user = content
            messages.append(message)
        max_field = "max_completion_tokens" if request.HasField("max_completion_tokens") else "max_tokens"
        extra: tuple[tuple[str, Any], ...]
        later: PlutosError | None
        # The tool and response-format checks come after the sampling options' (in _params): an
        # error of theirs is raised there, once those pass, so GenerationParams is built once.
        json_output, extra, later = False, (), None
        try:
            json_output, extra = self._chat_extras(request, spec, upstream)
        except PlutosError as err:
            later = err
        params = self._params(
            request,
            spec,
            context,
            max_field,
            DEFAULT_MAX_TOKENS,
            extra,
            later,
            messages=tuple(messages),
            json_output=json_output,
        )
        return Generation(self.runtime, who, spec, backend, kind="chat", text=last_user, params=params)

    @staticmethod
    def _chat_extras(
        request: openai_pb2.CreateChatCompletionRequest, spec: ModelSpec, upstream: bool
    ) -> tuple[bool, tuple[tuple[str, Any], ...]]:
        """Whether JSON output is asked (``response_format`` ``json_object``), and the fields an
        upstream gets as they are (tools, tool_choice, parallel_tool_calls, a json_schema format)."""
        extra: dict[str, Any] = {}
        if request.tools or request.HasField("tool_choice") or request.HasField("parallel_tool_calls"):
            if not upstream:
                raise invalid_parameter("tools", f"Model '{spec.id}' does not support tools.")
            if request.tools:
                extra["tools"] = [json_format.MessageToDict(t) for t in request.tools]
            if request.HasField("tool_choice"):
                extra["tool_choice"] = json_format.MessageToDict(request.tool_choice)
            if request.HasField("parallel_tool_calls"):
                extra["parallel_tool_calls"] = request.parallel_tool_calls
        json_output = False
        if request.HasField("response_format"):
            kind = request.response_format.type
            if kind == "json_object":
                json_output = True
            elif kind == "json_schema" and upstream:
                schema = json_format.MessageToDict(request.response_format, preserving_proto_field_name=True)
                extra["response_format"] = schema
            elif kind not in ("", "text"):
                raise invalid_parameter(
                    "response_format.type",
                    f"'response_format.type' '{echo(kind)}' is not supported by model '{spec.id}'.",
                )
        return json_output, tuple(extra.items())

    def _chat_completion(self, gen: Generation) -> openai_pb2.ChatCompletion:
        message = openai_pb2.ChatCompletionMessage(role="assistant")
        calls = gen.state.tool_calls
        if gen.state.text or not calls:  # OpenAI's content is null beside tool calls
            message.content = gen.state.text
        for call in calls or ():
            message.tool_calls.add_struct().update(call)
        return openai_pb2.ChatCompletion(
            id=f"chatcmpl-{_suffix(gen)}",
            object="chat.completion",
            created=int(gen.created_at.timestamp()),
            model=gen.spec.id,
            choices=[
                openai_pb2.ChatCompletionChoice(
                    index=0,
                    message=message,
                    finish_reason=_finish_reason(gen),
                )
            ],
            usage=_usage(gen),
        )

    async def CreateChatCompletion(
        self, request: openai_pb2.CreateChatCompletionRequest, context: Any
    ) -> openai_pb2.ChatCompletion:
        with self.runtime.writer.expect():
            gen = self._chat(request, context)
            await gen.run(gen.caller.cache_default)
            return self._chat_completion(gen)

    async def StreamChatCompletion(
        self, request: openai_pb2.CreateChatCompletionRequest, context: Any
    ) -> AsyncIterator[openai_pb2.ChatCompletionChunk]:
        with self.runtime.writer.expect():  # the generator's own: closing it leaves the block
            gen = self._chat(request, context)
            head: dict[str, Any] = {
                "id": f"chatcmpl-{_suffix(gen)}",
                "object": "chat.completion.chunk",
                "created": int(gen.created_at.timestamp()),
                "model": gen.spec.id,
            }
            role: str | None = "assistant"  # in the first chunk only
            async with aclosing(gen.batches(gen.caller.cache_default)) as batches:
                async for batch in batches:
                    for piece in batch:
                        delta = openai_pb2.ChatCompletionDelta(role=role, content=piece)
                        role = None
                        yield openai_pb2.ChatCompletionChunk(
                            **head, choices=[openai_pb2.ChatCompletionChunkChoice(index=0, delta=delta)]
                        )
            last = openai_pb2.ChatCompletionChunkChoice(
                index=0, delta=openai_pb2.ChatCompletionDelta(role=role), finish_reason=_finish_reason(gen)
            )
            if gen.state.tool_calls:  # the whole calls at once, in the last chunk
                for i, call in enumerate(gen.state.tool_calls):
                    last.delta.tool_calls.add_struct().update({"index": i, **call})
            yield openai_pb2.ChatCompletionChunk(**head, choices=[last])
            if request.stream_options.include_usage:
                yield openai_pb2.ChatCompletionChunk(**head, usage=_usage(gen))

    # -- legacy completions -----------------------------------------------------------------------

    def _completion(self, request: openai_pb2.CreateCompletionRequest, context: Any) -> Generation:
        who = caller()
        spec, backend = self._resolve(who, request.model)
        if request.HasField("echo") and request.echo:
            raise _unsupported("echo", "'echo'")
        if request.HasField("logprobs"):
            raise _unsupported("logprobs", "'logprobs'")
        prompt = request.prompt
        if prompt.WhichOneof("kind") == "list_value" and len(prompt.list_value.values) == 1:
            prompt = prompt.list_value.values[0]
        if prompt.WhichOneof("kind") != "string_value" or not prompt.string_value:
            raise invalid_parameter("prompt", "'prompt' must be a non-empty string (or an array of one string).")
        params = self._params(request, spec, context, "max_tokens", OPENAI_COMPLETION_MAX_TOKENS)
        return Generation(self.runtime, who, spec, backend, kind="completion", text=prompt.string_value, params=params)

    def _head(self, gen: Generation) -> dict[str, Any]:
        return {
            "id": f"cmpl-{_suffix(gen)}",
            "object": "text_completion",
            "created": int(gen.created_at.timestamp()),
            "model": gen.spec.id,
        }

    async def CreateCompletion(
        self, request: openai_pb2.CreateCompletionRequest, context: Any
    ) -> openai_pb2.Completion:
        with self.runtime.writer.expect():
            gen = self._completion(request, context)
            await gen.run(gen.caller.cache_default)
            choice = openai_pb2.CompletionChoice(index=0, text=gen.state.text, finish_reason=_finish_reason(gen))
            return openai_pb2.Completion(**self._head(gen), choices=[choice], usage=_usage(gen))

    async def StreamCompletion(
        self, request: openai_pb2.CreateCompletionRequest, context: Any
    ) -> AsyncIterator[openai_pb2.Completion]:
        with self.runtime.writer.expect():  # the generator's own: closing it leaves the block
            gen = self._completion(request, context)
            head = self._head(gen)
            async with aclosing(gen.batches(gen.caller.cache_default)) as batches:
                async for batch in batches:
                    for piece in batch:
                        yield openai_pb2.Completion(**head, choices=[openai_pb2.CompletionChoice(index=0, text=piece)])
            last = openai_pb2.CompletionChoice(index=0, text="", finish_reason=_finish_reason(gen))
            yield openai_pb2.Completion(**head, choices=[last])
            if request.stream_options.include_usage:
                yield openai_pb2.Completion(**head, usage=_usage(gen))

    # -- models ---------------------------------------------------------------------------------

    def _model(self, model_id: str) -> openai_pb2.OpenAIModel:
        return openai_pb2.OpenAIModel(id=model_id, object="model", created=self._created, owned_by=OWNED_BY)

    async def ListModels(self, request: openai_pb2.OpenAIListModelsRequest, context: Any) -> openai_pb2.OpenAIModelList:
        who = caller()
        allowed = [self._model(m) for m in self.runtime.catalogue.specs if who.allows_model(m)]
        return openai_pb2.OpenAIModelList(object="list", data=allowed)

    async def RetrieveModel(self, request: openai_pb2.RetrieveModelRequest, context: Any) -> openai_pb2.OpenAIModel:
        if request.model not in self.runtime.catalogue.specs or not caller().allows_model(request.model):
            raise model_not_found(request.model)
        return self._model(request.model)
