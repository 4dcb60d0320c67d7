"""Serves the GO page at ``/`` and its assets under ``/ui/``.

No build step and no CDN: the files in ``static/`` are what the browser gets,
so the page works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from ..auth.deps import PUBLIC, VIEWER
from ..security.gate import HTML_HEADERS

STATIC_DIR = Path(__file__).parent / "static"
# Revalidate on every load, so an upgrade's new JavaScript is used at once.
NO_CACHE = {"Cache-Control": "no-cache"}
# Everything the page needs comes from this server; nothing inline, no frames.
# (The security gate adds the same headers to every other HTML response.)
PAGE_HEADERS = {**NO_CACHE, **HTML_HEADERS, "X-Content-Type-Options": "nosniff"}

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


@router.get("/docs", include_in_schema=False, dependencies=[Depends(PUBLIC)])
def api_docs() -> FileResponse:
    """Swagger UI from the files shipped in vendor/: a page with no data of its
    own; it fetches /openapi.json with the token the GO page keeps."""
    return FileResponse(STATIC_DIR / "docs.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/openapi.json", include_in_schema=False, dependencies=[Depends(VIEWER)])
def openapi_schema(request: Request) -> JSONResponse:
    """The API description: viewer scope, like every other read."""
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


def mount_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", _Assets(directory=STATIC_DIR), name="ui")
