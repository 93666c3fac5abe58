"""The host desk's way in for development and automation, as the tests take it: a
token that quizctl made, pasted under "Use a token from quizctl"."""

from __future__ import annotations

from playwright.async_api import Page


async def sign_in_with_token(page: Page, token: str) -> None:
    await page.get_by_text("Use a token from quizctl").click()
    await page.get_by_label("Host token").fill(token)
    await page.get_by_role("button", name="Use this token").click()
