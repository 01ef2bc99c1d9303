"""The page server: routes that each call one engine function and answer with a page or an HTML fragment."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from align_mcp.errors import AlignError, Conflict, InvalidInput, NotFound
from align_mcp.web import pages
from align_mcp.web.guard import TOKEN_COOKIE, PageGuard, cookie_value, token_matches

if TYPE_CHECKING:
    from align_mcp.store import Store

STATIC = Path(__file__).parent / "static"
MAX_BODY = 100_000
MAX_SKIPS = 99
"""A labeler's skipped runs stay reserved for them (so nobody else takes them meanwhile); past this many, the
oldest go back to being offered."""

T = TypeVar("T")


class PageState:
    """The store the pages use: given (tests, `serve --http`) or opened on first request."""

    def __init__(
        self, db: Path | None, store: Store | None, evaluator: str | None, token: str | None
    ) -> None:
        self.db = db
        self._store = store
        self.evaluator = evaluator
        self.token = token
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                from align_mcp.store import open_store

                self._store = open_store(self.db)
            return self._store


def _state(request: Request) -> PageState:
    state: PageState = request.app.state.pages
    return state


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """Run an engine call off the event loop (SQLite may wait on another process's write lock)."""
    return await anyio.to_thread.run_sync(lambda: fn(*args))


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"The request is {len(raw):,} bytes; the page sends at most {MAX_BODY:,}.")
    try:
        data = json.loads(raw or b"{}")
    except json.JSONDecodeError as e:
        raise InvalidInput(f"The request is not JSON ({e}).") from e
    if not isinstance(data, dict):
        raise InvalidInput("The request must be a JSON object.")
    return data


def _text(data: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"The request has no {key}.")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be text.")
    return value


def api(fn: Callable[[Request], Awaitable[dict[str, Any]]]) -> Callable[[Request], Awaitable[Response]]:
    """A JSON endpoint: an engine error becomes {"error": its message in the page's words} and stores nothing."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await fn(request))
        except AlignError as e:
            status = 409 if isinstance(e, Conflict) else 404 if isinstance(e, NotFound) else 400
            return JSONResponse({"error": pages.error_text(e)}, status_code=status)

    return endpoint


# ---- pages ------------------------------------------------------------------------------------------------


async def index(request: Request) -> Response:
    state = _state(request)
    if state.evaluator:
        return RedirectResponse(f"{_base(request)}/label/{quote(state.evaluator)}", status_code=303)
    from align_mcp.engine.queues import list_queues

    queues = await _call(list_queues, state.store)
    return HTMLResponse(pages.index_page(queues, _base(request)))


async def label_page(request: Request) -> Response:
    from align_mcp.engine.evaluators import get
    from align_mcp.engine.queues import summary

    name = request.path_params["evaluator"]
    store = _state(request).store
    try:
        ev = await _call(get, store, name)
        queue = await _call(summary, store, name)
    except AlignError as e:
        return HTMLResponse(pages.error_page(_base(request), pages.error_text(e)), status_code=404)
    return HTMLResponse(pages.label_page(ev, queue, _base(request)))


async def review_page(request: Request) -> Response:
    from align_mcp.engine import alignment
    from align_mcp.engine.evaluators import get

    name = request.path_params["evaluator"]
    store = _state(request).store
    base = _base(request)
    query = request.query_params
    try:
        ev = await _call(get, store, name)
    except AlignError as e:
        return HTMLResponse(pages.error_page(base, pages.error_text(e)), status_code=404)
    kind = ev.score_type.kind
    directions = {"binary": ["false_pass", "false_fail"], "ordinal": ["over", "under"]}.get(kind, [])
    direction = query.get("direction") or None
    try:
        run = int(query["run"]) if query.get("run") else await _call(alignment.latest_run_id, store, name)
        offset = int(query.get("offset") or 0)
    except ValueError:
        return HTMLResponse(pages.error_page(base, "run and offset must be whole numbers."), status_code=400)
    except AlignError as e:
        return HTMLResponse(pages.no_alignment_page(ev, pages.error_text(e), base))
    try:
        page = await _call(
            lambda: alignment.get_misaligned(store, name, run, direction, offset, 25, 20_000)  # type: ignore[arg-type]
        )
        report = await _call(alignment.report, store, run)
        runs = await _call(alignment.list_runs, store, name)
    except AlignError as e:
        return HTMLResponse(pages.error_page(base, pages.error_text(e)), status_code=400)
    flash = query.get("sent")
    return HTMLResponse(pages.review_page(ev, page, report, runs, direction, directions, base, flash))


async def second_review(request: Request) -> Response:
    """The review page's form: send the checked runs to a blind second review, then back to the page."""
    from align_mcp.engine.reviews import request_review

    name = request.path_params["evaluator"]
    base = _base(request)
    form = await request.form()
    run_ids = [str(v) for v in form.getlist("run_ids")]
    reason = str(form.get("reason") or "").strip() or None
    run = str(form.get("run") or "")
    back = f"{base}/review/{quote(name)}?run={quote(run)}"
    if not run_ids:
        return RedirectResponse(back + "&sent=" + quote("Check at least one case to send."), status_code=303)
    try:
        report = await _call(request_review, _state(request).store, name, run_ids, reason)
    except AlignError as e:
        return RedirectResponse(back + "&sent=" + quote(pages.error_text(e)), status_code=303)
    said = (
        f"Sent {len(report.requested)} run(s) to a blind second review ({report.pending_reviews} pending). "
        + " ".join(report.notes)
    )
    return RedirectResponse(back + "&sent=" + quote(said), status_code=303)


