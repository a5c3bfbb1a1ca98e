"""Generation suites built from a dataset version's held-out split.

    chat          the last assistant message is the reference, the messages before it the prompt
    instruction   instruction (+ input) is the prompt, output the reference
    preference    prompt → chosen (the preferred answer is the reference)

Item ids are the row's position in the dataset version (``row-17``), and the suite's name is the
dataset ref plus the split, so the same version and split always give the same items and digest:
``eval gate --dataset`` finds the runs it already stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stratum.errors import InvalidRequest
from stratum.evals.suites import Item, Suite


def suite_from_rows(
    rows: Sequence[dict[str, Any]], *, fmt: str, name: str, split: str | None = None
) -> Suite:
    """``rows`` are a dataset version's rows in stored order; only those of ``split`` become items."""
    items: list[Item] = []
    skipped = 0
    for index, row in enumerate(rows):
        if split is not None and row.get("split") != split:
            continue
        item = _item(row, fmt=fmt, item_id=f"row-{index}")
        if item is None:
            skipped += 1
            continue
        items.append(item)
    if not items:
        where = f"split {split!r} of " if split else ""
        raise InvalidRequest(
            f"{where}{name} has no rows usable as eval items"
            + (f" ({skipped} had no reference answer)" if skipped else "")
            + ("; run a split step first (stratum data split)" if split and not skipped else ""),
            param="dataset",
        )
    suffix = f":{split}" if split else ""
    return Suite(name=f"{name}{suffix}", kind="generation", items=tuple(items))


def _item(row: dict[str, Any], *, fmt: str, item_id: str) -> Item | None:
    if fmt == "chat":
        messages = row.get("messages") or []
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None or last == 0 or not str(messages[last].get("content") or "").strip():
            return None
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:last]]
        return Item(id=item_id, messages=prompt, references=(str(messages[last]["content"]),))
    if fmt == "instruction":
        output = str(row.get("output") or "")
        if not output.strip():
            return None
        text = str(row.get("instruction") or "")
        extra = str(row.get("input") or "")
        prompt = f"{text}\n\n{extra}" if extra.strip() else text
        return Item(id=item_id, messages=[{"role": "user", "content": prompt}], references=(output,))
    if fmt == "preference":
        chosen = str(row.get("chosen") or "")
        if not chosen.strip():
            return None
        return Item(
            id=item_id,
            messages=[{"role": "user", "content": str(row.get("prompt") or "")}],
            references=(chosen,),
        )
    raise InvalidRequest(f"cannot build an eval suite from {fmt!r} rows", param="dataset")


def dataset_suite(datasets: Any, ref: str, *, split: str | None = "test") -> tuple[Suite, str]:
    """The suite of ``ref``'s ``split`` (all rows when None) and the dataset version's exact ref.

    ``datasets`` is a ``stratum.data.DatasetService``.
    """
    version = datasets.get(ref)
    rows = datasets.load_rows(version)
    if split is not None and version.splits and split not in version.splits:
        raise InvalidRequest(
            f"{version.ref} has no {split!r} split (it has {', '.join(sorted(version.splits))})",
            param="split",
        )
    if split is not None and not version.splits:
        raise InvalidRequest(
            f"{version.ref} has no splits; run `stratum data split` first or pass --split all",
            param="split",
        )
    return suite_from_rows(rows, fmt=version.format, name=version.ref, split=split), version.ref
