"""two named reports, a cancelled version status and a job's stage timeline

Revision ID: 0007_reports
Revises: 0006_aoti
Create Date: 2026-12-05 09:00:00.000000

- artifacts.kind: `report` splits into `conversion-report` and `validation-report` (the column grows
  to 32 characters to hold them). An existing `report` row is named by the job that recorded it (a
  validate job's is the validation report). Where that job is gone (`job_id` is NULL: imported
  versions, and rows whose job link an earlier SQLite batch copy of `jobs` cleared) the order
  decides: a report that directly follows another report of the same version (by artifact id) is a
  validation report, because a validate job records nothing but its report, while a convert job
  records its report after the candidates or after the version's source. registry/ops/importer.py names
  the reports of old archives by the same rule.
- model_versions.status may be `cancelled`.
- jobs.stages: the stage timeline, a small JSON list.
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_reports"
down_revision: str | None = "0006_aoti"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KINDS = ("source", "weights", "torchscript", "exported", "report", "aoti")
_REPORTS = ("conversion-report", "validation-report")
_NEW_KINDS = ("source", "weights", "torchscript", "exported", *_REPORTS, "aoti")
_OLD_STATUSES = ("registered", "converting", "validating", "ready", "failed")
_NEW_STATUSES = (*_OLD_STATUSES, "cancelled")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _status_check(statuses: tuple[str, ...]) -> None:
    """Set which statuses model_versions.status admits, in the migration's own transaction.

    PostgreSQL drops and re-creates the CHECK constraint. SQLite cannot alter a constraint, and a
    batch copy of model_versions is no option: with foreign keys on, SQLite's DROP TABLE deletes the
    rows first, cascading into every artifact, job and alias (and the pragma that turns foreign keys
    off does nothing inside a transaction). So on SQLite the stored CREATE TABLE text gets the new
    condition, by the procedure SQLite's ALTER TABLE documentation gives for changing a CHECK
    constraint ("Making Other Kinds Of Table Schema Changes"): writable_schema, then a new
    schema_version. Every stored row satisfies the new condition (a downgrade first moves
    `cancelled` rows to `registered`), which that procedure requires.
    """
    name = "ck_model_versions_version_status"
    condition = _in("status", statuses)
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f(name), "model_versions", type_="check")
        op.create_check_constraint(op.f(name), "model_versions", condition)
        return
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'model_versions'"
    ).scalar_one()
    changed, count = re.subn(
        rf"CONSTRAINT {name} CHECK \(status IN \([^)]*\)\)", f"CONSTRAINT {name} CHECK ({condition})", sql
    )
    if count != 1:
        raise RuntimeError(f"model_versions has no single {name} to change: {sql}")
    schema_version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema=ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'model_versions'", (changed,)
        )
        bind.exec_driver_sql(f"PRAGMA schema_version={int(schema_version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema=OFF")
    broken = bind.exec_driver_sql("PRAGMA quick_check").scalar_one()
    if broken != "ok":
        raise RuntimeError(f"the database reports damage after the change: {broken}")


def _name_reports() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT a.id, a.version_id, a.kind, j.kind FROM artifacts a "
            "LEFT JOIN jobs j ON j.id = a.job_id ORDER BY a.version_id, a.id"
        )
    ).fetchall()
    previous: tuple[int, str] | None = None  # (version_id, kind) of the artifact before this one
    for artifact_id, version_id, kind, job_kind in rows:
        if kind == "report":
            if job_kind is not None:
                named = "validation-report" if job_kind == "validate" else "conversion-report"
            else:
                follows_report = previous == (version_id, "report") or previous in [
                    (version_id, r) for r in _REPORTS
                ]
                named = "validation-report" if follows_report else "conversion-report"
            rename = sa.text("UPDATE artifacts SET kind = :kind WHERE id = :id")
            bind.execute(rename, {"kind": named, "id": artifact_id})
            kind = named
        previous = (version_id, kind)


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
        batch.alter_column(
            "kind", existing_type=sa.String(length=16), type_=sa.String(length=32), existing_nullable=False
        )
    _name_reports()
    with op.batch_alter_table("artifacts") as batch:
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _in("kind", _NEW_KINDS))
    _status_check(_NEW_STATUSES)
    # Plain ALTER TABLE: a batch copy of `jobs` would clear artifacts.job_id (ON DELETE SET NULL).
    op.add_column("jobs", sa.Column("stages", sa.JSON(), nullable=True))


def downgrade() -> None:
    # The old code knows neither name: both reports go back to `report`, a cancelled version to
    # `registered` (what it showed before), and the timeline is dropped.
    op.execute("ALTER TABLE jobs DROP COLUMN stages")
    op.execute("UPDATE model_versions SET status = 'registered' WHERE status = 'cancelled'")
    _status_check(_OLD_STATUSES)
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint(op.f("ck_artifacts_artifact_kind"), type_="check")
    op.execute(f"UPDATE artifacts SET kind = 'report' WHERE {_in('kind', _REPORTS)}")
    with op.batch_alter_table("artifacts") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(length=32), type_=sa.String(length=16), existing_nullable=False
        )
        batch.create_check_constraint(op.f("ck_artifacts_artifact_kind"), _in("kind", _OLD_KINDS))
