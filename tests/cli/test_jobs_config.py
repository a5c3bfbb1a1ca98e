"""Job config files: YAML or JSON, relative ``*_path`` values taken from the file's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratum.cli.jobs import load_config
from stratum.cli.output import CliError


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "配置"
    folder.mkdir()
    config = folder / "sft.yaml"
    config.write_text(
        "base: stratum-demo\ndataset_path: data/训练.jsonl\nbase_path: /models/abs\nlora:\n  r: 4\n",
        encoding="utf-8",
    )
    loaded = load_config(config)
    assert loaded["dataset_path"] == str(folder / "data" / "训练.jsonl")
    assert loaded["base_path"] == "/models/abs" and loaded["lora"] == {"r": 4}
    as_json = folder / "sft.json"
    as_json.write_text('{"dataset_path": "x.jsonl"}', encoding="utf-8")
    assert load_config(as_json)["dataset_path"] == str(folder / "x.jsonl")


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(CliError, match="must hold a mapping"):
        load_config(listing)
    with pytest.raises(CliError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_config(empty) == {}
