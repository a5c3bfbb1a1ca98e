"""``/admin/v1/orgs/{org}/projects/{project}/datasets``: a project's datasets, versions, transforms
and review queue.

Every route resolves the project first and asks the policy (``datasets.read`` / ``datasets.write``)
with that project as the tenant, so a key of another org or (for developer and viewer keys) another
project gets the same 403 as for a name that does not exist. Datasets are looked up inside the
resolved project only.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Query, status

from stratum.data import DatasetPublic, DatasetService, DatasetVersion
from stratum.data import feedback as feedback_data
from stratum.data.feedback import FeedbackDataset
from stratum.data.formats import SourceRow
from stratum.data.review import KeywordLabeller, ReviewService
from stratum.data.schemas import (
    DatasetDiff,
    DatasetImport,
    FeedbackDatasetRequest,
    LabelRequest,
    LabelResult,
    ReviewDecision,
    ReviewItem,
    TransformRequest,
)
from stratum.data.transforms import TransformService
from stratum.errors import InvalidRequest
from stratum.gateway.deps import ContextDep, RequestContext, StateDep
from stratum.gateway.state import AppState

router = APIRouter(prefix="/admin/v1/orgs/{org}/projects/{project}/datasets", tags=["datasets"])


async def _scope(context: RequestContext, org: str, project: str, action: str) -> str:
    """The project path after the policy allowed ``action`` on it."""
    return (await context.project(org, project, action)).path


def _service(state: AppState) -> DatasetService:
    return DatasetService(state.db, state.settings)


@router.get("", response_model=list[DatasetPublic])
async def list_datasets(org: str, project: str, context: ContextDep, state: StateDep) -> list[DatasetPublic]:
    path = await _scope(context, org, project, "datasets.read")
    return await anyio.to_thread.run_sync(lambda: _service(state).list_datasets(project=path))


@router.post("", response_model=DatasetVersion, status_code=status.HTTP_201_CREATED)
async def import_rows(
    org: str, project: str, body: DatasetImport, context: ContextDep, state: StateDep
) -> DatasetVersion:
    """Import rows (validated like a file: errors name the row and field) as the next version."""
    path = await _scope(context, org, project, "datasets.write")
    records = [SourceRow(f"row {i}", row) for i, row in enumerate(body.rows, start=1)]
    return await anyio.to_thread.run_sync(
        lambda: _service(state).import_records(
            records,
            name=body.name,
            fmt=body.format,
            project=path,
            skip_invalid=body.skip_invalid,
            source="request",
            description=body.description,
            actor=context.principal.key_id,
        )
    )


@router.post("/from-feedback", response_model=FeedbackDataset, status_code=status.HTTP_201_CREATED)
async def from_feedback(
    org: str, project: str, body: FeedbackDatasetRequest, context: ContextDep, state: StateDep
) -> FeedbackDataset:
    """The next version of a chat dataset from low-scored feedback on this project's responses
    (``stratum data from-feedback``): corrections become rows, bare thumbs-down are queued for
    review; 400 ``no_feedback_rows`` when no row could be built."""
    scope = await context.project(org, project, "datasets.write")

    def build() -> FeedbackDataset:
        made = feedback_data.build(
            _service(state),
            state.feedback,
            name=body.name,
            model=body.model,
            since=body.since,
            max_score=body.max_score,
            prompts=body.prompts,
            project=scope.path,
            source="request",
            actor=context.principal.key_id,
            feedback_project_id=scope.id,
        )
        if made.version is None:
            raise InvalidRequest(
                f"{made.nothing_built()}; send prompts for feedback older than prompt keeping",
                code="no_feedback_rows",
            )
        return made

    return await anyio.to_thread.run_sync(build)


@router.get("/{dataset}", response_model=DatasetPublic)
async def show(org: str, project: str, dataset: str, context: ContextDep, state: StateDep) -> DatasetPublic:
    path = await _scope(context, org, project, "datasets.read")
    return await anyio.to_thread.run_sync(lambda: _service(state).show(dataset, project=path))


@router.get("/{dataset}/diff", response_model=DatasetDiff)
async def diff(
    org: str,
    project: str,
    dataset: str,
    context: ContextDep,
    state: StateDep,
    a: str = Query(default="1", description="Version (number, latest or hash prefix)."),
    b: str = Query(default="latest"),
) -> DatasetDiff:
    path = await _scope(context, org, project, "datasets.read")
    return await anyio.to_thread.run_sync(
        lambda: _service(state).diff(f"{dataset}@{a}", f"{dataset}@{b}", project=path)
    )


@router.get("/{dataset}/versions/{version}", response_model=DatasetVersion)
async def get_version(
    org: str, project: str, dataset: str, version: str, context: ContextDep, state: StateDep
) -> DatasetVersion:
    path = await _scope(context, org, project, "datasets.read")
    return await anyio.to_thread.run_sync(lambda: _service(state).get(f"{dataset}@{version}", project=path))


@router.get("/{dataset}/versions/{version}/rows")
async def rows(
    org: str,
    project: str,
    dataset: str,
    version: str,
    context: ContextDep,
    state: StateDep,
    split: str | None = Query(default=None),
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    """A page of the version's rows."""
    path = await _scope(context, org, project, "datasets.read")

    def page() -> dict[str, Any]:
        service = _service(state)
        found = service.get(f"{dataset}@{version}", project=path)
        selected = service.load_rows(found, split=split)
        return {"ref": found.ref, "total": len(selected), "rows": selected[offset : offset + limit]}

    return await anyio.to_thread.run_sync(page)


