"""Artifact tiers: a version moved to S3 (moto's server on loopback, through s3fs) and back keeps
its checksum; a corrupted copy is refused; the CLI moves a version and a cold one is not served."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from stratum.cli.main import app
from stratum.errors import Conflict, InvalidRequest
from stratum.registry.artifacts import ArtifactService, filesystem, fs_checksum
from stratum.registry.checksum import directory_checksum
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database

BUCKET = "stratum-cold"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    existing = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    if BUCKET not in existing:
        client.create_bucket(Bucket=BUCKET)
    filesystem(f"s3://{BUCKET}", endpoint_url=s3_endpoint)[0].invalidate_cache()
    return s3_endpoint


def _service(db: Database, tmp_path: Path, endpoint: str, prefix: str) -> ArtifactService:
    return ArtifactService(
        db,
        RegistryService(db),
        hot_dir=tmp_path / "hot",
        cold_url=f"s3://{BUCKET}/{prefix}",
        endpoint_url=endpoint,
    )


def test_round_trip_keeps_the_checksum(db: Database, model_dir: Path, tmp_path: Path, s3: str) -> None:
    (model_dir / "子目录").mkdir()
    (model_dir / "子目录" / "说明.txt").write_text("中文说明", encoding="utf-8")
    registry = RegistryService(db)
    version = registry.add_model(name="tiny", source="local", path=model_dir)
    service = _service(db, tmp_path, s3, f"round-trip/{tmp_path.name}")
    cold = service.move("tiny@1", tier="cold")
    assert (
        cold.destination == f"s3://{BUCKET}/round-trip/{tmp_path.name}/tiny/1"
        and cold.checksum == version.checksum
    )
    assert cold.files == 5 and not cold.source_deleted and model_dir.is_dir()  # the user's --path stays
    moved = registry.resolve("tiny@1")
    assert moved.artifact_uri == cold.destination and moved.metadata["tier"] == "cold"
    assert moved.checksum == version.checksum
    fs, path = filesystem(cold.destination, endpoint_url=s3)
    assert fs_checksum(fs, path) == version.checksum
    with pytest.raises(Conflict):
        service.move("tiny@1", tier="cold")
    hot = service.move("tiny@1", tier="hot")
    assert Path(hot.destination) == tmp_path / "hot" / "tiny" / "1" and hot.source_deleted
    assert directory_checksum(Path(hot.destination)) == version.checksum
    assert not fs.exists(path)
    # A copy the platform made (the hot one) is deleted when the version goes cold again.
    again = service.move("tiny@1", tier="cold")
    assert again.source_deleted and not Path(hot.destination).exists()


def test_a_changed_artifact_is_refused(db: Database, model_dir: Path, tmp_path: Path, s3: str) -> None:
    RegistryService(db).add_model(name="tiny", source="local", path=model_dir)
    (model_dir / "config.json").write_text("{}")  # the files no longer match the registered checksum
    service = _service(db, tmp_path, s3, f"tampered/{tmp_path.name}")
    with pytest.raises(Conflict) as caught:
        service.move("tiny@1", tier="cold")
    assert "Checksum mismatch" in caught.value.message
    fs, path = filesystem(f"s3://{BUCKET}/tampered/{tmp_path.name}/tiny/1", endpoint_url=s3)
    assert not fs.exists(path)
    assert RegistryService(db).resolve("tiny@1").artifact_uri == str(model_dir.resolve())


def test_bad_moves(db: Database, model_dir: Path, tmp_path: Path) -> None:
    registry = RegistryService(db)
    registry.add_model(name="tiny", source="local", path=model_dir)
    registry.add_model(name="up", source="upstream", upstream_url="http://127.0.0.1:9/v1")
    no_cold = ArtifactService(db, registry, hot_dir=tmp_path / "hot", cold_url=None)
    with pytest.raises(InvalidRequest, match="STRATUM_ARTIFACTS_URL"):
        no_cold.move("tiny@1", tier="cold")
    with pytest.raises(InvalidRequest, match="no artifact files"):
        no_cold.move("up@1", tier="cold")
    with pytest.raises(InvalidRequest, match="exact version"):
        no_cold.move("tiny", tier="cold")


def test_cli_move(model_dir: Path, s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUM_ARTIFACTS_URL", f"s3://{BUCKET}/cli")
    monkeypatch.setenv("STRATUM_ARTIFACTS_ENDPOINT_URL", s3)
    runner = CliRunner()
    assert runner.invoke(app, ["models", "add", "tiny", "--path", str(model_dir)]).exit_code == 0
    result = runner.invoke(app, ["models", "move", "tiny@1", "--tier", "cold", "--json"])
    assert result.exit_code == 0, result.output
    moved = json.loads(result.stdout)
    assert moved["destination"] == f"s3://{BUCKET}/cli/tiny/1"
    with Database(Settings().resolved_database_url) as db:
        assert RegistryService(db).resolve("tiny@1").checksum == moved["checksum"]
    text = runner.invoke(app, ["models", "move", "tiny@1", "--tier", "hot"])
    assert text.exit_code == 0 and "verified" in text.output
    again = runner.invoke(app, ["models", "move", "tiny@1", "--tier", "hot"])
    assert again.exit_code == 1 and again.output.startswith("error: ") and "already" in again.output


def test_a_cold_version_is_not_served(db: Database, model_dir: Path, tmp_path: Path) -> None:
    from stratum.gateway.pool import default_factory

    version = RegistryService(db).add_model(name="tiny", source="local", path=model_dir)
    cold = version.model_copy(update={"artifact_uri": f"s3://{BUCKET}/x/tiny/1"})
    with pytest.raises(InvalidRequest) as caught:
        default_factory(Settings(home=tmp_path))(cold)
    assert caught.value.code == "model_in_cold_tier" and "--tier hot" in caught.value.message
