"""``backtranslate``: paraphrase the prompt side through a served model (source → pivot → source).

Each prompt-side text (user messages, instruction and input, or prompt) is translated into the
``pivot`` language and back by the model, through the engine interface (``stratum.engine``: the
CLI uses an ``UpstreamEngine`` pointed at the gateway, so any served model works; tests use the
``FakeEngine``). A variant equal to its original, or empty, is not added; added rows carry
``synthetic: true``. Greedy decoding (temperature 0) so a rerun asks the model the same thing.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from stratum.data.formats import canonical_json
from stratum.data.schemas import StepReport
from stratum.data.transforms.augment import _prompt_side
from stratum.data.transforms.base import ReportBuilder, Rows, Step
from stratum.engine.base import GenerationRequest, SamplingParams, TextEngine
from stratum.errors import InvalidRequest

LANGUAGES = {"zh": "Chinese (简体中文)", "en": "English", "ja": "Japanese", "fr": "French", "de": "German"}
_PROMPT = "Translate the following text into {language}. Answer with the translation only.\n\n{text}"


async def _complete(engine: TextEngine, text: str, language: str, max_tokens: int) -> str:
    request = GenerationRequest(
        request_id=f"backtranslate-{uuid.uuid4().hex[:12]}",
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        messages=[{"role": "user", "content": _PROMPT.format(language=language, text=text)}],
    )
    parts = [chunk.text async for chunk in engine.generate(request)]
    return "".join(parts).strip()


async def _round_trip(engine: TextEngine, text: str, params: dict[str, Any]) -> str:
    if not text.strip():
        return text
    pivot = await _complete(engine, text, LANGUAGES[params["pivot"]], int(params["max_tokens"]))
    return await _complete(engine, pivot, LANGUAGES[params["source"]], int(params["max_tokens"]))


def _texts(row: dict[str, Any], fmt: str) -> list[str]:
    """The prompt-side texts, in the order ``_prompt_side`` visits them."""
    texts: list[str] = []

    def collect(text: str) -> str:
        texts.append(text)
        return text

    _prompt_side(row, fmt, collect)
    return texts


def _replace(row: dict[str, Any], fmt: str, translated: list[str]) -> dict[str, Any]:
    replacements = iter(translated)
    return _prompt_side(row, fmt, lambda _text: next(replacements))


async def _run(rows: Rows, fmt: str, params: dict[str, Any], engine: TextEngine) -> tuple[Rows, StepReport]:
    report = ReportBuilder("backtranslate", fmt, len(rows))
    out: Rows = []
    await engine.start()
    for index, row in enumerate(rows):
        out.append({**row, "synthetic": bool(row.get("synthetic", False))})
        texts = _texts(row, fmt)
        translated = [await _round_trip(engine, text, params) for text in texts]
        variant = _replace(row, fmt, translated)
        if any(not t.strip() for t, o in zip(translated, texts, strict=True) if o.strip()):
            report.drop(index, row, "empty_translation")
        elif canonical_json(variant) == canonical_json(_prompt_side(row, fmt, lambda t: t)):
            report.drop(index, row, "unchanged")
        else:
            out.append({**variant, "synthetic": True})
            report.added += 1
    report.dropped = {f"variant_{k}": v for k, v in report.dropped.items()}
    report.details = {"method": "backtranslate", "model": params["model"], "pivot": params["pivot"]}
    return out, report.build(len(out))


def apply_with(engine: TextEngine, rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    for key in ("source", "pivot"):
        if params[key] not in LANGUAGES:
            raise InvalidRequest(f"backtranslate {key} is one of {', '.join(LANGUAGES)}", param="params")
    if not params["model"]:
        raise InvalidRequest("backtranslate needs model=NAME (a served model)", param="params")
    return asyncio.run(_run_and_close(rows, fmt, params, engine))


async def _run_and_close(
    rows: Rows, fmt: str, params: dict[str, Any], engine: TextEngine
) -> tuple[Rows, StepReport]:
    # ``engine_for`` made this engine for the step: it is closed on the loop that used it.
    try:
        return await _run(rows, fmt, params, engine)
    finally:
        await engine.close()


def _needs_engine(rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    raise InvalidRequest(
        "backtranslate needs a model engine; run it from `stratum data transform`", param="steps"
    )


STEP = Step(
    name="backtranslate",
    version=1,
    apply=_needs_engine,
    params={"model": None, "source": "zh", "pivot": "en", "max_tokens": 512},
    help="paraphrase the prompt side through a served model (model=NAME; zh → en → zh by default); "
    "variants marked synthetic=true",
)
