"""LLM + database QA the way a user meets it: `stratum db` in a subprocess, a real server, the openai SDK.

The SQL writer is an upstream mock (an OpenAI-compatible HTTP server in a thread) that always
answers with the same SQL, so the test checks the platform's part: schema prompt, guard, row
filters, read-only execution, and the answer with the executed SQL and the result table.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import openai
import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.knowledge.sql.sample import build_sqlite

FIXED_SQL = "```sql\nSELECT 地区, SUM(amount) AS 销售额 FROM orders GROUP BY 地区 ORDER BY 地区\n```"


class _Upstream(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        _Upstream.seen.append(body)
        base = {"id": "chatcmpl-mock", "created": int(time.time()), "model": body["model"]}
        usage = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            chunks = [
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": FIXED_SQL}}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": usage},
            ]
            for chunk in chunks:
                payload = {**base, "object": "chat.completion.chunk", **chunk}
                self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            return
        payload = {
            **base,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": FIXED_SQL}, "finish_reason": "stop"}
            ],
            "usage": usage,
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def sql_server(tmp_path: Path, upstream: str) -> Iterator[Server]:
    running = start_server(tmp_path / "home", extra_env={"STRATUM_EMBEDDINGS_MODEL": "false"})
    running.cli("models", "add", "sql-writer", "--upstream", upstream)
    yield running
    stop_server(running)


def _json(server: Server, *args: str) -> Any:
    return json.loads(server.cli(*args, "--json").stdout)


@pytest.mark.slow
def test_question_over_a_chinese_sales_database(sql_server: Server, tmp_path: Path) -> None:
    db = build_sqlite(tmp_path / "销售.db")
    _json(sql_server, "orgs", "create", "acme")
    _json(sql_server, "projects", "create", "acme/sales")
    key = _json(sql_server, "keys", "create", "acme/sales", "--role", "developer")["key"]
    added = _json(
        sql_server,
        "db", "add", "acme/sales", "sales",
        "--url", f"sqlite:///{db}",
        "--model", "sql-writer",
        "--table", "orders=id,地区,product,amount,customer_id",
        "--table", "customers=id,name",
        "--filter", "developer:orders=地区 IN ('华东', '华北')",
        "--describe", "orders.amount=订单金额（元）",
    )  # fmt: skip
    assert added["name"] == "sales" and added["tables"]["customers"] == ["id", "name"]
    assert [d["name"] for d in _json(sql_server, "db", "list", "acme/sales")] == ["sales"]

    with openai.OpenAI(base_url=sql_server.base_url, api_key=key, max_retries=0) as client:
        question = [{"role": "user", "content": "每个地区的销售额是多少？"}]
        reply = client.chat.completions.create(model="db/sales", messages=question)  # type: ignore[arg-type]
        content = reply.choices[0].message.content or ""
        assert "```sql" in content and "| 华东 | 11347.0 |" in content and "| 华北 | 11698.0 |" in content
        assert "华南" not in content  # the developer's row filter
        extension = (reply.model_extra or {})["stratum_sql"]
        assert extension["rows"] == [["华东", 11347.0], ["华北", 11698.0]]
        assert "地区 IN ('华东', '华北')" in extension["sql"]
        stream = client.chat.completions.create(model="db/sales", messages=question, stream=True)  # type: ignore[arg-type]
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == content
    # The upstream model got the schema (with the comment) and never a forbidden column.
    system = _Upstream.seen[-1]["messages"][0]["content"]
    assert "订单金额（元）" in system and "cost" not in system and "phone" not in system

    ran = _json(
        sql_server,
        "db",
        "ask",
        "acme/sales",
        "sales",
        "--sql",
        "SELECT COUNT(*) AS n FROM orders",
        "--role",
        "viewer",
    )
    assert ran["rows"] == [[6]]
    asked = _json(
        sql_server,
        "db",
        "ask",
        "acme/sales",
        "sales",
        "销售额？",
        "--api-key",
        key,
        "--base-url",
        sql_server.base_url,
    )
    assert asked["rows"] == [["华东", 11347.0], ["华北", 11698.0]]
    bad = sql_server.cli(
        "db", "ask", "acme/sales", "sales", "--sql", "SELECT salary FROM employees", check=False
    )
    assert bad.returncode != 0 and bad.stderr.startswith("error:") and "employees" in bad.stderr
    assert "Traceback" not in bad.stderr
    sql_server.cli("db", "remove", "acme/sales", "sales")
    assert _json(sql_server, "db", "list", "acme/sales") == []
