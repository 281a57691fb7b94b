"""AOTInductor packages as an artifact kind

Revision ID: 0006_aoti
Revises: 0005_webhooks
Create Date: 2026-11-30 03:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_aoti"
down_revision: str | None = "0005_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("source", "weights", "torchscript", "exported", "report")
_NEW = ("source", "weights", "torchscript", "exported", "report", "aoti")


def _kinds(values: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _kinds(_NEW))


def downgrade() -> None:
    # The old code knows no `aoti` rows: refuse rather than leave artifacts it cannot name.
    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT count(*) FROM artifacts WHERE kind = 'aoti'").scalar():
        raise RuntimeError(
            "versions with AOTInductor packages exist; downgrading would strand them. "
            "Keep this revision or delete those versions first"
        )
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _kinds(_OLD))
