"""``DatasetService``: import, version, read, diff and export datasets (see the package docstring)."""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratum.data.formats import (
    FORMATS,
    Format,
    RowError,
    SourceRow,
    canonical_json,
    detect_format,
    normalise_row,
    read_source,
    row_text,
    write_jsonl,
)
from stratum.data.schemas import (
    DatasetDiff,
    DatasetPublic,
    DatasetVersion,
    DroppedExample,
    StepReport,
    Transform,
)
from stratum.data.store import ObjectStore, content_hash, from_table, to_table
from stratum.data.tables import DatasetRow, DatasetVersionRow
from stratum.errors import InvalidRequest, NotFound
from stratum.governance import audit
from stratum.governance.tables import OrgRow, ProjectRow
from stratum.governance.tenancy import find_project
from stratum.settings import Settings
from stratum.storage import Database, advisory_lock, utcnow

if TYPE_CHECKING:
    import pyarrow as pa

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-\u4e00-\u9fff]{1,128}$")
# Errors listed in one message; the rest are counted.
_ERRORS_SHOWN = 5
# Errors kept in an import report (skip_invalid).
_ERRORS_KEPT = 50
_EXAMPLE_CHARS = 200


class InvalidRows(InvalidRequest):
    """An import found rows that do not fit the format; ``errors`` names each line and field."""

    code = "invalid_rows"

    def __init__(self, source: str, errors: list[RowError], rows: int) -> None:
        shown = "; ".join(str(error) for error in errors[:_ERRORS_SHOWN])
        more = f" (and {len(errors) - _ERRORS_SHOWN} more)" if len(errors) > _ERRORS_SHOWN else ""
        bad = len({error.where for error in errors})
        super().__init__(
            f"{source}: {bad} of {rows} rows are invalid: {shown}{more}. "
            "Fix them, or import the valid rows only with --skip-invalid.",
            param=errors[0].field if errors else None,
        )
        self.errors = errors


def parse_ref(ref: str) -> tuple[str | None, str, str | None]:
    """``[ORG/PROJECT/]NAME[@VERSION]`` → (project path or None, name, version or None)."""
    body, _, version = ref.strip().partition("@")
    parts = body.split("/")
    if len(parts) == 3 and all(parts):
        project, name = f"{parts[0]}/{parts[1]}", parts[2]
    elif len(parts) == 1 and parts[0]:
        project, name = None, parts[0]
    else:
        raise InvalidRequest(f"expected [ORG/PROJECT/]NAME[@VERSION], got {ref!r}", param="dataset")
    return project, name, (version or None)


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidRequest(
            f"dataset name {name!r}: use 1-128 letters, digits, Chinese characters, '_', '-' or '.'",
            param="name",
        )
    return name


def name_from_file(path: Path) -> str:
    stem = unicodedata.normalize("NFKC", path.stem)
    cleaned = re.sub(r"[^A-Za-z0-9_.\-\u4e00-\u9fff]+", "-", stem).strip("-.") or "dataset"
    return cleaned[:128]


def example(index: int, reason: str, text: str) -> DroppedExample:
    return DroppedExample(index=index, reason=reason, text=text[:_EXAMPLE_CHARS])