@router.post(
    "/{dataset}/versions/{version}/transform",
    response_model=list[DatasetVersion],
    status_code=status.HTTP_201_CREATED,
)
async def transform(
    org: str,
    project: str,
    dataset: str,
    version: str,
    body: TransformRequest,
    context: ContextDep,
    state: StateDep,
) -> list[DatasetVersion]:
    """Apply steps in order; each makes a version (see ``stratum data steps``)."""
    path = await _scope(context, org, project, "datasets.write")
    return await anyio.to_thread.run_sync(
        lambda: TransformService(_service(state)).run(
            f"{dataset}@{version}", body.steps, body.params, project=path, actor=context.principal.key_id
        )
    )


@router.post(
    "/{dataset}/versions/{version}/label", response_model=LabelResult, status_code=status.HTTP_201_CREATED
)
async def label(
    org: str,
    project: str,
    dataset: str,
    version: str,
    body: LabelRequest,
    context: ContextDep,
    state: StateDep,
) -> LabelResult:
    """Pre-label with keyword/regex rules; rows below ``threshold`` are queued for review."""
    path = await _scope(context, org, project, "datasets.write")

    def run() -> LabelResult:
        labeller = KeywordLabeller(rules=body.rules, default=body.default)
        made, queued = ReviewService(_service(state)).label(
            f"{dataset}@{version}",
            labeller,
            threshold=body.threshold,
            project=path,
            actor=context.principal.key_id,
        )
        return LabelResult(version=made, queued=queued)

    return await anyio.to_thread.run_sync(run)


@router.get("/{dataset}/versions/{version}/review", response_model=list[ReviewItem])
async def review_queue(
    org: str,
    project: str,
    dataset: str,
    version: str,
    context: ContextDep,
    state: StateDep,
    pending_only: bool = Query(default=True, alias="pending"),
) -> list[ReviewItem]:
    path = await _scope(context, org, project, "datasets.read")
    return await anyio.to_thread.run_sync(
        lambda: ReviewService(_service(state)).queue(
            f"{dataset}@{version}", project=path, pending_only=pending_only
        )
    )


@router.post("/{dataset}/versions/{version}/review", response_model=list[ReviewItem])
async def decide(
    org: str,
    project: str,
    dataset: str,
    version: str,
    decisions: list[ReviewDecision],
    context: ContextDep,
    state: StateDep,
) -> list[ReviewItem]:
    """Record accept / edit / reject decisions on queued rows."""
    path = await _scope(context, org, project, "datasets.write")
    return await anyio.to_thread.run_sync(
        lambda: ReviewService(_service(state)).decide(
            f"{dataset}@{version}", decisions, project=path, actor=context.principal.key_id
        )
    )


@router.post(
    "/{dataset}/versions/{version}/review/commit",
    response_model=DatasetVersion,
    status_code=status.HTTP_201_CREATED,
)
async def commit_review(
    org: str, project: str, dataset: str, version: str, context: ContextDep, state: StateDep
) -> DatasetVersion:
    """Make the next version from the decisions (409 while rows are pending)."""
    path = await _scope(context, org, project, "datasets.write")
    return await anyio.to_thread.run_sync(
        lambda: ReviewService(_service(state)).commit(
            f"{dataset}@{version}", project=path, actor=context.principal.key_id
        )
    )
