"""A live ShopBot server on 127.0.0.1 and Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright

from bot.app import build_app
from bot.settings import Settings
from tests.channels.test_console_api import add_operators
from tests.conftest import make_settings, redis_url

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Playwright cannot look inside a closed shadow root; the test browser opens it (the page under
# test is unchanged, and a separate test checks the page itself cannot reach inside).
OPEN_SHADOW_ROOTS = ("const attach = Element.prototype.attachShadow;"
                     "Element.prototype.attachShadow = function (o) {"
                     " return attach.call(this, {...o, mode: 'open'}); };")


class LiveServer:
    """`build_app(settings)` served by uvicorn in a thread on a free port."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(build_app(settings), host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on", ws="websockets-sansio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the ShopBot server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def browser_settings(tmp_path: Path, intent_model_dir: Path, redis_prefix: str) -> Settings:
    add_operators(tmp_path / "operators.json")
    return make_settings(tmp_path, intent_model_dir, REDIS_URL=redis_url(), SHOPBOT_STATE__KEY_PREFIX=redis_prefix,
                         SHOPBOT_CONSOLE__OPERATORS_FILE=str(tmp_path / "operators.json"),
                         WIDGET_SESSION_SECRET="browser-test-sessions")


@pytest.fixture
def server(browser_settings: Settings) -> Iterator[str]:
    with LiveServer(browser_settings) as url:
        yield url


# Module scope, not session: sync Playwright keeps an event loop running in this thread, and the
# asyncio tests of other modules cannot start theirs until it has stopped.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A shopper's browser: the widget's shadow root opened for the locators."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(OPEN_SHADOW_ROOTS)
    yield context
    context.close()
