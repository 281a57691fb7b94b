"""a version's model card (its README.md, markdown)

Revision ID: 0008_card
Revises: 0007_reports
Create Date: 2026-12-05 09:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_card"
down_revision: str | None = "0007_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN: a batch copy of model_versions would cascade into its children.
    op.add_column("model_versions", sa.Column("card", sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE model_versions DROP COLUMN card")
