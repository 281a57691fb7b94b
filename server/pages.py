"""The web pages at `/`: models, a model, a version's validation report, and jobs with live progress.

Rendered on the server with Jinja2 (autoescaped: names, warnings and errors may come from hostile
model code); no build step, one small vendored script for live progress. Every page reads through the
same service functions as the API, with the caller the session cookie stands for, so a page shows
exactly what that token may read. The pages never write: changes stay in the CLI and the API, and a
writer sees the CLI lines for them, never a button.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from regctl.registry.access import Caller
from regctl.registry.entities import ModelDetail
from regctl.registry.errors import NotFound, RegctlError, Unauthenticated
from regctl.registry.requests import VersionQuery
from regctl.registry.search import ModelSearch
from regctl.registry.settings import Settings
from regctl.server import artifacts_api, jobs_api
from regctl.server.auth import caller_for, settings_of
from regctl.server.cards import render_card
from regctl.server.job_view import clock, job_row
from regctl.server.page_auth import from_this_site, page_caller, safe_next, signed_in, signed_out, to_login
from regctl.server.page_format import FILTERS, page_text, visible_events
from regctl.server.report_view import DEPLOYABLE, build_view, segments
from regctl.server.responses import public_job, redact_paths
from regctl.server.source_view import annotated_source
from regctl.service import aliases, catalog, jobs, models, promotion_requests

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(FILTERS, clock=clock, segments=segments)
templates.env.finalize = page_text  # model and registrant text: no hidden character reaches a page
router = APIRouter(include_in_schema=False)
# Pages load only their own script and stylesheet; nothing may frame them.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
LOGIN_BODY_LIMIT = 8192
SEARCH_LIMIT = 200  # models a search shows; the page says when there may be more
Name = Annotated[str, PathParam(max_length=128)]
Ref = Annotated[str, PathParam(max_length=200)]
JobId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """A page from its template, with the pages' security headers."""
    return templates.TemplateResponse(request, template, context, status_code=status_code, headers=HEADERS)


async def page(request: Request, template: str, build: Callable[[Caller], dict[str, Any]]) -> Response:
    """Sign-in check, then `build(caller)` in a thread, then the template; a refused read is a page too."""
    caller = await page_caller(request)
    if caller is None:
        return to_login(request)
    try:
        context = await run_in_threadpool(build, caller)
    except RegctlError as exc:
        return render(
            request,
            "error.html",
            {
                "caller": caller,
                "error": redact_paths(settings_of(request), str(exc)),
                "status": exc.http_status,
            },
            exc.http_status,
        )
    return render(request, template, {"caller": caller, **context})


@router.get("/favicon.ico")
def favicon() -> Response:
    """The pages' icon, where browsers look for it first (an SVG: every current browser takes one)."""
    return FileResponse(
        HERE / "static" / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/login")
async def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    """The sign-in form (a signed-in browser goes straight on)."""
    if await page_caller(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"caller": None, "next": safe_next(next), "error": None})


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token typed into the form; on success keep it in the session cookie."""
    if not from_this_site(request):
        return _cross_site(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_BODY_LIMIT:
            return render(
                request, "login.html", {"caller": None, "next": "/", "error": "the form is too large"}, 413
            )
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    token = (form.get("token") or [""])[0].strip()
    target = safe_next((form.get("next") or ["/"])[0])
    try:
        await caller_for(request, token)
    except Unauthenticated as exc:
        return render(request, "login.html", {"caller": None, "next": target, "error": str(exc)}, 401)
    return signed_in(request, token, target)


@router.post("/logout")
def logout(request: Request) -> Response:
    """Forget the session cookie."""
    if not from_this_site(request):
        return _cross_site(request)
    return signed_out()


def _cross_site(request: Request) -> Response:
    """The answer to a session form posted from another site's page: refused, nothing changed."""
    error = "this form was sent from another site; sign in from this site's own sign-in page"
    return render(request, "login.html", {"caller": None, "next": "/", "error": error}, 403)


