"""A host signs up and signs in at the web client's host desk with an email and a
password, no token from a terminal: the session outlasts a reload and ends on
"Sign out"; its short-lived access token is refreshed before host calls without the
host noticing, and a session that cannot be refreshed sends the host back to the
sign-in form, the quiz being written kept."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime

import httpx
import pytest
from playwright.async_api import Locator, Page, Request, Route, expect

from services.identity.tokens import Role
from tests.api import ApiError, HttpApi
from tests.browser.conftest import OpenUser
from tests.browser.host_desk import DESK, PASSWORD, SESSION, new_email, sign_up, stored_session
from tests.stack import Stack


def signed_in(page: Page) -> Locator:
    return page.get_by_text("Signed in as")


async def write_quiz(page: Page, title: str) -> None:
    await page.goto("/#/host")
    await page.get_by_label("Title").fill(title)
    question = page.get_by_role("group", name="Question 1")
    await question.get_by_label("Question", exact=True).fill("Ready?")
    await question.get_by_label("Choice A", exact=True).fill("yes")
    await question.get_by_label("Choice B", exact=True).fill("no")


async def play_once(page: Page) -> str:
    """Plays the quiz written at the host desk once, without saving it (CreateQuiz):
    its code."""
    await page.get_by_role("button", name="Play once without saving").click()
    code = page.get_by_test_id("quiz-code")
    await expect(code).to_have_text(re.compile(r"^[A-Z0-9]{8}$"))
    return await code.inner_text()


async def create_quiz(page: Page, title: str) -> str:
    """Writes a one-question quiz at the host desk and creates it: its code."""
    await write_quiz(page, title)
    return await play_once(page)


async def change_stored_session(page: Page, **changes: str) -> None:
    await page.evaluate(
        """([key, changes]) => {
          const saved = JSON.parse(localStorage.getItem(key));
          Object.assign(saved.session, changes);
          localStorage.setItem(key, JSON.stringify(saved));
        }""",
        [SESSION, changes],
    )


def rfc3339(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, UTC).isoformat()


class HostCalls:
    """What the page sends: the bearer token of each CreateQuiz, and each refresh."""

    def __init__(self) -> None:
        self.create_tokens: list[str] = []
        self.refreshes = 0

    async def watch(self, page: Page) -> None:
        await page.route("**/v1/quizzes", self._create)
        page.on("request", self._request)

    async def _create(self, route: Route) -> None:
        if route.request.method == "POST":
            bearer = await route.request.header_value("authorization") or ""
            self.create_tokens.append(bearer.removeprefix("Bearer "))
        await route.continue_()

    def _request(self, request: Request) -> None:
        if request.url.endswith("/v1/sessions:refresh"):
            self.refreshes += 1


async def test_a_host_signs_up_creates_a_quiz_and_signs_in_again_after_signing_out(
    open_user: OpenUser, http: httpx.AsyncClient
) -> None:
    host = await open_user("host", DESK)
    page = host.page
    host.expect_console_error(r"status of 400")  # the short password, refused
    host.expect_console_error(r"status of 409")  # the email taken, refused
    host.expect_console_error(r"status of 401")  # the wrong password, refused
    email = new_email()

    # Sign up. A password that is too short is refused beside its field.
    await page.goto("/#/host")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_role("button", name="Create an account").click()
    await page.get_by_label("Display name").fill("Ada Lovelace")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("too short")
    await page.get_by_role("button", name="Create account").click()
    password = page.get_by_label("Password")
    await expect(password).to_have_accessible_description(
        re.compile(r"Password must be between 10 and 128 characters, got 9\.$")
    )
    await expect(password).to_have_attribute("aria-invalid", "true")
    await expect(password).to_be_focused()
    await host.shot("sign-up-refused")
    await password.fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(signed_in(page)).to_contain_text(f"Signed in as Ada Lovelace ({email})")

    # The account hosts quizzes, and a reload keeps it signed in.
    quiz_id = await create_quiz(page, "Ada's quiz")
    quiz = (await HttpApi(http).call("GetQuiz", {"quiz_id": quiz_id}))["quiz"]
    assert quiz["host"] == (await stored_session(page))["host"]["host_id"]
    await page.goto("/#/host")
    await page.reload()
    await expect(signed_in(page)).to_contain_text("Ada Lovelace")
    await expect(page.get_by_role("link", name="Ada's quiz")).to_have_attribute(
        "href", f"#/host/{quiz_id}"
    )
    await host.shot("signed-in")

    # Signing out forgets the session here and ends it on the server.
    refresh_token = (await stored_session(page))["session"]["refresh_token"]
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await stored_session(page) is None
    with pytest.raises(ApiError) as ended:
        await HttpApi(http).call("RefreshSession", {"refresh_token": refresh_token})
    assert ended.value.reason == "SESSION_ENDED"

    # The email has an account now: signing up with it again says so beside it.
    await page.get_by_role("button", name="Create an account").click()
    await page.get_by_label("Display name").fill("Ada again")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_label("Email")).to_have_accessible_description(
        f"An account with the email {email} exists; sign in instead."
    )
    await page.get_by_role("button", name="Sign in instead").click()
    await expect(page.get_by_label("Email")).to_have_value(email)  # carried over

    # A wrong password is told on the form; the button waits for the answer.
    answers: asyncio.Event = asyncio.Event()

    async def answer_when_told(route: Route) -> None:
        await answers.wait()
        await route.continue_()

    await page.route("**/v1/sessions", answer_when_told)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_label("Password").press("Enter")
    await expect(page.get_by_role("button", name="Signing in…")).to_be_disabled()
    answers.set()
    await expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    await expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_enabled()
    await host.shot("wrong-password")

    # The right password signs the host in again, from the keyboard.
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Password").press("Enter")
    await expect(signed_in(page)).to_contain_text(f"Signed in as Ada Lovelace ({email})")


async def test_the_access_token_is_refreshed_before_it_expires_or_once_the_gateway_refuses_it(
    open_user: OpenUser, stack: Stack
) -> None:
    host = await open_user("host", DESK)
    page = host.page
    host.expect_console_error(r"status of 401")  # the expired token, then the ended session
    calls = HostCalls()
    await calls.watch(page)
    email = new_email()
    await sign_up(page, email)
    saved = await stored_session(page)
    host_id, first = saved["host"]["host_id"], saved["session"]

    # Half a minute before the access token expires, the next host call refreshes
    # it first and goes out with the new one; the new refresh token is kept. (The
    # session is changed once the desk is open: opening it lists the library.)
    await write_quiz(page, "Refreshed before")
    await change_stored_session(page, access_expires_at=rfc3339(30))
    await play_once(page)
    second = (await stored_session(page))["session"]
    assert calls.refreshes == 1
    assert second["refresh_token"] != first["refresh_token"]
    assert calls.create_tokens == [second["access_token"]]

    # A clock running behind: the page believes its token has minutes left, the
    # gateway finds it expired. The call is refreshed and made once more.
    expired = stack.backends.issuer().issue(Role.HOST, host_id, -120)
    await write_quiz(page, "Refreshed after a refusal")
    await change_stored_session(page, access_token=expired, access_expires_at=rfc3339(600))
    await play_once(page)
    third = (await stored_session(page))["session"]
    assert calls.refreshes == 2
    assert calls.create_tokens[1:] == [expired, third["access_token"]]

    # A refresh token that was already used ends the session: back to signing in,
    # told why, and the quiz being written is still there afterwards.
    await write_quiz(page, "Written while the session ended")
    await change_stored_session(
        page, refresh_token=first["refresh_token"], access_expires_at=rfc3339(0)
    )
    await page.get_by_role("button", name="Play once without saving").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_text("Your session has ended")).to_be_visible()
    assert await stored_session(page) is None
    await host.shot("session-ended")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_label("Title")).to_have_value("Written while the session ended")
