"""A real headless Chromium (Debian's `chromium`, installed by `make browser`) driven
by Playwright, pointed at the web client that the suite's Envoy serves beside the API.

Every page fails its test on a console error or an uncaught exception, unless the
test says which error it expects (a refused request shows up in the console as
"Failed to load resource: ... status of 409"). Screenshots go to
test-artifacts/browser/<test name>/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)

from devstack.gateway import REPO, EnvoyProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
PHONE: ViewportSize = {"width": 390, "height": 844}
BIG_SCREEN: ViewportSize = {"width": 1920, "height": 1080}


@dataclass
class User:
    """One person at one browser (their own context: own storage, own connections)."""

    name: str
    context: BrowserContext
    page: Page
    folder: Path
    errors: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)
    shots: int = 0

    def expect_console_error(self, pattern: str) -> None:
        """Allows console errors matching `pattern` (e.g. a request the test makes fail)."""
        self.expected.append(re.compile(pattern))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self._error(f"console: {message.text} ({message.location.get('url', '')})")

    def _error(self, text: str) -> None:
        if not any(p.search(text) for p in self.expected):
            self.errors.append(text)

    async def shot(self, step: str) -> Path:
        """Saves a screenshot of what this user sees now, numbered in order."""
        self.shots += 1
        path = self.folder / f"{self.name}-{self.shots:02d}-{step}.png"
        # Finished animations: rows of a leaderboard mid-slide would overlap.
        await self.page.screenshot(path=path, animations="disabled")
        return path

    def assert_no_console_errors(self) -> None:
        assert self.errors == [], f"{self.name}'s page logged errors: {self.errors}"


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = ARTIFACTS / re.sub(r"\W+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


OpenUser = Callable[..., Awaitable[User]]


@pytest.fixture
async def open_user(
    browser: Browser, gateway: EnvoyProcess, artifacts: Path
) -> AsyncIterator[OpenUser]:
    """`await open_user("ann", PHONE)`: a fresh browser context on the web client."""
    users: list[User] = []

    async def open_one(name: str, viewport: ViewportSize = PHONE, **options: Any) -> User:
        context = await browser.new_context(
            base_url=gateway.base_url, viewport=viewport, locale="en-US", **options
        )
        context.set_default_timeout(10_000)
        page = await context.new_page()
        user = User(name, context, page, artifacts)
        page.on("console", user._console)
        page.on("pageerror", lambda error: user._error(f"uncaught: {error}"))
        users.append(user)
        return user

    try:
        yield open_one
    finally:
        for user in users:
            await user.context.close()
    for user in users:
        user.assert_no_console_errors()