class DatasetService:
    """Serves: the CLI (``stratum data``), the admin API (``/admin/v1/.../datasets``), transforms,
    the review queue, and the jobs/evals domains (``get`` + ``load_rows`` / ``load_table``)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self.db = db
        self._settings = settings
        self.objects = ObjectStore(settings.artifacts_dir / "datasets")

    # -- reading -------------------------------------------------------------------------------

    def get(self, ref: str, *, project: str | None = None) -> DatasetVersion:
        """The version ``ref`` names: ``NAME`` (latest), ``NAME@N``, ``NAME@latest``, ``NAME@<hash prefix>``,
        each optionally prefixed ``ORG/PROJECT/``; ``project`` scopes a bare name to a project."""
        with self._db.session(write=False) as session:
            row, dataset, path = self.version_row(session, ref, project=project)
            return self._public_version(session, row, dataset, path)

    def load_rows(self, version: DatasetVersion | str, *, split: str | None = None) -> list[dict[str, Any]]:
        """The version's rows as dicts (format fields, then ``split``/``synthetic``/… when present)."""
        found = self.get(version) if isinstance(version, str) else version
        rows = from_table(self.objects.read(found.content_hash))
        if split is not None:
            rows = [row for row in rows if row.get("split") == split]
        return rows

    def rows(self, ref: str, *, project: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
        """``load_rows(get(ref))`` in one call."""
        return self.load_rows(self.get(ref, project=project), split=split)

    def load_table(self, version: DatasetVersion | str) -> pa.Table:
        """The version's rows as a pyarrow Table (the stored Parquet file, read as is)."""
        found = self.get(version) if isinstance(version, str) else version
        return self.objects.read(found.content_hash)

    def list_datasets(self, *, project: str | None = None, everything: bool = False) -> list[DatasetPublic]:
        """Datasets of ``project`` (platform datasets when None), or of every project (``everything``)."""
        with self._db.session(write=False) as session:
            query = select(DatasetRow).order_by(DatasetRow.name, DatasetRow.id)
            if not everything:
                project_id = self._project_id(session, project)
                query = query.where(
                    DatasetRow.project_id.is_(None)
                    if project_id is None
                    else DatasetRow.project_id == project_id
                )
            rows = session.scalars(query).all()
            return [self._public_dataset(session, row, with_versions=False) for row in rows]

    def show(self, name: str, *, project: str | None = None) -> DatasetPublic:
        with self._db.session(write=False) as session:
            ref_project, bare, _ = parse_ref(name)
            row = self._dataset_row(session, bare, project=ref_project or project)
            return self._public_dataset(session, row, with_versions=True)

    def diff(self, a: str, b: str, *, project: str | None = None, examples: int = 5) -> DatasetDiff:
        """Rows only in ``a`` / only in ``b``, compared by canonical content (order ignored)."""
        left, right = self.get(a, project=project), self.get(b, project=project)
        rows_a, rows_b = self.load_rows(left), self.load_rows(right)
        keys_a = {canonical_json(row): row for row in rows_a}
        keys_b = {canonical_json(row): row for row in rows_b}
        removed = [row for key, row in keys_a.items() if key not in keys_b]
        added = [row for key, row in keys_b.items() if key not in keys_a]
        return DatasetDiff(
            a=left.ref,
            b=right.ref,
            rows_a=left.row_count,
            rows_b=right.row_count,
            common=len(keys_a.keys() & keys_b.keys()),
            removed=len(removed),
            added=len(added),
            removed_examples=removed[:examples],
            added_examples=added[:examples],
        )

    def export(self, ref: str, target: Path, *, project: str | None = None, split: str | None = None) -> int:
        """Write the version to ``target`` (.jsonl, .csv or .parquet by suffix); returns the row count."""
        version = self.get(ref, project=project)
        rows = self.load_rows(version, split=split)
        suffix = target.suffix.lower()
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp")
        try:
            if suffix in (".jsonl", ".ndjson"):
                temp.write_text(write_jsonl(rows), encoding="utf-8")
            elif suffix == ".parquet":
                import pyarrow.parquet as pq

                pq.write_table(to_table(version.format, rows), temp)
            elif suffix == ".csv":
                _write_csv(temp, rows)
            else:
                raise InvalidRequest(f"export to .jsonl, .csv or .parquet, not {suffix!r}", param="output")
            temp.replace(target)
        finally:
            temp.unlink(missing_ok=True)
        return len(rows)

    # -- writing -------------------------------------------------------------------------------

    def import_file(
        self,
        path: Path,
        *,
        name: str | None = None,
        fmt: str = "auto",
        project: str | None = None,
        skip_invalid: bool = False,
        description: str | None = None,
        actor: str = "local",
    ) -> DatasetVersion:
        """Validate and import a JSONL / CSV / Parquet file as a new version of ``name``."""
        if not path.is_file():
            raise InvalidRequest(f"no such file: {path}", param="file")
        return self.import_records(
            read_source(path),
            name=name or name_from_file(path),
            fmt=fmt,
            project=project,
            skip_invalid=skip_invalid,
            source=path.name,
            description=description,
            actor=actor,
        )

    def import_records(
        self,
        records: Iterable[SourceRow],
        *,
        name: str,
        fmt: str = "auto",
        project: str | None = None,
        skip_invalid: bool = False,
        source: str = "rows",
        description: str | None = None,
        actor: str = "local",
    ) -> DatasetVersion:
        check_name(name)
        if fmt not in ("auto", *FORMATS):
            raise InvalidRequest(f"format must be auto, chat, instruction or preference, not {fmt!r}")
        chosen: Format | None = None if fmt == "auto" else fmt  # type: ignore[assignment]
        rows: list[dict[str, Any]] = []
        errors: list[RowError] = []
        total = 0
        ignored: set[str] = set()
        for record in records:
            total += 1
            if chosen is None and isinstance(record.value, dict):
                chosen = detect_format(record.value)
                if chosen is None:
                    raise InvalidRequest(
                        f"{source}, {record.where}: cannot tell the format from the fields "
                        f"{sorted(record.value)}; expected messages (chat), instruction/input/output "
                        "or prompt/chosen/rejected (preference), or pass --format",
                        param="format",
                    )
            if chosen is None:
                normalised, row_errors = None, [record.value] if isinstance(record.value, RowError) else []
            else:
                normalised, row_errors = normalise_row(record.value, chosen, record.where)
                if isinstance(record.value, dict):
                    ignored.update(set(record.value) - _known_fields(chosen))
            if normalised is None:
                errors.extend(row_errors or [RowError(record.where, "(row)", "not a JSON object")])
            else:
                rows.append(normalised)
        if chosen is None or total == 0:
            raise InvalidRequest(f"{source}: no rows to import", param="file")
        if errors and not skip_invalid:
            raise InvalidRows(source, errors, total)
        if not rows:
            raise InvalidRows(source, errors, total)
        bad_lines = len({error.where for error in errors})
        report = StepReport(
            step="import",
            rows_in=total,
            rows_out=len(rows),
            dropped={"invalid": bad_lines} if bad_lines else {},
            examples=[
                example(_position(error.where), "invalid", str(error)) for error in errors[:_ERRORS_SHOWN]
            ],
            details={
                "source": source,
                "errors": [str(error) for error in errors[:_ERRORS_KEPT]],
                "ignored_columns": sorted(ignored),
            },
        )
        return self.commit_version(
            name=name,
            project=project,
            fmt=chosen,
            rows=rows,
            parent=None,
            transform=Transform(name="import", params={"source": source, "format": fmt}),
            report=report,
            description=description,
            actor=actor,
        )

    def commit_version(
        self,
        *,
        name: str,
        project: str | None,
        fmt: str,
        rows: list[dict[str, Any]],
        parent: DatasetVersion | None,
        transform: Transform,
        report: StepReport,
        description: str | None = None,
        actor: str = "local",
        after: Callable[[Session, DatasetVersionRow], None] | None = None,
    ) -> DatasetVersion:
        """Store ``rows`` as the next version of ``name`` (created if new): file first, then one
        transaction (``after`` runs inside it); a failed transaction removes a file it had just written."""
        digest = content_hash(fmt, rows)
        existed = self.objects.path(digest).exists()
        self.objects.write(digest, fmt, rows)
        try:
            with self._db.session() as session:
                advisory_lock(session, f"data.dataset:{project}:{name}")
                project_id = self._project_id(session, project)
                dataset = _find_dataset(session, name, project_id)
                if dataset is None:
                    dataset = DatasetRow(
                        project_id=project_id,
                        name=name,
                        format=fmt,
                        description=description,
                        last_version=0,
                        created_at=utcnow(),
                    )
                    session.add(dataset)
                    session.flush()
                elif dataset.format != fmt:
                    raise InvalidRequest(
                        f"dataset {name!r} holds {dataset.format} rows; these are {fmt}", param="format"
                    )
                parent_id = None
                if parent is not None:
                    parent_row, _, _ = self.version_row(session, parent.ref)
                    parent_id = parent_row.id
                elif dataset.last_version:
                    parent_id = session.scalars(
                        select(DatasetVersionRow.id).where(
                            DatasetVersionRow.dataset_id == dataset.id,
                            DatasetVersionRow.number == dataset.last_version,
                        )
                    ).one()
                dataset.last_version += 1
                row = DatasetVersionRow(
                    dataset_id=dataset.id,
                    number=dataset.last_version,
                    content_hash=digest,
                    rows=len(rows),
                    parent_id=parent_id,
                    transform=transform.model_dump(mode="json"),
                    report={**report.model_dump(mode="json"), "splits": _split_counts(rows)},
                    created_by=actor,
                    created_at=utcnow(),
                )
                session.add(row)
                session.flush()
                if after is not None:
                    after(session, row)  # e.g. the review queue of a labelled version, same transaction
                public = self._public_version(session, row, dataset, project)
                if public.parent is not None:
                    record_lineage(session, public, actor=actor)
                org_id = session.get(ProjectRow, project_id).org_id if project_id else None  # type: ignore[union-attr]
                audit.append(
                    session,
                    actor=actor,
                    action="dataset.version",
                    target=public.ref,
                    org_id=org_id,
                    project_id=project_id,
                    detail={"transform": transform.name, "rows": len(rows), "content_hash": digest},
                )
                return public
        except BaseException:
            if not existed and not self._hash_in_use(digest):
                self.objects.path(digest).unlink(missing_ok=True)
            raise

    # -- internals -----------------------------------------------------------------------------

    def _hash_in_use(self, digest: str) -> bool:
        with self._db.session(write=False) as session:
            found = session.scalars(
                select(DatasetVersionRow.id).where(DatasetVersionRow.content_hash == digest).limit(1)
            ).first()
            return found is not None

    def _project_id(self, session: Session, project: str | None) -> str | None:
        if project is None:
            return None
        _, row = find_project(session, project)
        return row.id

    def _dataset_row(self, session: Session, name: str, *, project: str | None) -> DatasetRow:
        row = _find_dataset(session, name, self._project_id(session, project))
        if row is None:
            where = f" in project {project}" if project else ""
            raise NotFound(f"No dataset named {name!r}{where}.", param="dataset", code="dataset_not_found")
        return row

    def version_row(
        self, session: Session, ref: str, *, project: str | None = None
    ) -> tuple[DatasetVersionRow, DatasetRow, str | None]:
        ref_project, name, version = parse_ref(ref)
        path = ref_project or project
        dataset = self._dataset_row(session, name, project=path)
        query = select(DatasetVersionRow).where(DatasetVersionRow.dataset_id == dataset.id)
        if version in (None, "latest"):
            query = query.where(DatasetVersionRow.number == dataset.last_version)
        elif version.isdigit():
            query = query.where(DatasetVersionRow.number == int(version))
        elif re.fullmatch(r"[0-9a-f]{6,64}", version):
            query = query.where(DatasetVersionRow.content_hash.startswith(version)).order_by(
                DatasetVersionRow.number.desc()
            )
        else:
            raise InvalidRequest(
                f"version {version!r}: use a number, 'latest' or a content-hash prefix (6+ hex digits)",
                param="dataset",
            )
        row = session.scalars(query.limit(1)).first()
        if row is None:
            raise NotFound(
                f"Dataset {name!r} has no version {version!r}.", param="dataset", code="version_not_found"
            )
        return row, dataset, path

    def _project_path(self, session: Session, project_id: str | None) -> str | None:
        if project_id is None:
            return None
        project = session.get(ProjectRow, project_id)
        assert project is not None
        org = session.get(OrgRow, project.org_id)
        assert org is not None
        return f"{org.name}/{project.name}"

    def _public_version(
        self, session: Session, row: DatasetVersionRow, dataset: DatasetRow, project: str | None = None
    ) -> DatasetVersion:
        path = project if project is not None else self._project_path(session, dataset.project_id)
        prefix = f"{path}/" if path else ""
        parent = None
        if row.parent_id is not None:
            parent_row = session.get(DatasetVersionRow, row.parent_id)
            if parent_row is not None:
                parent = f"{prefix}{dataset.name}@{parent_row.number}"
        return DatasetVersion(
            dataset=dataset.name,
            project=path,
            number=row.number,
            ref=f"{prefix}{dataset.name}@{row.number}",
            format=dataset.format,  # type: ignore[arg-type]
            content_hash=row.content_hash,
            row_count=row.rows,
            parent=parent,
            transform=Transform.model_validate(row.transform),
            report=row.report,
            path=str(self.objects.path(row.content_hash).relative_to(self._settings.home)),
            splits=dict(row.report.get("splits") or {}),
            created_by=row.created_by,
            created_at=row.created_at,
        )

    def _public_dataset(self, session: Session, row: DatasetRow, *, with_versions: bool) -> DatasetPublic:
        path = self._project_path(session, row.project_id)
        versions: list[DatasetVersion] = []
        if with_versions:
            version_rows = session.scalars(
                select(DatasetVersionRow)
                .where(DatasetVersionRow.dataset_id == row.id)
                .order_by(DatasetVersionRow.number)
            ).all()
            versions = [self._public_version(session, v, row, path) for v in version_rows]
        return DatasetPublic(
            name=row.name,
            project=path,
            format=row.format,  # type: ignore[arg-type]
            description=row.description,
            latest=row.last_version,
            created_at=row.created_at,
            versions=versions,
        )


def record_lineage(session: Session, version: DatasetVersion, *, actor: str) -> None:
    """A ``dataset:parent → dataset:child`` edge (relation ``derived``, the transform in metadata) in
    the registry's lineage graph, in the version's own transaction. The lineage graph arrives with
    the releases work (``stratum.registry.lineage``); without it there is nothing to record into."""
    try:
        lineage = importlib.import_module("stratum.registry.lineage")
    except ImportError:
        return
    assert version.parent is not None
    lineage.add_edge(
        session,
        source=("dataset", version.parent),
        target=("dataset", version.ref),
        relation="derived",
        actor=actor,
        metadata={
            "transform": version.transform.model_dump(mode="json"),
            "content_hash": version.content_hash,
        },
    )


def _position(where: str) -> int:
    """The number in ``line 3`` / ``row 3``."""
    digits = "".join(ch for ch in where if ch.isdigit())
    return int(digits) if digits else 0


def _split_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        if row.get("split"):
            counts[row["split"]] = counts.get(row["split"], 0) + 1
    return counts


def _known_fields(fmt: str) -> set[str]:
    from stratum.data.formats import FIELDS, META_FIELDS

    extra = {"conversations"} if fmt == "chat" else set()
    return {*FIELDS[fmt], *META_FIELDS, *extra}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import json

    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                    for k, v in row.items()
                }
            )


def summary_text(row: dict[str, Any], fmt: str) -> str:
    return row_text(row, fmt)[:_EXAMPLE_CHARS]


def _find_dataset(session: Session, name: str, project_id: str | None) -> DatasetRow | None:
    """The dataset ``name`` of a project (``project_id`` None: the platform's own datasets)."""
    owner = DatasetRow.project_id.is_(None) if project_id is None else DatasetRow.project_id == project_id
    return session.scalars(select(DatasetRow).where(DatasetRow.name == name, owner)).one_or_none()
