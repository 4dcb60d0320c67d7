"""The framework-only baseline: FastAPI routes of the same kind, doing no work.

``GET /read`` and ``POST /write`` are what ``GET /core/go/session`` and the
session writes are as routes (a sync ``def`` path operation, run in a worker
thread, with a response model of the same fields; the POST validates the same
``{"notes"}`` body) minus everything the service does: no middleware, no
auth, no storage. Served by uvicorn with httptools, one worker, no access log,
as ``valhalla serve`` runs (``bench.common.framework_serve``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict


class Session(BaseModel):
    """The fields and types of ``GoSession`` (the inactive default's values)."""

    active: bool = False
    started_at_utc: str | None = None
    ended_at_utc: str | None = None
    cone_band: str | None = None
    status: str | None = None
    notes: str | None = None
    snapshot: dict[str, Any] | None = None
    id: str | None = None
    started_by: str | None = None
    ended_by: str | None = None
    start_notes: str | None = None
    end_notes: str | None = None
    end_snapshot: dict[str, Any] | None = None
    duration_seconds: float | None = None
    steps_completed: list[str] = []


class Notes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notes: str | None = None


INACTIVE = Session()

app = FastAPI()


@app.get("/read", response_model=Session)
def read() -> Session:
    return INACTIVE


@app.post("/write", response_model=Session)
def write(body: Notes) -> Session:
    return Session(notes=body.notes)
