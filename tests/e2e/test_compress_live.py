"""``stratum compress distill|onnx`` in a subprocess next to a running server: the new versions are
registered with lineage, the distilled student is served at once, the ONNX export is refused cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server

MESSAGES = [{"role": "user", "content": "请用一句话介绍退货流程。"}]


def _texts(tmp_path: Path) -> tuple[Path, Path]:
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(
        "Stratum 是一个企业大模型平台。\n网关为每个请求计量。\nThe gateway meters every request.\n",
        encoding="utf-8",
    )
    train = tmp_path / "蒸馏语料.jsonl"
    train.write_text(
        "\n".join(
            json.dumps({"text": text}, ensure_ascii=False)
            for text in (
                "你好，请问如何退货？",
                "订单已经发货，预计三天到达。",
                "感谢您的耐心等待。",
                "Hello!",
            )
        )
        + "\n",
        encoding="utf-8",
    )
    return held_out, train


@pytest.mark.slow
def test_distilled_student_is_registered_and_served_live(server: Server, tmp_path: Path) -> None:
    held_out, train = _texts(tmp_path)
    done = server.cli(
        "compress",
        "distill",
        "tiny@1",
        "--name",
        "distilled-tiny",
        "--texts",
        str(held_out),
        "--train-texts",
        str(train),
        "--steps",
        "4",
        "--json",
        timeout=300,
    )
    report = json.loads(done.stdout)
    assert report["version"] == "distilled-tiny@1" and report["parent"] == "tiny@1"
    # The tiny teacher has 2 layers; the new student keeps every 2nd: about half the weights.
    assert 0.3 < report["deltas"]["size_ratio"] < 0.9
    assert report["before"]["perplexity"] > 0 and report["after"]["perplexity"] > 0
    shown = json.loads(server.cli("models", "show", "distilled-tiny", "--json").stdout)
    metadata = shown["versions"][-1]["metadata"]
    assert metadata["variant"] == "distilled" and metadata["compression"]["method"] == "distill"
    assert metadata["compression"]["params"]["steps"] == 4
    lineage = json.loads(server.cli("lineage", "distilled-tiny@1", "--json").stdout)
    assert [(e["source_id"], e["relation"]) for e in lineage["upstream"]] == [("tiny@1", "compressed")]
    assert lineage["upstream"][0]["metadata"] == {"variant": "distilled", "method": "distill"}

    # The running server serves the new version without a restart.
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="distilled-tiny", messages=MESSAGES, max_tokens=6, temperature=0
        )
        assert raw.headers["x-stratum-model-version"] == "distilled-tiny@1"
        reply = raw.parse()
        assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 6


@pytest.mark.slow
def test_onnx_export_is_checked_registered_and_not_served_by_the_engine(
    server: Server, tmp_path: Path
) -> None:
    held_out, _ = _texts(tmp_path)
    done = server.cli(
        "compress", "onnx", "tiny@1", "--name", "onnx-tiny", "--texts", str(held_out), "--json", timeout=300
    )
    report = json.loads(done.stdout)
    assert report["version"] == "onnx-tiny@1" and report["parent"] == "tiny@1"
    assert report["format"] == "onnx" and report["onnx_max_abs_diff"] < 1e-3
    shown = json.loads(server.cli("models", "show", "onnx-tiny", "--json").stdout)
    version = shown["versions"][-1]
    assert version["metadata"]["variant"] == "onnx"
    assert (Path(version["artifact_uri"]) / "model.onnx").is_file()

    # The embedded engine runs PyTorch weights: asking for the ONNX version is a clear client error,
    # and it does not take the server down (the parent still answers).
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="onnx-tiny", messages=MESSAGES, max_tokens=4)
        assert client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4).choices
    assert refused.value.code == "unsupported_model_format" and "ONNX" in refused.value.message

    bad = server.cli(
        "compress", "onnx", "tiny@1", "--name", "x", "--texts", str(tmp_path / "无.txt"), check=False
    )
    assert bad.returncode == 1 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
