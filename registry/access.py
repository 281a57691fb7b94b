"""Who may do what: callers, roles, model patterns and protected aliases (pure policy, no I/O).

A caller is whoever acts through the service: a token's owner over HTTP, or the operating-system
user of a direct command (who holds the database credentials and so is trusted like an admin).
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from regctl.registry.errors.access import InvalidModelPattern, ModelNotCovered, RoleTooLow
from regctl.registry.refs import check_model_name

ROLE_RANK = {"reader": 0, "writer": 1, "admin": 2}

# What each action needs; the model pattern is checked on top of the role.
NEEDS = {
    "read": "reader",
    "fetch": "reader",
    "register": "writer",
    "submit": "writer",
    "cancel": "writer",
    "retry": "writer",
    "alias": "writer",
    "request-alias": "writer",  # ask for a protected alias to move; an admin approves it
    "tag": "writer",
    "archive": "writer",
    "delete": "admin",
    "gc": "admin",
    "protected-alias": "admin",
    "approve-alias": "admin",
    "tokens": "admin",
    "audit": "admin",
    "webhooks": "admin",
    "keys": "admin",
}


_PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]-]{1,128}\Z")


def check_model_pattern(pattern: str) -> str:
    """A model name or glob (`resnet*`) as tokens and webhooks take it; InvalidInput otherwise."""
    if not _PATTERN.match(pattern):
        raise InvalidModelPattern(pattern=pattern)
    if not any(c in pattern for c in "*?["):
        check_model_name(pattern)
    return pattern


def model_matches(model: str, pattern: str | None) -> bool:
    """True when `pattern` (a model name or glob such as `resnet*`; None for every model) covers `model`."""
    return pattern is None or fnmatchcase(model, pattern)


@dataclass(frozen=True)
class Caller:
    """Who is acting: a name for the records, a role, an optional model pattern and an address."""

    name: str
    role: str = "admin"
    model_pattern: str | None = None
    address: str | None = None

    def may_see(self, model: str) -> bool:
        """True when the caller's model pattern (if any) matches `model`; admins see every model."""
        return self.role == "admin" or model_matches(model, self.model_pattern)

    def can(self, action: str, model: str | None = None) -> bool:
        """True when the caller's role allows `action` on `model` (or globally when `model` is None)."""
        if ROLE_RANK[self.role] < ROLE_RANK[NEEDS[action]]:
            return False
        return model is None or self.may_see(model)

    def require(self, action: str, model: str | None = None) -> None:
        """Raise NotAllowed, saying which role or pattern is missing, unless `can(action, model)`."""
        if self.can(action, model):
            return
        if ROLE_RANK[self.role] < ROLE_RANK[NEEDS[action]]:
            what = f"{action} on {model}" if model else action
            raise RoleTooLow(name=self.name, role=self.role, what=what, needed=NEEDS[action])
        raise ModelNotCovered(name=self.name, pattern=self.model_pattern, model=model)


def alias_action(alias: str, protected: tuple[str, ...]) -> str:
    """The action that setting or removing `alias` needs: protected aliases are for admins only."""
    return "protected-alias" if alias.lower() in {name.lower() for name in protected} else "alias"


def current_user() -> str:
    """Who is acting, for `created_by` and the alias history."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def local_caller() -> Caller:
    """The caller of a direct command: the OS user, trusted like an admin (it holds the database)."""
    return Caller(current_user(), "admin", None, "local")