async def charts_page(request: Request) -> Response:
    from align_mcp.engine.evaluators import get

    name = request.path_params["evaluator"]
    try:
        ev = await _call(get, _state(request).store, name)
    except AlignError as e:
        return HTMLResponse(pages.error_page(_base(request), pages.error_text(e)), status_code=404)
    run = request.query_params.get("run") or ""
    return HTMLResponse(pages.charts_page(ev, _base(request), run if run.isdigit() else None))


async def chart_image(request: Request) -> Response:
    """One chart as SVG, drawn on the server from the engine's alignment runs; the page shows it as an image."""
    from align_mcp.web import charts

    name, kind = request.path_params["evaluator"], request.path_params["kind"]
    run = request.query_params.get("run") or ""
    try:
        if kind not in charts.CHART_KINDS:
            raise InvalidInput(f"No chart named {kind!r}; charts: {', '.join(charts.CHART_KINDS)}.")
        store = _state(request).store
        spec = await _call(charts.chart_spec, store, name, kind, int(run) if run.isdigit() else None)
        image = await _call(charts.svg, spec)
    except AlignError as e:
        return Response(pages.error_text(e), status_code=404, media_type="text/plain; charset=utf-8")
    return Response(image, media_type="image/svg+xml")


async def login_form(request: Request) -> Response:
    return HTMLResponse(pages.login_page(_base(request), request.query_params.get("next") or "/"))


