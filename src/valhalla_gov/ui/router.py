"""Serves the GO page at ``/`` and its assets under ``/ui/``.

No build step and no CDN: the files in ``static/`` are what the browser gets,
so the page works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..auth.deps import PUBLIC

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(tags=["GO page"])


@router.get("/", include_in_schema=False, dependencies=[Depends(PUBLIC)])
def go_page() -> FileResponse:
    """The page itself is public; its API calls carry the operator's token."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def mount_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC_DIR), name="ui")
