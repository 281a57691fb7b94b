"""lineage and lifecycle: a version's description, tags, git commit, run URL and archive time

Revision ID: 0004_lineage
Revises: 0003_weights
Create Date: 2026-11-30 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_lineage"
down_revision: str | None = "0003_weights"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, never a batch copy: on SQLite a batch drops and recreates model_versions, and
# with foreign keys on, dropping it would cascade into every artifact, job and alias row.
def _columns() -> list[sa.Column]:
    return [
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("git_dirty", sa.Boolean(), nullable=True),
        sa.Column("run_url", sa.Text(), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    for column in _columns():
        op.add_column("model_versions", column)
    op.create_table(
        "version_tags",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_version_tags_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "key", name=op.f("pk_version_tags")),
    )
    op.create_index("ix_version_tags_key_value", "version_tags", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_version_tags_key_value", table_name="version_tags")
    op.drop_table("version_tags")
    for column in reversed(_columns()):
        # SQLite 3.35 and later drop a column in place (Python 3.11 ships a newer one).
        op.execute(f"ALTER TABLE model_versions DROP COLUMN {column.name}")
