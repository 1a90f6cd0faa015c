"""The console as an ASGI app (Starlette): `create_app(settings)` to serve or mount it.

Pages are server-rendered HTML; a small script of its own (`static/console.js`) refreshes
the live parts. Responses carry a content security policy that allows no inline script and
nothing from another origin, and forbid framing. Errors of the library (`TetherError`: an
unknown session or dead letter, a bad filter, a refused action, an unreachable broker) are
shown as a page saying what happened, with the status code that fits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from actors import Settings
from actors.errors import NamespaceNotFoundError, SessionNotFoundError
from dlq import DlqError, NoDeadLetterTopicError, UnknownDeadLetterError
from eventstore.errors import TetherError, UsageError
from sagas import SagaError, SagaNotFoundError, SagaTimeoutError

from . import deadletter_pages, saga_pages, session_pages
from .config import ConsoleConfig
from .errors import ActionRefusedError
from .jobs import Job, Jobs
from .layout import page
from .markup import Safe, render

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


def _status(exc: TetherError) -> int:
    if isinstance(exc, ActionRefusedError):
        return 403
    if isinstance(exc, SessionNotFoundError | UnknownDeadLetterError | SagaNotFoundError):
        return 404
    if isinstance(exc, NamespaceNotFoundError | NoDeadLetterTopicError):
        return 404
    if isinstance(exc, UsageError | DlqError | SagaError) and not isinstance(exc, SagaTimeoutError):
        return 400
    return 503 if getattr(exc, "retriable", False) else 500


def create_app(settings: Settings | None = None, config: ConsoleConfig | None = None) -> Starlette:
    """The console for the namespace of `settings` (embedded log or Kafka), as an ASGI app.

    Args:
        settings: where the log is (default: ``TETHER_*`` variables).
        config: who may act (default: ``TETHER_CONSOLE__*`` variables; no token: read-only).
    """
    settings = settings or Settings()
    config = config or ConsoleConfig()
    jobs = Jobs()
    namespace = settings.namespace

    def html(body: Safe, *, title: str, section: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(
            page(config, title=title, section=section, body=body, namespace=namespace),
            status_code=status,
            headers=SECURITY_HEADERS,
        )

    def guarded(section: str, fn: Callable[[Request], Awaitable[tuple[str, Safe] | Safe]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                out = await fn(request)
            except TetherError as exc:
                body = render('<p class="error" id="error">{m}</p>', m=str(exc))
                if request.headers.get("X-Console-Fragment"):
                    return HTMLResponse(body, status_code=_status(exc), headers=SECURITY_HEADERS)
                return html(body, title="Error", section=section, status=_status(exc))
            if isinstance(out, tuple):
                title, body = out
                if request.headers.get("X-Console-Fragment") and not title:
                    return HTMLResponse(body, headers=SECURITY_HEADERS)
                return html(body, title=title, section=section)
            return html(out, title="Done" if request.method == "POST" else "", section=section)

        return endpoint

    def key_params(request: Request) -> tuple[str, str]:
        return request.path_params["object"], request.path_params["key"]

    async def sessions(request: Request) -> tuple[str, Safe]:
        return await session_pages.session_list(request, settings, config)

    async def session(request: Request) -> tuple[str, Safe]:
        return await session_pages.session_page(request, settings, config, *key_params(request))

    async def timeline(request: Request) -> tuple[str, Safe]:
        return "", await session_pages.timeline(request, settings, config, *key_params(request))

    async def restart(request: Request) -> Safe:
        return await session_pages.restart(request, settings, config, *key_params(request))

    async def cancel(request: Request) -> Safe:
        return await session_pages.cancel(request, settings, config, *key_params(request))

    async def complete_awakeable(request: Request) -> Safe:
        return await session_pages.complete_awakeable(request, settings, config, *key_params(request))

    async def letters(request: Request) -> tuple[str, Safe]:
        return await deadletter_pages.letters_page(request, settings, config)

    async def letter(request: Request) -> tuple[str, Safe]:
        return await deadletter_pages.letter_page(request, settings, config, request.path_params["id"])

    async def replay(request: Request) -> Safe:
        return await deadletter_pages.replay_one(request, settings, config, request.path_params["id"])

    async def discard(request: Request) -> Safe:
        return await deadletter_pages.discard_one(request, settings, config, request.path_params["id"])

    async def bulk(request: Request) -> Response:
        try:
            url = await deadletter_pages.bulk(request, settings, config, jobs)
        except TetherError as exc:
            body = render('<p class="error" id="error">{m}</p>', m=str(exc))
            return html(body, title="Error", section="dead-letters", status=_status(exc))
        return RedirectResponse(url, status_code=303)

    def job_of(request: Request) -> Job:
        job = jobs.get(request.path_params["id"])
        if job is None:
            raise UsageError(f"no bulk job {request.path_params['id']!r} (the console keeps them until it restarts)")
        return job

    async def job(request: Request) -> tuple[str, Safe]:
        return "Bulk action", deadletter_pages.job_page(job_of(request), config)

    async def job_fragment(request: Request) -> tuple[str, Safe]:
        return "", deadletter_pages.job_progress(job_of(request))

    async def sagas_list(request: Request) -> tuple[str, Safe]:
        return await saga_pages.saga_list(request, settings, config)

    def saga_params(request: Request) -> tuple[str, str]:
        return request.path_params["saga"], request.path_params["saga_id"]

    async def saga(request: Request) -> tuple[str, Safe]:
        return await saga_pages.saga_page(request, settings, config, *saga_params(request))

    async def saga_retry(request: Request) -> Safe:
        return await saga_pages.retry(request, settings, config, *saga_params(request))

    async def home(request: Request) -> Response:
        return RedirectResponse("/sessions", status_code=303)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await jobs.close()

    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/sessions", guarded("sessions", sessions)),
        Route("/sessions/{object}/{key:path}", guarded("sessions", session)),
        Route("/fragments/timeline/{object}/{key:path}", guarded("sessions", timeline)),
        Route("/actions/restart/{object}/{key:path}", guarded("sessions", restart), methods=["POST"]),
        Route("/actions/cancel/{object}/{key:path}", guarded("sessions", cancel), methods=["POST"]),
        Route("/actions/awakeable/{object}/{key:path}", guarded("sessions", complete_awakeable), methods=["POST"]),
        Route("/dead-letters", guarded("dead-letters", letters)),
        Route("/dead-letters/{id}", guarded("dead-letters", letter)),
        Route("/actions/dead-letters/bulk", bulk, methods=["POST"]),
        Route("/actions/dead-letters/{id}/replay", guarded("dead-letters", replay), methods=["POST"]),
        Route("/actions/dead-letters/{id}/discard", guarded("dead-letters", discard), methods=["POST"]),
        Route("/jobs/{id}", guarded("dead-letters", job)),
        Route("/fragments/jobs/{id}", guarded("dead-letters", job_fragment)),
        Route("/sagas", guarded("sagas", sagas_list)),
        Route("/sagas/{saga}/{saga_id:path}", guarded("sagas", saga)),
        Route("/actions/saga-retry/{saga}/{saga_id:path}", guarded("sagas", saga_retry), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.settings = settings
    app.state.config = config
    app.state.jobs = jobs
    return app
