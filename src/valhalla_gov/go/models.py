"""PACK H schemas: playbook steps, checklist, next step, completion."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..cone.canon import Band
from ..constants import Text


class PlaybookStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, pattern=r"^[a-z0-9_]+$")
    title: str = Field(min_length=1)
    why: str = ""
    band_min: Band
    blocked_if_red: bool = True


class Playbook(BaseModel):
    steps: list[PlaybookStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Playbook:
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate step ids: {dupes}")
        return self

    def get(self, step_id: str) -> PlaybookStep | None:
        return next((s for s in self.steps if s.id == step_id), None)


class StepProgress(BaseModel):
    model_config = ConfigDict(extra="allow")

    done: bool = False
    notes: str | None = None


class ChecklistStep(PlaybookStep):
    done: bool
    notes: str | None
    fits: bool = Field(description="The current band is no worse than band_min.")
    blocked: bool = Field(description="Health is red and the step is blocked_if_red.")
    blocked_reason: str | None = None
    fit_reason: str | None = Field(default=None, description="Why the step does not fit.")


class Checklist(BaseModel):
    cone_band: Band
    status: str
    steps: list[ChecklistStep]
    blocked_reasons: list[str]
    done_count: int
    total: int


class NextStep(BaseModel):
    cone_band: Band
    status: str
    next_step: ChecklistStep | None
    message: str


class CompleteRequest(BaseModel):
    """A playbook step to mark done (or not done again)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"step_id": "preflight_view_dashboard", "notes": "band B, yellow"}]
        },
    )

    step_id: str = Field(
        min_length=1, max_length=200, description="The step's id, as the checklist lists it."
    )
    done: bool = Field(default=True, description="False marks the step not done again.")
    notes: Text | None = Field(
        default=None,
        description="Left out: the step's notes stay as they are; null clears them.",
    )


class CompleteResult(BaseModel):
    ok: bool
    step_id: str
    done: bool
    notes: str | None
    session_id: str | None = None
