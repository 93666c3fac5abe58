"""A host and three players play a whole quiz in a real Chromium, through Envoy,
using nothing but the web client: create, join, answer, reload, podium. Each
player's score and rank on screen must match what the server says. The quiz is
the default kind: an answer is only received while its question is open, and
right or wrong, points and the board come when the question closes."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, expect

from devstack.gateway import REPO
from tests.api import HttpApi
from tests.browser.conftest import BIG_SCREEN, PHONE, OpenUser, User
from tests.browser.host_desk import sign_in_with_token
from tests.stack import Stack

DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
# `QUIZMESH_DOCS_SCREENSHOTS=1 pytest tests/browser` refreshes the README's pictures.
UPDATE_DOCS = os.environ.get("QUIZMESH_DOCS_SCREENSHOTS") == "1"

QUESTIONS: list[dict[str, Any]] = [
    # Short: the test waits for this deadline to see the answer revealed.
    {"text": "2 + 2?", "choices": ["3", "4", "5", "22"], "correct": 1, "seconds": 6},
    # Long: the host advances as soon as everyone answered.
    {"text": "Capital of France?", "choices": ["Paris", "Rome", "Madrid"], "correct": 0},
    {"text": "Largest planet?", "choices": ["Mars", "Jupiter"], "correct": 1},
]
LETTERS = "ABCDEF"


async def create_quiz_in_the_form(host: User, token: str, *, instant_feedback: bool = False) -> str:
    page = host.page
    await page.goto("/#/host")
    await sign_in_with_token(page, token)
    await expect(page.get_by_text("Signed in as")).to_contain_text("alice")
    await page.get_by_label("Title").fill("Browser quiz")
    if instant_feedback:
        await page.get_by_label("Instant feedback (practice)").check()
    for n, question in enumerate(QUESTIONS, start=1):
        if n > 1:
            await page.get_by_role("button", name="Add question").click()
        fields = page.get_by_role("group", name=f"Question {n}")
        await fields.get_by_label("Question", exact=True).fill(question["text"])
        for i, choice in enumerate(question["choices"]):
            if i >= 2:
                await fields.get_by_role("button", name="Add choice").click()
            await fields.get_by_label(f"Choice {LETTERS[i]}", exact=True).fill(choice)
        await fields.get_by_label(f"{LETTERS[question['correct']]} is correct").check()
        await fields.get_by_label("Seconds to answer").fill(str(question.get("seconds", 60)))
    await host.shot("quiz-form")
    await page.get_by_role("button", name="Play once without saving").click()
    code = page.get_by_test_id("quiz-code")
    await expect(code).to_have_text(re.compile(r"^[A-Z0-9]{8}$"))
    return await code.inner_text()


async def join(player: User, link: str) -> None:
    await player.page.goto(link)
    await player.page.get_by_label("Your nickname").fill(player.name)
    await player.page.get_by_label("Your nickname").press("Enter")
    await expect(
        player.page.get_by_role("heading", name=f"You're in, {player.name}!")
    ).to_be_visible()


async def answer(player: User, question: int, choice: int, *, keyboard: bool = False) -> None:
    """Taps a choice (or presses its number): the answer is received, its result and
    points withheld while the question is open, the score unchanged."""
    page = player.page
    text = QUESTIONS[question]["choices"][choice]
    await expect(page.get_by_role("heading", name=QUESTIONS[question]["text"])).to_be_visible()
    score = await page.get_by_test_id("my-score").get_attribute("data-value")
    if keyboard:
        await page.keyboard.press(str(choice + 1))
    else:
        await page.get_by_role("button", name=text).click()
    result = page.get_by_test_id("answer-result")
    await expect(result).to_contain_text(f"Answer received: “{text}”.")
    await expect(result).not_to_contain_text(re.compile("Correct|Not this time|points"))
    # The reply is applied before the result shows: a score it moved would show now.
    await expect(page.get_by_test_id("my-score")).to_have_attribute("data-value", score or "")


async def expect_verdicts(
    players: tuple[User, ...], before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    """Once a question has closed: each player's verdict with the points the server
    gave (what their score grew by), and their standing as the server's."""
    for player in players:
        gained = score_of(after, player) - score_of(before, player)
        result = player.page.get_by_test_id("answer-result")
        if gained:
            await expect(result).to_have_text(f"You got it right: +{gained:,} points.")
        else:
            await expect(result).to_have_text(re.compile(r"^You answered “.+”: 0 points\.$"))
        await expect_standing_matches_server(player, after)


