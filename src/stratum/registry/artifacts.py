"""Artifact tiers through fsspec: a local directory (hot, served from) and an object store (cold).

    hot    ``$STRATUM_HOME/artifacts/NAME/VERSION`` on local disk: what the embedded engine loads
    cold   ``$STRATUM_ARTIFACTS_URL/NAME/VERSION``, e.g. ``s3://models/stratum`` (S3, MinIO: any
           fsspec URL; ``STRATUM_ARTIFACTS_ENDPOINT_URL`` points s3fs at a MinIO/S3-compatible server)

``ArtifactService.move`` copies a version's files to the other tier, recomputes the checksum
*on the destination* (the same sha256 as ``checksum.directory_checksum``, read back through
fsspec), and only when it equals the registered checksum switches the version's ``artifact_uri``
and deletes the source copy. A directory the user registered with ``--path`` is never deleted: it
is not ours. A cold version is not served until it is moved back (the engine loads local files).

s3fs is an extra: ``pip install 'stratum[s3]'``.
"""

from __future__ import annotations

import hashlib
import importlib
import posixpath
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stratum.errors import Conflict, InvalidRequest
from stratum.registry.schemas import ModelVersionPublic, parse_ref
from stratum.registry.service import RegistryService
from stratum.registry.tables import ModelVersionRow
from stratum.storage import Database

Tier = Literal["hot", "cold"]
S3_INSTALL_HINT = "pip install 'stratum[s3]'"
_BLOCK = 1 << 20  # as in checksum.py: 1 MiB reads


def filesystem(url: str, *, endpoint_url: str | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a URL or local path."""
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        try:
            importlib.import_module("s3fs")
        except ImportError as exc:
            raise ImportError(f"S3 artifact storage needs s3fs; install it with: {S3_INSTALL_HINT}") from exc
        if endpoint_url:
            options["client_kwargs"] = {"endpoint_url": endpoint_url}
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path


def fs_checksum(fs: Any, root: str) -> str:
    """``checksum.directory_checksum`` computed through any fsspec filesystem."""
    root = root.rstrip("/")
    files = []
    for path, info in fs.find(root, detail=True).items():
        rel = posixpath.relpath(path, root)
        if any(part.startswith(".") for part in rel.split("/")) or info.get("type") != "file":
            continue
        files.append((rel, path, int(info["size"])))
    files.sort(key=lambda item: item[0])
    digest = hashlib.sha256()
    for rel, path, size in files:
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(struct.pack("<Q", size))
        with fs.open(path, "rb") as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class MoveResult:
    ref: str
    tier: Tier
    source: str
    destination: str
    checksum: str
    files: int
    bytes: int
    source_deleted: bool


class ArtifactService:
    """Serves: ``stratum models move`` (and later the console): moving versions between tiers."""

    def __init__(
        self,
        db: Database,
        registry: RegistryService,
        *,
        hot_dir: Path,
        cold_url: str | None,
        endpoint_url: str | None = None,
    ) -> None:
        self._db = db
        self._registry = registry
        self._hot = hot_dir
        self._cold = cold_url.rstrip("/") if cold_url else None
        self._endpoint = endpoint_url

    @staticmethod
    def tier_of(version: ModelVersionPublic) -> Tier | None:
        uri = version.artifact_uri
        if not uri or (version.source == "encoder" and ":" in uri and not Path(uri).exists()):
            return None
        return "cold" if "://" in uri else "hot"

    def move(self, ref: str, *, tier: Tier, actor: str = "system") -> MoveResult:
        if tier not in ("hot", "cold"):
            raise InvalidRequest(f"tier must be 'hot' or 'cold', got {tier!r}.", param="tier")
        name, number = parse_ref(ref)
        if not isinstance(number, int):
            raise InvalidRequest("Name one exact version to move, as in NAME@2.", param="ref")
        version = self._registry.resolve(ref)
        current = self.tier_of(version)
        if current is None or version.checksum is None:
            raise InvalidRequest(
                f"{version.ref} has no artifact files to move (source {version.source}).", param="ref"
            )
        if current == tier:
            raise Conflict(
                f"{version.ref} is already in the {tier} tier ({version.artifact_uri}).", param="tier"
            )
        if tier == "cold" and self._cold is None:
            raise InvalidRequest(
                "No cold tier is configured: set STRATUM_ARTIFACTS_URL (e.g. s3://bucket/prefix).",
                param="tier",
            )
        assert version.artifact_uri is not None
        src_fs, src_path = filesystem(version.artifact_uri, endpoint_url=self._endpoint)
        if tier == "cold":
            assert self._cold is not None
            destination = f"{self._cold}/{name}/{number}"
        else:
            destination = str(self._hot / name / str(number))
        dst_fs, dst_path = filesystem(destination, endpoint_url=self._endpoint)
        if dst_fs.exists(dst_path) and dst_fs.find(dst_path):
            raise Conflict(f"{destination} already holds files; remove them first.", param="tier")
        files, size = self._copy(src_fs, src_path, dst_fs, dst_path)
        checksum = fs_checksum(dst_fs, dst_path)
        if checksum != version.checksum:
            dst_fs.rm(dst_path, recursive=True)
            raise Conflict(
                f"Checksum mismatch after copying {version.ref} to {destination}: "
                f"{checksum[:12]}… instead of {version.checksum[:12]}…; the copy was removed.",
                param="tier",
            )
        with self._db.session() as session:
            row = session.get(ModelVersionRow, version.id)
            if row is None or row.artifact_uri != version.artifact_uri:
                dst_fs.rm(dst_path, recursive=True)
                raise Conflict(f"{version.ref} changed while it was being moved; try again.", param="ref")
            row.artifact_uri = destination
            row.meta = {**row.meta, "tier": tier, "moved_by": actor}
        # Only copies the platform made are deleted: a user's --path directory is left alone.
        owned = current == "cold" or self._is_owned(Path(version.artifact_uri))
        if owned:
            src_fs.rm(src_path, recursive=True)
        return MoveResult(
            ref=version.ref,
            tier=tier,
            source=version.artifact_uri,
            destination=destination,
            checksum=checksum,
            files=files,
            bytes=size,
            source_deleted=owned,
        )

    def _is_owned(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self._hot.resolve())
        except ValueError:
            return False
        return True

    @staticmethod
    def _copy(src_fs: Any, src: str, dst_fs: Any, dst: str) -> tuple[int, int]:
        """Stream every file (hidden ones excluded, as in the checksum) from one fs to the other."""
        src = src.rstrip("/")
        count = total = 0
        for path, info in sorted(src_fs.find(src, detail=True).items()):
            rel = posixpath.relpath(path, src)
            if any(part.startswith(".") for part in rel.split("/")) or info.get("type") != "file":
                continue
            target = f"{dst.rstrip('/')}/{rel}"
            parent = posixpath.dirname(target)
            if parent:
                dst_fs.makedirs(parent, exist_ok=True)
            with src_fs.open(path, "rb") as reader, dst_fs.open(target, "wb") as writer:
                while block := reader.read(_BLOCK):
                    writer.write(block)
                    total += len(block)
            count += 1
        return count, total
