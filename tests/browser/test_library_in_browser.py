"""The host's quiz library at the web client's desk, in a real Chromium: a quiz is
built once and played as many games as wanted, each with its own code; an edit
changes the games played after it, never the ones before; a quiz is exported as
the quiz file quizctl reads, imported back, duplicated and deleted (its games
stay)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from playwright.async_api import Locator, Page, expect

from quizctl.quizfile import parse_document, parse_quiz
from tests.api import ApiError, HttpApi
from tests.browser.conftest import OpenUser
from tests.browser.host_desk import (
    DESK,
    fill_quiz_form,
    new_email,
    open_desk,
    sign_up,
    stored_session,
)
from tests.stack import Stack

CAPITALS: dict[str, Any] = {
    "title": "Capitals",
    "questions": [
        {"text": "Capital of France?", "choices": ["Paris", "Rome", "Madrid"], "correct_choice": 0},
        {
            "text": "Capital of Spain?",
            "choices": ["Lisbon", "Madrid"],
            "correct_choice": 1,
            "points": 500,
            "time_limit_ms": 15_000,
        },
    ],
}
CODE = re.compile(r"^[A-Z0-9]{8}$")


def library(page: Page) -> Locator:
    return page.get_by_role("region", name="Your quiz library")


def entry(page: Page, title: str) -> Locator:
    """A library quiz's row: its title, facts and buttons."""
    heading = page.get_by_role("heading", name=title, exact=True)
    return library(page).get_by_role("listitem").filter(has=heading)


def content(quiz: dict[str, Any]) -> dict[str, Any]:
    """What a quiz file holds of a library quiz (or of a request for one)."""
    return {
        "title": quiz["title"],
        "questions": quiz["questions"],
        "instant_feedback": quiz.get("instant_feedback", False),
        "allow_late_join": quiz.get("allow_late_join", False),
    }


async def play(page: Page, title: str) -> str:
    """Plays a library quiz listed on the desk: the new game's code, on its big screen."""
    await entry(page, title).get_by_role("button", name="Play").click()
    code = page.get_by_test_id("quiz-code")
    await expect(code).to_have_text(CODE)
    await expect(page.get_by_test_id("host-status")).to_have_text("Open for joining · 0 joined")
    return await code.inner_text()


