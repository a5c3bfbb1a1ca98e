"""feedback keeps its prompt; eval schedules say whether a drop builds a backflow dataset.

``served_responses.prompt`` / ``answer``: the chat request's messages and the first choice's text,
both after the content guard's masking (kept as long as the response record). ``feedback.prompt``
/ ``answer``: copied there when feedback arrives, so a feedback dataset can be built after the
response record is pruned (erased after ``STRATUM_PROMPT_RETENTION_DAYS``).
``eval_schedules.backflow``: build the backflow dataset when a drop is flagged.

Revision ID: 0015
Revises: 0013
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("served_responses", "feedback"):
        op.add_column(table, sa.Column("prompt", json_type(), nullable=True))
        op.add_column(table, sa.Column("answer", sa.Text(), nullable=True))
    op.add_column(
        "eval_schedules", sa.Column("backflow", sa.Boolean(), server_default=sa.true(), nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("eval_schedules") as batch:
        batch.drop_column("backflow")
    for table in ("feedback", "served_responses"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("answer")
            batch.drop_column("prompt")
