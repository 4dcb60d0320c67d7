"""A framework-only FastAPI app: the floor a Valhalla route cannot beat.

No middleware, no auth, no storage: a GET and a POST that answer a constant
the size of the inactive GO session (``BODY``; ``bench.bench_app`` reuses it),
served by uvicorn with its default parser (httptools) and one worker, as
``valhalla serve`` runs. ``bench.bench_writes`` runs it
beside the real server and divides by it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

BODY: dict[str, Any] = {
    "active": False,
    "route": "framework-only",
    "detail": "a constant body the size of the inactive session default",
    "started_at_utc": None,
    "ended_at_utc": None,
    "cone_band": None,
    "status": None,
    "notes": None,
    "snapshot": None,
    "id": None,
    "padding": "x" * 40,
}


class Notes(BaseModel):
    notes: str | None = None


app = FastAPI()


@app.get("/read")
def read() -> dict[str, Any]:
    return BODY


@app.post("/write")
def write(body: Notes) -> dict[str, Any]:
    return {**BODY, "notes": body.notes}
