"""LangChain's ChatOpenAI / OpenAIEmbeddings with only base_url and api_key set."""

from __future__ import annotations

from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.e2e.conftest import ADMIN_KEY, Server


def test_chat_openai_invoke_and_stream(server: Server) -> None:
    llm = ChatOpenAI(model="tiny", base_url=server.base_url, api_key=ADMIN_KEY, max_tokens=8, temperature=0)
    reply = llm.invoke("你好，请介绍一下你自己")
    assert isinstance(reply.content, str)
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] >= 1
    streamed = "".join(str(chunk.content) for chunk in llm.stream("你好，请介绍一下你自己"))
    assert streamed == reply.content


def test_openai_embeddings(server: Server) -> None:
    # check_embedding_ctx_length=False: otherwise LangChain first downloads OpenAI's tiktoken
    # vocabulary, which no offline machine can, whatever the server.
    embeddings = OpenAIEmbeddings(
        model="multilingual-e5-small",
        base_url=server.base_url,
        api_key=ADMIN_KEY,
        check_embedding_ctx_length=False,
    )
    docs = embeddings.embed_documents(["北京是中国的首都", "Paris is the capital of France"])
    query = embeddings.embed_query("中国的首都是哪里？")
    assert len(docs) == 2 and len(query) == 384
    score = [sum(a * b for a, b in zip(query, doc, strict=True)) for doc in docs]
    assert score[0] > score[1]
