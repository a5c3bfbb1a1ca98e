"""The dataset walk as a user meets it: the `stratum` console script in a subprocess.

Import a Chinese JSONL with a bad row (the error names the line and the field), import the valid
rows, clean + dedup (each step a version with a report), diff, export, and read the export back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROWS = [
    {
        "instruction": "  把下面的句子翻译成英文 ",
        "input": "今天天气很好。",
        "output": "The weather is nice today.",
    },
    {
        "instruction": "把下面的句子翻译成英文",
        "input": "今天天气很好。",
        "output": "The weather is nice today.",
    },
    {"instruction": "总结：北京是中国的首都，有三千多年的建城史。", "input": "", "output": "北京历史悠久。"},
    {"instruction": "计算１２＋３０", "input": "", "output": "４２"},
    {"instruction": "写一句问候语", "input": ""},  # line 5: no output
    {"instruction": "介绍长城", "input": "", "output": "长城是中国古代的军事防御工程，全长两万多公里。"},
]


def _stratum(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STRATUM_HOME": str(home),
        "PYTHONIOENCODING": "utf-8",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    env.pop("STRATUM_DATABASE_URL", None)
    return subprocess.run(
        [str(Path(sys.executable).parent / "stratum"), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        check=False,
    )


def test_import_clean_dedup_diff_export(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = tmp_path / "翻译.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")

    refused = _stratum(home, "data", "import", str(source))
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1  # one line, no traceback
    assert "line 5, field 'output': missing" in refused.stderr and "--skip-invalid" in refused.stderr

    imported = _stratum(home, "data", "import", str(source), "--name", "翻译", "--skip-invalid", "--json")
    assert imported.returncode == 0, imported.stderr
    first = json.loads(imported.stdout)
    assert (first["ref"], first["row_count"], first["report"]["dropped"]) == ("翻译@1", 5, {"invalid": 1})

    made = _stratum(home, "data", "transform", "翻译@1", "--steps", "clean,dedup", "--json")
    assert made.returncode == 0, made.stderr
    clean, dedup = json.loads(made.stdout)
    assert (clean["ref"], clean["parent"], clean["report"]["changed"]) == ("翻译@2", "翻译@1", 2)
    assert (dedup["ref"], dedup["parent"], dedup["row_count"]) == ("翻译@3", "翻译@2", 4)
    assert dedup["report"]["dropped"] == {"exact_duplicate": 1}
    assert dedup["report"]["examples"][0]["reason"] == "exact_duplicate: of row 0"

    diff = json.loads(_stratum(home, "data", "diff", "翻译@1", "@3", "--json").stdout)
    assert (diff["rows_a"], diff["rows_b"], diff["common"], diff["removed"]) == (5, 4, 3, 2)
    assert {r["output"] for r in diff["added_examples"]} == {"42"}  # full-width digits normalised
    human = _stratum(home, "data", "diff", "翻译@1", "翻译@3")
    assert human.returncode == 0 and "翻译@1 (5 rows) → 翻译@3 (4 rows)" in human.stdout

    listed = json.loads(_stratum(home, "data", "list", "--json").stdout)
    assert [(d["name"], d["format"], d["latest"]) for d in listed] == [("翻译", "instruction", 3)]

    out = tmp_path / "导出.jsonl"
    exported = _stratum(home, "data", "export", "翻译", str(out))
    assert exported.returncode == 0 and "wrote 4 rows of 翻译@3" in exported.stdout
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {
        "instruction": "把下面的句子翻译成英文",
        "input": "今天天气很好。",
        "output": "The weather is nice today.",
    }
    assert rows[2]["instruction"] == "计算12+30"
    parquet = home / json.loads(_stratum(home, "data", "show", "翻译@3", "--json").stdout)["path"]
    assert parquet.is_file() and parquet.suffix == ".parquet"