def score_of(board: list[dict[str, Any]], player: User) -> int:
    return next((int(e.get("score", 0)) for e in board if e["nickname"] == player.name), 0)


async def server_board(api: HttpApi, quiz_id: str) -> list[dict[str, Any]]:
    board = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 10})
    return list(board["entries"])


async def expect_standing_matches_server(player: User, board: list[dict[str, Any]]) -> None:
    mine = next(e for e in board if e["nickname"] == player.name)
    await expect(player.page.get_by_test_id("my-score")).to_have_attribute(
        "data-value", str(mine["score"])
    )
    await expect(player.page.get_by_test_id("my-rank")).to_have_attribute(
        "data-value", str(mine["rank"])
    )
    await expect(player.page.get_by_test_id("my-rank")).to_contain_text(f"of {len(board)}")
    # The live top 10 and the players just above and below agree, own row marked.
    for board_id in ("leaderboard", "neighbours"):
        row = player.page.get_by_test_id(board_id).locator(".entry.me")
        await expect(row).to_contain_text(f"{mine['rank']}{player.name} (you)")
        await expect(row).to_contain_text(f"{mine['score']:,}")
    around = [e["nickname"] for e in board if abs(e["rank"] - mine["rank"]) <= 1]
    rows = player.page.get_by_test_id("neighbours").locator(".entry-name")
    await expect(rows).to_have_text([n + (" (you)" if n == player.name else "") for n in around])


async def settled_board(api: HttpApi, quiz_id: str, answers: int) -> list[dict[str, Any]]:
    """The server's board once `answers` correct answers have been counted in it."""
    for _ in range(50):
        board = await server_board(api, quiz_id)
        if sum(1 for e in board if e["score"] > 0) >= answers:
            return board
        await asyncio.sleep(0.1)
    raise AssertionError(f"the server's board never counted {answers} scores: {board}")


def keep_for_docs(shot: Path, name: str) -> None:
    if UPDATE_DOCS:
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOTS / name)


async def answers_counted(page: Page, count: int) -> None:
    await expect(page.get_by_test_id("answers-count")).to_have_attribute("data-value", str(count))


