"""weights as their own artifact kind, stored apart from the source bundle

Revision ID: 0003_weights
Revises: 0002_service
Create Date: 2026-11-29 21:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_weights"
down_revision: str | None = "0002_service"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("source", "torchscript", "exported", "report")
_NEW = ("source", "weights", "torchscript", "exported", "report")


def _kinds(values: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _kinds(_NEW))


def downgrade() -> None:
    # Versions registered since keep their weights in a blob the old code cannot find: refuse
    # rather than leave them unconvertible.
    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT count(*) FROM artifacts WHERE kind = 'weights'").scalar():
        raise RuntimeError(
            "versions registered with separate weights exist; downgrading would strand them. "
            "Keep this revision or remove those versions first"
        )
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _kinds(_OLD))
