"""A shopper in the widget and an operator in the console, two browser contexts, one real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.test_widget import open_widget, send, shots
from tests.channels.test_console_api import PASSWORD

XSS = "<img src=x onerror=alert(1)> please help"


@pytest.fixture
def operator(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    yield context
    context.close()


def log_in(page: Page, server: str, username: str = "alice", password: str = PASSWORD) -> None:
    page.goto(server + "/console")
    page.locator('input[name="username"]').fill(username)
    page.locator('input[name="password"]').fill(password)
    page.get_by_role("button", name="Log in").click()


def bot_count(page: Page) -> int:
    return page.locator(".msg.bot:not(.greeting)").count()


def test_a_shopper_asks_for_a_person_and_an_operator_takes_over_and_hands_back(
        context: BrowserContext, operator: BrowserContext, server: str, tmp_path: Path) -> None:
    dialogs: list[str] = []
    desk = operator.new_page()
    desk.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(desk, server)
    expect(desk.locator('[data-view="waiting"]')).to_be_visible()

    shop = context.new_page()
    open_widget(shop, server)
    send(shop, "where is my order 10023?")
    expect(shop.locator(".msg.bot:not(.greeting)").last).to_contain_text("JJD0001234567", timeout=20_000)
    send(shop, XSS)
    expect(shop.locator(".msg.bot:not(.greeting)")).to_have_count(2, timeout=20_000)
    send(shop, "I want to talk to a human")
    expect(shop.locator(".msg.bot:not(.greeting)").last).to_contain_text("team", timeout=20_000)

    row = desk.locator("[data-conversation-id]").first  # appeared live: no reload
    expect(row).to_be_visible(timeout=15_000)
    row.click()
    summary = desk.get_by_label("Handoff summary")
    expect(summary).to_contain_text("the shopper asked for a person")
    expect(summary).to_contain_text("10023")
    hostile = desk.locator('[data-role="user"]').filter(has_text="onerror")
    expect(hostile).to_contain_text(XSS)
    assert hostile.locator("img").count() == 0, "shown as text, not as an image"
    desk.get_by_role("button", name="Take over").click()
    box = desk.get_by_label("Reply to the shopper")
    box.fill("Hi, this is Alice from Juniper Lane. Let me look into it.")
    desk.get_by_role("button", name="Send").click()

    operator_line = shop.locator(".msg.operator").last
    expect(operator_line).to_contain_text("Alice from Juniper Lane", timeout=15_000)
    answered = bot_count(shop)
    send(shop, "thanks, where is my order 10023?")
    expect(desk.locator('[data-role="user"]').last).to_contain_text("thanks, where is my order 10023?",
                                                                         timeout=15_000)
    shop.wait_for_timeout(1_000)
    assert bot_count(shop) == answered, "the bot stays silent while Alice answers"
    shop.screenshot(path=str(shots(tmp_path) / "widget-operator.png"))
    desk.screenshot(path=str(shots(tmp_path) / "console.png"))

    desk.get_by_role("button", name="Hand back").click()
    desk.locator('input[name="handback_note"]').fill("order status explained")
    desk.get_by_role("button", name="Confirm").click()
    expect(shop.locator(".msg.bot:not(.greeting)").last).to_contain_text("assistant", timeout=15_000)
    answered = bot_count(shop)
    send(shop, "where is my order 10023?")
    expect(shop.locator(".msg.bot:not(.greeting)")).to_have_count(answered + 1, timeout=20_000)
    expect(shop.locator(".msg.bot:not(.greeting)").last).to_contain_text("JJD0001234567")
    assert dialogs == []


def test_a_wrong_password_is_refused_and_five_lock_the_account(operator: BrowserContext, server: str) -> None:
    page = operator.new_page()
    log_in(page, server, password="not the password")
    expect(page.get_by_role("status")).to_contain_text("wrong username or password")
    for _ in range(4):
        page.get_by_role("button", name="Log in").click()
        page.wait_for_timeout(200)
    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("status")).to_contain_text("too many failed logins")
