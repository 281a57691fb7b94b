"""Tokens: missing or no longer valid, not allowing an action, or asked for with bad input."""

from __future__ import annotations

from regctl.registry.errors import InvalidInput, NotAllowed, Unauthenticated


class TokenRequired(Unauthenticated):
    """Raised when a request that needs a token carries none."""

    template = "this request needs a token; send 'Authorization: Bearer <token>'"


class InvalidToken(Unauthenticated):
    """Raised when a presented token is not one the registry issued."""

    template = "the token is not valid; check REGCTL_TOKEN or ask an admin for a new one"


class TokenRevoked(Unauthenticated):
    """Raised when a presented token was revoked."""

    template = "token {name!r} was revoked; ask an admin for a new one"


class TokenExpired(Unauthenticated):
    """Raised when a presented token is past its expiry."""

    template = "token {name!r} expired; ask an admin for a new one"


class RoleTooLow(NotAllowed):
    """Raised when the token's role ranks below the one an action needs."""

    template = (
        "token {name!r} has role {role}; {what} needs role {needed}; ask an admin for a token with that role"
    )


class ModelNotCovered(NotAllowed):
    """Raised when the token's model pattern does not match the model acted on."""

    template = (
        "token {name!r} is limited to models matching {pattern!r}, not {model!r}; "
        "ask an admin for a token that covers it"
    )


class InvalidTokenName(InvalidInput):
    """Raised when a new token's name has characters or a length regctl does not allow."""

    template = (
        "token name {name!r} is not valid; use letters, digits, '.', '_', '@' and '-', "
        "starting with a letter or digit, at most 128 characters (e.g. ci-deploy)"
    )


class TokenNameTaken(InvalidInput):
    """Raised when a new token would take the name of an existing one (exit 2, HTTP 400 as before)."""

    template = "a token named {name!r} exists; pick another name or revoke it first"


class BadDuration(InvalidInput):
    """Raised when --expires is not a duration."""

    template = "--expires {text!r} is not a duration; use e.g. 12h, 90d, 2w or never"


class AdminTokenWithModel(InvalidInput):
    """Raised when an admin token is limited to a model pattern (admins cover every model)."""

    template = "an admin token covers every model; drop --model or pick role reader or writer"


class InvalidModelPattern(InvalidInput):
    """Raised when a token's model pattern is neither a model name nor a glob."""

    template = "model pattern {pattern!r} is not valid; use a model name or a glob such as 'resnet*'"
