"""Joining under the host's control, in a real Chromium: a quiz that lets players
join after the start takes a late joiner straight into the open question, and a
locked lobby refuses players, saying why, until the host unlocks it."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import expect

from tests.api import HttpApi
from tests.browser.conftest import BIG_SCREEN, PHONE, OpenUser, User
from tests.browser.host_desk import fill_quiz_form, open_desk
from tests.stack import Stack

QUIZ: dict[str, Any] = {
    "title": "Capitals",
    "questions": [
        {"text": "Capital of France?", "choices": ["Paris", "Rome", "Madrid"], "correct_choice": 0},
        {"text": "Capital of Spain?", "choices": ["Lisbon", "Madrid"], "correct_choice": 1},
    ],
}
CODE = re.compile(r"^[A-Z0-9]{8}$")


async def join(player: User, code: str) -> None:
    await player.page.goto(f"/#/play/{code}")
    await player.page.get_by_label("Your nickname").fill(player.name)
    await player.page.get_by_role("button", name="Join").click()


async def test_a_late_joiner_joins_a_running_quiz_and_answers_the_open_question(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host, _ = await open_desk(open_user, stack)
    await host.page.set_viewport_size(BIG_SCREEN)
    late_joining = {
        **QUIZ,
        "allow_late_join": True,
        "questions": [{**q, "time_limit_ms": 120_000} for q in QUIZ["questions"]],
    }
    await fill_quiz_form(host.page, late_joining)
    await host.page.get_by_role("button", name="Save and play").click()
    await expect(host.page.get_by_test_id("quiz-code")).to_have_text(CODE)
    code = await host.page.get_by_test_id("quiz-code").inner_text()
    ann, bob = await open_user("ann", PHONE), await open_user("bob", PHONE)
    await join(ann, code)
    await expect(ann.page.get_by_role("heading", name="You're in, ann!")).to_be_visible()
    await host.page.get_by_role("button", name="Start quiz").click()
    await expect(ann.page.get_by_role("heading", name="Capital of France?")).to_be_visible()

    # The quiz runs and still takes players: the panel stays open, and bob joins
    # straight into the open question, with 0 points.
    await expect(host.page.get_by_test_id("join-note")).to_be_hidden()
    await bob.page.goto(f"/#/play/{code}")
    await expect(bob.page.get_by_test_id("late-join")).to_have_text(
        "The quiz has started: you join with 0 points and play from the current question."
    )
    await bob.shot("late-join")
    await join(bob, code)
    await expect(bob.page.get_by_role("heading", name="Capital of France?")).to_be_visible()
    await expect(bob.page.get_by_test_id("my-score")).to_have_attribute("data-value", "0")
    await bob.page.get_by_role("button", name="Paris").click()
    await expect(bob.page.get_by_test_id("answer-result")).to_contain_text(
        "Answer received: “Paris”."
    )
    await bob.shot("answered")
    await expect(host.page.get_by_test_id("answers-count")).to_have_attribute("data-value", "1")
    board = await api.call("GetLeaderboard", {"quiz_id": code, "page_size": 10})
    assert sorted(e["nickname"] for e in board["entries"]) == ["ann", "bob"]


async def test_a_locked_lobby_refuses_players_until_the_host_unlocks_it(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host, token = await open_desk(open_user, stack)
    code = (await api.call("CreateQuiz", QUIZ, token))["quiz"]["quiz_id"]
    screen = host.page
    await screen.set_viewport_size(BIG_SCREEN)
    await screen.goto(f"/#/host/{code}")
    ann, bob = await open_user("ann", PHONE), await open_user("bob", PHONE)
    bob.expect_console_error(r"status of 400")  # his join, refused while locked
    await bob.page.goto(f"/#/play/{code}")  # bob has the join form open

    # Locked: the big screen says so over the code, and a player who opens the
    # link is told; trying again while locked changes nothing.
    await screen.get_by_role("button", name="Lock lobby").click()
    await expect(screen.get_by_test_id("host-status")).to_have_text("Lobby locked · 0 joined")
    await expect(screen.get_by_test_id("join-note")).to_have_text(
        "Lobby locked: nobody can join now"
    )
    await host.shot("locked")
    assert (await api.call("GetQuiz", {"quiz_id": code}))["quiz"]["lobby_locked"] is True
    await ann.page.goto(f"/#/play/{code}")
    locked = ann.page.get_by_test_id("join-closed")
    await expect(locked).to_have_text(
        "The host has locked this quiz: nobody can join now. Ask the host to unlock it."
    )
    await ann.page.get_by_role("button", name="Try again").click()
    await expect(locked).to_be_visible()
    await ann.shot("locked")

    # A join sent from a form opened before the lock is refused with the reason.
    await bob.page.get_by_label("Your nickname").fill("bob")
    await bob.page.get_by_role("button", name="Join").click()
    await expect(bob.page.get_by_role("alert")).to_have_text(
        f"The host has locked quiz {code}: nobody can join now; ask the host."
    )

    # Unlocked: both get in.
    await screen.get_by_role("button", name="Unlock lobby").click()
    await expect(screen.get_by_test_id("host-status")).to_have_text("Open for joining · 0 joined")
    await expect(screen.get_by_test_id("join-note")).to_be_hidden()
    await ann.page.get_by_role("button", name="Try again").click()
    await ann.page.get_by_label("Your nickname").fill("ann")
    await ann.page.get_by_role("button", name="Join").click()
    await expect(ann.page.get_by_role("heading", name="You're in, ann!")).to_be_visible()
    await bob.page.get_by_role("button", name="Join").click()
    await expect(bob.page.get_by_role("heading", name="You're in, bob!")).to_be_visible()
    await expect(screen.get_by_test_id("lobby-count")).to_have_text("2 players have joined")
