"""PACK H schemas: playbook steps, checklist, next step, completion."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..cone.canon import Band
from ..constants import Text


class PlaybookStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[a-z0-9_]+$",
        description="The step's id: lower-case letters, digits and underscores.",
    )
    title: str = Field(min_length=1, description="What to do, in a few words.")
    why: str = Field(default="", description="Why the step matters (may be empty).")
    band_min: Band = Field(
        description="The worst band the step fits: A is best, D worst (B fits in A and B)."
    )
    blocked_if_red: bool = Field(default=True, description="The step waits while health is red.")


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
    done: bool = Field(description="Marked done.")
    notes: str | None = Field(description="The notes given when it was marked; null for none.")
    fits: bool = Field(description="The current band is no worse than band_min.")
    blocked: bool = Field(description="Health is red and the step is blocked_if_red.")
    blocked_reason: str | None = Field(
        default=None, description="Why the step is blocked (health red, and its reasons)."
    )
    fit_reason: str | None = Field(default=None, description="Why the step does not fit.")


class Checklist(BaseModel):
    cone_band: Band = Field(description="The cone's band now.")
    status: str = Field(description="The health light now: green, yellow or red.")
    steps: list[ChecklistStep] = Field(description="Every playbook step, in playbook order.")
    blocked_reasons: list[str] = Field(
        description="Why steps cannot be done now (red health, a worse band); empty if none."
    )
    done_count: int = Field(description="Steps marked done.")
    total: int = Field(description="Steps in the playbook.")


class NextStep(BaseModel):
    cone_band: Band = Field(description="The cone's band now.")
    status: str = Field(description="The health light now: green, yellow or red.")
    next_step: ChecklistStep | None = Field(
        description="The first step not done that fits the band and is not blocked; null if none."
    )
    message: str = Field(description="The next step, or why there is none, in one sentence.")


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
    ok: bool = Field(description="Always true: a refusal is an error status instead.")
    step_id: str = Field(description="The step's id.")
    done: bool = Field(description="The step's state now.")
    notes: str | None = Field(description="The step's notes now; null for none.")
    session_id: str | None = Field(
        default=None, description="The active session it was recorded in; null if none."
    )
