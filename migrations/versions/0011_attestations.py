"""signing keys, and attestations as an artifact kind

Revision ID: 0011_attestations
Revises: 0010_formats
Create Date: 2026-12-05 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_attestations"
down_revision: str | None = "0010_formats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REPORTS = ("conversion-report", "validation-report")
_OLD = ("source", "weights", "torchscript", "exported", *_REPORTS, "aoti", "executorch", "onnx")


def _kinds(values: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("public_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_signing_keys")),
    )
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _kinds((*_OLD, "attestation")))


def downgrade() -> None:
    # The old code cannot name attestation rows: refuse rather than strand them.
    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT count(*) FROM artifacts WHERE kind = 'attestation'").scalar():
        raise RuntimeError(
            "versions with attestations exist; downgrading would strand them. "
            "Keep this revision or delete those versions first"
        )
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _kinds(_OLD))
    op.drop_table("signing_keys")
