"""The operator console: `/console` (page), `/console/api/...` (JSON) and `/console/ws` (live updates).

Every API call needs a logged-in operator (401) and must come from the console's own origin (403);
state-changing calls also carry the session's CSRF token. The session cookie is HttpOnly,
SameSite=Strict (and Secure behind https) and a new one is issued at every login.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.websockets import WebSocketDisconnect

from bot.channels.webchat import STATIC
from bot.desk import OPERATORS, DeskError, HandoffDesk
from bot.operators import LoginGuard, OperatorAccounts, OperatorSessions, Session
from bot.settings import Settings
from bot.state.desk_index import VIEWS

log = logging.getLogger(__name__)

COOKIE = "shopbot_console"
WRONG_LOGIN = "wrong username or password"


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: StrictStr = Field(max_length=64)
    password: StrictStr = Field(max_length=1_000)


class TextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(min_length=1, max_length=4_000)


class HandbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: StrictStr | None = Field(default=None, max_length=4_000)


def cross_site(headers: Any) -> bool:
    """A request another site's page made (the browser says so, or its Origin is not ours)."""
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    return bool(origin) and urlsplit(origin).netloc != headers.get("host")


class Console:
    def __init__(self, settings: Settings, accounts: OperatorAccounts, sessions: OperatorSessions,
                 guard: LoginGuard) -> None:
        self.settings = settings
        self.accounts = accounts
        self.sessions = sessions
        self.guard = guard

    async def operator(self, request: Request, *, changes_state: bool) -> Session:
        """The logged-in operator, or 403 (cross-site, no CSRF token) / 401 (no valid session)."""
        if cross_site(request.headers):
            raise HTTPException(403, "cross-site requests are refused")
        session = await self.sessions.find(request.cookies.get(COOKIE))
        if session is None or self.accounts.find(session.username) is None:
            raise HTTPException(401, "log in first")
        if changes_state and not self.sessions.csrf_ok(session, request.headers.get("x-csrf-token")):
            raise HTTPException(403, "missing or wrong CSRF token")
        return session

    def canned(self) -> list[dict[str, str]]:
        path = self.settings.console.canned
        if not path.is_file():
            return []
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return [{k: str(r.get(k, "")) for k in ("shortcut", "title", "text")} for r in data.get("responses", [])]


def _asset(name: str, media: str) -> Callable[[], Awaitable[FileResponse]]:
    """A handler for one fixed file (no parameters: nothing in the request can choose the path)."""
    async def asset() -> FileResponse:
        return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "no-cache"})

    return asset


def _desk(request: Request | WebSocket) -> HandoffDesk:
    desk: HandoffDesk = request.state.services.desk
    return desk


def _console(request: Request | WebSocket) -> Console:
    console: Console = request.state.services.console
    return console


def build_router() -> APIRouter:
    router = APIRouter(prefix="/console")

    for name, media in (("console.html", "text/html"), ("console.js", "application/javascript"),
                        ("console.css", "text/css")):
        path = "" if name == "console.html" else f"/{name}"
        router.add_api_route(path, _asset(name, media), methods=["GET"], include_in_schema=False)

    @router.post("/api/login", tags=["console"])
    async def login(body: LoginIn, request: Request, response: Response) -> dict[str, Any]:
        console = _console(request)
        if cross_site(request.headers):
            raise HTTPException(403, "cross-site requests are refused")
        if await console.guard.locked(body.username):
            raise HTTPException(429, f"too many failed logins: try again in {console.guard.lock_s // 60} minutes")
        operator = await asyncio.to_thread(console.accounts.verify, body.username, body.password)
        if operator is None:
            await console.guard.failed(body.username)
            raise HTTPException(401, WRONG_LOGIN)
        await console.guard.succeeded(body.username)
        await console.sessions.close(request.cookies.get(COOKIE))  # a new session id at every login
        token, session = await console.sessions.open(operator.username)
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/console",
                            max_age=console.settings.console.session_ttl_s)
        return {"operator": operator.to_json(), "csrf": session.csrf}

    @router.post("/api/logout", status_code=204, tags=["console"])
    async def logout(request: Request, response: Response) -> None:
        console = _console(request)
        await console.operator(request, changes_state=True)
        await console.sessions.close(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/console")

    @router.get("/api/me", tags=["console"])
    async def me(request: Request) -> dict[str, Any]:
        console = _console(request)
        session = await console.operator(request, changes_state=False)
        operator = console.accounts.find(session.username)
        assert operator is not None
        return {"operator": operator.to_json(), "csrf": session.csrf}

    @router.get("/api/conversations", tags=["console"])
    async def conversations(request: Request, view: str = "waiting") -> dict[str, Any]:
        session = await _console(request).operator(request, changes_state=False)
        if view not in VIEWS:
            raise HTTPException(422, f"view is one of {', '.join(VIEWS)}")
        items = await _desk(request).index.list(view, session.username)
        return {"conversations": [i.to_json() for i in items]}

    @router.get("/api/conversations/{conversation_id}", tags=["console"])
    async def conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        await _console(request).operator(request, changes_state=False)
        return await _desk(request).view(conversation_id)

    @router.post("/api/conversations/{conversation_id}/{action}", tags=["console"])
    async def act(conversation_id: str, action: str, request: Request) -> Any:
        session = await _console(request).operator(request, changes_state=True)
        desk, who = _desk(request), session.username
        body = await request.body()
        if action == "take":
            return await desk.take(conversation_id, who)
        if action == "reply":
            return await desk.reply(conversation_id, who, _read(TextIn, body).text)
        if action == "note":
            return await desk.note(conversation_id, who, _read(TextIn, body).text)
        if action == "draft":
            return {"text": await desk.draft(conversation_id)}
        if action == "handback":
            return await desk.hand_back(conversation_id, who, _read(HandbackIn, body or b"{}").note)
        if action == "resolve":
            return await desk.resolve(conversation_id, who)
        if action == "typing":
            await desk.operator_typing(conversation_id)
            return Response(status_code=204)
        raise HTTPException(404, f"no console action '{action}'")

    @router.get("/api/canned", tags=["console"])
    async def canned(request: Request) -> dict[str, Any]:
        console = _console(request)
        await console.operator(request, changes_state=False)
        return {"responses": console.canned()}

    @router.websocket("/ws")
    async def live(socket: WebSocket) -> None:
        sessions = _console(socket).sessions
        session = None if cross_site(socket.headers) else await sessions.find(socket.cookies.get(COOKIE))
        if session is None:
            await socket.close(code=4401)
            return
        await socket.accept()
        async with _desk(socket).bus.subscribe(OPERATORS) as frames:
            forward = asyncio.create_task(_forward(socket, frames))
            try:
                while True:  # the console only listens; reading notices the socket closing
                    await socket.receive_text()
            except WebSocketDisconnect:
                pass
            finally:
                forward.cancel()
                with suppress(asyncio.CancelledError):
                    await forward

    return router


M = TypeVar("M", bound=BaseModel)


def _read(model: type[M], body: bytes) -> M:
    """The request body as `model`, or a 422 naming what is wrong."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(422, problems) from exc


async def _forward(socket: WebSocket, frames: Any) -> None:
    async for frame in frames:
        await socket.send_json(frame)


async def _desk_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DeskError)
    return JSONResponse(status_code=exc.status, content={"detail": exc.detail})


def install(app: FastAPI) -> None:
    app.include_router(build_router())
    app.add_exception_handler(DeskError, _desk_error)
