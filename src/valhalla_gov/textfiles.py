"""Loading operator-supplied JSON or YAML configuration files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(Exception):
    """A configuration file is missing, unreadable or invalid."""


def load_structured_file(path: Path) -> Any:
    """Parse ``path`` as YAML when it ends in .yaml/.yml, else as JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            return yaml.safe_load(text)
        return json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigFileError(f"{path}: does not parse ({exc})") from exc


def load_config(model: type[M], path: Path | None, default: Any, *, what: str) -> M:
    """``model`` from the operator's file at ``path``, or from ``default``
    when there is none; ConfigFileError saying what is wrong otherwise."""
    raw = default if path is None else load_structured_file(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigFileError(f"{path or f'default {what}'}: invalid {what}: {exc}") from exc
