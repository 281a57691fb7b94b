"""API tokens: a secret shown once at creation, stored only as a hash, checked in constant time.

A token reads `rgt_<id>_<secret>`: the id finds the row by primary key, and the secret's sha256 is
compared with `hmac.compare_digest`. The secret is 256 random bits, so a plain sha256 is enough (a slow
password hash protects guessable passwords, which these are not).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select

from regctl.registry import audit
from regctl.registry.access import Caller
from regctl.registry.db import session_scope
from regctl.registry.entities import NewToken, TokenInfo
from regctl.registry.errors.access import (
    InvalidToken,
    TokenExpired,
    TokenNameTaken,
    TokenRequired,
    TokenRevoked,
)
from regctl.registry.errors.lookup import UnknownToken
from regctl.registry.requests import TokenRequest
from regctl.registry.schema import Token, utcnow
from regctl.registry.settings import Settings

PREFIX = "rgt_"
_TOKEN = re.compile(r"^rgt_([0-9]{1,12})_([A-Za-z0-9_-]{20,100})\Z")
LAST_USED_EVERY = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: Token) -> TokenInfo:
    return TokenInfo(
        row.name,
        row.role,
        row.model_pattern,
        row.created_by,
        row.created_at,
        row.expires_at,
        row.revoked_at,
        row.last_used_at,
    )


def create_token(settings: Settings, caller: Caller, request: TokenRequest) -> NewToken:
    """Create a token and return it with its secret, which is never stored and never shown again."""
    expires_at = utcnow() + request.lifetime if request.lifetime is not None else None
    secret = secrets.token_urlsafe(32)
    with session_scope(settings.database_url) as session:
        if session.scalar(select(Token.id).where(Token.name == request.name)) is not None:
            raise TokenNameTaken(name=request.name)
        row = Token(
            name=request.name,
            role=request.role,
            model_pattern=request.model_pattern,
            secret_sha256=_digest(secret),
            created_by=caller.name[:128],
            expires_at=expires_at,
        )
        session.add(row)
        session.flush()
        detail = {
            "role": request.role,
            "model_pattern": request.model_pattern,
            "expires_at": _iso(expires_at),
        }
        audit.record(session, caller, "token.create", f"token {request.name}", detail=detail)
        return NewToken(_info(row), f"{PREFIX}{row.id}_{secret}")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def list_tokens(settings: Settings) -> list[TokenInfo]:
    """Every token, newest first, revoked ones included (never their secrets)."""
    with session_scope(settings.database_url) as session:
        return [_info(row) for row in session.scalars(select(Token).order_by(Token.id.desc()))]


def revoke_token(settings: Settings, caller: Caller, name: str) -> TokenInfo:
    """Revoke the token named `name`; it is refused from then on. NotFound if there is none."""
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(Token).where(Token.name == name).with_for_update()).one_or_none()
        if row is None:
            raise UnknownToken(name=name)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.record(session, caller, "token.revoke", f"token {name}")
        return _info(row)


def authenticate_token(
    settings: Settings, presented: str | None, address: str | None = None
) -> tuple[Caller, datetime | None]:
    """The caller a token stands for and when the token expires (callers cache the answer until then).

    Unauthenticated when it is missing, unknown, expired or revoked; the message never repeats the token.
    """
    if not presented:
        raise TokenRequired()
    match = _TOKEN.match(presented)
    if match is None:
        raise InvalidToken()
    with session_scope(settings.database_url) as session:
        row = session.get(Token, int(match.group(1)))
        # Hash first and compare in constant time, so timing says nothing about how much matched.
        given = _digest(match.group(2))
        if row is None or not hmac.compare_digest(given, row.secret_sha256):
            raise InvalidToken()
        now = utcnow()
        if row.revoked_at is not None:
            raise TokenRevoked(name=row.name)
        if row.expires_at is not None and row.expires_at <= now:
            raise TokenExpired(name=row.name)
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
            row.last_used_at = now
        return Caller(row.name, row.role, row.model_pattern, address), row.expires_at
