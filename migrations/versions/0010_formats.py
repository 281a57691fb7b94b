"""ExecuTorch programs and ONNX models as artifact kinds

Revision ID: 0010_formats
Revises: 0009_name_keys
Create Date: 2026-12-05 23:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_formats"
down_revision: str | None = "0009_name_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REPORTS = ("conversion-report", "validation-report")
_OLD = ("source", "weights", "torchscript", "exported", *_REPORTS, "aoti")
_ADDED = ("executorch", "onnx")


def _kinds(values: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _kinds((*_OLD, *_ADDED)))


def downgrade() -> None:
    # The old code knows neither kind: refuse rather than leave artifacts it cannot name.
    bind = op.get_bind()
    if bind.exec_driver_sql(f"SELECT count(*) FROM artifacts WHERE {_kinds(_ADDED)}").scalar():
        raise RuntimeError(
            "versions with ExecuTorch or ONNX artifacts exist; downgrading would strand them. "
            "Keep this revision or delete those versions first"
        )
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _kinds(_OLD))
