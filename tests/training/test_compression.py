"""Compression methods on a tiny Llama: each child loads, runs, and differs from its parent as claimed."""

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.local import LocalEngine
from stratum.engine.weights import QUANT_MANIFEST, load_causal_lm, nll_per_text, weights_bytes
from stratum.training.compression.distill import distill, shallow_student
from stratum.training.compression.onnx_export import ONNX_FILE, export_onnx
from stratum.training.compression.prune import prune, sparsity_of
from stratum.training.compression.quantize import quantize
from tests.tiny import build_tiny_llama

TEXTS = [
    "Stratum 是一个企业大模型平台，提供网关、注册表和推理引擎。",
    "The gateway speaks the OpenAI protocol and meters every request.",
    "知识库支持中文检索，回答带有引用。",
    "Quotas stay exact under concurrency.",
]
IDS = torch.tensor([[1, 5, 9, 20, 33, 40, 41, 42]])


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("parent") / "tiny", seed=5)


def logits(path: Path) -> torch.Tensor:
    with torch.inference_mode():
        return load_causal_lm(path)(IDS).logits


def test_int8_quantization_is_smaller_and_keeps_greedy_choices(parent: Path, tmp_path: Path) -> None:
    child = tmp_path / "int8"
    quantize(parent, child)
    assert (child / QUANT_MANIFEST).is_file() and (child / "config.json").is_file()
    assert weights_bytes(child) < 0.6 * weights_bytes(parent)
    before, after = logits(parent), logits(child)
    assert not torch.equal(before, after)  # really quantized
    assert (before.argmax(-1) == after.argmax(-1)).float().mean() >= 0.85


async def test_the_embedded_engine_serves_a_quantized_variant(parent: Path, tmp_path: Path) -> None:
    child = tmp_path / "int8"
    quantize(parent, child)
    engine = LocalEngine(child, max_batch=2, max_queue=4)
    await engine.start()
    try:
        request = GenerationRequest(
            request_id="q",
            params=SamplingParams(max_tokens=6, temperature=0.0),
            messages=[{"role": "user", "content": "你好"}],
        )
        chunks = [chunk async for chunk in engine.generate(request)]
    finally:
        await engine.close()
    assert chunks[-1].finish_reason in ("stop", "length")
    assert 0 < chunks[-1].completion_tokens <= 6


def test_magnitude_pruning_reaches_the_target_sparsity(parent: Path, tmp_path: Path) -> None:
    model = prune(parent, tmp_path / "p50", sparsity=0.5)
    assert sparsity_of(model) == pytest.approx(0.5, abs=0.01)
    reloaded = load_causal_lm(tmp_path / "p50")
    assert sparsity_of(reloaded) == pytest.approx(0.5, abs=0.01)


def test_structured_pruning_shrinks_the_mlp(parent: Path, tmp_path: Path) -> None:
    prune(parent, tmp_path / "s", sparsity=0.5, method="structured")
    reloaded = load_causal_lm(tmp_path / "s")
    assert reloaded.config.intermediate_size == 64  # of 128
    assert weights_bytes(tmp_path / "s") < weights_bytes(parent)
    assert reloaded(IDS).logits.shape == logits(parent).shape


def test_pruning_refuses_bad_sparsity(parent: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        prune(parent, tmp_path / "x", sparsity=1.5)


def test_shallow_student_keeps_every_other_layer(parent: Path) -> None:
    student = shallow_student(load_causal_lm(parent), keep_every=2)
    assert student.config.num_hidden_layers == 1 and len(student.model.layers) == 1
    assert student(IDS).logits.shape == logits(parent).shape


@pytest.fixture(scope="module")
def sharp_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random model is near-uniform (any student matches it); sharpen its head so layers matter."""
    path = build_tiny_llama(tmp_path_factory.mktemp("teacher") / "tiny", seed=6)
    model = load_causal_lm(path)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.mark.slow
def test_distillation_moves_the_student_towards_the_teacher(sharp_teacher: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(sharp_teacher)
    teacher = load_causal_lm(sharp_teacher)
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    mask = batch["attention_mask"].bool()

    def gap(student: torch.nn.Module) -> float:
        with torch.inference_mode():
            t = torch.log_softmax(teacher(**batch).logits[mask], -1)
            s = torch.log_softmax(student(**batch).logits[mask], -1)
            return float(torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean"))

    untrained = gap(shallow_student(teacher, keep_every=2))
    losses: list[float] = []
    student = distill(
        sharp_teacher,
        tmp_path / "kd",
        texts=TEXTS,
        steps=40,
        learning_rate=3e-3,
        hard_label_weight=0.0,
        on_step=lambda _, loss: losses.append(loss),
    )
    assert len(losses) == 40 and losses[-1] < losses[0]
    assert gap(student) < 0.5 * untrained
    assert load_causal_lm(tmp_path / "kd").config.num_hidden_layers == 1


@pytest.mark.slow
def test_distilling_a_pruned_student_keeps_its_zeros(parent: Path, tmp_path: Path) -> None:
    prune(parent, tmp_path / "p", sparsity=0.5)
    student = distill(parent, tmp_path / "pkd", texts=TEXTS, student_dir=tmp_path / "p", steps=5)
    assert sparsity_of(student) == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_onnx_export_matches_pytorch(parent: Path, tmp_path: Path) -> None:
    worst = export_onnx(parent, tmp_path / "onnx", samples=TEXTS[:2])
    assert (tmp_path / "onnx" / ONNX_FILE).is_file()
    assert (tmp_path / "onnx" / "config.json").is_file()  # the registry needs it
    assert worst < 1e-3


def test_nll_per_text_counts_predicted_tokens(parent: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(parent)
    scored = nll_per_text(load_causal_lm(parent), tokenizer, TEXTS[:2])
    assert all(n == len(tokenizer(t)["input_ids"]) - 1 for t, (_, n) in zip(TEXTS, scored, strict=False))
