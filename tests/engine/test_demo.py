"""The demo model: corpus, tokenizer, chat template, build cache, and (slow) the real recipe."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from stratum.engine import demo, demo_recipe, demo_training
from stratum.engine.demo import (
    BUILD_INFO_FILE,
    DEMO_MODEL_NAME,
    MODEL_FILES,
    build_demo_model,
    demo_model_dir,
    ensure_demo_model,
    read_build_info,
)
from stratum.engine.demo_conversations import ROLES, load_conversations, parse_conversations
from stratum.engine.demo_recipe import DEFAULT_RECIPE, DemoRecipe

# A baby recipe (as nanoGPT has): the whole pipeline in ~1 s, weights meaningless.
BABY = DemoRecipe(
    # 256 bytes + 4 specials + a few dozen merges.
    vocab_size=300,
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    intermediate_size=64,
    context_length=256,
    block_size=128,
    batch_size=4,
    steps=3,
    warmup_steps=1,
)

MIXED_TEXTS = [
    "Stratum 是什么？",
    "混合 text with English, 中文标点：「引号」、顿号。",
    "emoji 🎉👍🏽 and ZWJ 👨‍👩‍👧 sequences",
    "  leading spaces, tabs\tand\nnew lines\n\n",
    "日本語とかな、한국어, Ελληνικά, العربية",
    "<|im_start|> looks special but is text here",
    "",
]


@pytest.fixture(scope="module")
def baby_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_model(tmp_path_factory.mktemp("demo") / DEMO_MODEL_NAME, recipe=BABY)


@pytest.fixture(scope="module")
def tokenizer(baby_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(baby_dir)


# --- corpus -------------------------------------------------------------------------------------


def test_parse_conversations_reads_turns_comments_and_chinese() -> None:
    text = "# comment\nuser: 你好：Stratum?\nassistant: 你好！\n\n\nsystem: s\nuser: u\n"
    assert parse_conversations(text) == [
        [{"role": "user", "content": "你好：Stratum?"}, {"role": "assistant", "content": "你好！"}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
    ]


@pytest.mark.parametrize("line", ["narrator: hi", "user:", "no colon"])
def test_parse_conversations_names_the_bad_line(line: str) -> None:
    with pytest.raises(ValueError, match=r"corpus\.txt:2"):
        parse_conversations(f"user: ok\n{line}\n", source="corpus.txt")


def test_bundled_corpus_is_bilingual_chat() -> None:
    conversations = load_conversations()
    assert len(conversations) > 100
    assert all(m["role"] in ROLES for c in conversations for m in c)
    assert all(c[-1]["role"] == "assistant" for c in conversations)
    contents = [m["content"] for c in conversations for m in c]
    assert any("什么是 RAG" in text for text in contents)
    assert any("What is RAG?" in text for text in contents)


# --- the built directory ------------------------------------------------------------------------


def test_directory_layout(baby_dir: Path) -> None:
    for name in MODEL_FILES:
        assert (baby_dir / name).is_file(), name
    config = json.loads((baby_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == BABY.hidden_size
    tokenizer_config = json.loads((baby_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer_config["chat_template"]
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    generation = json.loads((baby_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"]
    card = (baby_dir / "README.md").read_text()
    assert "DEMO model" in card and "toy text" in card and "not a real assistant" in card
    info = read_build_info(baby_dir)
    assert info is not None
    assert info["recipe_version"] == demo_recipe.RECIPE_VERSION
    assert info["recipe"]["steps"] == BABY.steps
    # Nothing left next to it but the lock file.
    assert {p.name for p in baby_dir.parent.iterdir()} <= {DEMO_MODEL_NAME, f".{DEMO_MODEL_NAME}.lock"}


def test_tokenizer_special_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    assert tokenizer.bos_token == "<|bos|>"
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") is not None
    assert tokenizer.model_max_length == BABY.context_length


@pytest.mark.parametrize("text", MIXED_TEXTS)
def test_tokenizer_round_trips_any_text(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_plain_encoding_starts_with_bos(tokenizer: PreTrainedTokenizerBase) -> None:
    ids = tokenizer.encode("什么是 RAG？")
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "什么是 RAG？"


def test_chat_template_renders_chatml_for_every_role(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [
        {"role": "system", "content": "你是演示模型。"},
        {"role": "user", "content": [{"type": "text", "text": "What time is it?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "get_time", "arguments": "{}"}}],
        },
        {"role": "tool", "content": "14:30"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|bos|><|im_start|>system\n你是演示模型。<|im_end|>\n"
        "<|im_start|>user\nWhat time is it?<|im_end|>\n"
        '<|im_start|>assistant\n{"name": "get_time", "arguments": {}}<|im_end|>\n'
        "<|im_start|>tool\n14:30<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    closed = tokenizer.apply_chat_template(messages[:2], tokenize=False)
    assert closed.endswith("What time is it?<|im_end|>\n")


def test_chat_template_tokens_carry_one_bos(tokenizer: PreTrainedTokenizerBase) -> None:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Stratum 是什么？"}], add_generation_prompt=True, return_dict=False
    )
    assert ids.count(tokenizer.bos_token_id) == 1
    assert (
        tokenizer.decode(ids)
        == "<|bos|><|im_start|>user\nStratum 是什么？<|im_end|>\n<|im_start|>assistant\n"
    )


def test_generation_runs_offline(baby_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    model = AutoModelForCausalLM.from_pretrained(baby_dir)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is Stratum?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(output[0]), str)


# --- cache, determinism ------------------------------------------------------------------------


def _fail_training(*args: object, **kwargs: object) -> None:
    raise AssertionError("the cached model was rebuilt")


def test_cached_build_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ensure_demo_model(tmp_path, recipe=BABY)
    assert path == demo_model_dir(tmp_path) == tmp_path / "models" / DEMO_MODEL_NAME
    built_at = (path / "model.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(demo, "train_demo_model", _fail_training)
    messages: list[str] = []
    assert ensure_demo_model(tmp_path, recipe=BABY, progress=messages.append) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == built_at
    assert messages == [f"using the cached build in {path}"]


def test_changed_recipe_rebuilds(tmp_path: Path) -> None:
    path = ensure_demo_model(tmp_path, recipe=BABY)
    first = read_build_info(path)
    messages: list[str] = []
    ensure_demo_model(tmp_path, recipe=replace(BABY, steps=BABY.steps + 1), progress=messages.append)
    second = read_build_info(path)
    assert first is not None and second is not None
    assert second["fingerprint"] != first["fingerprint"]
    assert second["recipe"]["steps"] == BABY.steps + 1
    assert any(f"building {DEMO_MODEL_NAME}" in m for m in messages)


def test_recipe_version_bump_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ensure_demo_model(tmp_path, recipe=BABY)
    monkeypatch.setattr(demo_recipe, "RECIPE_VERSION", demo_recipe.RECIPE_VERSION + 1)
    ensure_demo_model(tmp_path, recipe=BABY)
    info = read_build_info(path)
    assert info is not None and info["recipe_version"] == demo_recipe.RECIPE_VERSION


def test_incomplete_directory_is_rebuilt(tmp_path: Path) -> None:
    path = ensure_demo_model(tmp_path, recipe=BABY)
    (path / BUILD_INFO_FILE).unlink()
    (path.parent / f".{DEMO_MODEL_NAME}.building-crashed").mkdir()
    ensure_demo_model(tmp_path, recipe=BABY)
    assert read_build_info(path) is not None
    assert not (path.parent / f".{DEMO_MODEL_NAME}.building-crashed").exists()


def test_failed_build_keeps_the_old_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ensure_demo_model(tmp_path, recipe=BABY)
    monkeypatch.setattr(demo, "train_demo_model", _fail_training)
    with pytest.raises(AssertionError):
        ensure_demo_model(tmp_path, recipe=BABY, force=True)
    assert read_build_info(path) is not None
    assert sorted(p.name for p in path.parent.iterdir()) == [f".{DEMO_MODEL_NAME}.lock", DEMO_MODEL_NAME]


def test_concurrent_start_ups_build_once(tmp_path: Path) -> None:
    # flock locks open files, so two threads exclude each other exactly as two processes do.
    messages: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(
            pool.map(lambda _: ensure_demo_model(tmp_path, recipe=BABY, progress=messages.append), [1, 2])
        )
    assert paths[0] == paths[1]
    assert sum(f"building {DEMO_MODEL_NAME}" in m for m in messages) == 1
    # The other one waited for the lock (or, if it started late, found the finished build).
    assert sum("another process just made" in m or "using the cached build" in m for m in messages) == 1


def test_build_is_deterministic_and_leaves_global_rng_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    # Real widths (the matmuls of the baby are too small to be split across threads), few steps.
    recipe = replace(DEFAULT_RECIPE, vocab_size=512, num_layers=1, steps=2)
    first = read_build_info(build_demo_model(tmp_path / "a", recipe=recipe))
    assert torch.equal(torch.rand(1), expected_next)
    assert torch.get_num_threads() == threads

    # A second build, on more threads: the thread count must not change the weights.
    monkeypatch.setattr(demo_training, "TRAINING_THREADS", 2)
    second = read_build_info(build_demo_model(tmp_path / "b", recipe=recipe))
    assert first is not None and second is not None
    assert first["weights_sha256"] == second["weights_sha256"]
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()


def test_progress_reports_each_step(tmp_path: Path) -> None:
    messages: list[str] = []
    build_demo_model(tmp_path / DEMO_MODEL_NAME, recipe=BABY, progress=messages.append)
    text = "\n".join(messages)
    for step in (
        f"building {DEMO_MODEL_NAME}",
        "tokenizer",
        f"training step {BABY.steps}/{BABY.steps}",
        "ready",
    ):
        assert step in text


# --- the real recipe ----------------------------------------------------------------------------


@pytest.mark.slow
def test_default_recipe_answers_corpus_questions(demo_home: Path) -> None:
    """The shipped recipe: builds in budget and answers in-corpus questions, ending the turn.

    ``demo_home`` is the session's one build of it (the e2e demo server starts on a copy)."""
    path = demo_model_dir(demo_home)
    info = read_build_info(path)
    assert info is not None
    assert info["recipe"] == json.loads(json.dumps(DEFAULT_RECIPE.__dict__))
    assert info["final_loss"] < 1.0
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    for question, expected in [("What is Stratum?", "enterprise"), ("Stratum 是什么？", "企业级")]:
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        output = model.generate(**inputs, max_new_tokens=96)
        answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
        assert expected in answer
        assert answer.endswith("<|im_end|>")
