"""Files uploaded to a KB (``POST /admin/v1/kb/{kb}/files``): one folder per upload under the
artifacts store, each file named by its source (its identity in the KB).

A file stays until it no longer backs anything: an upload whose ingest succeeded drops the older
copies of the same names (their chunks were just replaced; a retry of an old failed job must not
bring the old text back); removing a document drops its copies; deleting the KB drops them all.
The newest copy is kept as the document's original.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from pathlib import Path

from stratum.knowledge.schemas import KbPublic


def uploads_dir(artifacts_dir: Path, kb: KbPublic) -> Path:
    """Where files uploaded to ``kb`` are kept (one folder per upload)."""
    return artifacts_dir / "kb-uploads" / kb.id


def remove_all(artifacts_dir: Path, kb: KbPublic) -> None:
    shutil.rmtree(uploads_dir(artifacts_dir, kb), ignore_errors=True)


def remove(artifacts_dir: Path, kb: KbPublic, names: Iterable[str], *, keep: Path | None = None) -> int:
    """Delete the uploaded copies of ``names`` (in every upload folder but ``keep``), then the
    folders left empty. Returns how many files went."""
    root = uploads_dir(artifacts_dir, kb)
    if not root.is_dir():
        return 0
    wanted = set(names)
    removed = 0
    for folder in root.iterdir():
        if not folder.is_dir() or (keep is not None and folder.resolve() == keep.resolve()):
            continue
        for name in wanted:
            path = folder / name
            # A name is a plain file name (the upload route refuses anything else); a document
            # whose source is a path or URL never came from an upload and matches nothing here.
            if path.parent == folder and path.is_file():
                path.unlink()
                removed += 1
        with contextlib.suppress(OSError):  # not empty
            folder.rmdir()
    return removed


def prune_superseded(artifacts_dir: Path, kb: KbPublic, ingested: Iterable[Path]) -> int:
    """After a successful ingest of ``ingested`` paths: if one is an upload folder of ``kb``, the
    older uploads' copies of its files go. Returns how many files went."""
    root = uploads_dir(artifacts_dir, kb).resolve()
    removed = 0
    for path in ingested:
        folder = path.resolve()
        if folder.parent == root and folder.is_dir():
            names = [p.name for p in folder.iterdir() if p.is_file()]
            removed += remove(artifacts_dir, kb, names, keep=folder)
    return removed
