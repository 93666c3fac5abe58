"""The host desk as the tests take it: signing up with an email and a password, or
the way in for development and automation (a token that quizctl made, pasted under
"Use a token from quizctl"), and writing a quiz into the desk's form."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Page, ViewportSize, expect

from tests.browser.conftest import OpenUser, User
from tests.stack import Stack

DESK: ViewportSize = {"width": 1280, "height": 900}
PASSWORD = "correct horse battery staple"
SESSION = "quizmesh.host_session"  # where storage.js keeps the host's session
LETTERS = "ABCDEF"


def new_email() -> str:
    return f"ada-{uuid.uuid4().hex[:10]}@example.org"


async def sign_up(page: Page, email: str) -> None:
    await page.goto("/#/host")
    await page.get_by_role("button", name="Create an account").click()
    await page.get_by_label("Display name").fill("Ada Lovelace")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_text("Signed in as")).to_contain_text(
        f"Signed in as Ada Lovelace ({email})"
    )


async def stored_session(page: Page) -> Any:
    return await page.evaluate("key => JSON.parse(localStorage.getItem(key))", SESSION)


async def sign_in_with_token(page: Page, token: str) -> None:
    await page.get_by_text("Use a token from quizctl").click()
    await page.get_by_label("Host token").fill(token)
    await page.get_by_role("button", name="Use this token").click()


async def open_desk(open_user: OpenUser, stack: Stack) -> tuple[User, str]:
    """A host of their own (an empty library) signed in at the desk, and their token."""
    host = await open_user("host", DESK)
    token = stack.host_token(f"teacher-{uuid.uuid4().hex[:8]}")
    await host.page.goto("/#/host")
    await sign_in_with_token(host.page, token)
    await expect(host.page.get_by_text("Signed in as")).to_be_visible()
    return host, token


async def fill_quiz_form(page: Page, quiz: dict[str, Any]) -> None:
    """Writes `quiz`, as the API takes it (title, the flags, questions with
    correct_choice and, where set, points and time_limit_ms), into the quiz form."""
    await page.get_by_label("Title").fill(quiz["title"])
    if quiz.get("instant_feedback"):
        await page.get_by_label("Instant feedback (practice)").check()
    if quiz.get("allow_late_join"):
        await page.get_by_label("Let players join after the start").check()
    for n, question in enumerate(quiz["questions"], start=1):
        if n > 1:
            await page.get_by_role("button", name="Add question").click()
        fields = page.get_by_role("group", name=f"Question {n}")
        await fields.get_by_label("Question", exact=True).fill(question["text"])
        for i, choice in enumerate(question["choices"]):
            if i >= 2:
                await fields.get_by_role("button", name="Add choice").click()
            await fields.get_by_label(f"Choice {LETTERS[i]}", exact=True).fill(choice)
        await fields.get_by_label(f"{LETTERS[question['correct_choice']]} is correct").check()
        if "time_limit_ms" in question:
            seconds = question["time_limit_ms"] // 1000
            await fields.get_by_label("Seconds to answer").fill(str(seconds))
        if "points" in question:
            await fields.get_by_label("Points").fill(str(question["points"]))
