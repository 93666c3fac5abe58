"""Players join from their phones: the host's screen shows a join link that phones
can open, with its QR code, built from the public URL the gateway announces; where
the host opened localhost and no public URL is set, it says what to do instead of
showing a link only this machine can open as if it were the one to share."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, expect

from devstack.gateway import REPO, EnvoyProcess, local_gateway, write_envoy_config
from tests.api import HttpApi
from tests.browser.conftest import BIG_SCREEN, OpenUser, User
from tests.browser.host_desk import sign_in_with_token
from tests.stack import Backends, Stack

PUBLIC_URL = "https://quiz.example.test/"
QUIZ: dict[str, Any] = {
    "title": "Phones quiz",
    "questions": [{"text": "Ready?", "choices": ["yes", "no"], "correct_choice": 0}],
}

# Reads the QR code in an <img> back: samples the centre of every module and
# compares with the code of `text` at each error correction level (the quiet zone
# is the standard 4 modules). Returns the level that matches, or null.
READ_BACK_QR = """async (img, text) => {
  const { default: qrcode } = await import("/vendor/qrcode-generator.mjs");
  await img.decode();
  const size = img.naturalWidth;
  const canvas = new OffscreenCanvas(size, size);
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, size, size).data;
  for (const level of "LMQH") {
    const code = qrcode(0, level);
    code.addData(text);
    code.make();
    const n = code.getModuleCount();
    const cell = size / (n + 8);
    const dark = (row, col) =>
      pixels[(Math.floor((row + 4.5) * cell) * size + Math.floor((col + 4.5) * cell)) * 4] < 128;
    let same = true;
    for (let row = -4; row < n + 4 && same; row++)
      for (let col = -4; col < n + 4 && same; col++) {
        const inside = row >= 0 && col >= 0 && row < n && col < n;
        same = dark(row, col) === (inside && code.isDark(row, col));
      }
    if (same) return level;
  }
  return null;
}"""


@pytest.fixture(scope="module")
async def public_gateway(
    stack: Stack, backends: Backends, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EnvoyProcess]:
    """A second Envoy in front of the suite's stack, rendered with the public URL
    players use (as behind a proxy or at a domain)."""
    folder = tmp_path_factory.mktemp("public-envoy")
    settings = local_gateway(
        {name: f"127.0.0.1:{stack.port(name)}" for name in stack.apps},
        backends.jwks_file,
        web_root=REPO / "web",
        public_url=PUBLIC_URL,
    )
    config = write_envoy_config(folder / "envoy.yaml", settings)
    async with EnvoyProcess(config, log_file=folder / "envoy.log") as envoy:
        yield envoy


async def open_host_screen(host: User, base_url: str, token: str, quiz_id: str) -> None:
    """Signs in at the host desk of `base_url` and opens the quiz's big screen."""
    await host.page.goto(f"{base_url}/#/host")
    await sign_in_with_token(host.page, token)
    await expect(host.page.get_by_text("Signed in as")).to_be_visible()
    await host.page.goto(f"{base_url}/#/host/{quiz_id}")
    await expect(host.page.get_by_role("heading", name="Waiting for players")).to_be_visible()
    await expect(host.page.get_by_test_id("quiz-code")).to_have_text(quiz_id)


def join_qr(host: User) -> Locator:
    return host.page.get_by_role("img", name=re.compile("^QR code of the join link"))


async def test_the_host_screen_shows_the_public_join_link_and_its_qr_code(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient, public_gateway: EnvoyProcess
) -> None:
    host_token = stack.host_token("alice")
    quiz_id = (await HttpApi(http).call("CreateQuiz", QUIZ, host_token))["quiz"]["quiz_id"]
    host = await open_user("host", BIG_SCREEN)
    # The host opened the page on this machine (127.0.0.1), as a host often does.
    await open_host_screen(host, public_gateway.base_url, host_token, quiz_id)

    # The lobby: the link is the public one, not the address the host opened.
    join_link = f"https://quiz.example.test/#/play/{quiz_id}"
    await expect(host.page.get_by_test_id("join-link")).to_have_text(join_link)
    await expect(host.page.get_by_test_id("join-link")).to_have_attribute("href", join_link)
    await expect(join_qr(host)).to_be_visible()
    assert await join_qr(host).evaluate(READ_BACK_QR, join_link) is not None
    await expect(host.page.get_by_test_id("join-hint")).to_have_count(0)
    await host.shot("lobby-public-link")

    # The big screen of the running quiz keeps both.
    await host.page.get_by_role("button", name="Start quiz").click()
    await expect(host.page.get_by_role("heading", name="Ready?")).to_be_visible()
    await expect(host.page.get_by_test_id("join-link")).to_have_text(join_link)
    await expect(join_qr(host)).to_be_visible()
    await host.shot("big-screen-public-link")


async def test_a_host_on_localhost_without_a_public_url_is_told_what_phones_need(
    open_user: OpenUser, stack: Stack, http: httpx.AsyncClient
) -> None:
    host_token = stack.host_token("alice")
    quiz_id = (await HttpApi(http).call("CreateQuiz", QUIZ, host_token))["quiz"]["quiz_id"]
    host = await open_user("host", BIG_SCREEN)
    base_url = str(http.base_url).rstrip("/")  # the suite's gateway: no public URL
    await open_host_screen(host, base_url, host_token, quiz_id)

    # The localhost link works on this machine only: no QR code, and a plain hint.
    await expect(host.page.get_by_test_id("join-link")).to_have_text(f"{base_url}/#/play/{quiz_id}")
    hint = host.page.get_by_test_id("join-hint")
    await expect(hint).to_contain_text("Phones cannot open this link")
    await expect(hint).to_contain_text("the address for players' phones that make run printed")
    await expect(join_qr(host)).to_have_count(0)
    await host.shot("lobby-localhost-hint")


async def test_the_gateway_tells_the_web_client_its_public_url(
    http: httpx.AsyncClient, public_gateway: EnvoyProcess
) -> None:
    async with httpx.AsyncClient(base_url=public_gateway.base_url) as public:
        configured = await public.get("/config.json")
    unset = await http.get("/config.json")

    assert configured.status_code == 200
    assert configured.headers["content-type"] == "application/json"
    assert configured.json() == {"public_url": "https://quiz.example.test"}
    assert unset.json() == {"public_url": ""}