@router.get("/")
async def models_page(request: Request, q: Annotated[str, Query(max_length=128)] = "") -> Response:
    """Every model the token may read, with its newest ready version; `q` searches names, descriptions
    and tags (the API's search, in SQL)."""
    settings = settings_of(request)

    def build(caller: Caller) -> dict[str, Any]:
        if not q.strip():
            return {"models": models.list_models(settings, caller), "q": q, "limited": False}
        found = catalog.search_models(settings, caller, ModelSearch(q, SEARCH_LIMIT))
        return {"models": found, "q": q, "limited": len(found) >= SEARCH_LIMIT}

    return await page(request, "models.html", build)


@router.get("/models/{name}")
async def model_page(request: Request, name: Name) -> Response:
    """A model's versions, aliases and alias history."""
    settings = settings_of(request)

    def build(caller: Caller) -> dict[str, Any]:
        detail = models.show_model(settings, caller, name)
        card = _newest_card(settings, caller, detail)
        return {
            "model": detail,
            "card": render_card(card[1]) if card else None,
            "card_ref": card[0] if card else None,
            "versions": models.list_versions(settings, caller, VersionQuery(name, archived=True, limit=200)),
            "history": list(reversed(aliases.alias_history(settings, caller, name)))[:100],
            "requests": promotion_requests.list_requests(settings, caller, name),
            "may_alias": caller.can("alias", name),
            "may_approve": caller.can("approve-alias", name),
        }

    return await page(request, "model.html", build)


def _newest_card(settings: Settings, caller: Caller, detail: ModelDetail) -> tuple[str, str] | None:
    """(ref, markdown) of the card a model page shows: its newest ready version's, else its newest's."""
    refs = [detail.name]
    if detail.versions:
        refs.append(f"{detail.name}:{detail.versions[0].version}")
    for ref in refs:
        try:
            version = models.show_version(settings, caller, ref)
        except NotFound:  # no ready version yet
            continue
        return (version.ref, version.card) if version.card else None
    return None


@router.get("/versions/{ref}")
async def version_page(request: Request, ref: Ref) -> Response:
    """A version, its validation report and its source annotated with the battery's coverage."""
    settings = settings_of(request)

    def build(caller: Caller) -> dict[str, Any]:
        version = models.show_version(settings, caller, ref)
        return {
            "version": version,
            "view": build_view(version),
            "source": annotated_source(settings, caller, version),
            "card": render_card(version.card) if version.card else None,
            "jobs": [job_row(public_job(settings, j)) for j in version.jobs],
            "may_fetch": caller.can("fetch", version.model),
            "deployable": DEPLOYABLE,
            "may_alias": caller.can("alias", version.model),
            "may_submit": caller.can("submit", version.model),
        }

    return await page(request, "version.html", build)


@router.get("/jobs")
async def jobs_page(
    request: Request,
    state: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """The newest jobs, running ones updating live."""
    settings = settings_of(request)

    def build(caller: Caller) -> dict[str, Any]:
        found = jobs.list_jobs(settings, caller, state=state, model=model or None, limit=100)
        return {"jobs": [job_row(public_job(settings, j)) for j in found], "state": state, "model": model}

    return await page(request, "jobs.html", build)


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: JobId) -> Response:
    """One job, its stage and percentage updating live until it ends."""
    settings = settings_of(request)

    def build(caller: Caller) -> dict[str, Any]:
        job = jobs.show_job(settings, caller, job_id)
        return {"job": job_row(public_job(settings, job)), "may_cancel": caller.can("cancel", job.model)}

    return await page(request, "job.html", build)


@router.get("/jobs/{job_id}/events")
async def job_events(request: Request, job_id: JobId) -> Response:
    """The job's server-sent events for the page's script (the cookie instead of a bearer header)."""
    caller = await page_caller(request)
    if caller is None:
        return Response("sign in first", status_code=401, media_type="text/plain")
    stream: StreamingResponse = await jobs_api.events(request, job_id, caller)
    stream.body_iterator = visible_events(stream.body_iterator)  # the page shows what the pages show
    return stream


@router.get("/files/{ref}/{kind}")
async def download(request: Request, ref: Ref, kind: artifacts_api.Kind) -> Response:
    """An artifact download for the browser: the API's verified stream, authorised by the cookie."""
    caller = await page_caller(request)
    if caller is None:
        return to_login(request)
    return await run_in_threadpool(artifacts_api.download, request, ref, kind, caller, False)
