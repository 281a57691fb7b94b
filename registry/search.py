"""Finding models and versions across the registry: by text (names, descriptions, tags) and by tags.

Every match runs in SQL, on SQLite and PostgreSQL alike: the text is bound as a parameter and matched
case-insensitively as a substring, with LIKE's own wildcards escaped (`%` and `_` in the text match
themselves), and every answer is bounded by a limit. A caller whose token carries a model pattern
(a glob, which LIKE cannot express) is narrowed to the ids of the models it may see first, so the
limit counts only what it may read.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.orm import Session, aliased

from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.entities import ModelSummary, VersionRow
from regctl.registry.errors.inputs import TextTooLong
from regctl.registry.lookup import version_row_query
from regctl.registry.models import summaries, summary_query
from regctl.registry.requests import VersionQuery, check_limit
from regctl.registry.schema import Model, ModelVersion, VersionTag
from regctl.registry.settings import Settings
from regctl.registry.text import check_text

MAX_SEARCH_CHARS = 128


@dataclass(frozen=True)
class ModelSearch:
    """What `models list --search TEXT` and `GET /models?q=TEXT` ask for: models whose name, description,
    or a (non-archived) version's description or tag contains `text`, ignoring case."""

    text: str
    limit: int = 100

    def checked(self) -> ModelSearch:
        """The same search with its text trimmed, or InvalidInput naming what is wrong."""
        text = check_text("the search text", self.text.strip())
        if len(text) > MAX_SEARCH_CHARS:
            raise TextTooLong(
                what="the search text", length=len(text), fix=f"search for at most {MAX_SEARCH_CHARS}"
            )
        return ModelSearch(text, check_limit(self.limit))


def search_models(settings: Settings, caller: Caller, search: ModelSearch) -> list[ModelSummary]:
    """The models `caller` may see that match `search`, by name, at most `search.limit` of them."""
    search = search.checked()
    with session_scope(settings.database_url) as session:
        query = summary_query().limit(search.limit)
        if search.text:
            query = query.where(_model_matches(search.text))
        return summaries(session, _visible(session, query, caller))


def search_versions(settings: Settings, caller: Caller, search: VersionQuery) -> list[VersionRow]:
    """The versions `search` asks for across the models `caller` may see (it names none), newest first."""
    with session_scope(settings.database_url) as session:
        query = (
            version_row_query()
            .add_columns(Model.name)
            .join(Model, Model.id == ModelVersion.model_id)
            .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
            .limit(search.limit)
        )
        if search.status is not None:
            query = query.where(ModelVersion.status == search.status)
        if not search.archived:
            query = query.where(ModelVersion.archived_at.is_(None))
        for key, value in search.tags.items():
            query = query.where(_tagged(key, value))
        return [VersionRow(*row) for row in session.execute(_visible(session, query, caller))]


def _model_matches(text: str) -> ColumnElement[bool]:
    """A model whose name or description, or a live version's description or tag, contains `text`.

    `icontains(autoescape=True)` binds the text and escapes `%`, `_` and the escape character, so
    the text is always a literal substring.
    """
    # Its own name for the versions: the summary query joins model_versions already, and SQLAlchemy
    # would otherwise correlate the subquery with that join instead of searching every version.
    version = aliased(ModelVersion, name="searched_versions")
    tag_hit = (
        select(VersionTag.version_id)
        .where(
            VersionTag.version_id == version.id,
            (VersionTag.key + "=" + VersionTag.value).icontains(text, autoescape=True),
        )
        .exists()
    )
    version_hit = (
        select(version.id)
        .where(
            version.model_id == Model.id,
            version.archived_at.is_(None),
            or_(version.description.icontains(text, autoescape=True), tag_hit),
        )
        .exists()
    )
    return or_(
        Model.name.icontains(text, autoescape=True),
        Model.description.icontains(text, autoescape=True),
        version_hit,
    )


def _tagged(key: str, value: str) -> ColumnElement[bool]:
    return (
        select(VersionTag.version_id)
        .where(VersionTag.version_id == ModelVersion.id, VersionTag.key == key, VersionTag.value == value)
        .exists()
    )


def _visible(session: Session, query: Select, caller: Caller) -> Select:
    """`query` narrowed to the models `caller` may see (only a caller with a model pattern is narrowed)."""
    if caller.role == "admin" or caller.model_pattern is None:
        return query
    visible = [
        model_id for model_id, name in session.execute(select(Model.id, Model.name)) if caller.may_see(name)
    ]
    return query.where(Model.id.in_(visible))
