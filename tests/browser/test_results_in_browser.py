"""When a player learns right or wrong: by default only once the question has
closed (the answer is "received" while it is open, nothing more, not even on a
reload); in a practice quiz, which the host ticks on the form, at once."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import expect

from tests.api import HttpApi
from tests.browser.conftest import BIG_SCREEN, PHONE, OpenUser
from tests.browser.test_play_in_browser import create_quiz_in_the_form, join
from tests.stack import Stack

QUIZ: dict[str, Any] = {
    "title": "Results quiz",
    "questions": [
        {
            "text": "Capital of France?",
            "choices": ["Paris", "Rome"],
            "correct_choice": 0,
            "time_limit_ms": 60_000,
        },
        {
            "text": "Largest planet?",
            "choices": ["Mars", "Jupiter"],
            "correct_choice": 1,
            "time_limit_ms": 60_000,
        },
    ],
}


async def test_a_players_verdict_and_points_wait_for_the_question_to_close(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host = stack.host_token("alice")
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    ann = await open_user("ann")
    page = ann.page
    await page.goto(f"/#/play/{quiz_id}")
    await page.get_by_label("Your nickname").fill("ann")
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_test_id("feedback-mode")).to_have_text(
        "You'll see if each answer is right when its time is up."
    )
    player_id = await page.evaluate(
        "quiz => JSON.parse(localStorage.getItem(`quizmesh.player.${quiz}`)).player_id", quiz_id
    )
    score_request = {"quiz_id": quiz_id, "player_id": player_id}
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)

    # While the question is open: the answer is received, which one, and nothing
    # more, on the screen as on the server; a reload changes nothing.
    await page.get_by_role("button", name="Paris").click()
    received = "Answer received: “Paris”. You'll see if it's right when time is up."
    result = page.get_by_test_id("answer-result")
    await expect(result).to_have_text(received)
    await expect(page.get_by_role("button", name="Paris")).to_have_attribute("aria-pressed", "true")
    await expect(page.get_by_test_id("my-score")).to_have_attribute("data-value", "0")
    withheld = await api.call("GetPlayerScore", score_request, host)
    assert withheld["score"] == 0
    assert [(a["revealed"], a["points_awarded"]) for a in withheld["answers"]] == [(False, 0)]
    await page.reload()
    await expect(result).to_have_text(received)
    await expect(page.get_by_test_id("my-score")).to_have_attribute("data-value", "0")
    await ann.shot("answer-received")

    # The host ends the question: the reveal, then the verdict with the points the
    # server gave, and the score.
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)
    await expect(page.get_by_test_id("reveal")).to_have_text("The answer was “Paris”.")
    [told] = (await api.call("GetPlayerScore", score_request, host))["answers"]
    assert told["revealed"] is True
    assert told["correct"] is True
    points = int(told["points_awarded"])
    assert points > 0
    await expect(result).to_have_text(f"You got it right: +{points:,} points.")
    await expect(page.get_by_test_id("my-score")).to_have_attribute("data-value", str(points))
    await expect(page.get_by_test_id("my-place")).to_contain_text(f"with {points:,} points")
    for board in ("leaderboard", "neighbours"):
        row = page.get_by_test_id(board).locator(".entry.me")
        await expect(row).to_contain_text(f"{points:,}")
    await expect(page.locator("#announcer")).to_contain_text("The answer was Paris.")
    await ann.shot("verdict")

    # The next question: the line about the first one carries its points.
    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)
    await expect(page.get_by_role("heading", name="Largest planet?")).to_be_visible()
    await expect(page.get_by_test_id("previous-result")).to_have_text(
        f"Question 1: you got it (+{points:,})."
    )


async def test_a_practice_quiz_ticked_on_the_form_tells_each_answer_at_once(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host = await open_user("host", BIG_SCREEN)
    ann = await open_user("ann", PHONE)

    # The box on the form reaches the server.
    quiz_id = await create_quiz_in_the_form(host, stack.host_token("alice"), instant_feedback=True)
    quiz = (await api.call("GetQuiz", {"quiz_id": quiz_id}))["quiz"]
    assert quiz["instant_feedback"] is True
    await join(ann, await host.page.get_by_test_id("join-link").inner_text())
    await expect(ann.page.get_by_test_id("feedback-mode")).to_have_text(
        "Practice quiz: you'll see right or wrong as soon as you answer."
    )

    # The verdict and points come with the reply, on the open question's screen.
    await host.page.get_by_role("button", name="Start quiz").click()
    await ann.page.get_by_role("button", name="4").click()
    await expect(ann.page.get_by_test_id("answer-result")).to_have_text(
        re.compile(r"^Correct! \+[\d,]+ points$")
    )
    await expect(ann.page.get_by_test_id("reveal")).to_have_count(0)
    await expect(ann.page.get_by_test_id("my-score")).not_to_have_attribute("data-value", "0")
    await ann.shot("practice-verdict")


async def test_at_the_close_a_phone_works_its_points_out_from_the_board_without_asking(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    """A stadium's phones must not all call GetPlayerScore at each close: a wrong
    choice earned nothing, a right one what the board moved by (docs/web-client.md)."""
    api = HttpApi(http)
    host = stack.host_token("alice")
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    ann, bob = await open_user("ann"), await open_user("bob")
    asked: list[str] = []
    for user in (ann, bob):
        await user.page.goto(f"/#/play/{quiz_id}")
        await user.page.get_by_label("Your nickname").fill(user.name)
        await user.page.get_by_role("button", name="Join").click()
        await expect(user.page.get_by_test_id("feedback-mode")).to_be_visible()
        user.page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/score") else None)
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    await ann.page.get_by_role("button", name="Paris").click()
    await bob.page.get_by_role("button", name="Rome").click()
    for user in (ann, bob):
        await expect(user.page.get_by_test_id("answer-result")).to_contain_text("Answer received")

    await api.call("AdvanceQuestion", {"quiz_id": quiz_id}, host)

    board = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 10}, host)
    points = {e["nickname"]: int(e.get("score", 0)) for e in board["entries"]}
    assert points["ann"] > 0
    await expect(ann.page.get_by_test_id("answer-result")).to_have_text(
        f"You got it right: +{points['ann']:,} points."
    )
    await expect(bob.page.get_by_test_id("answer-result")).to_have_text(
        "You answered “Rome”: 0 points."
    )
    await ann.page.wait_for_timeout(3_500)  # past the latest fallback (SETTLE_MS, doubled)
    assert asked == []
