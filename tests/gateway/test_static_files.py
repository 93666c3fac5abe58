"""The web client's files served from the web root beside the API."""

from __future__ import annotations

import httpx


async def test_web_root_is_served_beside_the_api(http: httpx.AsyncClient) -> None:
    index = await http.get("/")
    script = await http.get("/app.js")

    assert index.status_code == 200
    assert "<title>QuizMesh</title>" in index.text
    assert index.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript")


async def test_missing_file_is_a_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/missing.png")

    assert response.status_code == 404
