"""Search across models: `models list --search`, `versions list --tag` without a model, `GET /models?q=`,
`GET /versions?tag=` and the models page's search box, on SQLite and PostgreSQL, with hostile text."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from regctl.local import LocalClient
from regctl.registry.access import Caller
from regctl.registry.errors import InvalidInput
from regctl.registry.lineage import Lineage
from regctl.registry.requests import VersionQuery
from regctl.registry.search import ModelSearch, search_models, search_versions
from regctl.registry.settings import Settings
from regctl.server.app import create_app
from tests.conftest import direct_cli, write_model_dir

ADMIN = Caller("tester", "admin")

# Text that only a literal match tells apart: a `%` or `_` in the search must not act as a wildcard.
MODELS = {
    "resnet": ("Image classifier", {"team": "vision"}),
    "bert": ("Text encoder for search", {"team": "nlp", "size": "base"}),
    "pct": ("Accuracy 100% on the test set", {"acc": "100%"}),
    "under_score": ("Underscored", {}),
    "underxscore": ("No underscore here", {}),
}


def _register(client: LocalClient, root: Path, name: str, description: str, tags: dict[str, str]) -> None:
    # Code of its own, so a second registration of a name is a new version rather than "unchanged".
    directory = write_model_dir(root / name, files={"version.py": f"ROOT = {str(root)!r}\n"})
    client.register(name, directory, convert=False, lineage=Lineage(description=description, tags=tags))


@pytest.fixture
def catalog(settings: Settings, tmp_path: Path) -> Settings:
    """A registry holding MODELS, one version each, registered directly."""
    client = LocalClient(settings)
    for name, (description, tags) in MODELS.items():
        _register(client, tmp_path, name, description, tags)
    return settings


def names(found: list) -> list[str]:
    return [m.name for m in found]


def test_search_matches_names_descriptions_and_tags_ignoring_case(catalog: Settings) -> None:
    assert names(search_models(catalog, ADMIN, ModelSearch("RESNET"))) == ["resnet"]
    assert names(search_models(catalog, ADMIN, ModelSearch("text ENCODER"))) == ["bert"]
    assert names(search_models(catalog, ADMIN, ModelSearch("Vision"))) == ["resnet"]
    assert names(search_models(catalog, ADMIN, ModelSearch("team=nlp"))) == ["bert"]
    assert names(search_models(catalog, ADMIN, ModelSearch("size"))) == ["bert"]
    assert names(search_models(catalog, ADMIN, ModelSearch("  bert  "))) == ["bert"]
    assert names(search_models(catalog, ADMIN, ModelSearch("nothing like it"))) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%", ["pct"]),
        ("100%", ["pct"]),
        ("acc=100%", ["pct"]),
        ("_", ["under_score"]),
        ("under_score", ["under_score"]),
        ("under%score", []),
        ("%%", []),
        ("__", []),
        ("\\", []),
        ("/", []),
        ("//", []),
        ("[a-z]*", []),
        ("' OR 1=1 --", []),
        ('"; DROP TABLE models; --', []),
        ("ｒｅｓｎｅｔ", []),
        ("é" * 128, []),
    ],
)
def test_hostile_search_text_matches_only_itself_literally(
    catalog: Settings, text: str, expected: list[str]
) -> None:
    assert names(search_models(catalog, ADMIN, ModelSearch(text))) == expected
    assert len(search_models(catalog, ADMIN, ModelSearch(""))) == len(MODELS)  # and the table survived


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[31m", "a\u202eb", "x" * 129, "line\nbreak"])
def test_search_text_with_hidden_characters_or_too_long_is_refused(catalog: Settings, text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        search_models(catalog, ADMIN, ModelSearch(text))
    assert "\n" not in str(info.value)


def test_search_is_bounded_and_a_limited_token_finds_only_models_it_may_see(catalog: Settings) -> None:
    assert names(search_models(catalog, ADMIN, ModelSearch("e", limit=2))) == ["bert", "pct"]
    limited = Caller("ci", "reader", "under*")
    assert names(search_models(catalog, limited, ModelSearch("score"))) == ["under_score", "underxscore"]
    # The limit counts what the token may read, not the models it may not see.
    assert names(search_models(catalog, limited, ModelSearch("e", limit=1))) == ["under_score"]
    assert search_models(catalog, limited, ModelSearch("resnet")) == []
    for bad in (0, 1001, True):
        with pytest.raises(InvalidInput):
            search_models(catalog, ADMIN, ModelSearch("x", limit=bad))


def test_archived_versions_do_not_make_their_model_match(catalog: Settings) -> None:
    client = LocalClient(catalog)
    client.archive("resnet:1")
    assert search_models(catalog, ADMIN, ModelSearch("vision")) == []
    assert names(search_models(catalog, ADMIN, ModelSearch("resnet"))) == ["resnet"]  # its name still does


def test_versions_search_by_tag_spans_models_and_names_each_model(catalog: Settings, tmp_path: Path) -> None:
    client = LocalClient(catalog)
    _register(client, tmp_path / "again", "bert", "Text encoder for search", {"team": "vision"})
    found = search_versions(catalog, ADMIN, VersionQuery(None, tags={"team": "vision"}))
    assert [(v.model, v.version) for v in found] == [("bert", 2), ("resnet", 1)]
    assert search_versions(catalog, ADMIN, VersionQuery(None, tags={"team": "vision%"})) == []
    limited = Caller("r", "reader", "res*")
    assert [
        v.model for v in search_versions(catalog, limited, VersionQuery(None, tags={"team": "vision"}))
    ] == ["resnet"]
    assert len(search_versions(catalog, ADMIN, VersionQuery(None, limit=3))) == 3
    with pytest.raises(InvalidInput):
        search_versions(catalog, ADMIN, VersionQuery(None, tags={"bad key!": "x"}))


def test_cli_models_list_search_and_versions_list_tag_across_models(catalog: Settings) -> None:
    result = direct_cli(catalog, "models", "list", "--search", "VISION", "--json")
    assert result.exit_code == 0, result.output
    assert [m["name"] for m in json.loads(result.stdout)] == ["resnet"]
    result = direct_cli(catalog, "models", "list", "--search", "%")
    assert result.exit_code == 0 and "pct" in result.stdout and "resnet" not in result.stdout

    result = direct_cli(catalog, "versions", "list", "--tag", "team=nlp", "--json")
    assert result.exit_code == 0, result.output
    assert [(v["model"], v["version"]) for v in json.loads(result.stdout)] == [("bert", 1)]
    result = direct_cli(catalog, "versions", "list", "--tag", "team=nlp")
    assert result.exit_code == 0 and "bert:1" in result.stdout

    result = direct_cli(catalog, "models", "list", "--search", "a\x1bb")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "hidden character" in result.stderr
    result = direct_cli(catalog, "versions", "list", "--tag", "nonsense")
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr


@pytest.fixture
def api(catalog: Settings) -> Iterator[tuple[TestClient, str]]:
    """The app in-process (no jobs run) and a reader token."""
    # PostgreSQL's tokens outlive a test (conftest truncates the registry's own tables): a fresh name.
    reader = LocalClient(catalog).create_token(f"reader-{uuid.uuid4().hex[:8]}", "reader").secret
    with TestClient(create_app(catalog, run_jobs=False)) as client:
        yield client, reader


def test_api_models_q_searches_in_sql_with_hostile_values(api: tuple[TestClient, str]) -> None:
    client, reader = api
    auth = {"Authorization": f"Bearer {reader}"}

    def q(text: str, **params: object) -> list[str]:
        response = client.get("/api/v1/models", params={"q": text, **params}, headers=auth)
        assert response.status_code == 200, response.text
        return [m["name"] for m in response.json()]

    assert q("team=VISION") == ["resnet"]
    assert q("%") == ["pct"]
    assert q("_") == ["under_score"]
    assert q("' OR ''='") == []
    assert q("e", limit=1) == ["bert"]
    assert len(q("")) == len(MODELS)  # an empty box lists everything
    for bad in ("a\x00b", "\u202e"):
        response = client.get("/api/v1/models", params={"q": bad}, headers=auth)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_input"
    assert client.get("/api/v1/models", params={"q": "x" * 129}, headers=auth).status_code == 422
    assert client.get("/api/v1/models", params={"q": "x", "limit": 0}, headers=auth).status_code == 422

    response = client.get("/api/v1/versions", params={"tag": "team=vision"}, headers=auth)
    assert response.status_code == 200
    assert [(v["model"], v["version"]) for v in response.json()] == [("resnet", 1)]
    assert client.get("/api/v1/versions", params={"tag": "oops"}, headers=auth).status_code == 400


def test_the_models_page_search_box_uses_the_same_search(api: tuple[TestClient, str]) -> None:
    client, reader = api
    client.post("/login", data={"token": reader, "next": "/"}, follow_redirects=False)
    page = client.get("/", params={"q": "team=nlp"})
    assert page.status_code == 200
    assert 'href="/models/bert"' in page.text and 'href="/models/resnet"' not in page.text
    page = client.get("/", params={"q": "%"})
    assert 'href="/models/pct"' in page.text and 'href="/models/bert"' not in page.text
    page = client.get("/", params={"q": "a\x1bb"})
    assert page.status_code == 400 and "hidden character" in page.text


def test_the_python_client_searches_through_the_server_the_same_way(api: tuple[TestClient, str]) -> None:
    from regctl.remote import Client

    app, reader = api
    remote = Client("http://testserver", reader)
    remote._http.close()
    # The same requests, carried in-process to the app instead of over a socket.
    remote._http = TestClient(
        app.app, base_url="http://testserver/api/v1", headers={"Authorization": f"Bearer {reader}"}
    )
    assert names(remote.models("VISION")) == ["resnet"]
    assert names(remote.models("e", limit=1)) == ["bert"]
    assert [(v.model, v.version) for v in remote.versions(None, tags={"team": "nlp"})] == [("bert", 1)]
    assert [a.uri for a in remote.version("resnet:1").artifacts] == [
        "/api/v1/versions/resnet:1/artifacts/source"
    ]
    with pytest.raises(InvalidInput, match="hidden character"):
        remote.models("a\x1bb")
