"""The chat widget on the demo shop page, in Chromium, against the real server."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, WebSocket, expect

from tests.conftest import ROOT

DOCS = ROOT / "docs"


def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/ with SHOPBOT_UPDATE_SCREENSHOTS=1 (`make screenshots`), else the test's tmp."""
    return DOCS if os.environ.get("SHOPBOT_UPDATE_SCREENSHOTS") == "1" else tmp_path


def open_widget(page: Page, server: str) -> None:
    page.goto(server + "/")
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("dialog", name="Juniper Lane")).to_be_visible()


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def bot_messages(page: Page) -> list[str]:
    return page.locator(".msg.bot:not(.greeting) .bubble").all_inner_texts()


def test_ask_about_an_order_reload_and_find_the_conversation_again(context: BrowserContext, server: str) -> None:
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_widget(page, server)
    send(page, "where is my order 10023?")
    answer = page.locator(".msg.bot:not(.greeting)").last
    expect(answer).to_contain_text("JJD0001234567", timeout=20_000)
    expect(answer.locator(".rating button")).to_have_count(2)
    answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    expect(page.locator(".msg.user .bubble").first).to_have_text("where is my order 10023?", timeout=10_000)
    expect(page.locator(".msg.bot:not(.greeting)").first).to_contain_text("JJD0001234567")
    assert dialogs == []


def test_messages_typed_offline_are_sent_once_in_order(context: BrowserContext, server: str) -> None:
    page = context.new_page()
    open_widget(page, server)
    send(page, "hello")
    expect(page.locator(".msg.bot:not(.greeting)")).to_have_count(1, timeout=20_000)
    context.set_offline(True)
    send(page, "where is my order 10023?")
    send(page, "thank you")
    expect(page.locator(".msg.user.pending")).to_have_count(2)
    context.set_offline(False)
    expect(page.locator(".msg.bot:not(.greeting)")).to_have_count(3, timeout=30_000)
    answers = bot_messages(page)
    assert "JJD0001234567" in answers[1] and "welcome" in answers[2].lower(), "answered in the order typed"
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    expect(page.locator(".msg.bot:not(.greeting)")).to_have_count(3, timeout=10_000)
    assert page.locator(".msg.user .bubble").all_inner_texts() == ["hello", "where is my order 10023?", "thank you"]


def test_hostile_text_is_shown_as_text_and_no_script_runs(context: BrowserContext, server: str) -> None:
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_widget(page, server)
    for payload in ("<img src=x onerror=alert(1)>", "<script>alert(1)</script>"):
        send(page, payload)
        expect(page.locator(".msg.user .bubble").last).to_have_text(payload, timeout=10_000)
    expect(page.locator(".msg.bot:not(.greeting)")).to_have_count(2, timeout=20_000)
    assert page.locator("#shopbot-widget").evaluate("h => h.shadowRoot.querySelectorAll('img:not(.avatar), "
                                                    ".log script').length") == 0
    assert dialogs == []


def test_a_button_reply_is_sent_with_a_click(context: BrowserContext, server: str) -> None:
    page = context.new_page()
    open_widget(page, server)
    send(page, "hmm, the thing with the stuff")
    expect(page.locator(".msg.bot:not(.greeting) .quick button").first).to_be_visible(timeout=20_000)
    offer = page.locator(".msg.bot:not(.greeting)").nth(page.locator(".msg.bot:not(.greeting)").count() - 1)
    first = offer.locator(".quick button").first
    title = first.inner_text()
    answered = page.locator(".msg.bot:not(.greeting)").count()
    first.click()
    expect(page.locator(".msg.user .bubble").last).to_have_text(title)
    expect(page.locator(".msg.bot:not(.greeting)")).to_have_count(answered + 1, timeout=20_000)
    expect(first).to_be_disabled()


def test_the_widget_works_with_the_keyboard_alone(context: BrowserContext, server: str) -> None:
    page = context.new_page()
    page.goto(server + "/")
    launcher = page.get_by_role("button", name="Open chat")
    launcher.focus()
    page.keyboard.press("Enter")
    box = page.get_by_label("Message", exact=True)
    expect(box).to_be_focused()
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.bot:not(.greeting)").last).to_contain_text("Juniper Lane", timeout=20_000)
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="Juniper Lane")).to_be_hidden()
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")


def test_the_page_cannot_read_the_conversation(browser: Browser, server: str) -> None:
    page = browser.new_page()  # no test hook: the shadow root is closed, as on a shop's page
    page.goto(server + "/")
    page.evaluate("window.ShopBot.open()")
    assert page.evaluate("document.getElementById('shopbot-widget').shadowRoot") is None
    assert page.evaluate("Object.keys(window.ShopBot).sort()") == ["close", "init", "open", "version"], \
        "nothing on the page's side leads to the conversation"
    page.close()


def test_a_page_on_a_foreign_origin_is_refused(browser: Browser, server: str) -> None:
    """Another site (another port: another origin) embeds the widget: its websocket handshake is refused."""
    page_html = f'<html><body><script src="{server}/widget.js" async></script></body></html>'.encode()

    class OtherSite(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args: object) -> None:
            return None

    other = HTTPServer(("127.0.0.1", 0), OtherSite)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    page = browser.new_page()
    sockets: list[WebSocket] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    try:
        page.goto(f"http://127.0.0.1:{other.server_port}/")
        page.wait_for_function("window.ShopBot !== undefined")
        page.evaluate("window.ShopBot.open()")
        page.wait_for_timeout(1_500)
        assert sockets and all(ws.is_closed() for ws in sockets), "every handshake from the other site was refused"
        received = page.evaluate("document.body.innerText")
        assert "JJD" not in received
    finally:
        page.close()
        other.shutdown()


def test_screenshots_for_the_docs(context: BrowserContext, server: str, tmp_path: Path) -> None:
    """The widget closed, open and mid-conversation (docs/widget-*.png with `make screenshots`)."""
    out = shots(tmp_path)
    page = context.new_page()
    page.goto(server + "/")
    page.screenshot(path=str(out / "widget-closed.png"))
    page.get_by_role("button", name="Open chat").click()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "widget-open.png"))
    send(page, "where is my order 10023?")
    expect(page.locator(".msg.bot:not(.greeting)").last).to_contain_text("JJD0001234567", timeout=20_000)
    send(page, "hmm, the thing with the stuff")
    expect(page.locator(".msg.bot:not(.greeting) .quick button").first).to_be_visible(timeout=20_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "widget-conversation.png"))
    assert (out / "widget-conversation.png").stat().st_size > 10_000
