"""The demo model's training corpus: chat conversations bundled as ``demo_corpus/*.txt``.

Each file holds conversations separated by blank lines, one turn per line written ``role: text``
(roles: system, user, assistant, tool); lines starting with ``#`` are comments. A plain-text format
keeps the corpus easy to review and to extend in Chinese and English without escaping JSON.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable

Message = dict[str, str]
Conversation = list[Message]

ROLES = ("system", "user", "assistant", "tool")
CORPUS_PACKAGE = "stratum.engine"
CORPUS_DIR = "demo_corpus"


def corpus_files() -> list[Traversable]:
    """The bundled corpus files, sorted by name so the training order never depends on the filesystem."""
    root = resources.files(CORPUS_PACKAGE).joinpath(CORPUS_DIR)
    return sorted((f for f in root.iterdir() if f.name.endswith(".txt")), key=lambda f: f.name)


def parse_conversations(text: str, *, source: str = "<text>") -> list[Conversation]:
    """Parse the ``role: text`` format; raise ``ValueError`` naming the line on a malformed turn."""
    conversations: list[Conversation] = []
    current: Conversation = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        if not line:
            if current:
                conversations.append(current)
                current = []
            continue
        role, sep, content = line.partition(":")
        if not sep or role not in ROLES or not content.strip():
            raise ValueError(f"{source}:{number}: expected 'role: text' with role in {ROLES}, got {raw!r}")
        current.append({"role": role, "content": content.strip()})
    if current:
        conversations.append(current)
    return conversations


def load_conversations() -> list[Conversation]:
    """Every conversation of the bundled corpus, in file order."""
    conversations: list[Conversation] = []
    for path in corpus_files():
        conversations.extend(parse_conversations(path.read_text(encoding="utf-8"), source=path.name))
    return conversations


def corpus_digest() -> str:
    """A hash of the corpus files (names and bytes): editing the corpus must rebuild the cached model."""
    digest = hashlib.sha256()
    for path in corpus_files():
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
