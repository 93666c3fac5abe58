"""After each question the big screen and the phones show how everyone answered;
after the game the host opens its report from their history on the desk and takes
it away as the server's CSV and as GetQuizReport's JSON, in a real Chromium."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from typing import Any

import httpx
from playwright.async_api import Locator, Page, expect

from tests.api import HttpApi
from tests.browser.conftest import PHONE, OpenUser, User
from tests.browser.host_desk import DESK, fill_quiz_form, new_email, sign_up, stored_session
from tests.browser.test_library_in_browser import entry, library, play
from tests.browser.test_play_in_browser import join, keep_for_docs

QUIZ: dict[str, Any] = {
    "title": "Capitals",
    "questions": [
        {"text": "Capital of France?", "choices": ["Paris", "Rome", "Madrid"], "correct_choice": 0},
        {"text": "Capital of Spain?", "choices": ["Lisbon", "Madrid"], "correct_choice": 1},
    ],
}


def bars(screen: Page) -> Locator:
    return screen.get_by_test_id("distribution").get_by_role("listitem")


async def expect_distribution(screen: Page, counts: list[int], names: list[str]) -> None:
    """One bar per choice with its count; the right choice named so in words."""
    await expect(bars(screen)).to_have_count(len(counts))
    assert [
        int(n) for n in await bars(screen).evaluate_all("items => items.map(i => i.dataset.count)")
    ] == counts
    for name in names:
        await expect(screen.get_by_role("listitem", name=name, exact=True)).to_be_visible()


async def answer(player: User, choice: str) -> None:
    await player.page.get_by_role("button", name=choice).click()
    await expect(player.page.get_by_test_id("answer-result")).to_contain_text("Answer received")


async def downloaded(page: Page, button: str) -> tuple[str, bytes]:
    async with page.expect_download() as started:
        await page.get_by_role("button", name=button).click()
    download = await started.value
    body = await asyncio.to_thread((await download.path()).read_bytes)
    return download.suggested_filename, body


def timeless(reply: Any) -> Any:
    """A GetQuizReport reply without the server's clock reading, which every call moves."""
    reply["report"]["quiz"].pop("server_time", None)
    return reply


async def test_the_distribution_shows_after_each_question_and_the_report_downloads(
    open_user: OpenUser, http: httpx.AsyncClient
) -> None:
    api = HttpApi(http)
    host = await open_user("host", DESK)
    page = host.page
    await page.goto("/#/host")
    await expect(page.get_by_role("button", name="Create an account")).to_be_visible()
    keep_for_docs(await host.shot("sign-in"), "host-sign-in.png")
    await sign_up(page, new_email())
    await fill_quiz_form(page, QUIZ)
    await page.get_by_role("button", name="Save to library").click()
    await expect(entry(page, "Capitals")).to_be_visible()
    await library(page).scroll_into_view_if_needed()
    keep_for_docs(await host.shot("library"), "host-library.png")

    code = await play(page, "Capitals")
    link = await page.get_by_test_id("join-link").inner_text()
    ann, bob = await open_user("ann", PHONE), await open_user("bob", PHONE)
    for player in (ann, bob):
        await join(player, link)
    await page.get_by_role("button", name="Start quiz").click()

    # Question 1: ann right, bob wrong; once it closes, the same counts on the
    # big screen and on a phone, the right choice said in words.
    await answer(ann, "Paris")
    await answer(bob, "Madrid")
    await page.get_by_role("button", name="Reveal answer").click()
    first = ["Paris: 1 player (the correct answer)", "Rome: 0 players", "Madrid: 1 player"]
    for screen in (page, ann.page):
        await expect_distribution(screen, [1, 0, 1], first)
        await expect(bars(screen).first).to_contain_text("Paris ✓ right answer")
    keep_for_docs(await host.shot("distribution"), "host-distribution.png")
    await ann.shot("distribution")

    # Question 2: only ann answers, wrong: the harder question.
    await page.get_by_role("button", name="Next question").click()
    await answer(ann, "Lisbon")
    await page.get_by_role("button", name="Reveal answer").click()
    await expect_distribution(bob.page, [1, 0], ["Madrid: 0 players (the correct answer)"])
    await page.get_by_role("button", name="Finish quiz").click()
    await expect(page.get_by_test_id("host-status")).to_have_text("Finished")

    # The game is in the host's history; its report, hardest question first.
    token = (await stored_session(page))["session"]["access_token"]
    report = timeless(await api.call("GetQuizReport", {"quiz_id": code}, token))
    await page.goto("/#/host")
    recent = page.get_by_role("region", name="Your recent games")
    game = recent.get_by_role("listitem").filter(has_text=code)
    await expect(game).to_contain_text(f"Capitals · {code} · closed · 2 players")
    await game.get_by_role("button", name="Report").click()
    shown = page.get_by_role("region", name="Report: Capitals")
    # Final once the system of record has the game; the live state's report until then.
    await expect(shown.get_by_test_id("report-status")).to_have_text(
        "The game is over: this is its final record."
        if report["report"].get("is_final")
        else "The game is over: results as played (the final record is still being written)."
    )
    await expect(shown.get_by_test_id("right-share")).to_have_text(
        [
            re.compile(rf"^{share} \(\d+%\) · median \d+\.\d s$")
            for share in ("0 of 1 right", "1 of 2 right")
        ]
    )
    await expect(
        shown.get_by_role("listitem").filter(has_text="Question 2:").first
    ).to_contain_text("Question 2: Capital of Spain?")
    rows = shown.get_by_test_id("report-players").locator("tbody tr")
    ann_score = report["report"]["players"][0]["score"]
    await expect(rows).to_have_text([f"1ann{ann_score:,}1 of 2", "2bob00 of 2"])
    await page.locator("#report-title").evaluate("title => title.scrollIntoView()")
    keep_for_docs(await host.shot("report"), "host-report.png")

    # The CSV is the server's own file, byte for byte; the JSON is GetQuizReport's.
    name, body = await downloaded(page, "Download CSV")
    assert name == "Capitals-report.csv"
    served = await http.get(
        f"/v1/quizzes/{code}/report:csv", headers={"authorization": f"Bearer {token}"}
    )
    assert body == served.content
    table = [
        (r["rank"], r["nickname"], r["question"], r["choice_text"], r["correct"])
        for r in csv.DictReader(io.StringIO(body.decode()))
    ]
    assert table == [
        ("1", "ann", "1", "Paris", "yes"),
        ("1", "ann", "2", "Lisbon", "no"),
        ("2", "bob", "1", "Madrid", "no"),
        ("2", "bob", "2", "", ""),
    ]
    name, body = await downloaded(page, "Download JSON")
    assert name == "Capitals-report.json"
    assert timeless(json.loads(body)) == report
