"""The embedded engine: a local Hugging Face causal LM served by one scheduler thread.

How a request flows:
1. ``generate()`` (event-loop thread) renders the prompt, checks it fits the context and that the
   admission queue has room, then hands a ``SequenceState`` to the scheduler. Errors surface here,
   before any byte is streamed, so the gateway can still answer with a proper status code.
2. The scheduler thread runs rounds (continuous batching). Each round it
   a. drops sequences whose client left or whose deadline passed: their slot and KV memory go now;
   b. admits waiting sequences while there is a slot (``max_batch``) and KV memory (``max_kv_tokens``);
      with the prefix cache on, a newcomer starts from the cached KV of the longest head of its
      prompt already seen (same adapter), and prefills only the rest (``prefix_cache``);
   c. packs one token for every decoding sequence, plus prompt chunks of newcomers up to
      ``prefill_chunk`` tokens, so a long prompt never stalls the running streams for long;
   d. advances all of them with ONE fused forward (``batching.forward``), each sequence attending
      only to its own KV cache, so no step recomputes a prefix; sequences of a LoRA adapter
      (``load_adapter``) get their adapter's delta on their own rows (``lora.LoraLinear``);
   e. picks each sequence's next token with that sequence's own RNG, streams the text, and retires
      finished sequences at once.
3. A round's text deltas travel back to the event loop in one wake-up (``sequence.deliver``); the
   async iterator the caller holds yields them. Closing that iterator (client gone) marks the
   sequence cancelled and the scheduler drops it, and its KV memory, at the next round.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import torch

from stratum.engine import batching, lora
from stratum.engine.base import FinishReason, GenerationChunk, GenerationRequest, ModelInfo
from stratum.engine.kv import KVBudget, KVShape, SequenceKV
from stratum.engine.prefix_cache import PrefixCache, PrefixStats
from stratum.engine.prompting import PromptBuilder
from stratum.engine.sampling import StopScanner, make_generator, pick_token
from stratum.engine.sequence import SequenceState, SequenceStream, StreamItem, deliver
from stratum.engine.weights import load_causal_lm
from stratum.errors import EngineError, InvalidRequest, Overloaded

log = logging.getLogger(__name__)

# Prompt tokens a round may carry besides the decode tokens. Measured on a 20M-parameter Llama,
# 2 cores: a round of 16 decode tokens plus a 128-token chunk takes ~3x a decode-only round (plus
# 256: ~5x). So running streams see one slower step per chunk, and a typical chat prompt still
# goes in at once.
DEFAULT_PREFILL_CHUNK = 128


class LocalEngine:
    """Serves one local model directory (safetensors + tokenizer + chat template) on the CPU.

    ``max_kv_tokens`` caps the KV memory of all running sequences together, in tokens (multiply by
    ``info.extra["kv_bytes_per_token"]`` for bytes); ``None`` leaves it to ``max_batch`` alone.
    ``prefix_cache_tokens`` > 0 keeps up to that many tokens of prompt KV for reuse by later prompts
    with the same head (``prefix_cache``), within ``max_kv_tokens`` together with running sequences.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        dtype: str = "float32",
        prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
        max_kv_tokens: int | None = None,
        prefix_cache_tokens: int = 0,
    ) -> None:
        if prefill_chunk < 1:
            raise ValueError("prefill_chunk must be at least 1 token")
        self.path = path
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.dtype = dtype
        self.prefill_chunk = prefill_chunk
        self.info = ModelInfo()
        self._model: Any = None
        self._prompts: PromptBuilder | None = None
        self._kv_shape: KVShape | None = None
        self._kv_budget = KVBudget(max_kv_tokens)
        self._prefix = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens > 0 else None
        self._eos_ids: set[int] = set()
        self._context_length = 2048
        self._waiting: deque[SequenceState] = deque()
        self._running: list[SequenceState] = []
        self._wake = threading.Condition()
        # Held by the scheduler for a whole round; adapters are installed and removed under it.
        self._step = threading.Lock()
        self._adapters: set[str] = set()  # servable adapters (installed, not being unloaded)
        self._retiring: set[str] = set()  # unloaded, removed once their last sequence ends
        self.memory_bytes = 0  # weights in memory, for the model cache
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._run, name=f"engine:{self.path.name}", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = load_causal_lm(self.path, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load model from {self.path}: {exc}") from exc
        model.eval()
        try:
            batching.prepare(model)
        except ValueError as exc:
            raise EngineError(f"cannot serve {self.path} with continuous batching: {exc}") from exc
        self._model = model
        self.memory_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self._prompts = PromptBuilder(tokenizer)
        config = model.config
        self._context_length = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        self._kv_shape = KVShape(config, model.dtype)
        self._eos_ids = _eos_ids(model, tokenizer)
        self.info = ModelInfo(
            architecture=type(model).__name__,
            parameters=sum(p.numel() for p in model.parameters()),
            context_length=self._context_length,
            tokenizer=type(tokenizer).__name__,
            extra={"dtype": self.dtype, "kv_bytes_per_token": self._kv_shape.bytes_per_token},
        )

    async def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None
        self._model = None

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def kv_tokens_reserved(self) -> int:
        """KV tokens held by running sequences (each reserves its worst case), for metrics."""
        return self._kv_budget.reserved

    @property
    def prefix_cache_tokens(self) -> int:
        """KV tokens held by the prefix cache (0 when it is off), for metrics."""
        return self._prefix.tokens if self._prefix is not None else 0

    @property
    def prefix_stats(self) -> PrefixStats | None:
        """Prefix-cache counters since the engine was created (None: the cache is off)."""
        return self._prefix.stats if self._prefix is not None else None

    # -- adapters (event-loop thread) --------------------------------------------------------

    @property
    def adapters(self) -> list[str]:
        return sorted(self._adapters)

    def adapter_bytes(self, name: str) -> int:
        adapter = lora.router_of(self._model).adapters.get(name) if self._model is not None else None
        return adapter.nbytes if adapter is not None else 0

    def adapter_in_use(self, name: str) -> bool:
        """Whether a waiting or running sequence uses ``name`` (it must not be removed then)."""
        with self._wake:
            return any(seq.request.adapter == name for seq in [*self._running, *self._waiting])

    async def load_adapter(self, name: str, path: Path) -> int:
        """Serve the PEFT LoRA adapter at ``path`` as ``name``, while the engine runs; its bytes.

        Reading the weights happens off the scheduler; installing waits for the current round only.
        """
        if self._model is None:
            raise EngineError("engine is not started")
        weights = await asyncio.to_thread(lora.load_adapter, path, dtype=self._model.dtype)
        await asyncio.to_thread(self._install, name, weights)
        return weights.nbytes

    def _install(self, name: str, weights: lora.AdapterWeights) -> None:
        with self._step:
            lora.router_of(self._model).install(name, weights)
            with self._wake:
                if self._prefix is not None:  # a name reloaded with other weights must not hit
                    self._prefix.drop_adapter(name)
                self._retiring.discard(name)
                self._adapters.add(name)

    async def unload_adapter(self, name: str) -> None:
        """Stop accepting requests for ``name``; its weights go once its running sequences end."""
        await asyncio.to_thread(self._unload, name)

    def _unload(self, name: str) -> None:
        with self._step, self._wake:
            self._adapters.discard(name)
            self._retiring.add(name)
            self._retire_adapters()

    def _retire_adapters(self) -> None:
        """Remove unloaded adapters nobody uses any more (caller holds ``_step`` and ``_wake``)."""
        if not self._retiring or self._model is None:
            return
        in_use = {seq.request.adapter for seq in [*self._running, *self._waiting]}
        for name in [n for n in self._retiring if n not in in_use]:
            lora.router_of(self._model).remove(name)
            if self._prefix is not None:
                self._prefix.drop_adapter(name)
            self._retiring.discard(name)

    # -- submission (event-loop thread) ------------------------------------------------------

    def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        return len(self._prompt_ids(request))

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if self._prompts is None:
            raise EngineError("engine is not started")
        if request.messages is not None:
            return self._prompts.chat(request.messages)
        return self._prompts.text(request.prompt or "")

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self._stopping or self._thread is None:
            # The model cache unloaded this engine between lookup and submission; a retry reloads it.
            raise Overloaded("the model was just unloaded; retry shortly")
        if request.adapter is not None and request.adapter not in self._adapters:
            # The model cache may have just evicted it; the next request loads it again.
            raise Overloaded(f"adapter '{request.adapter}' is not loaded on this engine; retry shortly")
        prompt_ids = self._prompt_ids(request)
        if not prompt_ids:  # a round needs at least one token per sequence
            raise InvalidRequest("the prompt is empty", param="prompt")
        # A KV budget smaller than the model's context is, for one sequence, a shorter context.
        limit = min(self._context_length, self._kv_budget.limit or self._context_length)
        room = limit - len(prompt_ids)
        if room <= 0:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens; "
                f"the prompt has {len(prompt_ids)} tokens.",
                param="messages" if request.messages is not None else "prompt",
                code="context_length_exceeded",
            )
        wanted = request.params.max_tokens
        if wanted is not None and wanted > room:
            raise InvalidRequest(
                f"max_tokens is {wanted}, but the prompt has {len(prompt_ids)} tokens and this model's "
                f"maximum context length is {limit} tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        with self._wake:
            # Sequences whose clients left while waiting must not hold queue places.
            if any(seq.cancelled for seq in self._waiting):
                self._waiting = deque(seq for seq in self._waiting if not seq.cancelled)
        if len(self._waiting) >= self.max_queue:
            raise Overloaded(f"the engine queue is full ({self.max_queue} waiting); retry shortly")
        seq = SequenceState(
            request=request,
            prompt_ids=prompt_ids,
            max_new_tokens=wanted or room,
            loop=asyncio.get_running_loop(),
            queue=asyncio.Queue(),
            deadline=time.monotonic() + request.deadline_s if request.deadline_s else None,
            generator=make_generator(request.params.seed),
            stops=StopScanner(request.params.stop),
        )
        with self._wake:
            self._waiting.append(seq)
            self._wake.notify()
        return SequenceStream(seq)

    # -- scheduler thread --------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while self._wait_for_work():
                with self._step:
                    self._round()
                    if self._retiring:
                        with self._wake:
                            self._retire_adapters()
        for seq in [*self._running, *self._waiting]:
            seq.push(EngineError("the engine was shut down"))
            seq.kv = None
        self._running.clear()
        self._waiting.clear()
        if self._prefix is not None:
            self._prefix.clear()

    def _wait_for_work(self) -> bool:
        """Block until there is something to run; admit newcomers. False when the engine stops."""
        with self._wake:
            while not self._stopping and not self._waiting and not self._running:
                self._wake.wait()
            if self._stopping:
                return False
            self._drop_abandoned()
            self._admit()
            return True

    def _drop_abandoned(self) -> None:
        """Cancelled and timed-out sequences leave before the round is built, waiting or running."""
        now = time.monotonic()
        expired = [seq for seq in [*self._running, *self._waiting] if not seq.cancelled and seq.expired(now)]
        for seq in expired:
            seq.cancelled = True
        self._waiting = deque(seq for seq in self._waiting if not seq.cancelled)
        for seq in [seq for seq in self._running if seq.cancelled]:
            self._release(seq)
        # Told only once its slot and memory are free, so a client that sees the error sees them free.
        for seq in expired:
            seq.push(EngineError("generation exceeded the request timeout", code="timeout"))

    def _admit(self) -> None:
        # First come, first served: a request that does not fit the KV budget yet waits at the head
        # rather than being overtaken forever by smaller ones.
        assert self._kv_shape is not None
        while self._waiting and len(self._running) < self.max_batch:
            seq = self._waiting[0]
            if self._prefix is not None and self._kv_budget.limit is not None:
                # Cached prefixes give way to a sequence that needs their memory (not to one that
                # must wait for running sequences anyway: the cache would be lost for nothing).
                free = self._kv_budget.limit - self._kv_budget.reserved - seq.kv_tokens
                if free >= 0:
                    self._prefix.trim(free)
            # With nothing running it always fits: generate() caps every request at the budget.
            if not self._kv_budget.fits(seq.kv_tokens) and self._running:
                break
            self._waiting.popleft()
            self._kv_budget.take(seq.kv_tokens)
            seq.kv = SequenceKV(self._kv_shape, prompt_tokens=len(seq.prompt_ids), max_tokens=seq.kv_tokens)
            if self._prefix is not None:
                seq.prefix_keys = self._prefix.keys(seq.request.adapter, seq.prompt_ids)
                seq.prefilled = self._prefix.reuse(seq.prefix_keys, len(seq.prompt_ids), seq.kv)
            self._running.append(seq)

    def _round(self) -> None:
        """Advance every running sequence by one fused forward."""
        chunks, producing, prefilled = self._plan()
        if not chunks:
            return
        try:
            logits = batching.forward(self._model, chunks)
        except Exception as exc:  # a model failure ends this round's requests, not the engine
            log.exception("fused forward failed for %d sequences", len(chunks))
            for seq in [seq for seq in self._running if seq.kv in {c.kv for c in chunks}]:
                self._release(seq)
                seq.push(EngineError(f"generation failed: {exc}"))
            return
        if self._prefix is not None:
            self._cache_prompts(prefilled)
        outbox: list[tuple[SequenceState, StreamItem]] = []
        for seq, row in zip(producing, logits, strict=True):
            try:
                # Each sequence samples with its own generator, so what else is in the batch never
                # changes which random numbers it draws (same seed + same input => same output).
                token = pick_token(row, seq.request.params, seq.generator)
                seq.generated.append(token)
                chunk = self._emit(seq, token)
            except Exception as exc:  # e.g. NaN logits: this request fails, the others go on
                log.exception("sampling failed for %s", seq.request.request_id)
                outbox.append((seq, EngineError(f"generation failed: {exc}")))
                self._release(seq)
                continue
            if chunk is not None:
                outbox.append((seq, chunk))
                if chunk.finish_reason is not None:
                    self._release(seq)
        deliver(outbox)

    def _cache_prompts(self, prefilled: list[SequenceState]) -> None:
        """Offer the prompts whose prefill this round completed to the prefix cache."""
        assert self._prefix is not None
        limit = self._kv_budget.limit
        for seq in prefilled:
            if seq.kv is not None and seq.prefix_keys:
                room = None if limit is None else limit - self._kv_budget.reserved
                self._prefix.insert(seq.request.adapter, seq.prefix_keys, seq.kv, room=room)

    def _plan(self) -> tuple[list[batching.Chunk], list[SequenceState], list[SequenceState]]:
        """The round's inputs, the sequences that get a next token from it (in the same order), and
        those whose prompt it completes."""
        planned: list[tuple[batching.Chunk, SequenceState]] = []
        prefilled: list[SequenceState] = []
        prefill_budget = self.prefill_chunk
        for seq in self._running:
            assert seq.kv is not None
            if seq.prefilled < len(seq.prompt_ids):
                if prefill_budget == 0:
                    continue  # waits for the next round; the decoders are not held up
                piece = seq.prompt_ids[seq.prefilled : seq.prefilled + prefill_budget]
                prefill_budget -= len(piece)
                seq.prefilled += len(piece)
                done = seq.prefilled == len(seq.prompt_ids)
                if done:
                    prefilled.append(seq)
                planned.append((batching.Chunk(seq.kv, piece, done, seq.request.adapter), seq))
            else:
                planned.append((batching.Chunk(seq.kv, seq.generated[-1:], True, seq.request.adapter), seq))
        # Sequences of one adapter sit side by side: each LoRA layer then does one delta per adapter.
        if any(chunk.adapter is not None for chunk, _ in planned):
            planned.sort(key=lambda item: item[0].adapter or "")
        chunks = [chunk for chunk, _ in planned]
        producing = [seq for chunk, seq in planned if chunk.wants_logits]
        return chunks, producing, prefilled

    def _emit(self, seq: SequenceState, token: int) -> GenerationChunk | None:
        """What is new in ``seq``'s text (None: nothing safe to show yet); finished if it says so."""
        assert self._prompts is not None
        is_eos = token in self._eos_ids
        text = self._prompts.decode([t for t in seq.generated if t not in self._eos_ids])
        finish: FinishReason | None = None
        stop_at = seq.stops.find(text, seq.emitted) if seq.stops.stops else None
        if stop_at is not None:
            text, finish = text[:stop_at], "stop"
        elif is_eos:
            finish = "stop"
        elif len(seq.generated) >= seq.max_new_tokens:
            finish = "length"
        end = len(text) if finish else seq.stops.safe_end(text)
        delta = text[seq.emitted : end]
        if finish is None and not delta:
            return None
        seq.emitted = end
        return GenerationChunk(
            text=delta,
            prompt_tokens=len(seq.prompt_ids),
            completion_tokens=len(seq.generated),
            finish_reason=finish,
        )

    def _release(self, seq: SequenceState) -> None:
        self._running.remove(seq)
        self._kv_budget.give_back(seq.kv_tokens)
        seq.kv = None  # the sequence's KV memory is freed here, not at the end of the batch


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids from the generation config and the tokenizer (chat models often have two)."""
    ids: set[int] = set()
    generation = getattr(model, "generation_config", None)
    configured = getattr(generation, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