async def test_a_quiz_saved_to_the_library_is_played_as_two_games(
    open_user: OpenUser, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host = await open_user("host", DESK)
    page = host.page
    await sign_up(page, new_email())
    await expect(library(page).get_by_role("listitem")).to_have_text(
        ["No quizzes yet: write one below and save it to your library."]
    )

    # Saving keeps the quiz in the library; the form goes on editing it.
    await fill_quiz_form(page, CAPITALS)
    await page.get_by_role("button", name="Save to library").click()
    await expect(page.get_by_test_id("form-status")).to_have_text(
        "Saved “Capitals” to your library."
    )
    await expect(page.get_by_role("heading", name="Edit “Capitals”")).to_be_visible()
    await expect(entry(page, "Capitals").get_by_test_id("library-facts")).to_contain_text(
        "2 questions · not played yet · changed "
    )
    await host.shot("saved")

    # Each Play is a new game with its own code, made from the library quiz.
    first = await play(page, "Capitals")
    await page.goto("/#/host")
    second = await play(page, "Capitals")
    assert first != second
    token = (await stored_session(page))["session"]["access_token"]
    (saved,) = (await api.call("ListLibraryQuizzes", {}, token))["library_quizzes"]
    for code in (first, second):
        game = (await api.call("GetQuiz", {"quiz_id": code}))["quiz"]
        assert game["library_quiz_id"] == saved["library_quiz_id"]
        assert (game["state"], game["title"], game["question_count"]) == (
            "QUIZ_STATE_OPEN",
            "Capitals",
            2,
        )

    # Both games are the host's to go back to; the library counts them.
    await page.goto("/#/host")
    await expect(entry(page, "Capitals").get_by_test_id("library-facts")).to_contain_text(
        "2 questions · 2 games played · changed "
    )
    recent = page.get_by_role("region", name="Your recent games")
    for code in (first, second):
        await expect(recent.get_by_role("listitem").filter(has_text=code)).to_contain_text(
            f"Capitals · {code} · open for joining"
        )
    await host.shot("played-twice")
    await recent.get_by_role("link", name="Capitals").first.click()
    await expect(page.get_by_role("button", name="Start quiz")).to_be_visible()


async def test_an_edit_changes_the_next_game_and_not_the_games_played_before(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host, token = await open_desk(open_user, stack)
    page = host.page
    host.expect_console_error(r"status of 400")  # the save refused as stale
    saved = (await api.call("CreateLibraryQuiz", CAPITALS, token))["library_quiz"]
    await page.reload()
    before = await play(page, "Capitals")

    # Edit opens the library quiz in the form; saving makes its version 2.
    await page.goto("/#/host")
    await entry(page, "Capitals").get_by_role("button", name="Edit").click()
    await expect(page.get_by_role("heading", name="Edit “Capitals”")).to_be_visible()
    await expect(page.get_by_label("Title")).to_be_focused()
    first = page.get_by_role("group", name="Question 1")
    await expect(first.get_by_label("Question", exact=True)).to_have_value("Capital of France?")
    await first.get_by_label("Question", exact=True).fill("Capital of Italy?")
    await first.get_by_label("B is correct").check()
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_test_id("form-status")).to_have_text(
        "Saved “Capitals” to your library."
    )
    edited = (
        await api.call("GetLibraryQuiz", {"library_quiz_id": saved["library_quiz_id"]}, token)
    )["library_quiz"]
    assert edited["version"] == "2"
    assert edited["questions"][0] == {
        "text": "Capital of Italy?",
        "choices": ["Paris", "Rome", "Madrid"],
        "correct_choice": 1,
    }
    assert edited["questions"][1] == CAPITALS["questions"][1]  # untouched, as written

    # The game played before keeps its questions; the next one has the edit.
    after = await play(page, "Capitals")
    texts = {}
    for code in (before, after):
        game = (await api.call("GetQuiz", {"quiz_id": code}, token))["quiz"]
        texts[code] = [q["text"] for q in game["questions"]]
    assert texts == {
        before: ["Capital of France?", "Capital of Spain?"],
        after: ["Capital of Italy?", "Capital of Spain?"],
    }

    # Saved elsewhere meanwhile (another tab, quizctl): this form's save is refused,
    # nothing is lost silently, and the saved version can be loaded to go on.
    await page.goto("/#/host")
    await entry(page, "Capitals").get_by_role("button", name="Edit").click()
    await expect(page.get_by_label("Title")).to_have_value("Capitals")
    elsewhere = {**CAPITALS, "title": "Capitals of Europe"}
    await api.call(
        "UpdateLibraryQuiz", {"library_quiz_id": saved["library_quiz_id"], **elsewhere}, token
    )
    await page.get_by_label("Title").fill("Capitals, mine")
    await page.get_by_role("button", name="Save changes").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text(
        "Not saved. “Capitals” was saved elsewhere since you opened it (in another tab, or with "
        "quizctl). Load the saved version, then make your change again."
    )
    await host.shot("saved-meanwhile")
    await alert.get_by_role("button", name="Load the saved version").click()
    await expect(page.get_by_role("heading", name="Edit “Capitals of Europe”")).to_be_visible()
    await expect(page.get_by_label("Title")).to_have_value("Capitals of Europe")
    await page.get_by_label("Title").fill("Capitals, mine")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_test_id("form-status")).to_have_text(
        "Saved “Capitals, mine” to your library."
    )
    await expect(entry(page, "Capitals, mine")).to_be_visible()


FILED: dict[str, Any] = {
    "title": "Capitals: the hard ones",
    "instant_feedback": True,
    "allow_late_join": True,
    "questions": [
        {"text": "Capital of Australia?", "choices": ["Sydney", "Canberra"], "correct_choice": 1},
        {
            "text": "How many capitals has South Africa?",
            "choices": ["1", "2", "3"],
            "correct_choice": 2,
            "points": 500,
            "time_limit_ms": 15_000,
        },
    ],
}
# The file Export downloads: the format of examples/quiz.yaml and of `quizctl library
# export` (right choices by their text, unset points and time limits left out).
FILED_YAML = """\
title: "Capitals: the hard ones"
instant_feedback: true
allow_late_join: true
questions:
  - text: Capital of Australia?
    choices: [Sydney, Canberra]
    answer: Canberra

  - text: How many capitals has South Africa?
    choices: ["1", "2", "3"]
    answer: "3"
    points: 500
    time_limit_ms: 15000
"""


