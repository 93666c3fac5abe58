"""The web client when things go wrong: a player who loses the network catches up
without missing an event, and every refusal of the API reaches the user as a clear
message (and only as the console errors the refused request itself causes)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.async_api import expect

from devstack.gateway import REPO
from tests.api import HttpApi
from tests.browser.conftest import OpenUser
from tests.browser.host_desk import sign_in_with_token
from tests.game import next_question
from tests.stack import Stack

QUIZ: dict[str, Any] = {
    "title": "Resume quiz",
    "questions": [
        {"text": "First?", "choices": ["yes", "no"], "correct_choice": 0, "time_limit_ms": 60_000},
        {"text": "Second?", "choices": ["left", "right"], "correct_choice": 1},
    ],
}


async def test_a_player_offline_while_questions_change_catches_up_on_every_event(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host = stack.host_token("alice")
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    ann = await open_user("ann")
    watches: list[str] = []
    ann.page.on(
        "request",
        lambda request: watches.append(request.url) if "events:watch" in request.url else None,
    )
    await ann.page.goto(f"/#/play/{quiz_id}")
    await ann.page.get_by_label("Your nickname").fill("ann")
    await ann.page.get_by_role("button", name="Join").click()
    await expect(ann.page.get_by_test_id("player-count")).to_have_text("1 player joined")
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    await ann.page.get_by_role("button", name="yes").click()
    await expect(ann.page.get_by_test_id("answer-result")).to_contain_text(
        "Answer received: “yes”."
    )

    # Offline: the client's streams get no answer from the server, and it says so.
    # It keeps asking (the browser's belief decides nothing): each try fails.
    ann.expect_console_error(r"net::ERR_INTERNET_DISCONNECTED")
    await ann.context.set_offline(True)
    await expect(ann.page.locator("#connection")).to_have_text("Offline: waiting for the network…")
    await ann.shot("offline")

    # Meanwhile question 1 closes and question 2 opens.
    await next_question(api, quiz_id, host)

    # Back online, the stream resumes after the last event ann had (question 1
    # opening): she learns that question 1 closed and is on question 2, and asks
    # for the result withheld while it was open: right, and its points.
    await ann.context.set_offline(False)
    await expect(ann.page.get_by_role("heading", name="Second?")).to_be_visible()
    await expect(ann.page.get_by_test_id("previous-result")).to_have_text(
        re.compile(r"^Question 1: you got it \(\+[\d,]+\)\.$")
    )
    await expect(ann.page.locator("#connection")).to_have_text("")
    first, resumed = parse_qs(urlsplit(watches[0]).query), parse_qs(urlsplit(watches[-1]).query)
    assert first["after_sequence"] == ["0"]
    assert int(resumed["after_sequence"][0]) > 0
    await ann.page.get_by_role("button", name="right").click()
    await expect(ann.page.get_by_test_id("answer-result")).to_contain_text(
        "Answer received: “right”."
    )
    await ann.shot("caught-up")


async def test_api_refusals_are_shown_as_clear_messages(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host = stack.host_token("alice")
    quiz_id = (await api.call("CreateQuiz", QUIZ, host))["quiz"]["quiz_id"]
    await api.call("JoinQuiz", {"quiz_id": quiz_id, "nickname": "ann"})
    user = await open_user("visitor")
    page = user.page
    user.expect_console_error(r"status of 404")
    user.expect_console_error(r"status of 409")

    # A code that does not exist.
    await page.goto("/")
    await page.get_by_label("Quiz code").fill("nope 2345")
    await page.get_by_role("button", name="Go").click()
    await expect(page.get_by_role("alert")).to_have_text("Quiz NOPE2345 not found.")
    await user.shot("not-found")

    # A nickname someone has already taken.
    await page.goto(f"/#/play/{quiz_id}")
    await page.get_by_label("Your nickname").fill("ann")
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("alert")).to_contain_text("Nickname taken.")
    await expect(page.get_by_role("alert")).to_contain_text(f"already taken in quiz {quiz_id}")
    await user.shot("nickname-taken")

    # An answer given elsewhere first (another tab with the same player): the
    # refusal is explained and the answer that counts is shown.
    await page.get_by_label("Your nickname").fill("bob")
    await page.get_by_role("button", name="Join").click()
    await api.call("StartQuiz", {"quiz_id": quiz_id}, host)
    await expect(page.get_by_role("heading", name="First?")).to_be_visible()
    token = await page.evaluate(
        "quiz => JSON.parse(localStorage.getItem(`quizmesh.player.${quiz}`)).player_token",
        quiz_id,
    )
    await api.call(
        "SubmitAnswer", {"quiz_id": quiz_id, "question_index": 0, "choice_index": 1}, token
    )
    await page.get_by_role("button", name="yes").click()
    await expect(page.get_by_role("alert")).to_contain_text("You already answered this question")
    await expect(page.get_by_test_id("answer-result")).to_contain_text("Answer received: “no”.")
    await expect(page.get_by_role("button", name="no")).to_have_attribute("aria-pressed", "true")
    await user.shot("already-answered")

    # Joining a quiz that has started.
    other = await open_user("latecomer")
    await other.page.goto(f"/#/play/{quiz_id}")
    await expect(other.page.get_by_text("joining is closed")).to_be_visible()

    # A host token that is not one, and a quiz file with mistakes.
    await page.goto("/#/host")
    await sign_in_with_token(page, token)
    await expect(page.get_by_role("alert")).to_have_text(
        "That is a player token; a host token is needed."
    )
    await page.get_by_label("Host token").fill(host)
    await page.get_by_role("button", name="Use this token").click()
    await page.get_by_text("Paste YAML or JSON instead").click()
    await page.get_by_label("Quiz as YAML or JSON").fill(
        "title: Oops\nquestions:\n  - text: Ready?\n    choices: [yes, no]\n    answer: maybe\n"
    )
    await page.get_by_role("button", name="Load into the form").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("The quiz has mistakes:")
    await expect(alert).to_contain_text("questions[0].choices[0]: must be text, got true")
    await expect(alert).to_contain_text("put it in quotes")
    await user.shot("quiz-file-mistakes")


async def test_a_pasted_quiz_file_fills_the_form(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    """The YAML that `quizctl create` reads works in the browser too."""
    host = await open_user("host", {"width": 1280, "height": 900})
    page = host.page
    await page.goto("/#/host")
    await sign_in_with_token(page, stack.host_token("alice"))
    await page.get_by_text("Paste YAML or JSON instead").click()
    example = (REPO / "examples" / "quiz.yaml").read_text(encoding="utf-8")
    await page.get_by_label("Quiz as YAML or JSON").fill(example)
    await page.get_by_role("button", name="Load into the form").click()
    await expect(page.get_by_label("Title")).to_have_value("Around the World in Five Questions")
    third = page.get_by_role("group", name="Question 3")
    await expect(third.get_by_label("Question", exact=True)).to_have_value(
        "How many hearts does an octopus have?"
    )
    await expect(third.get_by_label("C is correct")).to_be_checked()
    await page.get_by_role("button", name="Play once without saving").click()
    quiz_id = await page.get_by_test_id("quiz-code").inner_text()

    quiz = (await HttpApi(http).call("GetQuiz", {"quiz_id": quiz_id}))["quiz"]
    assert quiz["title"] == "Around the World in Five Questions"
    assert quiz["question_count"] == 5
