"""The hand-written Alembic revisions create exactly what the domains' table classes describe.

Revisions are written by hand (storage imports no domain), so this test is what catches a column
added to a ``tables.py`` and forgotten in its revision, or the reverse.
"""

import importlib
import pkgutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import stratum
from stratum.storage import Base, Database


def import_every_tables_module() -> list[str]:
    names = [
        module.name
        for module in pkgutil.walk_packages(stratum.__path__, "stratum.")
        if module.name.rsplit(".", 1)[-1] == "tables"
    ]
    for name in names:
        importlib.import_module(name)
    return names


def test_migrations_match_the_table_classes(tmp_path: Path) -> None:
    assert "stratum.registry.tables" in import_every_tables_module()
    db = Database(f"sqlite:///{tmp_path / 'schema.db'}")
    db.migrate()
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            diff = [
                change
                for change in compare_metadata(context, Base.metadata)
                # alembic_version is Alembic's own table.
                if not (change[0] == "remove_table" and change[1].name == "alembic_version")
            ]
    finally:
        db.dispose()
    if diff:
        pytest.fail("migrations and tables.py disagree:\n" + "\n".join(map(str, diff)))
