"""``POST /v1/embeddings``: float or base64 vectors, single or batch input."""

from __future__ import annotations

import base64

import anyio
import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from stratum.errors import InvalidRequest, StratumError, UnsupportedFeature
from stratum.gateway.deps import ContextDep, Permit, StateDep
from stratum.gateway.metering import EmbeddingsMeter
from stratum.gateway.routes.streaming import VERSION_HEADER, Recorder
from stratum.protocol.base import Usage, dump
from stratum.protocol.embeddings import Embedding, EmbeddingList, EmbeddingRequest

router = APIRouter(tags=["openai"])

_MAX_INPUTS = 2048  # OpenAI's batch limit; keeps one request from monopolising the encoder


def _texts(body: EmbeddingRequest) -> list[str]:
    value = body.input
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise InvalidRequest("input must not be empty", param="input")
    if not all(isinstance(t, str) for t in texts):
        raise UnsupportedFeature(
            "token-id input is not supported; send text "
            "(LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))",
            param="input",
        )
    if len(texts) > _MAX_INPUTS:
        raise InvalidRequest(f"at most {_MAX_INPUTS} inputs per request", param="input")
    return [str(t) for t in texts]


@router.post("/v1/embeddings", response_model=EmbeddingList, dependencies=[Permit("embeddings")])
async def create_embeddings(
    body: EmbeddingRequest, context: ContextDep, state: StateDep, meter: EmbeddingsMeter
) -> JSONResponse:
    recorder = Recorder(state.metrics, endpoint="embeddings", model=body.model, started=context.started)
    try:
        texts = _texts(body)
        version, encoder = await state.pool.encoder(body.model)
        if body.dimensions is not None and body.dimensions != encoder.dimensions:
            # Cutting vectors short only works for Matryoshka-trained models, which these are not.
            raise InvalidRequest(
                f"this model only produces {encoder.dimensions}-dimensional embeddings", param="dimensions"
            )
        counts = await anyio.to_thread.run_sync(lambda: encoder.count_tokens(texts, kind=body.input_type))
        tokens = sum(counts)
        await meter.admit_tokens(version.name, tokens)
        vectors = await anyio.to_thread.run_sync(lambda: encoder.encode(texts, kind=body.input_type))
        meter.record(tokens, 0)
    except StratumError as error:
        recorder.done(error.status_code)
        raise
    vectors = vectors.astype(np.float32)
    data = [
        Embedding(
            index=i,
            embedding=base64.b64encode(row.tobytes()).decode()
            if body.encoding_format == "base64"
            else row.tolist(),
        )
        for i, row in enumerate(vectors)
    ]
    recorder.done(200)
    state.metrics.count_tokens(model=version.name, prompt=tokens, completion=0)
    result = EmbeddingList(
        data=data, model=body.model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens)
    )
    return JSONResponse(
        dump(result), headers={VERSION_HEADER: version.ref, "x-request-id": context.request_id}
    )
