"""names compared as a reader sees them: models.name_key, aliases lowercase

Revision ID: 0009_name_keys
Revises: 0008_card
Create Date: 2026-12-05 20:40:00.000000

A registry from before this may already hold look-alikes (`linear` and `LINEAR`, or aliases `prod`
and `PROD` on one model). Nothing is lost: the oldest of each group keeps the plain key (or the
lowercase alias); the others keep working under a key (an alias name) suffixed with their row id.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_name_keys"
down_revision: str | None = "0008_card"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LOOK_ALIKE = str.maketrans({"0": "o", "1": "l", "i": "l"})


def _name_key(name: str) -> str:
    # registry/names.py's name_key, frozen here: a migration must not change when that module does
    return name.lower().translate(_LOOK_ALIKE)


def upgrade() -> None:
    bind = op.get_bind()
    # Plain ALTER TABLE ADD COLUMN (a batch copy of models would cascade into its children); the
    # server default only fills the existing rows, which get their keys next.
    op.add_column("models", sa.Column("name_key", sa.String(128), nullable=False, server_default=""))
    models = sa.table("models", sa.column("id", sa.Integer), sa.column("name", sa.String))
    set_key = sa.text("UPDATE models SET name_key = :key WHERE id = :id")
    taken: set[str] = set()
    for model_id, name in bind.execute(sa.select(models.c.id, models.c.name).order_by(models.c.id)):
        key = _name_key(name)
        if key in taken:
            suffix = f"#{model_id}"
            key = key[: 128 - len(suffix)] + suffix
        taken.add(key)
        bind.execute(set_key, {"key": key, "id": model_id})
    if bind.dialect.name == "postgresql":
        op.alter_column("models", "name_key", server_default=None)
    op.create_index("ix_models_name_key", "models", ["name_key"], unique=True)
    _lowercase_aliases(bind)


def _lowercase_aliases(bind: sa.engine.Connection) -> None:
    aliases = sa.table("aliases", sa.column("id"), sa.column("model_id"), sa.column("name"))
    rename = sa.text("UPDATE aliases SET name = :name WHERE id = :id")
    groups: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for alias_id, model_id, name in bind.execute(sa.select(aliases.c.id, aliases.c.model_id, aliases.c.name)):
        groups.setdefault((model_id, name.lower()), []).append((alias_id, name))
    for (_, lower), members in groups.items():
        # the keeper: one already spelled lowercase, else the oldest; the others step aside first
        members.sort(key=lambda member: (member[1] != lower, member[0]))
        (keeper_id, keeper_name), *others = members
        for alias_id, _ in others:
            bind.execute(rename, {"name": f"{lower[:52]}-{alias_id}", "id": alias_id})
        if keeper_name != lower:
            bind.execute(rename, {"name": lower, "id": keeper_id})
    bind.execute(sa.text("UPDATE alias_history SET name = lower(name)"))


def downgrade() -> None:
    op.drop_index("ix_models_name_key", table_name="models")
    op.execute("ALTER TABLE models DROP COLUMN name_key")
