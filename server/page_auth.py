"""Signing in to the pages: a token typed once, kept in an HttpOnly cookie, checked like a bearer token.

The cookie holds the token itself (the server keeps only its hash), so revoking the token signs the
browser out. It is HttpOnly (no script can read it), SameSite=Strict (no other site's page can make
the browser send it) and Secure when the request came over HTTPS. The API never reads the cookie: it
answers bearer tokens only, so a browser session cannot be used to write through the API.

The two forms that change the session (`POST /login`, `POST /logout`) take a browser's request only
from this site's own pages (`from_this_site`): another site could otherwise sign a visitor out, or
in under the other site's token (login CSRF).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse

from regctl.registry.access import Caller
from regctl.registry.errors import Unauthenticated
from regctl.server.auth import caller_for

COOKIE = "regctl_token"
SESSION_S = 8 * 3600


async def page_caller(request: Request) -> Caller | None:
    """The caller the browser's cookie stands for; None when it has none or it is no longer valid."""
    presented = request.cookies.get(COOKIE)
    if not presented:
        return None
    try:
        return await caller_for(request, presented)
    except Unauthenticated:
        return None


def from_this_site(request: Request) -> bool:
    """False when a browser says the request comes from another site's page.

    Sec-Fetch-Site decides where the browser sends it (every current one does): our own pages send
    Origin "null", as their Referrer-Policy is no-referrer, so Origin cannot. Without it, Origin must
    name this host. A request with neither (curl, a script) is no cross-site forgery: browsers forge.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":  # no site to compare, and no Sec-Fetch-Site to say it was ours
        return False
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def safe_next(target: str | None) -> str:
    """A path on this site to go to after signing in; anything else (another host) becomes the home page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def to_login(request: Request) -> RedirectResponse:
    """Send a browser without a valid cookie to the sign-in page, coming back here afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def signed_in(request: Request, token: str, target: str | None) -> RedirectResponse:
    """The redirect that sets the session cookie after a token checked out."""
    response = RedirectResponse(safe_next(target), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def signed_out() -> RedirectResponse:
    """The redirect that clears the session cookie."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
