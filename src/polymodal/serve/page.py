"""The page at ``GET /``: one patient in, the prediction, the leave-one-out matrix and the
explanation out. Plain HTML from a jinja2 template and one vanilla script (package data under
``serve/templates`` and ``serve/static``); no build step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent


def mount_page(app: FastAPI, card: dict[str, Any]) -> None:
    """Add ``GET /`` and ``/static`` to ``app``; ``card`` is what ``GET /model`` answers."""
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "index.html", {"card": card})