async def login(request: Request) -> Response:
    state = _state(request)
    base = _base(request)
    form = await request.form()
    given = str(form.get("token") or "")
    target = str(form.get("next") or "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only paths on this server: the login never redirects elsewhere
    if state.token is None:
        return RedirectResponse(base + target, status_code=303)
    if not token_matches(given, state.token):
        page = pages.login_page(base, target, "That is not this server's token (ALIGN_MCP_TOKEN). Try again.")
        return HTMLResponse(page, status_code=401)
    response = RedirectResponse(base + target, status_code=303)
    response.set_cookie(
        TOKEN_COOKIE,
        cookie_value(state.token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=base or "/",
    )
    return response


# ---- the label view's requests ----------------------------------------------------------------------------


def _progress(store: Store, evaluator: str) -> str:
    from align_mcp.engine.evaluators import score_type_of
    from align_mcp.engine.queues import summary

    return pages.progress_html(summary(store, evaluator), score_type_of(store, evaluator))


def _next_run(store: Store, evaluator: str, labeler: str, skip: list[str]) -> dict[str, Any]:
    """Reserve the labeler's next run, passing over the ones they skipped (which stay reserved for them)."""
    from align_mcp.engine.ingest import get_run
    from align_mcp.engine.queues import next_items

    skip = skip[-MAX_SKIPS:]
    items = next_items(store, evaluator, labeler, limit=len(skip) + 1)
    fresh = [item for item in items if item.run_id not in skip]
    again = False
    if not fresh and items:
        fresh, again = items, True  # only skipped runs are left: offer them again
    if not fresh:
        return {"run_id": None, "html": pages.done_html(), "progress_html": _progress(store, evaluator)}
    run = get_run(store, fresh[0].run_id)
    return {
        "run_id": run.id,
        "html": pages.run_html(run),
        "progress_html": _progress(store, evaluator),
        "skips_cleared": again,
    }


@api
async def next_run(request: Request) -> dict[str, Any]:
    data = await _json_body(request)
    evaluator = _text(data, "evaluator")
    labeler = _text(data, "labeler")
    assert evaluator is not None and labeler is not None
    return await _call(_next_run, _state(request).store, evaluator, labeler.strip(), _skips(data))


def _show_run(store: Store, evaluator: str, run_id: str) -> dict[str, Any]:
    from align_mcp.engine.evaluators import get
    from align_mcp.engine.ingest import get_run

    get(store, evaluator)
    run = get_run(store, run_id)
    return {"run_id": run.id, "html": pages.run_html(run), "progress_html": _progress(store, evaluator)}


@api
async def show_run(request: Request) -> dict[str, Any]:
    """A run the labeler saw before (k, u): its contents only; the page remembers the labeler's own label."""
    data = await _json_body(request)
    evaluator, run_id = _text(data, "evaluator"), _text(data, "run_id")
    assert evaluator is not None and run_id is not None
    return await _call(_show_run, _state(request).store, evaluator, run_id)


def _label(
    store: Store,
    evaluator: str,
    run_id: str,
    score: object,
    comment: str | None,
    labeler: str,
    skip: list[str] | None,
) -> dict[str, Any]:
    from align_mcp.engine.labeling import store_label

    result = store_label(store, evaluator, run_id, score, comment, labeler)
    answer: dict[str, Any] = {"message": result.message, "progress_html": _progress(store, evaluator)}
    if skip is not None:
        answer["next"] = _next_run(store, evaluator, labeler, skip)
    return answer


def _skips(data: dict[str, Any]) -> list[str]:
    skip = data.get("skip") or []
    if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
        raise InvalidInput("skip must be a list of run ids.")
    return skip


@api
async def submit_label(request: Request) -> dict[str, Any]:
    """One label through the same engine call as the CLI and the MCP tool; a refusal stores nothing. With
    `then_next`, the answer also carries the labeler's next run (one round trip per keypress)."""
    data = await _json_body(request)
    evaluator, run_id, labeler = _text(data, "evaluator"), _text(data, "run_id"), _text(data, "labeler")
    comment = _text(data, "comment", required=False)
    assert evaluator is not None and run_id is not None and labeler is not None
    score = data.get("score")
    skip = _skips(data) if data.get("then_next") else None
    store = _state(request).store
    return await _call(_label, store, evaluator, run_id, score, comment, labeler.strip(), skip)


def create_app(
    db: Path | None = None,
    *,
    store: Store | None = None,
    evaluator: str | None = None,
    token: str | None = None,
    host: str = "127.0.0.1",
) -> PageGuard:
    """The pages as an ASGI app behind the guard. `host` is the bind address (loopback serves only loopback Host
    names); `token` (ALIGN_MCP_TOKEN) turns on the login; `evaluator` makes / open its label view."""
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/label/{evaluator}", label_page),
            Route("/review/{evaluator}", review_page),
            Route("/review/{evaluator}/second-review", second_review, methods=["POST"]),
            Route("/charts/{evaluator}", charts_page),
            Route("/charts/{evaluator}/{kind}.svg", chart_image),
            Route("/login", login_form),
            Route("/login", login, methods=["POST"]),
            Route("/api/next", next_run, methods=["POST"]),
            Route("/api/run", show_run, methods=["POST"]),
            Route("/api/label", submit_label, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    app.state.pages = PageState(db, store, evaluator, token)
    return PageGuard(app, token=token, host=host)
