"""Every failure as a JSON body `{"error": {"code", "message"}}` with the status its error class names."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from regctl.registry.errors import RegctlError, TooManyRequests
from regctl.server.responses import redact_paths

log = logging.getLogger("regctl.server")


class ErrorDetail(BaseModel):
    """What went wrong, in one line, and a stable machine-readable code."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx response."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Bad input: a name, a reference, a spec or a bundle is wrong",
    401: "No token, or a token that is unknown, expired or revoked",
    403: "The token's role or model pattern does not allow this",
    404: "No such model, version, alias, job, token or artifact",
    409: "The change conflicts with the current state",
    413: "The upload is larger than REGCTL_MAX_BUNDLE_BYTES + REGCTL_MAX_WEIGHTS_BYTES",
    408: "The upload sent nothing for REGCTL_BODY_TIMEOUT_S",
    422: "The request does not match the API's schema",
    429: "Too many requests from the token or address, or uploads of the token; retry after Retry-After",
    503: "The database, broker or artifact store is unreachable",
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI entries for the error statuses an endpoint can answer with."""
    wanted = statuses or (400, 401, 403, 404, 422, 503)
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in wanted}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON error response."""
    body = {"error": {"code": code, "message": " ".join(message.split())[:2000]}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_headers(exc: RegctlError) -> dict[str, str] | None:
    """The headers an error's answer carries: how to authenticate (401), when to come back (429)."""
    if exc.http_status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
        return {"Retry-After": str(exc.retry_after)}
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Map regctl errors, schema errors, unknown routes and crashes to JSON error bodies."""

    @app.exception_handler(RegctlError)
    async def _regctl(request: Request, exc: RegctlError) -> JSONResponse:
        headers = error_headers(exc)
        if exc.http_status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        # The server's log keeps the paths; a client reads the settings' names instead (a damaged blob).
        message = redact_paths(request.app.state.settings, str(exc))
        return error_response(exc.http_status, exc.code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid value')}" if where else "the request is not valid"
        return error_response(422, "invalid_request", f"{message}; see /api/v1/openapi.json")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the server log")
