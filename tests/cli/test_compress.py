"""``stratum compress`` in a subprocess: a new version linked to its parent, with measured deltas
(the set-up and the argument check run in-process: ``invoke_stratum``)."""

import json
from pathlib import Path

import pytest

from tests.cli.conftest import RunStratum
from tests.tiny import build_tiny_llama


@pytest.fixture
def tiny(invoke_stratum: RunStratum, tmp_path: Path) -> Path:
    model = build_tiny_llama(tmp_path / "tiny", seed=2)
    assert invoke_stratum("models", "add", "tiny", "--path", str(model)).returncode == 0
    texts = tmp_path / "held_out.txt"
    texts.write_text("Stratum 是一个企业大模型平台。\nThe gateway meters every request.\n", encoding="utf-8")
    return texts


@pytest.mark.slow
def test_quantize_registers_a_measured_child(run_stratum: RunStratum, tiny: Path) -> None:
    done = run_stratum(
        "compress", "quantize", "tiny@1", "--name", "tiny-int8", "--texts", str(tiny), "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["version"] == "tiny-int8@1" and report["parent"] == "tiny@1"
    assert report["deltas"]["size_ratio"] < 0.6
    assert abs(report["deltas"]["perplexity_change_pct"]) < 5
    shown = json.loads(run_stratum("models", "show", "tiny-int8", "--json").stdout)
    metadata = shown["versions"][-1]["metadata"]
    assert metadata["variant"] == "quantized" and metadata["compression"]["method"] == "dynamic_int8"
    assert metadata["measures"]["before"]["perplexity"] > 0


def test_bad_sparsity_is_a_one_line_error(invoke_stratum: RunStratum, tiny: Path) -> None:
    done = invoke_stratum("compress", "prune", "tiny", "--name", "p", "--texts", str(tiny), "--sparsity", "2")
    assert done.returncode == 1
    assert "sparsity must be between 0 and 1" in done.stderr and "Traceback" not in done.stderr
    assert [m["name"] for m in json.loads(invoke_stratum("models", "list", "--json").stdout)] == ["tiny"]
