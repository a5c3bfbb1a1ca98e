"""The demo model: a toy Llama trained on first start, so ``make run`` serves a model offline.

No real model can be downloaded at install time, so Stratum builds one from its own code: a
byte-level BPE tokenizer and a 0.7M-parameter Llama trained for ~20 s on a bundled bilingual
corpus (``demo_corpus/``), saved as an ordinary Hugging Face model directory::

    $STRATUM_HOME/models/stratum-demo/
        config.json  generation_config.json  model.safetensors
        tokenizer.json  tokenizer_config.json (with the chat template)
        README.md (model card: a DEMO model, toy text)  stratum_build.json (recipe fingerprint)

The directory is built once. ``stratum_build.json`` records a fingerprint of the build code
version, the recipe and the corpus; a different fingerprint rebuilds. Builds happen in a staging
directory next to the target, renamed into place only when complete, under a file lock so that two
processes starting together build once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import GenerationConfig
from transformers.utils import logging as transformers_logging

from stratum.engine.demo_card import render_model_card
from stratum.engine.demo_conversations import corpus_digest, load_conversations
from stratum.engine.demo_recipe import DEFAULT_RECIPE, DemoRecipe
from stratum.engine.demo_tokenizer import (
    BOS_TOKEN,
    IM_END,
    PAD_TOKEN,
    special_token_id,
    train_tokenizer,
    wrap_tokenizer,
)
from stratum.engine.demo_training import llama_config, train_demo_model

if sys.platform != "win32":
    import fcntl

DEMO_MODEL_NAME = "stratum-demo"
BUILD_INFO_FILE = "stratum_build.json"
# What a complete build holds; a directory missing any of them is rebuilt.
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    BUILD_INFO_FILE,
)
# Answers in the corpus are under 120 tokens; 256 leaves room without letting a babbling toy run on.
MAX_NEW_TOKENS = 256

Progress = Callable[[str], None]


def demo_model_dir(home: Path) -> Path:
    """Where the demo model lives under ``STRATUM_HOME``."""
    return home / "models" / DEMO_MODEL_NAME


def ensure_demo_model(
    home: Path, *, force: bool = False, progress: Progress | None = None, recipe: DemoRecipe = DEFAULT_RECIPE
) -> Path:
    """The demo model directory under ``home``, built first if missing or built by another recipe."""
    return build_demo_model(demo_model_dir(home), force=force, progress=progress, recipe=recipe)


def read_build_info(model_dir: Path) -> dict[str, Any] | None:
    """The build record of a demo model directory, or None if there is no complete one."""
    try:
        info = json.loads((model_dir / BUILD_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not all((model_dir / name).is_file() for name in MODEL_FILES):
        return None
    return info


def build_demo_model(
    target_dir: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
    recipe: DemoRecipe = DEFAULT_RECIPE,
) -> Path:
    """Build the demo model into ``target_dir`` unless a build of the same recipe is already there.

    ``progress`` receives one human-readable line per step, without a prefix: the server's
    start-up log adds its own ("demo model: …").
    ``recipe`` exists for tests, which build a baby model in a second or two.
    """
    report: Progress = progress or _ignore
    provenance = recipe.provenance(corpus_digest())
    fingerprint = provenance["fingerprint"]
    if not force and _is_current(target_dir, fingerprint):
        report(f"using the cached build in {target_dir}")
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target_dir):
        # Another process may have finished the same build while this one waited for the lock.
        if not force and _is_current(target_dir, fingerprint):
            report(f"using the build another process just made in {target_dir}")
            return target_dir
        _remove_leftovers(target_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.building-", dir=target_dir.parent))
        try:
            _build_into(staging, recipe=recipe, provenance=provenance, report=report)
            _swap_into_place(staging, target_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    report(f"{DEMO_MODEL_NAME} ready in {target_dir}")
    return target_dir


def _ignore(message: str) -> None:
    del message


def _is_current(target_dir: Path, fingerprint: str) -> bool:
    info = read_build_info(target_dir)
    return info is not None and info.get("fingerprint") == fingerprint


def _build_into(staging: Path, *, recipe: DemoRecipe, provenance: dict[str, Any], report: Progress) -> None:
    started = time.perf_counter()
    report(
        f"building {DEMO_MODEL_NAME} (first start only, about 20-30 s on a laptop CPU); "
        "it is a toy that produces toy text, not a real assistant"
    )
    conversations = load_conversations()
    report(
        f"training a byte-level BPE tokenizer ({recipe.vocab_size} tokens) "
        f"on {len(conversations)} conversations"
    )
    tokenizer = train_tokenizer(conversations, vocab_size=recipe.vocab_size)
    chat_tokenizer = wrap_tokenizer(tokenizer, context_length=recipe.context_length)
    # Train on exactly what the chat template renders, so serving sees the format training saw.
    sequences = [
        tokenizer.encode(chat_tokenizer.apply_chat_template(c, tokenize=False), add_special_tokens=False).ids
        for c in conversations
    ]
    config = llama_config(
        recipe,
        bos_id=special_token_id(tokenizer, BOS_TOKEN),
        eos_id=special_token_id(tokenizer, IM_END),
        pad_id=special_token_id(tokenizer, PAD_TOKEN),
    )
    report(
        f"training a {recipe.num_layers}-layer Llama (width {recipe.hidden_size}) "
        f"for {recipe.steps} steps on {sum(map(len, sequences)):,} tokens"
    )
    result = train_demo_model(recipe, config, sequences, progress=report)
    report(
        f"trained {result.parameters:,} parameters in {result.seconds:.0f} s, loss "
        f"{result.first_loss:.2f} at the first step, {result.final_loss:.2f} over the corpus; saving"
    )

    model = result.model
    # Greedy by default: the toy's best output is replaying its corpus; requests may still sample.
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    # safe_serialization is a real flag in transformers 4 (default True) and silently accepted by
    # transformers 5, which only writes safetensors; the file is checked below either way.
    with _quiet_progress_bars():
        model.save_pretrained(staging, safe_serialization=True)
        chat_tokenizer.save_pretrained(staging)
    _pin_tokenizer_config(staging, chat_template=str(chat_tokenizer.chat_template))
    weights = staging / "model.safetensors"
    if not weights.is_file():
        raise RuntimeError(f"transformers {transformers.__version__} did not save {weights.name}")

    build_seconds = time.perf_counter() - started
    (staging / "README.md").write_text(
        render_model_card(
            name=DEMO_MODEL_NAME,
            recipe=recipe,
            parameters=result.parameters,
            conversations=len(conversations),
            corpus_tokens=sum(map(len, sequences)),
            first_loss=result.first_loss,
            final_loss=result.final_loss,
            build_seconds=build_seconds,
            recipe_version=provenance["recipe_version"],
        ),
        encoding="utf-8",
    )
    info = {
        "name": DEMO_MODEL_NAME,
        **provenance,
        "parameters": result.parameters,
        "first_loss": result.first_loss,
        "final_loss": result.final_loss,
        "training_seconds": result.seconds,
        "build_seconds": build_seconds,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    # Written last: its presence is what marks the directory complete.
    (staging / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """No "Writing model shards" tqdm bar in the server's start-up log (it has its own progress)."""
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def _pin_tokenizer_config(model_dir: Path, *, chat_template: str) -> None:
    """Keep the chat template inside tokenizer_config.json and the class loadable by any version.

    transformers 5 writes the template to chat_template.jinja and names the class
    ``TokenizersBackend``, which transformers 4 cannot load; the fast-tokenizer class and an inline
    template load everywhere.
    """
    path = model_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["chat_template"] = chat_template
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)


def _swap_into_place(staging: Path, target_dir: Path) -> None:
    """Rename the finished build onto ``target_dir`` (renames within one directory are atomic)."""
    if not target_dir.exists():
        staging.rename(target_dir)
        return
    # A directory cannot be renamed over a non-empty one: retire the old build first.
    retired = target_dir.with_name(f".{target_dir.name}.old-{uuid.uuid4().hex[:8]}")
    target_dir.rename(retired)
    staging.rename(target_dir)
    shutil.rmtree(retired, ignore_errors=True)


def _remove_leftovers(target_dir: Path) -> None:
    """Staging and retired directories of builds that crashed (safe: we hold the build lock)."""
    if sys.platform == "win32":
        return  # without a lock they may belong to a build running right now
    for pattern in (f".{target_dir.name}.building-*", f".{target_dir.name}.old-*"):
        for leftover in target_dir.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def _build_lock(target_dir: Path) -> Iterator[None]:
    """An exclusive lock per target, so concurrent start-ups build once and the others wait."""
    if sys.platform == "win32":
        # No flock on Windows: concurrent builds may both run, and the renames keep the cache whole.
        yield
        return
    lock_path = target_dir.with_name(f".{target_dir.name}.lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
