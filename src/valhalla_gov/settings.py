"""Runtime settings, read from ``VALHALLA_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VALHALLA_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the JSON files live.")
    canon_file: Path | None = Field(
        default=None, description="JSON or YAML file replacing the default engine canon."
    )
    playbook_file: Path | None = Field(
        default=None, description="JSON or YAML file replacing the default GO playbook."
    )
    log_level: str = Field(default="info")
