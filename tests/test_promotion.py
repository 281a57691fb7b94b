"""The promotion policy: any alias points only at a ready version; a protected one (prod) only at a
ready version whose TorchScript carries a signed attestation, proved under a torch that
REGCTL_PROMOTION_TORCH lists. `--force` (admins) overrides it, and the audit trail records what it
overrode. Through the CLI on the embedded default here; tests/test_api.py has the same over HTTP.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from regctl.local import LocalClient
from regctl.registry.db import session_scope
from regctl.registry.errors.inputs import PromotionRefused
from regctl.registry.promotion import Candidate, refusal
from regctl.registry.schema import Model, ModelVersion
from regctl.registry.settings import Settings
from tests.conftest import cli_invoker
from tests.factories import linear_model, promotable

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _status(settings: Settings, name: str, version: int, status: str) -> None:
    with session_scope(settings.database_url) as session:
        row = session.scalars(
            select(ModelVersion).join(Model).where(Model.name == name, ModelVersion.version == version)
        ).one()
        row.status = status


@pytest.mark.parametrize(
    ("candidate", "protected", "allowed", "said"),
    [
        (Candidate("failed", True, "2.13.0"), False, (), "it failed its conversion or validation"),
        (Candidate("registered", False, None), False, (), "it was never converted"),
        (Candidate("validating", False, "2.13.0"), False, (), "it is still validating, not ready"),
        (Candidate("cancelled", False, None), True, (), "its conversion was cancelled"),
        (Candidate("ready", False, "2.13.0"), False, (), None),
        (Candidate("ready", False, "2.13.0"), True, (), "it carries no signed attestation"),
        (Candidate("ready", True, "2.13.0"), True, ("2.12.0",), "proved under torch 2.13.0, which"),
        (Candidate("ready", True, "2.13.0"), True, ("2.12.0", "2.13.0"), None),
        (Candidate("ready", True, "2.13.0"), True, (), None),
    ],
)
def test_the_rules(candidate: Candidate, protected: bool, allowed: tuple[str, ...], said: str | None) -> None:
    found = refusal(candidate, protected=protected, allowed_torch=allowed)
    assert (found is None) == (said is None) and (said is None or said in str(found)), found


def test_prod_to_a_failed_version_is_refused_for_an_admin_and_force_is_audited(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    run = cli_invoker(sqlite_settings)
    local = LocalClient(sqlite_settings)
    local.register("net", linear_model(tmp_path / "m"), convert=False)
    _status(sqlite_settings, "net", 1, "failed")
    refused = run("alias", "set", "net@prod", "1")  # the local user acts as an admin
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        "error: net@prod cannot move to version 1: it failed its conversion or validation, so nothing "
        "about it is proved; an admin may override this with --force, which the audit trail records"
    )
    assert local.model("net").aliases == {} and local.alias_history("net") == []
    staging = run("alias", "set", "net@staging", "1")
    assert staging.exit_code == 2 and "it failed its conversion" in staging.stderr

    forced = run("alias", "set", "net@prod", "1", "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["version"] == 1
    [entry] = [e for e in local.audit(model="net") if e.action == "alias.set"]
    assert entry.detail == {
        "from": None,
        "to": 1,
        "forced": "it failed its conversion or validation, so nothing about it is proved",
    }


def test_prod_needs_a_signature_and_an_allowed_torch(sqlite_settings: Settings, tmp_path: Path) -> None:
    local = LocalClient(sqlite_settings)
    local.register("net", linear_model(tmp_path / "m"), convert=False)
    _status(sqlite_settings, "net", 1, "ready")  # ready, but nothing signed it
    with pytest.raises(PromotionRefused, match="carries no signed attestation"):
        local.alias("net@prod", 1)
    assert local.alias("net@staging", 1).version == 1  # an unprotected alias asks only for ready

    local.register("net", linear_model(tmp_path / "m"), convert=False, new_version=True)
    promotable(sqlite_settings, "net", 2)  # ready and signed, proved under 2.13.0+cpu
    pinned = LocalClient(dataclasses.replace(sqlite_settings, promotion_torch=("2.12.0+cpu",)))
    with pytest.raises(PromotionRefused, match=r"torch 2\.13\.0\+cpu, which REGCTL_PROMOTION_TORCH"):
        pinned.alias("net@prod", 2)
    allowed = LocalClient(dataclasses.replace(sqlite_settings, promotion_torch=("2.13.0+cpu",)))
    assert allowed.alias("net@prod", 2).version == 2


@pytest.mark.slow
def test_a_real_failed_conversion_and_a_real_signed_one(sqlite_settings: Settings) -> None:
    pytest.importorskip("torch")
    run = cli_invoker(sqlite_settings)
    assert run("keys", "init").exit_code == 0
    failed = run("register", "conditional", str(EXAMPLES / "conditional"), "--method", "trace", "--wait")
    assert failed.exit_code == 1
    refused = run("alias", "set", "conditional@prod", "1")
    assert refused.exit_code == 2 and "failed its conversion" in refused.stderr
    ready = run("register", "linear", str(EXAMPLES / "linear"), "--wait")
    assert ready.exit_code == 0, ready.output
    moved = run("alias", "set", "linear@prod", "1")
    assert moved.exit_code == 0 and moved.stdout.strip() == "linear@prod -> 1", moved.output
