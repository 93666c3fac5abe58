"""Whether the web client is connected is what the server answers, never what the
browser believes: a laptop hosting a local quiz with no network up reports
`navigator.onLine === false`, yet its players must get every live event."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tests.api import HttpApi
from tests.browser.conftest import OpenUser
from tests.game import next_question
from tests.stack import Stack

# What Chromium says on a machine whose only interface is loopback. (Playwright's
# context.set_offline would cut the server off too.)
BROWSER_BELIEVES_OFFLINE = (
    "Object.defineProperty(Navigator.prototype, 'onLine', {get: () => false})"
)

QUIZ: dict[str, Any] = {
    "title": "Offline laptop quiz",
    # Practice: the board moves as players answer, so ranks change while a question is open.
    "instant_feedback": True,
    "questions": [
        {"text": "Up?", "choices": ["yes", "no"], "correct_choice": 0, "time_limit_ms": 60_000},
        {"text": "Down?", "choices": ["yes", "no"], "correct_choice": 1, "time_limit_ms": 60_000},
    ],
}


async def test_a_player_whose_browser_believes_it_is_offline_gets_live_events_and_ranks(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host = stack.host_token("alice")
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    ann = await open_user("ann")
    await ann.context.add_init_script(BROWSER_BELIEVES_OFFLINE)
    await ann.page.goto(f"/#/play/{quiz_id}")
    assert await ann.page.evaluate("navigator.onLine") is False
    await ann.page.get_by_label("Your nickname").fill("ann")
    await ann.page.get_by_role("button", name="Join").click()

    # The lobby fills up live (leaderboard stream) and the connection shows no problem.
    await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "bob"})
    await expect(ann.page.get_by_test_id("player-count")).to_have_text("2 players joined")
    await expect(ann.page.locator("#connection")).to_have_text("")

    # The host starts: the quiz event stream brings the question.
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    await expect(ann.page.get_by_role("heading", name="Up?")).to_be_visible()
    await ann.page.get_by_role("button", name="yes").click()
    await expect(ann.page.get_by_test_id("answer-result")).to_contain_text("Correct!")

    # Her live rank, and the players around her (GetPlayerRank, refreshed on changes).
    await expect(ann.page.get_by_test_id("my-rank")).to_have_attribute("data-value", "1")
    neighbours = ann.page.get_by_test_id("neighbours").locator(".entry-name")
    await expect(neighbours).to_have_text(["ann (you)", "bob"])

    # The next question arrives live too, with the verdict on the first.
    await next_question(api, quiz_id, host)
    await expect(ann.page.get_by_role("heading", name="Down?")).to_be_visible()
    await expect(ann.page.get_by_test_id("previous-result")).to_contain_text("you got it")
    await expect(ann.page.locator("#connection")).to_have_text("")
    await ann.shot("believes-offline-plays-live")
