"""Settings: environment prefix, validation, and the README listing every setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import stratum
from stratum.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`STRATUM_{name.upper()}`" not in text]
    assert missing == []


def test_environment_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATUM_HOME", str(tmp_path / "家"))
    monkeypatch.setenv("STRATUM_PORT", "9123")
    settings = Settings()
    assert settings.port == 9123
    assert settings.home == (tmp_path / "家").resolve()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / '家' / 'stratum.db'}"


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUM_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings()


def test_public_surface_is_pinned() -> None:
    assert stratum.__all__ == ["Settings", "StratumError", "__version__"]
