"""``clean``: strip, normalise width, drop control/zero-width characters, lowercase on request, and
drop rows left empty.

Width: full-width Latin letters, digits and symbols (``ＡＢＣ１２３``) and the ideographic space become
half-width, as does every other NFKC compatibility form (ligatures, circled digits, half-width
katakana). Chinese punctuation that only *looks* full-width under NFKC (``，！？：；（）``) is kept:
turning ``你好，世界！`` into ``你好,世界!`` would damage Chinese text, not normalise it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from stratum.data.formats import FIELDS, map_texts
from stratum.data.schemas import StepReport
from stratum.data.transforms.base import ReportBuilder, Rows, Step

# Full-width forms that are ordinary Chinese punctuation; NFKC would make them ASCII.
CJK_PUNCTUATION = frozenset("，！？：；（）～")
# Zero-width and BOM characters, and C0/C1 controls other than tab and newline.
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def normalise_width(text: str) -> str:
    out: list[str] = []
    run: list[str] = []
    for char in text:
        if char in CJK_PUNCTUATION:
            out.append(unicodedata.normalize("NFKC", "".join(run)))
            run.clear()
            out.append(char)
        else:
            run.append(char)
    out.append(unicodedata.normalize("NFKC", "".join(run)))
    return "".join(out)


def clean_text(text: str, *, strip: bool = True, width: bool = True, lowercase: bool = False) -> str:
    text = _INVISIBLE.sub("", text)
    if width:
        text = normalise_width(text)
    if lowercase:
        text = text.lower()
    if strip:
        text = text.strip()
    return text


def _apply(rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    report = ReportBuilder("clean", fmt, len(rows))
    out: Rows = []
    for index, row in enumerate(rows):
        cleaned = map_texts(
            row,
            fmt,
            lambda text: clean_text(
                text, strip=params["strip"], width=params["normalise_width"], lowercase=params["lowercase"]
            ),
        )
        empty = _empty_field(cleaned, fmt) if params["drop_empty"] else None
        if empty is not None:
            report.drop(index, row, "empty", empty)
            continue
        if cleaned != row:
            report.changed += 1
        out.append(cleaned)
    return out, report.build(len(out))


def _empty_field(row: dict[str, Any], fmt: str) -> str | None:
    if fmt == "chat":
        for i, message in enumerate(row["messages"]):
            if message["role"] != "system" and not message["content"]:
                return f"messages[{i}].content"
        return None
    for field in FIELDS[fmt]:
        if field != "input" and not row[field]:
            return field
    return None


STEP = Step(
    name="clean",
    version=1,
    apply=_apply,
    params={"strip": True, "normalise_width": True, "lowercase": False, "drop_empty": True},
    help="strip, full-width→half-width (keeping Chinese punctuation), drop invisible characters, "
    "lowercase (lowercase=true), drop rows left empty",
)