async def test_a_host_and_three_players_play_a_whole_quiz_in_the_browser(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host = await open_user("host", BIG_SCREEN)
    ann, bob, cat = [await open_user(name, PHONE) for name in ("ann", "bob", "cat")]
    players = (ann, bob, cat)

    # The host writes the quiz in the form (instant feedback left off: the default);
    # the big screen shows the code and link.
    quiz_id = await create_quiz_in_the_form(host, stack.host_token("alice"))
    created = (await api.call("GetQuiz", {"quiz_id": quiz_id}))["quiz"]
    assert created["instant_feedback"] is False
    link = await host.page.get_by_test_id("join-link").inner_text()
    assert link.endswith(f"/#/play/{quiz_id}")

    # Players open the shared link and pick nicknames; the lobby fills up live.
    for player in players:
        await join(player, link)
    await expect(host.page.get_by_test_id("lobby-count")).to_have_text("3 players have joined")
    await expect(ann.page.get_by_test_id("player-count")).to_have_text("3 players joined")
    await expect(ann.page.get_by_test_id("feedback-mode")).to_have_text(
        "You'll see if each answer is right when its time is up."
    )
    await ann.shot("lobby")
    await host.shot("lobby")

    # Question 1: ann and cat right, bob wrong; while it is open each is told only
    # that their answer arrived, and no score moves.
    await host.page.get_by_role("button", name="Start quiz").click()
    await expect(ann.page.get_by_role("timer")).to_be_visible()
    await ann.shot("question")
    start = await server_board(api, quiz_id)
    await answer(ann, 0, 1)
    await answer(bob, 0, 0)
    await answer(cat, 0, 1)
    await answers_counted(host.page, 3)
    await host.shot("answers-counted")

    # At the deadline the answer is revealed, then each verdict with its points;
    # score and rank match the server's.
    for player in players:
        await expect(player.page.get_by_test_id("reveal")).to_contain_text("“4”", timeout=15_000)
    after_first = await settled_board(api, quiz_id, answers=2)
    await expect_verdicts(players, start, after_first)
    await bob.shot("reveal")
    await expect(host.page.get_by_text("✓ correct")).to_be_visible()

    # Question 2: the host moves on without waiting for the deadline; the board
    # stays where question 1 left it while this one is open.
    await host.page.get_by_role("button", name="Next question").click()
    await answer(cat, 1, 2)
    await answer(bob, 1, 0)
    await answer(ann, 1, 0)
    await answers_counted(host.page, 3)
    assert await server_board(api, quiz_id) == after_first
    for player in players:
        await expect_standing_matches_server(player, after_first)
    keep_for_docs(await ann.shot("answered"), "player-phone.png")
    keep_for_docs(await host.shot("big-screen"), "host-big-screen.png")

    # bob reloads mid-question: same player, same score, his answer still received.
    await bob.page.reload()
    await expect(bob.page.get_by_test_id("answer-result")).to_contain_text(
        "Answer received: “Paris”."
    )
    await expect(bob.page.get_by_role("button", name="Paris")).to_be_disabled()
    await expect_standing_matches_server(bob, after_first)
    await bob.shot("after-reload")

    # The host ends question 2 before its deadline: every screen shows its answer,
    # then the verdicts and the board move, before the quiz moves on.
    await host.page.get_by_role("button", name="Reveal answer").click()
    for player in players:
        await expect(player.page.get_by_test_id("reveal")).to_contain_text("“Paris”")
    after_second = await settled_board(api, quiz_id, answers=3)
    await expect_verdicts(players, after_first, after_second)
    await expect(host.page.get_by_text("✓ correct")).to_be_visible()

    # Question 3, and bob plays on after his reload.
    await host.page.get_by_role("button", name="Next question").click()
    await expect(bob.page.get_by_test_id("previous-result")).to_contain_text("you got it (+")
    await answer(bob, 2, 1)
    await answer(ann, 2, 0)
    await answer(cat, 2, 1, keyboard=True)
    await answers_counted(host.page, 3)
    # The last question too is revealed on every screen before the podium.
    await host.page.get_by_role("button", name="Reveal answer").click()
    for player in players:
        await expect(player.page.get_by_test_id("reveal")).to_contain_text("“Jupiter”")
    await host.page.get_by_role("button", name="Finish quiz").click()

    # The podium: the host's big screen and every player's final place match the server.
    await expect(host.page.get_by_test_id("host-status")).to_have_text("Finished")
    final = await api.call("GetLeaderboard", {"quiz_id": quiz_id, "page_size": 10})
    assert final["is_final"] is True
    top = [e["nickname"] for e in final["entries"]]
    podium = host.page.get_by_test_id("podium")
    for rank, nickname in enumerate(top[:3], start=1):
        step = podium.locator(f".step-{rank}")
        await expect(step).to_contain_text(nickname)
    await host.shot("podium")
    for player in players:
        place = player.page.get_by_test_id("final-place")
        mine = next(e for e in final["entries"] if e["nickname"] == player.name)
        await expect(place).to_have_attribute("data-value", str(mine["rank"]))
        await expect(place).to_contain_text(f"of 3 with {mine['score']:,} points")
        await expect_standing_matches_server(player, final["entries"])
        await player.shot("final")

    for user in (host, *players):
        user.assert_no_console_errors()