async def test_a_library_quiz_is_exported_imported_duplicated_and_deleted(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    api = HttpApi(http)
    host, token = await open_desk(open_user, stack)
    page = host.page
    original = (await api.call("CreateLibraryQuiz", FILED, token))["library_quiz"]
    game = (
        await api.call("PlayLibraryQuiz", {"library_quiz_id": original["library_quiz_id"]}, token)
    )["quiz"]
    await page.reload()
    row = entry(page, FILED["title"])
    await expect(row.get_by_test_id("library-facts")).to_contain_text(
        "2 questions · 1 game played · changed "
    )
    await expect(row.get_by_test_id("library-facts")).to_contain_text(
        " · instant feedback · late joining"
    )

    # Export downloads the quiz file, which quizctl reads back into the same quiz.
    async with page.expect_download() as download:
        await row.get_by_role("button", name="Export").click()
    exported = await download.value
    assert exported.suggested_filename == "capitals-the-hard-ones.yaml"
    file = tmp_path / exported.suggested_filename
    await exported.save_as(file)
    text = file.read_text(encoding="utf-8")
    assert text == FILED_YAML
    read_by_quizctl = parse_quiz(parse_document(text, file.name), file.name)
    assert content(
        json_format.MessageToDict(read_by_quizctl, preserving_proto_field_name=True)
    ) == (
        content(
            (
                await api.call(
                    "GetLibraryQuiz", {"library_quiz_id": original["library_quiz_id"]}, token
                )
            )["library_quiz"]
        )
    )

    # Importing the file (uploaded into the form) and saving it adds the same quiz.
    await page.get_by_text("upload a quiz file").click()
    await page.get_by_label("Quiz file").set_input_files(file)
    await expect(page.get_by_role("heading", name="New quiz")).to_be_visible()
    await expect(page.get_by_label("Title")).to_have_value(FILED["title"])
    await expect(page.get_by_label("Let players join after the start")).to_be_checked()
    await page.get_by_role("button", name="Save to library").click()
    await expect(page.get_by_test_id("form-status")).to_have_text(
        f"Saved “{FILED['title']}” to your library."
    )
    listed = (await api.call("ListLibraryQuizzes", {}, token))["library_quizzes"]
    assert [q["title"] for q in listed] == [FILED["title"]] * 2  # the import first
    imported = (
        await api.call("GetLibraryQuiz", {"library_quiz_id": listed[0]["library_quiz_id"]}, token)
    )["library_quiz"]
    assert content(imported) == content(FILED)

    # Duplicate adds a copy, not played yet.
    await entry(page, FILED["title"]).first.get_by_role("button", name="Duplicate").click()
    copy = entry(page, f"Copy of {FILED['title']}")
    await expect(copy.get_by_test_id("library-facts")).to_contain_text("not played yet")
    await expect(copy.get_by_role("heading")).to_be_focused()

    # Delete asks first; "Keep it" keeps it. Deleting the original leaves its game.
    row = page.locator(f"[data-id='{original['library_quiz_id']}']")
    await row.get_by_role("button", name="Delete").click()
    await expect(row).to_contain_text(
        f"Delete “{FILED['title']}” from your library? Games played from it stay."
    )
    await host.shot("delete-asked")
    await row.get_by_role("button", name="Keep it").click()
    await expect(row.get_by_role("button", name="Delete")).to_be_focused()
    await row.get_by_role("button", name="Delete").click()
    await row.get_by_role("button", name="Yes, delete").click()
    await expect(row).to_have_count(0)
    await expect(library(page).get_by_role("status")).to_have_text(f"Deleted “{FILED['title']}”.")
    await expect(library(page).get_by_role("listitem")).to_have_count(2)  # the import and the copy
    with pytest.raises(ApiError) as gone:
        await api.call("GetLibraryQuiz", {"library_quiz_id": original["library_quiz_id"]}, token)
    assert gone.value.reason == "LIBRARY_QUIZ_NOT_FOUND"
    kept = (await api.call("GetQuiz", {"quiz_id": game["quiz_id"]}))["quiz"]
    assert (kept["title"], kept["question_count"]) == (FILED["title"], 2)
