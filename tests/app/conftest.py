"""One real hub with two patients' records for the whole module (tests/app/support.py), and
Debian's chromium driven by Playwright (never ``playwright install``), a fresh browser context
(so fresh sessionStorage and cookies) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.app.support import (
    APP_DIST,
    AppHub,
    load_data,
    start_app_hub,
    stop_app_hub,
)
from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS


@pytest.fixture(scope="session")
def app_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHub]:
    assert (APP_DIST / "index.html").is_file(), (
        "app/dist is not built: cd app && npm ci && npm run build (scripts/test does it)"
    )
    hub = start_app_hub(tmp_path_factory.mktemp("app-hub"))
    try:
        load_data(hub)
        yield hub
    finally:
        stop_app_hub(hub)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Module-scoped: Playwright's sync API runs an event loop in this thread while it lives, so
    it must be gone before other modules' tests call ``asyncio.run``."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Browser, tmp_path: Path) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    try:
        yield context.new_page()
    finally:
        context.close()
