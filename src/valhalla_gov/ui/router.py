"""Serves the GO page at ``/`` and its assets under ``/ui/``.

No build step and no CDN: the files in ``static/`` are what the browser gets,
so the page works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from ..auth.deps import PUBLIC

STATIC_DIR = Path(__file__).parent / "static"
# Revalidate on every load, so an upgrade's new JavaScript is used at once.
NO_CACHE = {"Cache-Control": "no-cache"}
# Everything the page needs comes from this server; nothing inline, no frames.
PAGE_HEADERS = {
    **NO_CACHE,
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["GO page"])


class _Assets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(NO_CACHE)
        return response


@router.get("/", include_in_schema=False, dependencies=[Depends(PUBLIC)])
def go_page() -> FileResponse:
    """The page itself is public; its API calls carry the operator's token."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


def mount_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", _Assets(directory=STATIC_DIR), name="ui")
