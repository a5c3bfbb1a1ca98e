"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

import anyio
from fastapi import APIRouter

from stratum.gateway.deps import ContextDep, Permit, StateDep
from stratum.protocol.models import ModelCard, ModelList
from stratum.registry.schemas import ModelPublic

router = APIRouter(tags=["openai"])

# The action a model kind is used through, for filtering the list.
_USE = {"chat": "chat", "embedding": "embeddings"}


def _card(model: ModelPublic) -> ModelCard:
    latest = max(model.versions, key=lambda v: v.version) if model.versions else None
    return ModelCard(
        id=model.name,
        created=int(model.created_at.timestamp()),
        kind=model.kind,
        version=latest.ref if latest else None,
        metadata=latest.metadata if latest else {},
    )


@router.get("/v1/models", response_model=ModelList, dependencies=[Permit("models.read")])
async def list_models(context: ContextDep, state: StateDep) -> ModelList:
    """The models this key may use (its model scope and the policy rules filter the registry)."""
    models = await anyio.to_thread.run_sync(state.registry.list_models)
    usable = [m for m in models if await context.may(_USE.get(m.kind, "chat"), model=m.name)]
    return ModelList(data=[_card(m) for m in usable])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, dependencies=[Permit("models.read")])
async def get_model(model_id: str, context: ContextDep, state: StateDep) -> ModelCard:
    version = await state.pool.resolve(model_id)
    model = await anyio.to_thread.run_sync(state.registry.get_model, version.name)
    card = _card(model)
    return card.model_copy(update={"id": model_id, "version": version.ref, "metadata": version.metadata})
