"""The REST channel: JSON in, replies out. Also health, readiness and clear errors for bad requests."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from bot.app import Services
from bot.channels.callbacks import callback_allowed
from bot.channels.limits import BodySizeLimit
from bot.engine import InputRejected
from bot.router import route_name
from bot.settings import Settings
from bot.state import ConversationBusy, StoreUnavailable
from bot.types import InboundMessage

router = APIRouter()


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="What the shopper wrote, or a button payload such as /affirm.")
    conversation_id: StrictStr | None = Field(
        default=None, min_length=1, max_length=200, description="Omit to start a new conversation."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Page URL, customer id...")


class ButtonOut(BaseModel):
    title: str
    payload: str


class ReplyOut(BaseModel):
    text: str
    buttons: list[ButtonOut]
    kind: str
    id: str = Field(description="rate it with POST /api/v1/conversations/{conversation_id}/feedback")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reply_id: StrictStr = Field(min_length=1, max_length=64)
    value: Literal["up", "down"]


class MessagesOut(BaseModel):
    conversation_id: str
    replies: list[ReplyOut]


Attribute = StrictStr | list[StrictStr]


class DescriptionIn(BaseModel):
    """A product's attributes; every value given must appear in the description."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=120)
    category: StrictStr = Field(min_length=1, max_length=120)
    material: StrictStr | None = Field(default=None, max_length=300)
    colours: Attribute | None = Field(default=None, description="a string or a list of strings")
    sizes: Attribute | None = None
    features: Attribute | None = None
    care: StrictStr | None = Field(default=None, max_length=300)
    price: StrictStr | None = Field(default=None, max_length=40, description='as it should read, e.g. "€89.00"')

    def attributes(self) -> dict[str, str]:
        values = {k: v for k, v in self.model_dump().items() if v not in (None, "", [])}
        return {k: _listing(v) if isinstance(v, list) else v for k, v in values.items()}


class DescriptionOut(BaseModel):
    description: str
    missing: list[str] = Field(description="attributes whose value the description does not state")


class ModerationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(min_length=1, max_length=20_000, description="The text to check.")
    direction: Literal["output", "input"] = Field(
        default="output", description="output: a reply about to be sent; input: a message someone wrote.")


class ModerationOut(BaseModel):
    action: Literal["allow", "rewrite", "block"]
    categories: dict[str, float] = Field(description="each category found, with its score (1.0 for a rule)")
    text: str = Field(description="the text as it may be sent: rewritten, the original, or empty when blocked")
    reasons: list[str]


def _listing(values: list[str]) -> str:
    from generation.retrieval import listing  # the generator's modules load torch: only when asked

    if len(" ".join(values)) > 300 or len(values) > 20:
        raise ValueError("at most 20 values and 300 characters per attribute")
    return listing(values)


def _services(request: Request) -> Services:
    services: Services = request.state.services
    return services


@router.post("/api/v1/messages", response_model=MessagesOut, tags=["chat"],
             responses={422: {"description": "empty, too long or malformed message"},
                        409: {"description": "the conversation is busy with another message"},
                        503: {"description": "the conversation store is unavailable"}})
async def post_message(body: MessageIn, request: Request) -> MessagesOut | JSONResponse:
    """Send one shopper message and get the bot's replies."""
    conversation_id = body.conversation_id or uuid.uuid4().hex
    hosts = _services(request).settings.console.callback_hosts
    if "callback_url" in body.metadata and not callback_allowed(body.metadata["callback_url"], hosts):
        return JSONResponse(status_code=422, content={"detail": "metadata.callback_url: an http(s) URL on one of "
                                                                "console.callback_hosts is expected"})
    message = InboundMessage("rest", conversation_id, body.text, metadata=body.metadata)
    try:
        replies = await _services(request).engine.handle(message)
    except InputRejected as exc:
        return JSONResponse(status_code=422, content={"detail": str(exc), "reply": exc.reply})
    except ConversationBusy:
        return JSONResponse(status_code=409, content={"detail": "this conversation is still busy with "
                                                                "the previous message, retry shortly"},
                            headers={"Retry-After": "1"})
    except StoreUnavailable:
        return JSONResponse(status_code=503, content={"detail": "the conversation store is unavailable, "
                                                                "retry shortly"}, headers={"Retry-After": "5"})
    return MessagesOut(conversation_id=conversation_id, replies=[ReplyOut(**r.to_json()) for r in replies])


class ParseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr


@router.post("/api/v1/parse", tags=["nlu"], responses={422: {"description": "empty, too long or malformed text"}})
async def post_parse(body: ParseIn, request: Request) -> JSONResponse:
    """The NLU result and the route the bot would take, without touching any conversation."""
    try:
        parse, decision = await _services(request).engine.explain(body.text)
    except InputRejected as exc:
        return JSONResponse(status_code=422, content={"detail": str(exc)})
    return JSONResponse({**parse.to_json(), "route": route_name(decision)})


@router.get("/api/v1/conversations/{conversation_id}", tags=["chat"])
async def get_conversation(conversation_id: str, request: Request) -> JSONResponse:
    """The transcript of one conversation (who said what, with the bot's route)."""
    conversation = await _services(request).engine.store.load(conversation_id)
    if conversation is None:
        return JSONResponse(status_code=404, content={"detail": f"no conversation '{conversation_id}'"})
    return JSONResponse({"conversation_id": conversation.id, "mode": conversation.mode.value,
                         "history": [t.to_json() for t in conversation.history]})


@router.post("/api/v1/conversations/{conversation_id}/feedback", status_code=204, response_class=Response,
             tags=["chat"], responses={404: {"description": "no such reply in this conversation"}})
async def post_feedback(conversation_id: str, body: FeedbackIn, request: Request) -> Response:
    """A thumbs up or down on one of the bot's replies, kept with the route that produced it."""
    if not await _services(request).engine.feedback(conversation_id, body.reply_id, body.value):
        return JSONResponse(status_code=404, content={"detail": f"no reply '{body.reply_id}' in this conversation"})
    return Response(status_code=204)


@router.post("/api/v1/descriptions", response_model=DescriptionOut, tags=["tools"],
             responses={422: {"description": "missing or malformed attributes"},
                        503: {"description": "no generator has been trained yet"}})
async def post_description(body: DescriptionIn, request: Request) -> DescriptionOut | JSONResponse:
    """Write a product description from its attributes with the shop's generator."""
    writer = _services(request).writer
    if writer is None:
        detail = "no generator is trained: run `shopbot train generator`"
        return JSONResponse(status_code=503, content={"detail": detail})
    try:
        attributes = body.attributes()
    except ValueError as exc:
        return JSONResponse(status_code=422, content={"detail": str(exc)})
    description = await writer.describe(attributes)
    return DescriptionOut(description=description.text, missing=list(description.missing))


@router.post("/api/v1/moderate", response_model=ModerationOut, tags=["tools"],
             responses={422: {"description": "missing, empty or malformed text"}})
async def post_moderate(body: ModerationIn, request: Request) -> ModerationOut:
    """Check a text with the same safety filter every reply and message passes (reviews, operator replies...)."""
    safety = _services(request).safety
    verdict = safety.check_input(body.text) if body.direction == "input" else safety.check_output(body.text)
    return ModerationOut(action=verdict.action.value, categories=dict(verdict.categories),
                         text=verdict.text if verdict.action.value != "block" else "", reasons=list(verdict.reasons))


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
async def readyz(request: Request) -> JSONResponse:
    """Ready to answer: the model is loaded and the conversation store answers."""
    services = _services(request)
    store_ok = await services.engine.store.ping()
    body = {"status": "ok" if store_ok else "unavailable", "store": store_ok,
            "model": services.classifier.metadata.get("created_at", "loaded")}
    return JSONResponse(status_code=200 if store_ok else 503, content=body)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse(status_code=422, content={"detail": "; ".join(problems)})


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the REST routes with the body-size limit and readable validation errors."""
    app.include_router(router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.server.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)
