"""A property-based fuzz of the HTTP API from its own OpenAPI schema (schemathesis): no 500s, and
every response matches the schema, whatever the parameters and bodies."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks as st_checks

from regctl.local import LocalClient
from regctl.registry.settings import Settings
from tests.conftest import write_model_dir
from tests.factories import promotable

# More with REGCTL_FUZZ_EXAMPLES=500 for a longer hunt; CI runs the default.
EXAMPLES = int(os.environ.get("REGCTL_FUZZ_EXAMPLES", "40"))
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


@st.composite
def tars(draw: st.DrawFn) -> bytes:
    """Small tars with arbitrary member names, types and contents: hostile and honest bundles alike."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _ in range(draw(st.integers(0, 4))):
            name = draw(
                st.sampled_from(["regctl.toml", "model.py", "../up.py", "/abs.py", "a/b.py"])
                | st.text(min_size=1, max_size=20)
            )
            member = tarfile.TarInfo(name)
            member.type = draw(
                st.sampled_from(
                    [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]
                )
            )
            member.linkname = draw(st.sampled_from(["/etc/passwd", "model.py", "../x"]))
            data = draw(st.binary(max_size=200)) if member.type == tarfile.REGTYPE else b""
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return out.getvalue()


schemathesis.openapi.media_type("application/x-tar", st.binary(max_size=1024) | tars())


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str]:
    from regctl.server.app import create_app

    home = tmp_path_factory.mktemp("fuzz") / "home"
    # thousands of requests a minute from one token: the rate limits have tests of their own
    config = Settings.from_env({"REGCTL_RATE_LIMIT": "off", "REGCTL_ADDRESS_RATE_LIMIT": "off"}, home=home)
    direct = LocalClient(config)
    model = write_model_dir(home.parent / "model")
    direct.register("net", model, convert=False)
    promotable(config, "net")
    direct.alias("net@staging", 1)
    admin = direct.create_token("fuzzer", "admin").secret
    return create_app(config, run_jobs=False), admin


def _labels() -> list[str]:
    """Every operation of the schema (read without a database: building the app touches none)."""
    from regctl.server.app import create_app

    paths = create_app(Settings.from_env({}, home=Path("/nonexistent")), run_jobs=False).openapi()["paths"]
    # The event stream of a live job never ends by design; it is tested on a real server instead.
    return [
        f"{method.upper()} {path}"
        for path, ops in paths.items()
        for method in ops
        if not path.endswith("/events")
    ]


@pytest.mark.parametrize("label", _labels())
def test_the_api_answers_every_generated_request_without_a_server_error_and_within_its_schema(
    label: str, fuzzed: tuple[object, str]
) -> None:
    app, admin = fuzzed
    operation = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app).find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {admin}"}, checks=CHECKS)

    call()
